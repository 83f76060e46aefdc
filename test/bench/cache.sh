#!/usr/bin/env bash
# Cache-hit throughput: the real Portico edge (origin + edge + backend, a
# route with a cache policy) against nginx proxy_cache and Varnish, side by
# side in one run (docs/cache.md, "Speed").
#
# Layout (shared/notes/performance.md): every server under test (the edge,
# nginx, Varnish) on core 0, with the backend and the Portico origin (idle
# on hits); wrk on core 1; 64 keep-alive connections, logging off
# everywhere; interleaved runs (portico, nginx, varnish, portico, ...), RUNS
# runs of DURATION each per body size (1 KiB and 100 KiB); reports the median
# and max rps, median p50/p99 latency, CPU time per request, and the ratios
# to nginx and Varnish.
#
# Needs: go, wrk, nginx, varnish, taskset (util-linux), curl.
#   apt-get install -y wrk nginx varnish curl
# Environment:
#   RUNS=3 DURATION=10s           runs per target and size, length of each
#   MODE=edge                     edge: the real edge (portico origin + portico
#                                 edge, config applied with portico ctl);
#                                 cacheserver: the stand-in that runs the cache
#                                 policy in a plugins chain (test/bench/cacheserver)
#   PORTICO_URL=http://HOST:PORT  measure an already running Portico edge
#                                 (pinned by the caller) instead; it must route
#                                 /1k and /100k to ORIGIN_PORT's backend with
#                                 the cache on.
#   PORTICO_PID=PID               with PORTICO_URL: its process, for CPU per request
#   EDGE_FLAGS="--pprof-listen 127.0.0.1:6061"
#                                 more flags for the edge (MODE=edge)
#   ORIGIN_PORT=18480             port of the backend started here
#   OUT=FILE                      also write the summary to FILE
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
MODE=${MODE:-edge}
ORIGIN_PORT=${ORIGIN_PORT:-18480}
PORTICO_PORT=18481
NGINX_PORT=18482
VARNISH_PORT=18483
ADMIN_PORT=18484
DATA_PORT=18485
ROOT=$(cd "$(dirname "$0")/../.." && pwd)

missing=()
for tool in go wrk nginx varnishd taskset curl; do
	command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
done
if ((${#missing[@]})); then
	echo "cache.sh: missing tools: ${missing[*]}; install with: apt-get install -y wrk nginx varnish curl util-linux" >&2
	exit 2
fi

WORK=$(mktemp -d /tmp/portico-cache-bench.XXXXXX)
chmod 755 "$WORK"
PIDS=()
cleanup() {
	for pid in "${PIDS[@]}"; do kill "$pid" 2>/dev/null || true; done
	if [[ -f $WORK/nginx.pid ]]; then kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true; fi
	wait 2>/dev/null || true
	rm -rf "$WORK"
}
trap cleanup EXIT

wait_port() { # wait up to 30 s for a TCP port to accept connections
	for _ in $(seq 300); do
		if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then return 0; fi
		sleep 0.1
	done
	echo "cache.sh: nothing listening on port $1 after 30 s" >&2
	for f in "$WORK"/*.log; do [[ -s $f ]] && { echo "--- $f" >&2; tail -20 "$f" >&2; }; done
	exit 1
}

case $MODE in edge | cacheserver) ;; *)
	echo "cache.sh: MODE=$MODE: use edge or cacheserver" >&2
	exit 2
	;;
esac
echo "building cacheserver and portico..." >&2
(cd "$ROOT" && go build -o "$WORK/cacheserver" ./test/bench/cacheserver && go build -o "$WORK/portico" ./cmd/portico)

# CPU time of a process and its descendants, in clock ticks: a measure of
# cost per request that holds up better than rps when other work shares the
# machine.
tree_pids() {
	echo "$1"
	local c
	for c in $(pgrep -P "$1" || true); do tree_pids "$c"; done
}
cpu_ticks() {
	local t=0 p
	for p in $(tree_pids "$1"); do
		if [[ -r /proc/$p/stat ]]; then
			t=$((t + $(sed 's/^.*) //' "/proc/$p/stat" | awk '{print $12 + $13}')))
		fi
	done
	echo "$t"
}
TICKS=$(getconf CLK_TCK)

taskset -c 0 "$WORK/cacheserver" -origin-listen "127.0.0.1:$ORIGIN_PORT" &
PIDS+=($!)
wait_port "$ORIGIN_PORT"

# wait_log FILE REGEX: wait up to 20 s for a line of FILE to match, print it.
wait_log() {
	for _ in $(seq 200); do
		if grep -Eq "$2" "$1" 2>/dev/null; then
			grep -E "$2" "$1" | head -1
			return 0
		fi
		sleep 0.1
	done
	echo "cache.sh: $1 never printed $2:" >&2
	cat "$1" >&2
	exit 1
}

start_edge() {
	# The origin: control plane and data plane; on cache hits it is idle.
	taskset -c 0 "$WORK/portico" origin --data-dir "$WORK/origin" --admin-listen "127.0.0.1:$ADMIN_PORT" \
		--data-listen "127.0.0.1:$DATA_PORT" --log-level warn >"$WORK/origin.log" 2>&1 &
	PIDS+=($!)
	wait_port "$ADMIN_PORT"
	wait_port "$DATA_PORT"
	# The tokens of the first start.
	wait_log "$WORK/origin.log" 'ptc_edge_' >/dev/null
	admin_tok=$(grep -Eo 'ptc_admin_[A-Za-z0-9_]+' "$WORK/origin.log" | head -1)
	edge_tok=$(grep -Eo 'ptc_edge_[A-Za-z0-9_]+' "$WORK/origin.log" | head -1)
	cat >"$WORK/bench.yaml" <<YAML
openapi: 3.0.3
info: {title: Bench, version: "1"}
paths:
  /{proxy+}:
    get:
      parameters: [{name: proxy, in: path, required: true, schema: {type: string}}]
      x-portico-integration: {type: http_proxy, uri: "http://127.0.0.1:$ORIGIN_PORT/{proxy}"}
      responses: {"200": {description: ok}}
YAML
	cat >"$WORK/portico.yaml" <<YAML
portico: v1
apis:
  - name: bench
    openapi: bench.yaml
    stages:
      - name: prod
        policies:
          - type: cache
            config: {ttl: 3600s, maxObjectBytes: 1048576}
domains:
  - name: 127.0.0.1
    plainHttp: serve
    mappings:
      - {basePath: "(none)", api: bench, stage: prod}
YAML
	"$WORK/portico" ctl apply -f "$WORK/portico.yaml" --admin-url "http://127.0.0.1:$ADMIN_PORT" --token "$admin_tok" >/dev/null
	taskset -c 0 "$WORK/portico" edge --origin "http://127.0.0.1:$DATA_PORT" --token "$edge_tok" --data-dir "$WORK/edge" \
		--https-listen 127.0.0.1:0 --http-listen "127.0.0.1:$PORTICO_PORT" --ops-listen "" --dev-ca \
		--cache-bytes 256MiB --log-level warn ${EDGE_FLAGS:-} >"$WORK/edge.log" 2>&1 &
	PIDS+=($!)
	PORTICO_PID=$!
	wait_port "$PORTICO_PORT"
	PORTICO=http://127.0.0.1:$PORTICO_PORT
	for _ in $(seq 100); do
		curl -fsS -o /dev/null "$PORTICO/1k/ready" 2>/dev/null && return 0
		sleep 0.1
	done
	echo "cache.sh: the edge does not serve the bench API:" >&2
	cat "$WORK/edge.log" >&2
	exit 1
}

if [[ -n ${PORTICO_URL:-} ]]; then
	PORTICO=$PORTICO_URL
	PORTICO_PID=${PORTICO_PID:-}
	LABEL="Portico at $PORTICO_URL"
elif [[ $MODE == edge ]]; then
	start_edge
	LABEL="the Portico edge (portico edge, cache policy on the stage)"
else
	taskset -c 0 "$WORK/cacheserver" -listen "127.0.0.1:$PORTICO_PORT" -origin "http://127.0.0.1:$ORIGIN_PORT" &
	PIDS+=($!)
	PORTICO_PID=$!
	wait_port "$PORTICO_PORT"
	PORTICO=http://127.0.0.1:$PORTICO_PORT
	LABEL="the cacheserver stand-in (cache policy in a plugins chain)"
fi

mkdir -p "$WORK/nginx-cache" "$WORK/nginx-tmp"
cat >"$WORK/nginx.conf" <<EOF
user root;
worker_processes 1;
pid $WORK/nginx.pid;
error_log $WORK/nginx-error.log crit;
events { worker_connections 4096; }
http {
	access_log off;
	sendfile on;
	tcp_nopush on;
	keepalive_requests 1000000;
	client_body_temp_path $WORK/nginx-tmp/body;
	proxy_temp_path $WORK/nginx-tmp/proxy;
	fastcgi_temp_path $WORK/nginx-tmp/fastcgi;
	uwsgi_temp_path $WORK/nginx-tmp/uwsgi;
	scgi_temp_path $WORK/nginx-tmp/scgi;
	proxy_cache_path $WORK/nginx-cache levels=1:2 keys_zone=bench:16m max_size=1g inactive=60m use_temp_path=off;
	upstream origin { server 127.0.0.1:$ORIGIN_PORT; keepalive 64; }
	server {
		listen 127.0.0.1:$NGINX_PORT;
		location / {
			proxy_pass http://origin;
			proxy_http_version 1.1;
			proxy_set_header Connection "";
			proxy_cache bench;
			proxy_cache_valid 200 1h;
			add_header X-Cache \$upstream_cache_status;
		}
	}
}
EOF
taskset -c 0 nginx -c "$WORK/nginx.conf"
wait_port "$NGINX_PORT"

cat >"$WORK/default.vcl" <<EOF
vcl 4.1;
backend default { .host = "127.0.0.1"; .port = "$ORIGIN_PORT"; }
sub vcl_backend_response { set beresp.ttl = 1h; }
EOF
taskset -c 0 varnishd -F -n "$WORK/varnish" -a "127.0.0.1:$VARNISH_PORT" -f "$WORK/default.vcl" \
	-s malloc,256m -p thread_pools=1 >"$WORK/varnish.log" 2>&1 &
PIDS+=($!)
VARNISH_PID=$!
wait_port "$VARNISH_PORT"

declare -A PID=([portico]=$PORTICO_PID [nginx]=$(cat "$WORK/nginx.pid") [varnish]=$VARNISH_PID)
declare -A URL=([portico]=$PORTICO [nginx]=http://127.0.0.1:$NGINX_PORT [varnish]=http://127.0.0.1:$VARNISH_PORT)
TARGETS=(portico nginx varnish)
SIZES=(1k 100k)

# Warm every cache and check the second answer is a hit.
for t in "${TARGETS[@]}"; do
	for s in "${SIZES[@]}"; do
		curl -fsS -o /dev/null "${URL[$t]}/$s/x"
		hdr=$(curl -fsS -D - -o /dev/null "${URL[$t]}/$s/x")
		case $t in
		portico) grep -qi '^x-cache: hit' <<<"$hdr" ;;
		nginx) grep -qi '^x-cache: hit' <<<"$hdr" ;;
		varnish) grep -Eqi '^x-varnish: [0-9]+ [0-9]+' <<<"$hdr" ;;
		esac || {
			echo "cache.sh: $t did not answer /$s/x from its cache:" >&2
			echo "$hdr" >&2
			exit 1
		}
	done
done

# to_us converts wrk's latency ("812.00us", "1.23ms", "1.01s") to microseconds.
to_us() {
	awk -v v="$1" 'BEGIN {
		n = v + 0
		if (v ~ /us$/) print n; else if (v ~ /ms$/) print n * 1000; else if (v ~ /s$/) print n * 1000000; else print n
	}'
}

LOAD_BEFORE=$(cut -d' ' -f1-3 /proc/loadavg)
RESULTS=$WORK/results.tsv
for run in $(seq "$RUNS"); do
	for s in "${SIZES[@]}"; do
		for t in "${TARGETS[@]}"; do
			c0=0
			if [[ -n ${PID[$t]} ]]; then c0=$(cpu_ticks "${PID[$t]}"); fi
			out=$(taskset -c 1 wrk -t1 -c64 -d"$DURATION" --latency "${URL[$t]}/$s/x" 2>&1) || true
			if ! grep -q '^Requests/sec:' <<<"$out"; then
				echo "cache.sh: wrk against $t /$s/x gave no result:" >&2
				echo "$out" >&2
				exit 1
			fi
			cpu=0
			if [[ -n ${PID[$t]} ]]; then
				n=$(awk '/requests in/ {print $1}' <<<"$out")
				cpu=$(awk -v d="$(($(cpu_ticks "${PID[$t]}") - c0))" -v hz="$TICKS" -v n="$n" 'BEGIN {print d / hz * 1e6 / n}')
			fi
			rps=$(awk '/^Requests\/sec:/ {print $2}' <<<"$out")
			p50=$(to_us "$(awk '$1 == "50%" {print $2}' <<<"$out")")
			p99=$(to_us "$(awk '$1 == "99%" {print $2}' <<<"$out")")
			errs=$(awk '/Non-2xx|Socket errors/ {print}' <<<"$out")
			printf '%s\t%s\t%s\t%s\t%s\t%s\t%s\n' "$s" "$t" "$run" "$rps" "$p50" "$p99" "$cpu" >>"$RESULTS"
			printf 'run %s %-5s %-8s %10.0f rps  p50 %8.0f us  p99 %8.0f us  cpu %6.1f us/req %s\n' "$run" "$s" "$t" "$rps" "$p50" "$p99" "$cpu" "$errs" >&2
		done
	done
done

summary() {
	echo "cache hit, ${RUNS} interleaved runs of ${DURATION}, servers on core 0, wrk -t1 -c64 on core 1; portico = $LABEL"
	echo "load average before the runs: $LOAD_BEFORE; after: $(cut -d' ' -f1-3 /proc/loadavg)"
	echo "rps ratios: median rps / peer's median rps; cpu ratios: peer's CPU per request / this one's (above 1: cheaper than the peer)"
	printf '%-5s %-8s %11s %10s %8s %9s %7s %7s %8s %7s %7s\n' size target "median rps" "max rps" "p50 us" "p99 us" "/nginx" "/varnish" "cpu us/r" "cpu/ngx" "cpu/vsh"
	for s in "${SIZES[@]}"; do
		declare -A MED=() CPU=()
		for t in "${TARGETS[@]}"; do
			MED[$t]=$(awk -F'\t' -v s="$s" -v t="$t" '$1 == s && $2 == t {print $4}' "$RESULTS" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
			CPU[$t]=$(awk -F'\t' -v s="$s" -v t="$t" '$1 == s && $2 == t {print $7}' "$RESULTS" | sort -n | awk '{a[NR] = $1} END {print (NR % 2) ? a[(NR + 1) / 2] : (a[NR / 2] + a[NR / 2 + 1]) / 2}')
		done
		for t in "${TARGETS[@]}"; do
			col() { awk -F'\t' -v s="$s" -v t="$t" -v c="$1" '$1 == s && $2 == t {print $c}' "$RESULTS" | sort -n; }
			max=$(col 4 | tail -1)
			p50=$(col 5 | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
			p99=$(col 6 | awk '{a[NR] = $1} END {print a[int((NR + 1) / 2)]}')
			printf '%-5s %-8s %11.0f %10.0f %8.0f %9.0f %7.2f %7.2f %8.1f %7.2f %7.2f\n' "$s" "$t" "${MED[$t]}" "$max" "$p50" "$p99" \
				"$(awk -v a="${MED[$t]}" -v b="${MED[nginx]}" 'BEGIN {print a / b}')" \
				"$(awk -v a="${MED[$t]}" -v b="${MED[varnish]}" 'BEGIN {print a / b}')" \
				"${CPU[$t]}" \
				"$(awk -v a="${CPU[$t]}" -v b="${CPU[nginx]}" 'BEGIN {print (a > 0 ? b / a : 0)}')" \
				"$(awk -v a="${CPU[$t]}" -v b="${CPU[varnish]}" 'BEGIN {print (a > 0 ? b / a : 0)}')"
		done
	done
}
summary | tee "${OUT:-/dev/null}"
