#!/usr/bin/env bash
# What a WASM authorizer costs a request through the real edge: the edge's
# CPU time per request with each authorizer, minus the same without one,
# with its spread over many short interleaved rounds.
#
# A real `portico origin`, a real `portico edge` and a 1 KiB backend
# (test/bench/listenmock, plain HTTP). One API, one stage per variant, each
# mapped at /VARIANT on one plain-HTTP domain: "none" and "control" have no
# plugin, the others the bearer-token authorizer of examples/plugins in C,
# AssemblyScript, Rust and standard Go, uploaded and attached with
# `portico ctl plugins`. The edge runs with GOMAXPROCS=1 on core
# SERVER_CPU (0); the origin and the backend on ORIGIN_CPU (default: the
# edge's core, the "L2" layout of shared/notes/performance.md); the load
# generator on LOAD_CPU (1). Every request carries the same good token.
#
# What is measured. ROUNDS rounds (default 20); in each, every variant gets
# one DURATION-second (3 s) load run, in an order rotated by one each round
# so that no variant always follows the same one. Around each run the
# script reads the edge's CPU time, summed over all its threads from
# /proc/PID/task/*/schedstat (nanoseconds: the scheduler's own accounting,
# not ticks), and divides by the requests served. A variant's added CPU in
# a round is its CPU per request minus that of "none" in the same round;
# the table gives the mean of those paired differences with a 95%
# confidence interval (Student's t over rounds), their median and range.
# Pairing within a round removes what drifts between rounds (other jobs on
# the machine, the hypervisor), which on the project's shared 2-vCPU VM is
# larger than what a small plugin costs. "control" is a second stage
# without a plugin, measured like the others: its added CPU is the
# method's noise floor, and an interval for it far from 0 says the run is
# not to be trusted.
#
# The load: by default wrk -t1 -cCONNS (64) at saturation, which also gives
# the throughput loss against "none" (median of the per-round ratios). With
# RATE=N the runs are at a fixed N requests/s instead (test/bench/loadclient
# -rate), below what the slowest variant serves, so that every variant does
# the same work per second; the edge then idles between requests, and every
# request starts with colder caches, which magnifies what a plugin costs in
# situ (docs/plugins.md, "Cost").
#
# The load average and the hypervisor's steal time are printed with the
# table: figures from a run with high steal or load are not clean.
#
# CALLGRIND=N instead restarts the edge (with its compiled-module cache)
# under valgrind's callgrind, and counts the instructions the edge process
# executes for N requests per variant on one connection, ROUNDS times
# (default 3). The count does not depend on what else the machine runs,
# so it shows, in situ, how much work a plugin adds and (with KEEP=1 and
# callgrind_annotate on the kept callgrind.out.K files, one per run) where.
# Instructions are not time: cache misses, which dominate what a small
# plugin costs in situ, are not in it. Go's garbage collector is off for
# these runs (its cycles would land in one run or another), and timers
# fire about 50 times more often per request than at full speed, so the
# engine's watchdog shows up where it does not at full speed.
#
#   test/bench/wasm.sh                          # 20 rounds of 3 s, all variants
#   ROUNDS=30 DURATION=2 VARIANTS="none control c assemblyscript" test/bench/wasm.sh
#   ORIGIN_CPU=1 test/bench/wasm.sh             # edge alone on core 0
#   RATE=3000 test/bench/wasm.sh                # fixed rate instead of saturation
#   PORTICO_BIN=/tmp/portico EDGE_FLAGS="--pprof-listen 127.0.0.1:6060" test/bench/wasm.sh
#   KEEP=1 test/bench/wasm.sh                   # keep the per-run table (TSV) and logs
#   CALLGRIND=2000 ROUNDS=2 test/bench/wasm.sh  # instructions per request (valgrind)
#
# PORTICO_BIN runs a prebuilt binary instead of building one; PLUGINS_DIR
# takes prebuilt plugins (authorizer-c.wasm ...) instead of building them;
# EDGE_FLAGS are added to the edge's command line.
#
# Needs: wrk, taskset (util-linux), curl, python3, go (valgrind for
# CALLGRIND), and the toolchains of
# examples/plugins/build.sh. Targets: a C or AssemblyScript authorizer adds
# at most 5 µs of CPU per request and loses at most 10% of throughput.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${ROUNDS:-20}
duration=${DURATION:-3}
server_cpu=${SERVER_CPU:-0}
origin_cpu=${ORIGIN_CPU:-$server_cpu}
load_cpu=${LOAD_CPU:-1}
conns=${CONNS:-64}
read -r -a variants <<<"${VARIANTS:-none control c assemblyscript rust go}"
[[ "${variants[0]}" == none ]] || { echo "wasm.sh: VARIANTS must start with none, the baseline" >&2; exit 2; }

for tool in wrk taskset curl go python3; do
	command -v "$tool" >/dev/null || { echo "wasm.sh: $tool is not installed (apt-get install -y wrk util-linux curl)" >&2; exit 2; }
done

work=$(mktemp -d /tmp/portico-wasm-bench.XXXXXX)
pids=()
cleanup() {
	for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
	for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
	if [[ -n "${KEEP:-}" ]]; then echo "wasm.sh: kept $work" >&2; else rm -rf "$work"; fi
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
if [[ -n "${PLUGINS_DIR:-}" ]]; then
	cp -r "$PLUGINS_DIR" "$work/plugins"
else
	OUT="$work/plugins" "$root/examples/plugins/build.sh" >/dev/null
fi
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
	if [[ "$v" != none && "$v" != control ]]; then
		digest=$(ctl plugins upload "$work/plugins/${module[$v]}.wasm" -o json | sed -nE 's/.*"digest": "([^"]+)".*/\1/p')
		ctl plugins attach --api bench --stage "$v" --type wasm-authorizer --module "$digest" \
			--config '{"config": "s3cr3t=alice", "instances": 1}' >/dev/null
	fi
done

# start_edge [WRAPPER...]: starts the edge (under WRAPPER, a command such
# as valgrind, if given) and waits until every variant answers as it should.
start_edge() {
	GOMAXPROCS=1 taskset -c "$server_cpu" "$@" "$work/portico" edge --origin "$data" --token "$edge_token" --data-dir "$work/edge" \
		--https-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ops-listen "" --dev-ca ${EDGE_FLAGS:-} >"$work/edge.log" 2>&1 &
	edge_pid=$!
	pids+=("$edge_pid")
	edge=$(wait_log "$work/edge.log" 'edge serving.* http=([^ ]+)')
	local v url ok code
	for v in "${variants[@]}"; do
		url="http://$edge/$v/hello"
		ok=
		for _ in $(seq 1 600); do
			code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "$url" || true)
			[[ "$code" == 200 ]] && { ok=1; break; }
			sleep 0.1
		done
		[[ -n "$ok" ]] || { echo "wasm.sh: $url answered $code to a good token" >&2; cat "$work/edge.log" >&2; exit 1; }
		if [[ "$v" != none && "$v" != control ]]; then
			code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' "$url")
			[[ "$code" == 401 ]] || { echo "wasm.sh: $url answered $code without a token; the plugin is not running" >&2; exit 1; }
		fi
	done
}
start_edge
# Warm the connections and the instances (and compile the modules into
# the edge's cache).
for v in "${variants[@]}"; do
	taskset -c "$load_cpu" wrk -t1 -c"$conns" -d2s -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "http://$edge/$v/hello" >/dev/null
done

if [[ -n "${CALLGRIND:-}" ]]; then
	# The edge again, under callgrind, with the compiled modules from its
	# cache. Go's asynchronous preemption signals trip callgrind, so they
	# are off; code wazero writes at run time is re-read when it changes.
	# The garbage collector is off too (GOGC=off): a cycle costs tens of
	# millions of instructions and falls into one run or another, which
	# made the same variant's count differ by half between rounds; the
	# allocations themselves are still counted.
	kill "$edge_pid"
	wait "$edge_pid" 2>/dev/null || true
	start_edge env GODEBUG=asyncpreemptoff=1 GOGC=off valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
		--smc-check=all-non-file --dump-instr=no --compress-strings=no ${CALLGRIND_FLAGS:-}
	printf 'round\tvariant\trequests\tinstructions\n' >"$work/callgrind.tsv"
	k=${#variants[@]}
	dumps=0
	lc() { taskset -c "$load_cpu" "$work/loadclient" -c 1 -d 5m -n "$1" -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "$url" >/dev/null; }
	for r in $(seq "${ROUNDS:-3}"); do
		for i in $(seq 0 $((k - 1))); do
			v=${variants[$(((i + r) % k))]}
			url="http://$edge/$v/hello"
			lc 200 # valgrind translates this variant's code paths
			callgrind_control --zero "$edge_pid" >/dev/null 2>&1
			lc "$CALLGRIND" # and one warm-up request
			callgrind_control --dump="$r-$v" "$edge_pid" >/dev/null 2>&1
			dumps=$((dumps + 1))
			f="$work/callgrind.out.$dumps"
			for _ in $(seq 1 100); do [[ -s "$f" ]] && grep -q '^totals:' "$f" && break; sleep 0.1; done
			ir=$(sed -nE 's/^totals: ([0-9]+).*/\1/p' "$f")
			printf '%d\t%s\t%d\t%d\n' "$r" "$v" $((CALLGRIND + 1)) "$ir" >>"$work/callgrind.tsv"
			printf 'round %d %-15s %10.0f instructions/request\n' "$r" "$v" "$(awk -v i="$ir" -v n=$((CALLGRIND + 1)) 'BEGIN {print i / n}')" >&2
		done
	done
	echo
	echo "$(date '+%F %T'): edge under callgrind on core $server_cpu, $CALLGRIND requests per variant and round on one connection"
	python3 - "$work/callgrind.tsv" "${variants[@]}" <<'EOF'
import csv, statistics as st, sys
runs = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
per = lambda r: int(r["instructions"]) / int(r["requests"])
base = {r["round"]: per(r) for r in runs if r["variant"] == "none"}
print(f'{"variant":15} {"instructions/request":>21} {"added":>10} {"added min … max":>22}')
for v in sys.argv[2:]:
    rs = [r for r in runs if r["variant"] == v]
    d = [per(r) - base[r["round"]] for r in rs]
    print(f'{v:15} {st.median(per(r) for r in rs):21.0f} {st.median(d):+10.0f} {min(d):+10.0f} … {max(d):+9.0f}')
EOF
	exit 0
fi

# edge_cpu: the edge's CPU time so far in ns, all threads, and its user
# and system clock ticks (for the split, at tick precision).
edge_cpu() {
	local ns=0 t
	for t in /proc/"$edge_pid"/task/*/schedstat; do
		read -r run _ 2>/dev/null <"$t" && ns=$((ns + run))
	done
	echo "$ns $(awk '{print $14, $15}' "/proc/$edge_pid/stat")"
}
# steal: the hypervisor's steal ticks of the machine so far.
steal() { awk '/^cpu / {print $9}' /proc/stat; }

hz=$(getconf CLK_TCK)
runs="$work/runs.tsv"
printf 'round\tvariant\trequests\trps\tcpu_ns\tuser_ticks\tsys_ticks\terrors\n' >"$runs"
load0=$(cut -d' ' -f1-3 /proc/loadavg)
steal0=$(steal)
t0=$(date +%s)
k=${#variants[@]}
for r in $(seq "$rounds"); do
	for i in $(seq 0 $((k - 1))); do
		v=${variants[$(((i + r) % k))]}
		url="http://$edge/$v/hello"
		read -r c0 u0 s0 < <(edge_cpu)
		if [[ -n "${RATE:-}" ]]; then
			out=$(taskset -c "$load_cpu" "$work/loadclient" -c "$conns" -rate "$RATE" -d "${duration}s" -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "$url")
			read -r c1 u1 s1 < <(edge_cpu)
			n=$(sed -nE 's/.* requests=([0-9]+) .*/\1/p' <<<"$out")
			rate=$(sed -nE 's/.* rps=([0-9]+) .*/\1/p' <<<"$out")
			bad=$(sed -nE 's/.* errors=([0-9]+) .*/\1/p' <<<"$out")
		else
			out=$(taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${duration}s" -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "$url")
			read -r c1 u1 s1 < <(edge_cpu)
			n=$(awk '/requests in/ {print $1}' <<<"$out")
			rate=$(awk '/Requests\/sec/ {print $2}' <<<"$out")
			# Errors are counted, not fatal: on an overloaded machine the
			# Go guest's requests can outwait the 1 s instance queue
			# (503). The table shows them; a run with errors is not clean.
			bad=$(awk '/Non-2xx/ {print $5} /Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' <<<"$out" | awk '{s += $1} END {print s + 0}')
		fi
		printf '%d\t%s\t%d\t%s\t%d\t%d\t%d\t%d\n' "$r" "$v" "$n" "$rate" $((c1 - c0)) $((u1 - u0)) $((s1 - s0)) "${bad:-0}" >>"$runs"
		printf 'round %2d %-15s %9s req/s %8.2f µs edge CPU/request\n' "$r" "$v" "$rate" "$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN {print c / n / 1000}')" >&2
	done
done
t1=$(date +%s)
steal1=$(steal)
load1=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ -n "${RATE:-}" ]]; then load="loadclient -c$conns at $RATE requests/s"; else load="wrk -t1 -c$conns at saturation"; fi
echo
echo "$(date '+%F %T'): edge on core $server_cpu (GOMAXPROCS=1), origin and backend on core $origin_cpu, $load on core $load_cpu"
echo "$rounds rounds x ${duration}s per variant, order rotated each round; load average $load0 before, $load1 after;" \
	"steal $(awk -v s=$((steal1 - steal0)) -v hz="$hz" -v t=$((t1 - t0)) 'BEGIN {printf "%.1f%%", s / hz / t / 2 * 100}') of the machine's time"
python3 - "$runs" "$hz" "${variants[@]}" <<'EOF'
import csv, math, statistics as st, sys

# Two-sided 95% Student t quantiles by degrees of freedom.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
       12: 2.18, 15: 2.13, 20: 2.09, 25: 2.06, 30: 2.04, 40: 2.02, 60: 2.00, 120: 1.98}
def t95(df):
    return T95[max(k for k in T95 if k <= df)] if df >= 1 else float("nan")

runs = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
hz = float(sys.argv[2])
variants = sys.argv[3:]
by = {(r["round"], r["variant"]): r for r in runs}
rounds = sorted({r["round"] for r in runs}, key=int)
cpu = lambda r: int(r["cpu_ns"]) / int(r["requests"]) / 1000  # µs per request

print(f'{"variant":15} {"median rps":>10} {"rps loss":>9} {"µs CPU/req":>10} {"added µs: mean ± 95% CI":>24} {"median":>7} {"min … max":>16} {"user/sys added":>15} {"errors":>6}')
for v in variants:
    rs = [by[(k, v)] for k in rounds if (k, v) in by]
    base = [(by[(r["round"], "none")], r) for r in rs if (r["round"], "none") in by]
    rps = st.median(float(r["rps"]) for r in rs)
    loss = st.median(1 - float(r["rps"]) / float(b["rps"]) for b, r in base) * 100
    c = st.median(cpu(r) for r in rs)
    errs = sum(int(r["errors"]) for r in rs)
    if v == "none":
        print(f'{v:15} {rps:10.0f} {"":>9} {c:10.2f} {"":>24} {"":>7} {"":>16} {"":>15} {errs:6d}')
        continue
    d = [cpu(r) - cpu(b) for b, r in base]
    m = st.mean(d)
    ci = t95(len(d) - 1) * st.stdev(d) / math.sqrt(len(d)) if len(d) > 1 else float("nan")
    tick = lambda r, f: int(r[f]) / hz * 1e6 / int(r["requests"])
    du = st.median(tick(r, "user_ticks") - tick(b, "user_ticks") for b, r in base)
    ds = st.median(tick(r, "sys_ticks") - tick(b, "sys_ticks") for b, r in base)
    print(f'{v:15} {rps:10.0f} {loss:8.1f}% {c:10.2f} {m:+13.2f} ± {ci:5.2f} µs {st.median(d):+7.2f} {min(d):+7.1f} … {max(d):+6.1f} {du:+7.1f}/{ds:+6.1f} {errs:6d}')
EOF
