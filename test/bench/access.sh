#!/usr/bin/env bash
# Throughput cost of the access policies: a route with api-key (usage plan
# throttle + quota) and jwt (RS256, cached) against the same route with no
# policy, interleaved A/B/A/B, each run RUNS times for DURATION.
#
# Layout (docs/performance notes): edge and backend pinned to core 0, wrk to
# core 1, 64 keep-alive connections, 1 KiB responses, HTTP/1.1.
# Both variants receive the same request bytes (the key and the token are
# sent to "none" too). Any non-2xx response fails the run.
#
# Today the edge is the stand-in plugins/internal/edgetest (via
# plugins/internal/accessbench). To measure a real edge instead, set
# EDGE_NONE_URL and EDGE_ACCESS_URL to two routes of it and CREDS to a file
# holding the API key (line 1) and bearer token (line 2).
#
# Needs: wrk, taskset (util-linux), curl, go. Target: at most 10% loss.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
MAX_LOSS_PCT=${MAX_LOSS_PCT:-10}

for tool in wrk taskset curl; do
	command -v "$tool" >/dev/null || { echo "access.sh: $tool is not installed (apt-get install wrk util-linux curl)" >&2; exit 2; }
done

root=$(cd "$(dirname "$0")/../.." && pwd)
work=$(mktemp -d)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# Servers listen on ports the kernel picks and write them to a file, so
# that runs of other benchmarks on the machine cannot collide with these.
wait_addr() { # file -> host:port
	for _ in $(seq 1 200); do
		[[ -s "$1" ]] && { cat "$1"; return 0; }
		sleep 0.05
	done
	echo "access.sh: no server wrote $1" >&2
	exit 1
}

if [[ -z "${EDGE_NONE_URL:-}" ]]; then
	(cd "$root" && go build -o "$work/accessbench" ./plugins/internal/accessbench)
	GOMAXPROCS=1 taskset -c 0 "$work/accessbench" -role backend -addr 127.0.0.1:0 -addr-file "$work/backend.addr" &
	pids+=($!)
	backend=$(wait_addr "$work/backend.addr")
	CREDS="$work/creds"
	GOMAXPROCS=1 taskset -c 0 "$work/accessbench" -role edge -chain none -addr 127.0.0.1:0 -addr-file "$work/none.addr" \
		-backend "http://$backend" -creds "$work/creds.none" &
	pids+=($!)
	NONE_PID=$!
	GOMAXPROCS=1 taskset -c 0 "$work/accessbench" -role edge -chain access -addr 127.0.0.1:0 -addr-file "$work/access.addr" \
		-backend "http://$backend" -creds "$CREDS" &
	pids+=($!)
	ACCESS_PID=$!
	EDGE_NONE_URL="http://$(wait_addr "$work/none.addr")/pets"
	EDGE_ACCESS_URL="http://$(wait_addr "$work/access.addr")/pets"
fi

key=$(sed -n 1p "$CREDS")
token=$(sed -n 2p "$CREDS")
status=$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $key" -H "Authorization: Bearer $token" "$EDGE_ACCESS_URL")
[[ "$status" == 200 ]] || { echo "access.sh: the access route answers $status to a valid key and token" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "$EDGE_ACCESS_URL")
[[ "$status" != 200 ]] || { echo "access.sh: the access route lets a request without credentials through" >&2; exit 1; }

# cpu_ticks PID: user+system CPU time of a process, in clock ticks.
cpu_ticks() { [[ -n "${1:-}" && -r /proc/$1/stat ]] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
HZ=$(getconf CLK_TCK)

# run URL PID -> "rps p99 cpu_us_per_request". CPU per request is measured on
# the edge process (when its PID is known): on a busy machine it varies far
# less than throughput does.
run() {
	local out c0 c1 n
	c0=$(cpu_ticks "${2:-}")
	out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
		-H "x-api-key: $key" -H "Authorization: Bearer $token" "$1")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "access.sh: non-2xx responses from $1:" >&2
		echo "$out" >&2
		exit 1
	fi
	c1=$(cpu_ticks "${2:-}")
	n=$(awk '/requests in/ {print $1}' <<<"$out")
	if [[ -z "$n" || "$n" == 0 ]]; then
		echo "access.sh: wrk completed no request against $1:" >&2
		echo "$out" >&2
		return
	fi
	echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(awk '/^ +99%/ {print $2}' <<<"$out") $(awk -v a="$c0" -v b="$c1" -v n="$n" -v hz="$HZ" 'BEGIN {printf "%.1f", (n > 0 && b > a) ? (b - a) / hz * 1e6 / n : 0}')"
}

none=() access=() nonecpu=() accesscpu=()
for i in $(seq 1 "$RUNS"); do
	read -r a ap ac < <(run "$EDGE_NONE_URL" "${NONE_PID:-}"); none+=("$a"); nonecpu+=("$ac")
	read -r b bp bc < <(run "$EDGE_ACCESS_URL" "${ACCESS_PID:-}"); access+=("$b"); accesscpu+=("$bc")
	[[ -n "$a" && -n "$b" ]] || { echo "access.sh: a wrk run failed" >&2; exit 1; }
	printf 'run %d: none %s rps (p99 %s, %s us CPU/req), access %s rps (p99 %s, %s us CPU/req)\n' "$i" "$a" "$ap" "$ac" "$b" "$bp" "$bc"
done

stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%.0f %.0f\n", m, v[NR]}'; }
read -r nm nx < <(stats "${none[@]}")
read -r am ax < <(stats "${access[@]}")
loss=$(awk -v a="$am" -v n="$nm" 'BEGIN {printf "%.1f", (1 - a/n) * 100}')
echo "none:   median $nm rps, max $nx rps"
echo "access: median $am rps, max $ax rps (api-key + usage plan throttle/quota + jwt)"
# The median of the per-pair ratios cancels slow drifts in machine load.
pairloss=$(for i in "${!none[@]}"; do awk -v a="${access[$i]}" -v n="${none[$i]}" 'BEGIN {printf "%.4f\n", (1 - a/n) * 100}'; done |
	sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%.1f", m}')
echo "throughput loss (median): $loss% (target <= $MAX_LOSS_PCT%); median of pairwise losses: $pairloss%"
if [[ -n "${NONE_PID:-}" ]]; then
	read -r ncm _ < <(stats "${nonecpu[@]}")
	read -r acm _ < <(stats "${accesscpu[@]}")
	echo "edge CPU per request (median): none ${ncm} us, access ${acm} us"
fi
awk -v l="$loss" -v m="$MAX_LOSS_PCT" 'BEGIN {exit !(l <= m)}' || { echo "access.sh: loss above target" >&2; exit 1; }
