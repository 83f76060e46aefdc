#!/usr/bin/env bash
# Runs every side-by-side benchmark in turn (`make bench`). Each script runs
# Portico and its peer in the same run, interleaved, and prints the ratio;
# see docs/performance.md for the method. Pass script names to run some:
#   test/bench/run.sh gateway cache
set -euo pipefail
cd "$(dirname "$0")"
all=(gateway access cache wasm protocols h3)
which=("$@")
[ ${#which[@]} -eq 0 ] && which=("${all[@]}")
status=0
for b in "${which[@]}"; do
	script="./$b.sh"
	if [ ! -x "$script" ]; then
		echo "bench: $script does not exist; available: ${all[*]}" >&2
		status=1
		continue
	fi
	echo "=== $b"
	"$script" || status=$?
done
exit $status
