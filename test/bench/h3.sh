#!/usr/bin/env bash
# h3.sh: HTTP/3 side by side in one run: Portico's listener (edge/listen via
# listenmock), Caddy 2.6, a bare quic-go http3.Server with the same handler
# (listenmock -stdlib), and an approximate floor: raw quic-go streams
# carrying the same bytes with no HTTP/3 layer (quicfloor server: a
# goroutine per stream, read to the end, one blocking Write, close), i.e.
# what quic-go's transport plus that minimal loop reach on one core. It is
# not a strict lower bound: a layer with a leaner loop can come close to it
# or pass it slightly.
#
# Every server answers GET / with a 1 KiB body, runs on core 0 (taskset),
# and is loaded from core 1 by two clients:
#   - loadclient -proto h3 -c16 -m16 (quic-go's HTTP/3 client, as
#     protocols.sh and issue #6): rows portico, caddy, http3;
#   - quicfloor client -c16 -m16 (the same request bytes over raw QUIC, a
#     leaner client; only :status 200 answers count): rows lean/portico,
#     lean/caddy, lean/http3, and floor (the only client the floor server
#     can serve).
# Ratios are printed only between rows loaded by the same client, by
# requests/s and by requests per CPU-second of the server. Runs are
# interleaved, RUNS times each, DURATION seconds per run. Each line shows
# requests/s, the server's CPU use over the run (from /proc; 100% is one
# core: a server below ~95% was not the bottleneck), requests per
# CPU-second of the server, and how busy core 1 (the client's) was. The
# summary gives medians, maxima and the ratios.
#
#   test/bench/h3.sh                      # 3 runs x 10 s
#   RUNS=5 DURATION=10 test/bench/h3.sh
#   LEAN=0 test/bench/h3.sh               # skip the lean rows (and the floor's ratios)
#   PROFILE=DIR test/bench/h3.sh          # CPU profiles of listenmock and the floor server
#
# Run it under the machine's benchmark lock:
#   flock /tmp/portico-bench.lock test/bench/h3.sh
#
# Needs: go, taskset, openssl, caddy (Debian 2.6 serves HTTP/3), python3.
# Root raises the UDP buffers for the run and restores them after. Exit
# status 1 if Portico misses issue #6's target: >= 3 x Caddy by requests/s
# with loadclient (the method of protocols.sh).
set -euo pipefail

RUNS=${RUNS:-3}
DURATION=${DURATION:-10}
ROOT=$(cd "$(dirname "$0")/../.." && pwd)
WORK=$(mktemp -d /tmp/portico-h3.XXXXXX)
# shellcheck source=test/bench/tlsbench.sh
. "$ROOT/test/bench/tlsbench.sh"
need go "the Go toolchain"
need taskset "util-linux"
need openssl "Debian package openssl"
need caddy "Debian package caddy"
need python3 "Debian package python3"

echo "# building loadclient, listenmock and quicfloor at $(cd "$ROOT" && git rev-parse --short HEAD)"
(cd "$ROOT" && go build -o "$WORK/loadclient" ./test/bench/loadclient &&
	go build -o "$WORK/listenmock" ./test/bench/listenmock &&
	go build -o "$WORK/quicfloor" ./test/bench/quicfloor)

tlsbench_files

tlsbench_priority

# --- servers, all on core 0 -------------------------------------------------
declare -A PORT SERVER_PID
start() { # key command...
	local key=$1; shift
	"${PRIO[@]}" taskset -c 0 "$@" >"$WORK/$key.log" 2>&1 &
	PIDS+=($!)
	SERVER_PID[$key]=$!
}
prof() { [[ -n "${PROFILE:-}" ]] && echo "-cpuprofile" "$PROFILE/$1.pprof"; true; }
[[ -n "${PROFILE:-}" ]] && mkdir -p "$PROFILE"

PORT[portico]=$(free_port)
# shellcheck disable=SC2046
start portico "$WORK/listenmock" -tls "127.0.0.1:${PORT[portico]}" -cert "$WORK/cert.pem" -key "$WORK/key.pem" $(prof portico)
PORT[http3]=$(free_port)
start http3 "$WORK/listenmock" -stdlib -tls "127.0.0.1:${PORT[http3]}" -cert "$WORK/cert.pem" -key "$WORK/key.pem"
PORT[floor]=$(free_port)
# shellcheck disable=SC2046
start floor "$WORK/quicfloor" server -tls "127.0.0.1:${PORT[floor]}" -cert "$WORK/cert.pem" -key "$WORK/key.pem" $(prof floor)
PORT[caddy]=$(free_port)
caddyfile "${PORT[caddy]}"
XDG_DATA_HOME=$WORK/caddy XDG_CONFIG_HOME=$WORK/caddy HOME=$WORK start caddy caddy run --config "$WORK/Caddyfile" --adapter caddyfile

# Wait until every server answers one HTTP/3 request (the floor server
# answers the same bytes).
for key in portico http3 floor caddy; do
	ok=
	for _ in $(seq 50); do
		if "$WORK/quicfloor" client -c 1 -m 1 -d 1s -n 1 -cacert "$WORK/cert.pem" "https://localhost:${PORT[$key]}/" >/dev/null 2>&1; then
			ok=1
			break
		fi
		sleep 0.2
	done
	[[ -n $ok ]] || { echo "h3.sh: $key does not answer HTTP/3 on port ${PORT[$key]}:" >&2; tail -5 "$WORK/$key.log" >&2; exit 1; }
done

# --- load, on core 1 ---------------------------------------------------------
lc() { "${PRIO[@]}" taskset -c 1 "$WORK/loadclient" -proto h3 -c 16 -m 16 -d "${DURATION}s" -cacert "$WORK/cert.pem" "https://localhost:$1/" | sed -n 's/.* rps=\([0-9]*\).*/\1/p'; }
qf() { "${PRIO[@]}" taskset -c 1 "$WORK/quicfloor" client -c 16 -m 16 -d "${DURATION}s" -cacert "$WORK/cert.pem" "https://localhost:$1/" | sed -n 's/.* rps=\([0-9]*\).*/\1/p'; }

cpu_ticks() { awk '{print $14 + $15}' /proc/"$1"/stat; }
# busy and total ticks of core 1, where the load client runs
core1() { awk '/^cpu1 / {print $2+$3+$4+$7+$8+$9, $2+$3+$4+$5+$6+$7+$8+$9}' /proc/stat; }
HZ=$(getconf CLK_TCK)

# R: requests/s; U: the server's CPU use in % of one core; E: requests per
# CPU-second of the server; C: how busy core 1 was, in %.
declare -A R U E C
measure() { # key server client
	local key=$1 server=$2 client=$3 v t0 t1 pid
	pid=${SERVER_PID[$server]}
	[[ -r /proc/$pid/stat ]] || { echo "h3.sh: $server (pid $pid) is gone:" >&2; tail -5 "$WORK/$server.log" >&2; exit 1; }
	local b0 a0 b1 a1
	t0=$(cpu_ticks "$pid")
	read -r b0 a0 < <(core1)
	v=$("$client" "${PORT[$server]}" || true)
	t1=$(cpu_ticks "$pid")
	read -r b1 a1 < <(core1)
	[[ -z "$v" ]] && v=0
	local cpu eff c1
	cpu=$(awk -v t=$((t1 - t0)) -v hz="$HZ" -v d="$DURATION" 'BEGIN { printf "%d", 100 * t / hz / d }')
	c1=$(( (b1 - b0) * 100 / (a1 - a0) ))
	eff=$(awk -v r="$v" -v d="$DURATION" -v t=$((t1 - t0)) -v hz="$HZ" 'BEGIN { if (t>0) printf "%d", r*d/(t/hz); else print 0 }')
	R[$key]="${R[$key]:-} $v"
	U[$key]="${U[$key]:-} $cpu"
	C[$key]="${C[$key]:-} $c1"
	E[$key]="${E[$key]:-} $eff"
	printf '  %-14s %8s req/s  server CPU %3s%%  %8s req/CPU-s  client core %3s%%  (load %s)\n' "$key" "$v" "$cpu" "$eff" "$c1" "$(cut -d' ' -f1 /proc/loadavg)"
}

echo "# load average at the start: $(cut -d' ' -f1-3 /proc/loadavg)"
KEYS=(portico caddy http3)
for run in $(seq "$RUNS"); do
	echo "# run $run/$RUNS"
	measure portico portico lc
	measure caddy caddy lc
	measure http3 http3 lc
	if [[ ${LEAN:-1} != 0 ]]; then
		measure floor floor qf
		measure lean/portico portico qf
		measure lean/caddy caddy qf
		measure lean/http3 http3 qf
	fi
done
[[ ${LEAN:-1} != 0 ]] && KEYS+=(floor lean/portico lean/caddy lean/http3)

declare -A MED MEDE
echo
printf '%-14s %8s %8s %6s %10s %8s\n' server median max cpu% req/CPU-s client%
for k in "${KEYS[@]}"; do
	read -r m x < <(stats "${R[$k]}")
	read -r u _ < <(stats "${U[$k]}")
	read -r e _ < <(stats "${E[$k]}")
	read -r c _ < <(stats "${C[$k]}")
	MED[$k]=$m
	MEDE[$k]=$e
	printf '%-14s %8s %8s %6s %10s %8s\n' "$k" "$m" "$x" "$u" "$e" "$c"
done
div() { awk -v a="$1" -v b="$2" 'BEGIN { if (b>0) printf "%.2f", a/b; else print "inf" }'; }
# ratio A B: medians of requests/s, then of requests per CPU-second
ratio() { printf '%-28s %6s   by CPU %6s' "$1 / $2" "$(div "${MED[$1]}" "${MED[$2]}")" "$(div "${MEDE[$1]}" "${MEDE[$2]}")"; }
echo
echo "# loadclient on every row (the issue's client)"
echo "$(ratio portico caddy)   issue #6 target: >= 3 by requests/s"
echo "$(ratio http3 caddy)"
echo "$(ratio portico http3)   (the HTTP/3 layer: same transport, same client)"
if [[ ${LEAN:-1} != 0 ]]; then
	echo "# quicfloor's lean client on every row"
	echo "$(ratio lean/portico lean/caddy)"
	echo "$(ratio lean/portico lean/http3)"
	echo "$(ratio floor lean/caddy)   (the approximate floor: raw quic-go streams, this loop)"
	echo "$(ratio floor lean/portico)"
	echo "$(ratio floor lean/http3)"
fi
echo "# load average at the end: $(cut -d' ' -f1-3 /proc/loadavg) (figures are only comparable within this run)"
r=$(div "${MED[portico]}" "${MED[caddy]}")
if awk -v r="$r" 'BEGIN { exit (r+0 >= 3) ? 0 : 1 }'; then
	echo "issue #6 target (portico >= 3 x caddy by requests/s, loadclient): ok ($r)"
else
	echo "issue #6 target (portico >= 3 x caddy by requests/s, loadclient): MISSED ($r)"
	exit 1
fi
