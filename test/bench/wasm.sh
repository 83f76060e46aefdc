#!/usr/bin/env bash
# What a WASM authorizer costs a request through the real edge.
#
# A real `portico origin`, a real `portico edge` and a 1 KiB backend
# (test/bench/listenmock, plain HTTP). One API, one stage per variant, each
# mapped at /VARIANT on one plain-HTTP domain: "none" has no plugin, the
# others have the bearer-token authorizer of examples/plugins in C,
# AssemblyScript, Rust and standard Go, uploaded and attached with
# `portico ctl plugins`. The edge is pinned to core 0 with GOMAXPROCS=1; the
# origin and the backend run there too (the "L2" layout of
# shared/notes/performance.md: the servers of one request share a core, so
# the comparison does not depend on which of them is the bottleneck); wrk
# runs on core 1. Variants are interleaved, ROUNDS rounds of DURATION
# seconds each, all with the same request bytes (a good token).
#
# Printed per variant: median and max requests per second and the ratio to
# "none" (the throughput of the whole chain), and the edge process's CPU
# time per request, from /proc/PID/stat before and after each run. The CPU
# an authorizer adds is its difference to "none"; "edge loss" is what that
# costs an edge that is its own bottleneck (1 - none CPU / variant CPU).
#
#   test/bench/wasm.sh                       # 3 rounds of 10 s
#   ROUNDS=5 DURATION=10 test/bench/wasm.sh
#   VARIANTS="none c" test/bench/wasm.sh     # a subset
#   SERVER_CPU=0 LOAD_CPU=1 ORIGIN_CPU=1 test/bench/wasm.sh   # origin and backend beside wrk
#   PORTICO_BIN=/tmp/portico EDGE_FLAGS="--ops-listen 127.0.0.1:9902" test/bench/wasm.sh
#   RATE=4000 test/bench/wasm.sh             # also: CPU per request at a fixed rate
#
# RATE adds rounds at that many requests per second for every variant
# (test/bench/loadclient -rate, CONNS connections), below what the slowest
# variant serves: the edge does the same work per second in each, so a
# slower variant does not also change how system calls and wake-ups batch,
# as it does at saturation. But the edge idles between requests then, and
# every request starts with colder caches, which magnifies what a plugin
# costs in situ (docs/plugins.md, "Cost"). Those rounds print user and
# system CPU separately.
#
# PORTICO_BIN runs a prebuilt binary instead of building one; EDGE_FLAGS are
# added to the edge's command line.
#
# Needs: wrk, taskset (util-linux), curl, python3, go, and the toolchains of
# examples/plugins/build.sh. Targets: C or AssemblyScript authorizer at most
# 10% throughput loss and at most 5 µs added CPU per request.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${ROUNDS:-3}
duration=${DURATION:-10}
server_cpu=${SERVER_CPU:-0}
origin_cpu=${ORIGIN_CPU:-$server_cpu}
load_cpu=${LOAD_CPU:-1}
conns=${CONNS:-64}
read -r -a variants <<<"${VARIANTS:-none c assemblyscript rust go}"

for tool in wrk taskset curl go; do
	command -v "$tool" >/dev/null || { echo "wasm.sh: $tool is not installed (apt-get install -y wrk util-linux curl)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/portico-wasm-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	rm -rf "$work"
}
trap cleanup EXIT

# wait_log FILE REGEX: the first match of REGEX's group 1 in FILE.
wait_log() {
	for _ in $(seq 1 600); do
		if m=$(sed -nE "s/.*$2.*/\1/p" "$1" 2>/dev/null | head -1) && [[ -n "$m" ]]; then
			echo "$m"
			return 0
		fi
		sleep 0.1
	done
	echo "wasm.sh: nothing in $1 matched $2:" >&2
	cat "$1" >&2
	exit 1
}

free_port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }

echo "building portico, the backend and the plugins..." >&2
(cd "$root" && go build -o "$work/loadclient" ./test/bench/loadclient)
if [[ -n "${PORTICO_BIN:-}" ]]; then
	cp "$PORTICO_BIN" "$work/portico"
else
	(cd "$root" && go build -o "$work/portico" ./cmd/portico)
fi
(cd "$root" && go build -o "$work/listenmock" ./test/bench/listenmock)
OUT="$work/plugins" "$root/examples/plugins/build.sh" >/dev/null
declare -A module=([c]=authorizer-c [assemblyscript]=authorizer-as [rust]=authorizer-rust [go]=authorizer-go)

backend_port=$(free_port)
GOMAXPROCS=1 taskset -c "$origin_cpu" "$work/listenmock" -tls "127.0.0.1:$(free_port)" -http "127.0.0.1:$backend_port" -size 1024 >"$work/backend.log" 2>&1 &
pids+=("$!")

GOMAXPROCS=1 taskset -c "$origin_cpu" "$work/portico" origin --data-dir "$work/origin" --admin-listen 127.0.0.1:0 --data-listen 127.0.0.1:0 >"$work/origin.log" 2>&1 &
pids+=("$!")
admin=$(wait_log "$work/origin.log" 'origin serving.* admin=([^ ]+)')
data=$(wait_log "$work/origin.log" 'origin serving.* data=([^ ]+)') # logged with its scheme: http://ADDR
admin_token=$(wait_log "$work/origin.log" 'admin token[^:]*: +(ptc_admin_[^ ]+)')
edge_token=$(wait_log "$work/origin.log" 'edge token[^:]*: +(ptc_edge_[^ ]+)')
ctl() { "$work/portico" ctl --admin-url "http://$admin" --token "$admin_token" "$@"; }

cat >"$work/bench.yaml" <<EOF
openapi: 3.0.3
info: {title: Bench, version: "1"}
x-portico-integration: {type: http_proxy, uri: "http://\${stageVariables.backend}"}
paths:
  /hello:
    get: {operationId: hello, responses: {"200": {description: ok}}}
EOF
ctl apis import "$work/bench.yaml" --name bench >/dev/null
ctl domains put bench.test --plain-http serve >/dev/null
for v in "${variants[@]}"; do
	ctl stages put bench "$v" --var "backend=127.0.0.1:$backend_port" >/dev/null
	ctl deploy bench "$v" >/dev/null
	ctl mappings put bench.test "$v" --api bench --stage "$v" >/dev/null
	if [[ "$v" != none ]]; then
		digest=$(ctl plugins upload "$work/plugins/${module[$v]}.wasm" -o json | sed -nE 's/.*"digest": "([^"]+)".*/\1/p')
		ctl plugins attach --api bench --stage "$v" --type wasm-authorizer --module "$digest" \
			--config '{"config": "s3cr3t=alice", "instances": 1}' >/dev/null
	fi
done

GOMAXPROCS=1 taskset -c "$server_cpu" "$work/portico" edge --origin "$data" --token "$edge_token" --data-dir "$work/edge" \
	--https-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ops-listen "" --dev-ca ${EDGE_FLAGS:-} >"$work/edge.log" 2>&1 &
edge_pid=$!
pids+=("$edge_pid")
edge=$(wait_log "$work/edge.log" 'edge serving.* http=([^ ]+)')

for v in "${variants[@]}"; do
	url="http://$edge/$v/hello"
	ok=
	for _ in $(seq 1 600); do
		code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "$url" || true)
		[[ "$code" == 200 ]] && { ok=1; break; }
		sleep 0.1
	done
	[[ -n "$ok" ]] || { echo "wasm.sh: $url answered $code to a good token" >&2; cat "$work/edge.log" >&2; exit 1; }
	if [[ "$v" != none ]]; then
		code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' "$url")
		[[ "$code" == 401 ]] || { echo "wasm.sh: $url answered $code without a token; the plugin is not running" >&2; exit 1; }
	fi
	# Warm the connections and the instance.
	taskset -c "$load_cpu" wrk -t1 -c"$conns" -d2s -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "$url" >/dev/null
done

cputicks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
# user and system ticks apart
cpusplit() { awk '{print $14, $15}' "/proc/$1/stat"; }
hz=$(getconf CLK_TCK)
declare -A rps cpu errs
for r in $(seq "$rounds"); do
	for v in "${variants[@]}"; do
		before=$(cputicks "$edge_pid")
		out=$(taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${duration}s" -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "http://$edge/$v/hello")
		after=$(cputicks "$edge_pid")
		# Errors are counted, not fatal: on an overloaded machine the Go
		# guest's requests can outwait the 1 s instance queue (503). The
		# table shows them; a run with errors is not a clean figure.
		bad=$(awk '/Non-2xx/ {print $5}' <<<"$out")
		timeouts=$(awk '/Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out")
		errs[$v]=$(( ${errs[$v]:-0} + ${bad:-0} + ${timeouts:-0} ))
		reqs=$(awk '/requests in/ {print $1}' <<<"$out")
		rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
		us=$(awk -v t=$((after - before)) -v hz="$hz" -v n="$reqs" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
		rps[$v]+="$rate "
		cpu[$v]+="$us "
		printf 'round %d %-15s %10s req/s  %6s µs edge CPU/request  %s errors\n' "$r" "$v" "$rate" "$us" "$(( ${bad:-0} + ${timeouts:-0} ))" >&2
	done
done

median() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END {print (NR % 2) ? a[(NR+1)/2] : (a[NR/2] + a[NR/2+1]) / 2}'; }
maxof() { tr ' ' '\n' | grep -v '^$' | sort -g | tail -1; }
base=$(median <<<"${rps[${variants[0]}]}")
basecpu=$(median <<<"${cpu[${variants[0]}]}")
echo
echo "edge, origin and backend on core(s) $server_cpu/$origin_cpu, wrk -c$conns on core $load_cpu; $rounds rounds of ${duration}s; baseline: ${variants[0]}"
printf '%-15s %11s %11s %7s %9s %11s %11s %10s %7s\n' variant "median rps" "max rps" ratio "rps loss" "µs CPU/req" "added µs" "edge loss" errors
for v in "${variants[@]}"; do
	m=$(median <<<"${rps[$v]}")
	x=$(maxof <<<"${rps[$v]}")
	c=$(median <<<"${cpu[$v]}")
	awk -v v="$v" -v m="$m" -v x="$x" -v b="$base" -v c="$c" -v bc="$basecpu" -v e="${errs[$v]}" \
		'BEGIN { printf "%-15s %11.0f %11.0f %7.3f %8.1f%% %11.2f %11.2f %9.1f%% %7d\n", v, m, x, m / b, (1 - m / b) * 100, c, c - bc, (1 - bc / c) * 100, e }'
done

[[ -n "${RATE:-}" ]] || exit 0
declare -A got ucpu scpu
for r in $(seq "$rounds"); do
	for v in "${variants[@]}"; do
		read -r u0 s0 < <(cpusplit "$edge_pid")
		out=$(taskset -c "$load_cpu" "$work/loadclient" -c "$conns" -rate "$RATE" -d "${duration}s" -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "http://$edge/$v/hello")
		read -r u1 s1 < <(cpusplit "$edge_pid")
		n=$(sed -nE 's/.* requests=([0-9]+) .*/\1/p' <<<"$out")
		rate=$(sed -nE 's/.* rps=([0-9]+) .*/\1/p' <<<"$out")
		p99=$(sed -nE 's/.* p99=([^ ]+) .*/\1/p' <<<"$out")
		us=$(awk -v t=$((u1 - u0)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
		ss=$(awk -v t=$((s1 - s0)) -v hz="$hz" -v n="$n" 'BEGIN { printf "%.2f", t / hz * 1e6 / n }')
		got[$v]+="$rate "
		ucpu[$v]+="$us "
		scpu[$v]+="$ss "
		printf 'round %d %-15s at %s/s: %6s req/s  p99 %-9s %6s µs user + %6s µs system edge CPU/request\n' "$r" "$v" "$RATE" "$rate" "$p99" "$us" "$ss" >&2
	done
done
bu=$(median <<<"${ucpu[${variants[0]}]}")
bs=$(median <<<"${scpu[${variants[0]}]}")
echo
echo "at a fixed $RATE requests/s (loadclient -c$conns), $rounds rounds of ${duration}s; edge CPU per request, medians; baseline: ${variants[0]}"
printf '%-15s %10s %9s %9s %9s %11s %11s %11s\n' variant "got rps" "µs user" "µs sys" "µs all" "added user" "added sys" "added all"
for v in "${variants[@]}"; do
	g=$(median <<<"${got[$v]}")
	u=$(median <<<"${ucpu[$v]}")
	sy=$(median <<<"${scpu[$v]}")
	awk -v v="$v" -v g="$g" -v u="$u" -v s="$sy" -v bu="$bu" -v bs="$bs" \
		'BEGIN { printf "%-15s %10.0f %9.2f %9.2f %9.2f %11.2f %11.2f %11.2f\n", v, g, u, s, u + s, u - bu, s - bs, (u + s) - (bu + bs) }'
done
