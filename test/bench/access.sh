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
BACKEND_PORT=${BACKEND_PORT:-18480}
NONE_PORT=${NONE_PORT:-18481}
ACCESS_PORT=${ACCESS_PORT:-18482}
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

wait_up() { # url
	for _ in $(seq 1 100); do
		curl -s -o /dev/null "$1" && return 0
		sleep 0.1
	done
	echo "access.sh: $1 did not come up" >&2
	exit 1
}

if [[ -z "${EDGE_NONE_URL:-}" ]]; then
	(cd "$root" && go build -o "$work/accessbench" ./plugins/internal/accessbench)
	GOMAXPROCS=1 taskset -c 0 "$work/accessbench" -role backend -addr "127.0.0.1:$BACKEND_PORT" &
	pids+=($!)
	wait_up "http://127.0.0.1:$BACKEND_PORT/"
	CREDS="$work/creds"
	GOMAXPROCS=1 taskset -c 0 "$work/accessbench" -role edge -chain none -addr "127.0.0.1:$NONE_PORT" \
		-backend "http://127.0.0.1:$BACKEND_PORT" -creds "$work/creds.none" &
	pids+=($!)
	GOMAXPROCS=1 taskset -c 0 "$work/accessbench" -role edge -chain access -addr "127.0.0.1:$ACCESS_PORT" \
		-backend "http://127.0.0.1:$BACKEND_PORT" -creds "$CREDS" &
	pids+=($!)
	EDGE_NONE_URL="http://127.0.0.1:$NONE_PORT/pets"
	EDGE_ACCESS_URL="http://127.0.0.1:$ACCESS_PORT/pets"
	wait_up "$EDGE_NONE_URL"
	wait_up "$EDGE_ACCESS_URL"
fi

key=$(sed -n 1p "$CREDS")
token=$(sed -n 2p "$CREDS")
status=$(curl -s -o /dev/null -w '%{http_code}' -H "x-api-key: $key" -H "Authorization: Bearer $token" "$EDGE_ACCESS_URL")
[[ "$status" == 200 ]] || { echo "access.sh: the access route answers $status to a valid key and token" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "$EDGE_ACCESS_URL")
[[ "$status" != 200 ]] || { echo "access.sh: the access route lets a request without credentials through" >&2; exit 1; }

run() { # url -> "rps p99"
	local out
	out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency \
		-H "x-api-key: $key" -H "Authorization: Bearer $token" "$1")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "access.sh: non-2xx responses from $1:" >&2
		echo "$out" >&2
		exit 1
	fi
	echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(awk '/^ +99%/ {print $2}' <<<"$out")"
}

none=() access=()
for i in $(seq 1 "$RUNS"); do
	read -r a ap < <(run "$EDGE_NONE_URL"); none+=("$a")
	read -r b bp < <(run "$EDGE_ACCESS_URL"); access+=("$b")
	[[ -n "$a" && -n "$b" ]] || { echo "access.sh: a wrk run failed" >&2; exit 1; }
	printf 'run %d: none %s rps (p99 %s), access %s rps (p99 %s)\n' "$i" "$a" "$ap" "$b" "$bp"
done

stats() { printf '%s\n' "$@" | sort -g | awk '{v[NR]=$1} END {m=(NR%2)?v[(NR+1)/2]:(v[NR/2]+v[NR/2+1])/2; printf "%.0f %.0f\n", m, v[NR]}'; }
read -r nm nx < <(stats "${none[@]}")
read -r am ax < <(stats "${access[@]}")
loss=$(awk -v a="$am" -v n="$nm" 'BEGIN {printf "%.1f", (1 - a/n) * 100}')
echo "none:   median $nm rps, max $nx rps"
echo "access: median $am rps, max $ax rps (api-key + usage plan throttle/quota + jwt)"
echo "throughput loss (median): $loss% (target <= $MAX_LOSS_PCT%)"
awk -v l="$loss" -v m="$MAX_LOSS_PCT" 'BEGIN {exit !(l <= m)}' || { echo "access.sh: loss above target" >&2; exit 1; }
