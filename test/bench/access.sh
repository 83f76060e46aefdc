#!/usr/bin/env bash
# Throughput cost of the access policies at a real Portico edge: a stage
# with api-key (usage plan with throttle and quota, per key) + jwt (RS256,
# cached) against a stage of the same API with no policy, interleaved
# A/B/A/B, each run RUNS times for DURATION.
#
# Layout (shared/notes/performance.md): `portico origin` and `portico edge`
# pinned to core 0, wrk to core 1, 64 keep-alive connections, HTTP/1.1 on
# the edge's plain-HTTP listener (the domain serves plain HTTP), 1 KiB mock
# responses made by the origin. Both stages receive the same request bytes
# (the key and the token are sent to "none" too). Any non-2xx response
# fails the run. Usage plans, keys and the route are set up with
# `portico ctl`, as a user would.
#
# MODE=standin measures the policy chain in the stand-in edge
# (plugins/internal/accessbench) instead, without hygiene, routing or the
# origin hop: the policies' own cost, for comparison.
#
# Needs: wrk, taskset (util-linux), curl, go. Target: at most 10% loss.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
MAX_LOSS_PCT=${MAX_LOSS_PCT:-10}
MODE=${MODE:-edge}

for tool in wrk taskset curl go; do
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

# wait_log FILE REGEX: the first match of REGEX's group 1 in FILE, within 20 s.
wait_log() {
	local m
	for _ in $(seq 1 400); do
		m=$(sed -nE "s/$2/\\1/p" "$1" | head -1)
		[[ -n "$m" ]] && { echo "$m"; return 0; }
		sleep 0.05
	done
	echo "access.sh: nothing matched /$2/ in $1:" >&2
	cat "$1" >&2
	exit 1
}

HOST_HDR=()
if [[ "$MODE" == standin ]]; then
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
	NONE_URL="http://$(wait_addr "$work/none.addr")/pets"
	ACCESS_URL="http://$(wait_addr "$work/access.addr")/pets"
	key=$(sed -n 1p "$CREDS")
	token=$(sed -n 2p "$CREDS")
else
	(cd "$root" && go build -o "$work/portico" ./cmd/portico && go build -o "$work/accesscreds" ./test/bench/accesscreds)
	"$work/accesscreds" -dir "$work"
	token=$(cat "$work/token")
	body=$(head -c 1024 /dev/zero | tr '\0' x)
	cat >"$work/pets.yaml" <<-EOF
		openapi: 3.0.3
		info: {title: Bench, version: "1"}
		paths:
		  /pets:
		    get:
		      x-portico-integration: {type: mock, status: 200, body: "$body"}
		      responses: {"200": {description: ok}}
	EOF
	cat >"$work/portico.yaml" <<-EOF
		portico: v1
		apis:
		  - name: bench
		    openapi: pets.yaml
		    stages:
		      - name: none
		      - name: access
		        policies:
		          - {type: api-key, config: {source: header, name: x-api-key}}
		          - type: jwt
		            config: {issuer: "https://issuer.bench", audiences: [bench], scopes: ["pets:read"], keys: $(cat "$work/jwks.json")}
		domains:
		  - name: bench.test
		    plainHttp: serve
		    mappings:
		      - {basePath: none, api: bench, stage: none}
		      - {basePath: access, api: bench, stage: access}
	EOF
	taskset -c 0 "$work/portico" origin --data-dir "$work/origin" --admin-listen 127.0.0.1:0 --data-listen 127.0.0.1:0 >"$work/origin.out" 2>&1 &
	pids+=($!)
	ORIGIN_PID=$!
	admin=$(wait_log "$work/origin.out" '.*origin serving.* admin=([^ ]+).*')
	data=$(wait_log "$work/origin.out" '.*origin serving.* data=([^ ]+).*')  # logged with its scheme: http://ADDR
	export PORTICO_ADMIN_URL="http://$admin"
	export PORTICO_TOKEN
	PORTICO_TOKEN=$(wait_log "$work/origin.out" '.*admin token[^:]*: +(ptc_admin_[^ ]+).*')
	edge_token=$(wait_log "$work/origin.out" '.*edge token[^:]*: +(ptc_edge_[^ ]+).*')
	ctl() { "$work/portico" ctl "$@" >/dev/null; }
	ctl apply -f "$work/portico.yaml"
	# A plan whose throttle and quota are checked on every request but
	# never reached, as in production.
	ctl plans create --id bench --name Bench --rate 1000000 --burst 1000000 --quota 1000000000000 --period MONTH --stage bench:access
	key=$("$work/portico" ctl keys create --name bench --plan bench -o json | sed -nE 's/.*"key": "([^"]+)".*/\1/p')
	[[ -n "$key" ]] || { echo "access.sh: ctl keys create gave no key" >&2; exit 1; }
	taskset -c 0 "$work/portico" edge --origin "$data" --token "$edge_token" --data-dir "$work/edge" \
		--https-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ops-listen "" --dev-ca >"$work/edge.out" 2>&1 &
	pids+=($!)
	EDGE_PID=$!
	http=$(wait_log "$work/edge.out" '.*edge serving.* http=([^ ]+).*')
	NONE_URL="http://$http/none/pets"
	ACCESS_URL="http://$http/access/pets"
	NONE_PID=$EDGE_PID
	ACCESS_PID=$EDGE_PID
	HOST_HDR=(-H "Host: bench.test")
	for _ in $(seq 1 200); do
		status=$(curl -s -o /dev/null -w '%{http_code}' "${HOST_HDR[@]}" -H "x-api-key: $key" -H "Authorization: Bearer $token" "$ACCESS_URL" || true)
		[[ "$status" == 200 ]] && break
		sleep 0.05
	done
fi

status=$(curl -s -o /dev/null -w '%{http_code}' "${HOST_HDR[@]}" -H "x-api-key: $key" -H "Authorization: Bearer $token" "$ACCESS_URL")
[[ "$status" == 200 ]] || { echo "access.sh: the access route answers $status to a valid key and token" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "${HOST_HDR[@]}" "$ACCESS_URL")
[[ "$status" != 200 ]] || { echo "access.sh: the access route lets a request without credentials through" >&2; exit 1; }
status=$(curl -s -o /dev/null -w '%{http_code}' "${HOST_HDR[@]}" -H "x-api-key: $key" "$ACCESS_URL")
[[ "$status" != 200 ]] || { echo "access.sh: the access route lets a request without a token through" >&2; exit 1; }

# cpu_ticks PID: user+system CPU time of a process, in clock ticks.
cpu_ticks() { [[ -n "${1:-}" && -r /proc/$1/stat ]] && awk '{print $14 + $15}' "/proc/$1/stat" || echo 0; }
HZ=$(getconf CLK_TCK)

# run URL PID [PID2] -> "rps p99 edge_cpu_us_per_request total_cpu_us_per_request".
# CPU per request is measured on the edge process (and, with PID2, the
# origin too): on a busy machine it varies far less than throughput does.
run() {
	local out c0 c1 o0 o1 n
	c0=$(cpu_ticks "${2:-}")
	o0=$(cpu_ticks "${3:-}")
	out=$(taskset -c 1 wrk -t1 -c"$CONNS" -d"$DURATION" --latency "${HOST_HDR[@]}" \
		-H "x-api-key: $key" -H "Authorization: Bearer $token" "$1")
	if grep -q "Non-2xx" <<<"$out"; then
		echo "access.sh: non-2xx responses from $1:" >&2
		echo "$out" >&2
		exit 1
	fi
	c1=$(cpu_ticks "${2:-}")
	o1=$(cpu_ticks "${3:-}")
	n=$(awk '/requests in/ {print $1}' <<<"$out")
	if [[ -z "$n" || "$n" == 0 ]]; then
		echo "access.sh: wrk completed no request against $1:" >&2
		echo "$out" >&2
		return
	fi
	echo "$(awk '/^Requests\/sec:/ {print $2}' <<<"$out") $(awk '/^ +99%/ {print $2}' <<<"$out")" \
		"$(awk -v a="$c0" -v b="$c1" -v n="$n" -v hz="$HZ" 'BEGIN {printf "%.1f", (n > 0 && b > a) ? (b - a) / hz * 1e6 / n : 0}')" \
		"$(awk -v a="$((c0 + o0))" -v b="$((c1 + o1))" -v n="$n" -v hz="$HZ" 'BEGIN {printf "%.1f", (n > 0 && b > a) ? (b - a) / hz * 1e6 / n : 0}')"
}

echo "mode: $MODE ($([[ $MODE == standin ]] && echo "stand-in edge, policies only" || echo "portico edge + origin, mock integration"))"
none=() access=() nonecpu=() accesscpu=() nonetot=() accesstot=()
for i in $(seq 1 "$RUNS"); do
	read -r a ap ac at < <(run "$NONE_URL" "${NONE_PID:-}" "${ORIGIN_PID:-}"); none+=("$a"); nonecpu+=("$ac"); nonetot+=("$at")
	read -r b bp bc bt < <(run "$ACCESS_URL" "${ACCESS_PID:-}" "${ORIGIN_PID:-}"); access+=("$b"); accesscpu+=("$bc"); accesstot+=("$bt")
	[[ -n "$a" && -n "$b" ]] || { echo "access.sh: a wrk run failed" >&2; exit 1; }
	printf 'run %d: none %s rps (p99 %s, %s us edge CPU/req), access %s rps (p99 %s, %s us edge CPU/req)\n' "$i" "$a" "$ap" "$ac" "$b" "$bp" "$bc"
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
read -r ncm _ < <(stats "${nonecpu[@]}")
read -r acm _ < <(stats "${accesscpu[@]}")
echo "edge CPU per request (median): none ${ncm} us, access ${acm} us"
if [[ -n "${ORIGIN_PID:-}" ]]; then
	read -r ntm _ < <(stats "${nonetot[@]}")
	read -r atm _ < <(stats "${accesstot[@]}")
	echo "edge + origin CPU per request (median): none ${ntm} us, access ${atm} us; loss this implies on core 0: $(awk -v a="$atm" -v n="$ntm" 'BEGIN {printf "%.1f", (n > 0) ? (1 - n/a) * 100 : 0}')%"
fi
awk -v l="$loss" -v m="$MAX_LOSS_PCT" 'BEGIN {exit !(l <= m)}' || { echo "access.sh: loss above target" >&2; exit 1; }
