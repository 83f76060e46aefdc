#!/usr/bin/env bash
# What a WASM authorizer costs a request through the real edge: the CPU the
# edge spends per request with each authorizer, minus the same without one,
# with a confidence interval, and the throughput it loses.
#
# A real `portico origin`, real `portico edge`s and a 1 KiB backend
# (test/bench/listenmock, plain HTTP). One API, one stage per variant, each
# mapped at /VARIANT on one plain-HTTP domain: "none" and "control" have no
# plugin, the others the bearer-token authorizer of examples/plugins in C,
# AssemblyScript, Rust and standard Go, uploaded and attached with
# `portico ctl plugins`. Edges run with GOMAXPROCS=1 on core SERVER_CPU (0);
# the origin and the backend on ORIGIN_CPU (default: the edges' core, the
# "L2" layout of shared/notes/performance.md); the load generators on
# LOAD_CPU (1). Every request carries the same good token. An edge's CPU
# time is read from /proc/PID/task/*/schedstat, summed over its threads
# (nanoseconds: the scheduler's own accounting, not ticks), before and
# after a load run, and divided by the requests it served.
#
# 1. Added CPU, twin edges (TWIN_ROUNDS, default 20, of TWIN_DURATION, 2 s).
#    Two identical edges share core 0. For each variant, one edge serves
#    "none" and the other the variant at the same time (wrk -t1 -c
#    CONNS/2 each), and the variant's added CPU is the difference of the
#    two edges' CPU per request over that same run; which edge serves
#    which alternates between rounds. Measured one after the other, as in
#    step 2, the same difference swings by more than a small plugin costs
#    on the project's shared 2-vCPU VM (other jobs, the hypervisor, how
#    the processes' work batches change from one second to the next);
#    measured side by side, both edges see the same machine, and the
#    noise floor (the 95% interval of the "control" stage, which has no
#    plugin) falls from ±2.5-7 µs in step 2 to ±0.3-0.6 µs (2026-12-06,
#    20-40 rounds). The setting is a cold one: between two requests of an
#    edge the core runs the other edge, the origin and the backend, so a
#    plugin's code and data come back from outside the core's first-level
#    caches on nearly every request, as they would on a busy node; that is
#    most of what a small plugin costs in situ. What a request
#    costs without a plugin is printed with the table: how cold the machine
#    was. From the same runs: the edge-bound throughput loss, 1 - CPU per
#    request without / with the plugin (what an edge that is its own
#    bottleneck loses), and the chain loss, what the added CPU costs the
#    one-edge chain of step 2 (edge, origin, backend on one core).
# 2. Throughput, one edge (ROUNDS, default 10, of DURATION, 3 s). The edge
#    alone, each variant in turn in an order rotated every round, wrk -t1
#    -cCONNS (64) at saturation: requests per second, and the loss against
#    "none" in the same round, median and mean with its interval; the
#    edge's added CPU per request, paired within rounds. On the shared VM
#    the control stage's intervals over 10 rounds were ±4-11% and ±2.5-7
#    µs: a cross-check of step 1, not a measurement of a few microseconds.
#    With RATE=N these runs are at a fixed N requests/s
#    (test/bench/loadclient -rate): every variant then does the same work
#    per second, but the edge idles between requests and every request
#    starts colder still.
#
# Intervals are 95% (Student's t over rounds) around the mean of the paired
# differences; the load average and the hypervisor's steal time are
# printed with them: figures from a run with high steal are not clean.
#
# CALLGRIND=N instead restarts one edge (with its compiled-module cache)
# under valgrind's callgrind, and counts the user-space instructions it
# executes for N requests per variant on one connection (after 200
# uncounted ones, while valgrind translates the variant's code), ROUNDS
# times (default 3); the kernel's work in system calls is not counted. The
# count does not depend on what else the machine runs, so it shows, in
# situ, how much work a plugin adds and (KEEP=1, then callgrind_annotate on
# the kept callgrind.out.K files, one per run) where; CALLGRIND_FLAGS adds
# valgrind options, such as --cache-sim=yes for simulated cache misses.
# Instructions are not time: cache misses, which are most of what a small
# plugin costs in situ, are not in the count. Go's garbage collector is off
# for these runs (its cycles would land in one run or another), and timers
# fire about 50 times more often per request than at full speed, so the
# engine's watchdog shows up where it does not at full speed.
#
#   test/bench/wasm.sh                          # both steps, all variants (about 8 minutes)
#   VARIANTS="none control c assemblyscript" TWIN_ROUNDS=40 ROUNDS=0 test/bench/wasm.sh
#   ORIGIN_CPU=1 test/bench/wasm.sh             # origin and backend beside the load generators
#   RATE=3000 test/bench/wasm.sh                # step 2 at a fixed rate
#   CALLGRIND=2000 ROUNDS=2 test/bench/wasm.sh  # instructions per request (valgrind)
#   PORTICO_BIN=/tmp/portico PLUGINS_DIR=/tmp/plugins KEEP=1 test/bench/wasm.sh
#   EDGE_FLAGS="--pprof-listen 127.0.0.1:6060" ROUNDS=1 TWIN_ROUNDS=0 DURATION=30 test/bench/wasm.sh
#
# PORTICO_BIN runs a prebuilt binary instead of building one; PLUGINS_DIR
# takes prebuilt plugins (authorizer-c.wasm ...) instead of building them;
# EDGE_FLAGS are added to the (first) edge's command line; KEEP=1 keeps the
# work directory with the per-run tables (twin.tsv, runs.tsv) and logs.
#
# Needs: wrk, taskset (util-linux), curl, python3, go (valgrind for
# CALLGRIND), and the toolchains of examples/plugins/build.sh. Targets: a C
# or AssemblyScript authorizer adds at most 5 µs of CPU per request and
# loses at most 10% of throughput.
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
rounds=${ROUNDS:-10}
duration=${DURATION:-3}
twin_rounds=${TWIN_ROUNDS:-20}
twin_duration=${TWIN_DURATION:-2}
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

# start_edge NAME [WRAPPER...]: starts an edge with its own data directory
# and log (under WRAPPER, a command such as valgrind, if given), sets
# edge_pid and edge (its address), and waits until every variant answers as
# it should.
start_edge() {
	local name=$1 flags=
	shift
	[[ "$name" == edge ]] && flags=${EDGE_FLAGS:-}
	GOMAXPROCS=1 taskset -c "$server_cpu" "$@" "$work/portico" edge --origin "$data" --token "$edge_token" --data-dir "$work/$name" \
		--https-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ops-listen "" --dev-ca $flags >"$work/$name.log" 2>&1 &
	edge_pid=$!
	pids+=("$edge_pid")
	edge=$(wait_log "$work/$name.log" 'edge serving.* http=([^ ]+)')
	local v url ok code
	for v in "${variants[@]}"; do
		url="http://$edge/$v/hello"
		ok=
		for _ in $(seq 1 600); do
			code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "$url" || true)
			[[ "$code" == 200 ]] && { ok=1; break; }
			sleep 0.1
		done
		[[ -n "$ok" ]] || { echo "wasm.sh: $url answered $code to a good token" >&2; cat "$work/$name.log" >&2; exit 1; }
		if [[ "$v" != none && "$v" != control ]]; then
			code=$(curl -s -o /dev/null -w '%{http_code}' -H 'Host: bench.test' "$url")
			[[ "$code" == 401 ]] || { echo "wasm.sh: $url answered $code without a token; the plugin is not running" >&2; exit 1; }
		fi
	done
}

# warm ADDR: opens the connections, and warms the instances (and compiles
# the modules into the edge's cache).
warm() {
	local v
	for v in "${variants[@]}"; do
		taskset -c "$load_cpu" wrk -t1 -c"$conns" -d2s -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "http://$1/$v/hello" >/dev/null
	done
}

start_edge edge
warm "$edge"

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
	start_edge edge env GODEBUG=asyncpreemptoff=1 GOGC=off valgrind --tool=callgrind --callgrind-out-file="$work/callgrind.out" \
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

# cpu_of PID: the process's CPU time so far in ns, all threads.
cpu_of() {
	local ns=0 t
	for t in /proc/"$1"/task/*/schedstat; do
		read -r run _ 2>/dev/null <"$t" && ns=$((ns + run))
	done
	echo "$ns"
}
# steal: the hypervisor's steal ticks of the machine so far.
steal() { awk '/^cpu / {print $9}' /proc/stat; }
# wrk_requests FILE, wrk_rate FILE, wrk_errors FILE: from wrk's output.
# Errors are counted, not fatal: on an overloaded machine the Go guest's
# requests can outwait the 1 s instance queue (503); a run with errors is
# not a clean figure.
wrk_requests() { awk '/requests in/ {print $1}' "$1"; }
wrk_rate() { awk '/Requests\/sec/ {print $2}' "$1"; }
wrk_errors() { awk '/Non-2xx/ {print $5} /Socket errors/ {gsub(",", ""); print $4 + $6 + $8 + $10}' "$1" | awk '{s += $1} END {print s + 0}'; }

hz=$(getconf CLK_TCK)
load0=$(cut -d' ' -f1-3 /proc/loadavg)
steal0=$(steal)
t0=$(date +%s)
k=${#variants[@]}

# 1. Twin edges.
twin="$work/twin.tsv"
printf 'round\tvariant\tedge\trequests_none\tcpu_none\trequests\tcpu\terrors\n' >"$twin"
if ((twin_rounds > 0)); then
	pidA=$edge_pid addrA=$edge
	start_edge edge2
	pidB=$edge_pid addrB=$edge
	warm "$addrB"
	for r in $(seq "$twin_rounds"); do
		for v in "${variants[@]:1}"; do
			if ((r % 2)); then pn=$pidA an=$addrA pv=$pidB av=$addrB which=B; else pn=$pidB an=$addrB pv=$pidA av=$addrA which=A; fi
			n0=$(cpu_of "$pn") v0=$(cpu_of "$pv")
			taskset -c "$load_cpu" wrk -t1 -c$((conns / 2)) -d"${twin_duration}s" -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "http://$an/none/hello" >"$work/wrk-none.out" &
			w1=$!
			taskset -c "$load_cpu" wrk -t1 -c$((conns / 2)) -d"${twin_duration}s" -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "http://$av/$v/hello" >"$work/wrk-v.out" &
			w2=$!
			wait "$w1" "$w2"
			n1=$(cpu_of "$pn") v1=$(cpu_of "$pv")
			rn=$(wrk_requests "$work/wrk-none.out") rv=$(wrk_requests "$work/wrk-v.out")
			bad=$(($(wrk_errors "$work/wrk-none.out") + $(wrk_errors "$work/wrk-v.out")))
			printf '%d\t%s\t%s\t%d\t%d\t%d\t%d\t%d\n' "$r" "$v" "$which" "$rn" $((n1 - n0)) "$rv" $((v1 - v0)) "$bad" >>"$twin"
			awk -v r="$r" -v v="$v" -v a=$((n1 - n0)) -v b="$rn" -v c=$((v1 - v0)) -v d="$rv" \
				'BEGIN {printf "twin round %2d %-15s none %7.2f µs, variant %7.2f µs: %+6.2f µs\n", r, v, a / b / 1000, c / d / 1000, c / d / 1000 - a / b / 1000}' >&2
		done
	done
	kill "$pidB"
	wait "$pidB" 2>/dev/null || true
	edge_pid=$pidA edge=$addrA
fi

# 2. One edge, variants in turn.
runs="$work/runs.tsv"
printf 'round\tvariant\trequests\trps\tcpu_ns\terrors\n' >"$runs"
for r in $(seq "$rounds"); do
	for i in $(seq 0 $((k - 1))); do
		v=${variants[$(((i + r) % k))]}
		url="http://$edge/$v/hello"
		c0=$(cpu_of "$edge_pid")
		if [[ -n "${RATE:-}" ]]; then
			out=$(taskset -c "$load_cpu" "$work/loadclient" -c "$conns" -rate "$RATE" -d "${duration}s" -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "$url")
			c1=$(cpu_of "$edge_pid")
			n=$(sed -nE 's/.* requests=([0-9]+) .*/\1/p' <<<"$out")
			rate=$(sed -nE 's/.* rps=([0-9]+) .*/\1/p' <<<"$out")
			bad=$(sed -nE 's/.* errors=([0-9]+) .*/\1/p' <<<"$out")
		else
			taskset -c "$load_cpu" wrk -t1 -c"$conns" -d"${duration}s" -H 'Host: bench.test' -H 'Authorization: Bearer s3cr3t' "$url" >"$work/wrk.out"
			c1=$(cpu_of "$edge_pid")
			n=$(wrk_requests "$work/wrk.out") rate=$(wrk_rate "$work/wrk.out") bad=$(wrk_errors "$work/wrk.out")
		fi
		printf '%d\t%s\t%d\t%s\t%d\t%d\n' "$r" "$v" "$n" "$rate" $((c1 - c0)) "${bad:-0}" >>"$runs"
		printf 'round %2d %-15s %9s req/s %8.2f µs edge CPU/request\n' "$r" "$v" "$rate" "$(awk -v c=$((c1 - c0)) -v n="$n" 'BEGIN {print c / n / 1000}')" >&2
	done
done
t1=$(date +%s)
steal1=$(steal)
load1=$(cut -d' ' -f1-3 /proc/loadavg)

if [[ -n "${RATE:-}" ]]; then load="loadclient -c$conns at $RATE requests/s"; else load="wrk -t1 -c$conns at saturation"; fi
echo
echo "$(date '+%F %T'): edges on core $server_cpu (GOMAXPROCS=1), origin and backend on core $origin_cpu, load on core $load_cpu;" \
	"load average $load0 before, $load1 after; steal $(awk -v s=$((steal1 - steal0)) -v hz="$hz" -v t=$((t1 - t0)) 'BEGIN {printf "%.1f%%", s / hz / t / 2 * 100}') of the machine's time"
echo "added CPU: $twin_rounds rounds x ${twin_duration}s, twin edges (wrk -c$((conns / 2)) each); throughput: $rounds rounds x ${duration}s, one edge ($load)"
python3 - "$twin" "$runs" "${variants[@]}" <<'EOF'
import csv, math, statistics as st, sys

# Two-sided 95% Student t quantiles by degrees of freedom.
T95 = {1: 12.71, 2: 4.30, 3: 3.18, 4: 2.78, 5: 2.57, 6: 2.45, 7: 2.36, 8: 2.31, 9: 2.26, 10: 2.23,
       12: 2.18, 15: 2.13, 20: 2.09, 25: 2.06, 30: 2.04, 40: 2.02, 60: 2.00, 120: 1.98}

def interval(d, fmt="{:+6.2f}", width=4):
    if len(d) < 2:
        return fmt.format(d[0] if d else float("nan"))
    t = T95[max(k for k in T95 if k <= len(d) - 1)]
    return fmt.format(st.mean(d)) + " ± " + f"{t * st.stdev(d) / math.sqrt(len(d)):{width}.2f}"

per = lambda cpu, n: int(cpu) / int(n) / 1000  # µs per request
twin = list(csv.DictReader(open(sys.argv[1]), delimiter="\t"))
runs = list(csv.DictReader(open(sys.argv[2]), delimiter="\t"))
variants = sys.argv[3:]
if twin:
    # How cold the setting was: what a request costs an edge without a
    # plugin. A plugin's added CPU grows with it (more of its code and data
    # come back from outside the core's caches).
    print(f'twin edges; a request without a plugin cost {st.median(per(r["cpu_none"], r["requests_none"]) for r in twin):.1f} µs of CPU (median).')
    print('Edge-bound loss: 1 - CPU per request without / with the plugin, what an edge that is its own')
    print('bottleneck loses in throughput. Chain loss: what the added CPU costs the one-edge chain of step 2')
    print('(edge, origin and backend sharing a core), 1 - T / (T + added), T = 1 / rps of none there.')
    rps_none = [float(r["rps"]) for r in runs if r["variant"] == "none"]
    chain_t = 1e6 / st.median(rps_none) if rps_none else None  # µs of the core per request
    print(f'{"variant":15} {"added µs/request":>18} {"median":>7} {"min … max":>15} {"edge-bound loss %":>18} {"chain loss %":>12} {"errors":>6}')
    for v in variants[1:]:
        tw = [r for r in twin if r["variant"] == v]
        if not tw:
            continue
        d = [per(r["cpu"], r["requests"]) - per(r["cpu_none"], r["requests_none"]) for r in tw]
        loss = [100 * (1 - per(r["cpu_none"], r["requests_none"]) / per(r["cpu"], r["requests"])) for r in tw]
        chain = f'{100 * st.mean(d) / (chain_t + st.mean(d)):12.1f}' if chain_t else f'{"":>12}'
        print(f'{v:15} {interval(d):>18} {st.median(d):+7.2f} {min(d):+7.1f} … {max(d):+5.1f} {interval(loss, "{:5.1f}", 3):>18} '
              f'{chain} {sum(int(r["errors"]) for r in tw):6d}')
if runs[:1]:
    print()
    print("one edge, variants in turn; rps loss: 1 - rps / rps of none in the same round")
    print(f'{"variant":15} {"median rps":>10} {"rps loss %: median":>19} {"mean":>14} {"µs/request":>10} {"added µs/request":>18} {"errors":>6}')
    by = {(r["round"], r["variant"]): r for r in runs}
    for v in variants:
        rs = [r for r in runs if r["variant"] == v]
        base = [(by[(r["round"], "none")], r) for r in rs if (r["round"], "none") in by]
        rps = st.median(float(r["rps"]) for r in rs)
        c = st.median(per(r["cpu_ns"], r["requests"]) for r in rs)
        errs = sum(int(r["errors"]) for r in rs)
        if v == "none":
            print(f'{v:15} {rps:10.0f} {"":>19} {"":>14} {c:10.2f} {"":>18} {errs:6d}')
            continue
        loss = [100 * (1 - float(r["rps"]) / float(b["rps"])) for b, r in base]
        dd = [per(r["cpu_ns"], r["requests"]) - per(b["cpu_ns"], b["requests"]) for b, r in base]
        print(f'{v:15} {rps:10.0f} {st.median(loss):19.1f} {interval(loss, "{:5.1f}", 3):>14} {c:10.2f} {interval(dd):>18} {errs:6d}')
EOF
