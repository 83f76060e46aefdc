#!/usr/bin/env bash
# protocols.sh: Portico's listener (edge/listen) against nginx (HTTP/1.1,
# HTTP/2) and Caddy (HTTP/3), side by side in one run.
#
# Each server answers GET / with a 1 KiB body over TLS on loopback. Servers
# run on core 0 (taskset), load generators on core 1. Runs are interleaved
# A/B/A/B, RUNS times each, DURATION seconds per run; the script prints the
# median and max requests/s of each side and the ratio of medians, and
# checks the targets: h1 and h2 >= 0.9 x nginx, h3 >= 3 x Caddy.
#
#   test/bench/protocols.sh                 # 3 runs x 10 s per protocol and server
#   RUNS=5 DURATION=10 test/bench/protocols.sh
#   PORTICO_CMD='bin/portico edge ... --https-listen 127.0.0.1:%PORT%' test/bench/protocols.sh
#
# PORTICO_CMD replaces the mock server (test/bench/listenmock): %PORT%,
# %CERT% and %KEY% are substituted; it must serve a 1 KiB body at / over
# TLS on that port, TCP and UDP.
#
# Load: wrk -t1 -c64 (h1), h2load -t1 -c16 -m16 (h2), loadclient -c16 -m16
# (h3; Debian's h2load has no HTTP/3). Set LOADCLIENT_ALL=1 to also measure
# h1 and h2 with loadclient, the same client code for all three protocols.
# Set STDLIB=1 to add a bare net/http server (listenmock -stdlib) as a
# baseline: what the listener's hardening costs.
#
# Besides requests/s, each line shows requests per CPU-second of the server
# (from /proc): on a busy shared machine that figure is the steadier one.
#
# Needs: go, taskset, openssl, nginx, caddy (Debian 2.6 serves HTTP/3), wrk,
# h2load (nghttp2-client). Root raises the UDP buffers for the run and
# restores them after. Exit status 1 if a target is missed.
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/portico-protocols.XXXXXX)
# shellcheck source=test/bench/tlsbench.sh
. "$ROOT/test/bench/tlsbench.sh"
need go "the Go toolchain"
need taskset "util-linux"
need openssl "Debian package openssl"
need nginx "Debian package nginx"
need caddy "Debian package caddy"
need wrk "Debian package wrk"
need h2load "Debian package nghttp2-client"

wait_port() { # wait until TCP port $1 answers
	for _ in $(seq 100); do
		(exec 3<>/dev/tcp/127.0.0.1/"$1") 2>/dev/null && return 0
		sleep 0.1
	done
	echo "protocols.sh: nothing listens on port $1" >&2
	exit 1
}

echo "# building loadclient and listenmock"
(cd "$ROOT" && go build -o "$WORK/loadclient" ./test/bench/loadclient && go build -o "$WORK/listenmock" ./test/bench/listenmock)

tlsbench_files

tlsbench_priority

# --- servers, all on core 0 -------------------------------------------------
declare -A SERVER_PID
P_PORT=$(free_port)
if [[ -n "${PORTICO_CMD:-}" ]]; then
	cmd=${PORTICO_CMD//%PORT%/$P_PORT}
	cmd=${cmd//%CERT%/$WORK/cert.pem}
	cmd=${cmd//%KEY%/$WORK/key.pem}
	"${PRIO[@]}" taskset -c 0 bash -c "exec $cmd" >"$WORK/portico.log" 2>&1 &
else
	"${PRIO[@]}" taskset -c 0 "$WORK/listenmock" -tls "127.0.0.1:$P_PORT" -cert "$WORK/cert.pem" -key "$WORK/key.pem" >"$WORK/portico.log" 2>&1 &
fi
PIDS+=($!)
SERVER_PID[portico]=$!

N_PORT=$(free_port)
mkdir -p "$WORK/nginx"
cat >"$WORK/nginx.conf" <<EOF
worker_processes 1;
daemon off;
pid $WORK/nginx/nginx.pid;
error_log $WORK/nginx/error.log warn;
events { worker_connections 4096; }
http {
	access_log off;
	client_body_temp_path $WORK/nginx;
	proxy_temp_path $WORK/nginx;
	fastcgi_temp_path $WORK/nginx;
	uwsgi_temp_path $WORK/nginx;
	scgi_temp_path $WORK/nginx;
	keepalive_requests 1000000;
	server {
		listen 127.0.0.1:$N_PORT ssl http2;
		ssl_certificate $WORK/cert.pem;
		ssl_certificate_key $WORK/key.pem;
		ssl_protocols TLSv1.2 TLSv1.3;
		root $WORK;
		location = / { try_files /index.html =404; default_type text/plain; }
	}
}
EOF
"${PRIO[@]}" taskset -c 0 nginx -c "$WORK/nginx.conf" -p "$WORK/nginx" >"$WORK/nginx.log" 2>&1 &
PIDS+=($!)
SERVER_PID[nginx]=$!

C_PORT=$(free_port)
caddyfile "$C_PORT"
XDG_DATA_HOME=$WORK/caddy XDG_CONFIG_HOME=$WORK/caddy HOME=$WORK \
	"${PRIO[@]}" taskset -c 0 caddy run --config "$WORK/Caddyfile" --adapter caddyfile >"$WORK/caddy.log" 2>&1 &
PIDS+=($!)
SERVER_PID[caddy]=$!

if [[ -n "${STDLIB:-}" ]]; then
	S_PORT=$(free_port)
	"${PRIO[@]}" taskset -c 0 "$WORK/listenmock" -stdlib -tls "127.0.0.1:$S_PORT" -cert "$WORK/cert.pem" -key "$WORK/key.pem" >"$WORK/stdlib.log" 2>&1 &
	PIDS+=($!)
	SERVER_PID[stdlib]=$!
	wait_port "$S_PORT"
fi
wait_port "$P_PORT"; wait_port "$N_PORT"; wait_port "$C_PORT"
sleep 1

# --- load, on core 1 ---------------------------------------------------------
rps_wrk() { "${PRIO[@]}" taskset -c 1 wrk -t1 -c64 -d"${DURATION}s" --latency "https://localhost:$1/" | awk '/Requests\/sec/ {printf "%d\n", $2}'; }
rps_h2load() { "${PRIO[@]}" taskset -c 1 h2load -t1 -c16 -m16 -D "$DURATION" "https://localhost:$1/" 2>/dev/null | awk '/^finished in/ {gsub(/,/,""); for (i=1;i<=NF;i++) if ($i=="req/s") {printf "%d\n", $(i-1)}}'; }
rps_lc() { "${PRIO[@]}" taskset -c 1 "$WORK/loadclient" -proto "$1" -c "${3:-16}" -m "${4:-16}" -d "${DURATION}s" -cacert "$WORK/cert.pem" "https://localhost:$2/" | sed -n 's/.* rps=\([0-9]*\).*/\1/p'; }

# CPU time (clock ticks) a server and its children (nginx's worker) used.
cpu_ticks() {
	local pid=$1 t=0 p
	for p in $pid $(pgrep -P "$pid" || true); do
		[[ -r /proc/$p/stat ]] && t=$((t + $(awk '{print $14 + $15}' /proc/"$p"/stat)))
	done
	echo "$t"
}
HZ=$(getconf CLK_TCK)

# R: requests/s per key; E: requests per CPU-second of the server. On a
# shared, busy machine the second is the steadier figure: it does not
# depend on how much of core 0 the server was given.
declare -A R E
measure() { # key command...
	local key=$1; shift
	local server=${key#*/} v t0 t1 eff
	t0=$(cpu_ticks "${SERVER_PID[$server]}")
	v=$("$@" || true)
	t1=$(cpu_ticks "${SERVER_PID[$server]}")
	[[ -z "$v" ]] && v=0
	eff=$(awk -v r="$v" -v d="$DURATION" -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN { if (t>0) printf "%d", r*d/(t/hz); else print 0 }')
	R[$key]="${R[$key]:-} $v"
	E[$key]="${E[$key]:-} $eff"
	printf '  %-14s %8s req/s %10s req/CPU-s\n' "$key" "$v" "$eff"
}

for run in $(seq "$RUNS"); do
	echo "# run $run/$RUNS"
	measure h1/portico rps_wrk "$P_PORT"
	measure h1/nginx rps_wrk "$N_PORT"
	measure h2/portico rps_h2load "$P_PORT"
	measure h2/nginx rps_h2load "$N_PORT"
	measure h3/portico rps_lc h3 "$P_PORT"
	measure h3/caddy rps_lc h3 "$C_PORT"
	if [[ -n "${STDLIB:-}" ]]; then
		measure h1/stdlib rps_wrk "$S_PORT"
		measure h2/stdlib rps_h2load "$S_PORT"
	fi
	if [[ -n "${LOADCLIENT_ALL:-}" ]]; then
		measure lc-h1/portico rps_lc h1 "$P_PORT" 64 1
		measure lc-h1/nginx rps_lc h1 "$N_PORT" 64 1
		measure lc-h2/portico rps_lc h2 "$P_PORT"
		measure lc-h2/nginx rps_lc h2 "$N_PORT"
	fi
done


echo
printf '%-8s %-9s %8s %8s %9s   %-7s %8s %8s %9s   %6s %7s  %s\n' proto ours median max "req/CPU-s" peer median max "req/CPU-s" ratio cpu-rat target
fail=0
row() { # proto peer target
	local p=$1 peer=$2 target=$3
	read -r om ox < <(stats "${R[$p/portico]}")
	read -r pm px < <(stats "${R[$p/$peer]}")
	read -r oe _ < <(stats "${E[$p/portico]}")
	read -r pe _ < <(stats "${E[$p/$peer]}")
	local ratio cratio ok
	ratio=$(awk -v a="$om" -v b="$pm" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "inf" }')
	cratio=$(awk -v a="$oe" -v b="$pe" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "inf" }')
	ok=$(awk -v r="$ratio" -v t="$target" 'BEGIN { print (r=="inf" || r+0 >= t) ? "ok" : "MISSED" }')
	[[ $ok == ok ]] || fail=1
	printf '%-8s %-9s %8s %8s %9s   %-7s %8s %8s %9s   %6s %7s  >= %s %s\n' "$p" portico "$om" "$ox" "$oe" "$peer" "$pm" "$px" "$pe" "$ratio" "$cratio" "$target" "$ok"
}
row h1 nginx 0.9
row h2 nginx 0.9
row h3 caddy 3
if [[ -n "${STDLIB:-}" ]]; then
	row h1 stdlib 0
	row h2 stdlib 0
fi
if [[ -n "${LOADCLIENT_ALL:-}" ]]; then
	row lc-h1 nginx 0
	row lc-h2 nginx 0
fi
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (figures are only comparable within this run)"
exit $fail
