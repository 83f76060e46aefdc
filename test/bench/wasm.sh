#!/usr/bin/env bash
# What a WASM authorizer costs a request, side by side in one run.
#
# The edge-like harness (server -> wasm-authorizer -> reverse proxy -> 1 KiB
# backend, all in one process) runs once without a plugin and once per
# authorizer (C, AssemblyScript, Go, Rust), each pinned to core 0; wrk runs on
# core 1. Variants are interleaved A/B/C/D/E, ROUNDS times, DURATION seconds
# each, and the script prints median and max throughput, the ratio to the
# run without a plugin, and the server CPU time per request (from
# /proc/PID/stat), so the CPU a plugin adds is the difference to "none".
#
#   test/bench/wasm.sh                     # 3 rounds of 10 s
#   ROUNDS=5 DURATION=10 test/bench/wasm.sh
#
# Needs: wrk, taskset (util-linux), and the toolchains of
# examples/plugins/build.sh. Method: shared/notes/performance.md.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${ROUNDS:-3}
duration=${DURATION:-10}
work=$(mktemp -d /tmp/portico-wasm-bench.XXXXXX)
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  wait 2>/dev/null || true
  rm -rf "$work"
}
trap cleanup EXIT

command -v wrk >/dev/null || { echo "wrk is not installed (apt-get install -y wrk)" >&2; exit 1; }
command -v taskset >/dev/null || { echo "taskset is not installed (util-linux)" >&2; exit 1; }

echo "building the harness and the plugins..." >&2
(cd "$root" && go build -o "$work/wasmbench" ./test/wasm/cmd/wasmbench)
OUT="$work/plugins" "$root/examples/plugins/build.sh" >/dev/null

variants=(none c assemblyscript go rust)
declare -A module=([none]="" [c]="$work/plugins/authorizer-c.wasm" [assemblyscript]="$work/plugins/authorizer-as.wasm"
  [go]="$work/plugins/authorizer-go.wasm" [rust]="$work/plugins/authorizer-rust.wasm")
declare -A port pid
p=18700
for v in "${variants[@]}"; do
  p=$((p + 1))
  port[$v]=$p
  args=(-listen "127.0.0.1:$p" -instances 1)
  [ -n "${module[$v]}" ] && args+=(-module "${module[$v]}")
  GOMAXPROCS=1 taskset -c 0 "$work/wasmbench" "${args[@]}" >"$work/$v.log" 2>&1 &
  pid[$v]=$!
  pids+=("$!")
  # One at a time: compiling a module (seconds for Go) takes the core.
  for _ in $(seq 1200); do
    grep -q "listening on" "$work/$v.log" 2>/dev/null && break
    sleep 0.1
  done
done
for v in "${variants[@]}"; do
  grep -q "listening on" "$work/$v.log" || { echo "$v did not start:" >&2; cat "$work/$v.log" >&2; exit 1; }
  # A good token must pass (and warm the instance and the connection pool).
  code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Authorization: Bearer s3cr3t' "http://127.0.0.1:${port[$v]}/")
  [ "$code" = 200 ] || { echo "$v answered $code to a good token" >&2; exit 1; }
done

cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A rps cpu
for r in $(seq "$rounds"); do
  for v in "${variants[@]}"; do
    before=$(cputicks "${pid[$v]}")
    out=$(taskset -c 1 wrk -t1 -c64 -d"${duration}s" -H 'Authorization: Bearer s3cr3t' "http://127.0.0.1:${port[$v]}/")
    after=$(cputicks "${pid[$v]}")
    reqs=$(awk '/requests in/ {print $1}' <<<"$out")
    rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
    us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
    rps[$v]+="$rate "
    cpu[$v]+="$us "
    printf 'round %d %-15s %10s req/s  %6s µs CPU/request\n' "$r" "$v" "$rate" "$us" >&2
  done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
maxof() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
base=$(median <<<"${rps[none]}")
basecpu=$(median <<<"${cpu[none]}")
echo
printf '%-15s %12s %12s %8s %14s %14s\n' variant "median rps" "max rps" ratio "µs CPU/req" "added µs CPU"
for v in "${variants[@]}"; do
  m=$(median <<<"${rps[$v]}")
  x=$(maxof <<<"${rps[$v]}")
  c=$(median <<<"${cpu[$v]}")
  awk -v v="$v" -v m="$m" -v x="$x" -v b="$base" -v c="$c" -v bc="$basecpu" \
    'BEGIN { printf "%-15s %12.0f %12.0f %8.3f %14.2f %14.2f\n", v, m, x, m / b, c, c - bc }'
done
