#!/usr/bin/env bash
# gateway.sh: client -> portico edge -> portico origin -> backend, against
# client -> nginx -> nginx -> backend, side by side in one run.
#
# Method (shared/notes/performance.md, docs/performance.md): every server
# process (edge, origin, backend; nginx, nginx, backend) on core 0, the load
# generator on core 1; Go with GOMAXPROCS=1, nginx with one worker; logging
# off everywhere; keep-alive on every hop; the same backend (nginx, a static
# 1 KiB file) for both chains; wrk -t1 -c64 -d10s --latency, the chains
# interleaved A/B/A/B, RUNS runs each; medians, maxima and their ratio.
#
# Usage: test/bench/gateway.sh
# Environment:
#   RUNS=3          runs per chain and scheme (at least 3 for a claim)
#   DURATION=10s    length of one wrk run
#   CONNS=64        wrk connections
#   PLAIN=1         also measure plain HTTP on the client side (0: HTTPS only)
#   PORTICO_BIN     use this binary instead of building bin/portico
#   GOGC, GOMEMLIMIT  passed to both portico processes (unset: portico's default)
#   NICE=-10        run servers and wrk at this nice value (both chains alike),
#                   so that other work on a shared machine disturbs less
#   KEEP=1          keep the work directory (configs, logs) after the run
#   PROFILE=DIR     after the runs, one more Portico HTTPS run while CPU and
#                   allocation profiles of the edge and the origin are taken
#                   (portico's hidden --pprof-listen flag) into DIR; prints
#                   the top of each (PROFILE_SCHEME=plain: a plain-HTTP run)
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)
RUNS=${RUNS:-3}
DURATION=${DURATION:-10s}
CONNS=${CONNS:-64}
PLAIN=${PLAIN:-1}
NICE=${NICE:-0}

have() { command -v "$1" >/dev/null 2>&1; }
die() { echo "gateway.sh: $*" >&2; exit 1; }

# --- tools -----------------------------------------------------------------
need=()
have nginx || need+=(nginx)
have wrk || need+=(wrk)
have openssl || need+=(openssl)
have taskset || need+=(util-linux)
have curl || need+=(curl)
have ss || need+=(iproute2)
if [ ${#need[@]} -gt 0 ]; then
  echo "installing: ${need[*]}"
  if [ "$(id -u)" -ne 0 ]; then SUDO=sudo; else SUDO=; fi
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
nginx_bin=$(command -v nginx)
[ "$(nproc)" -ge 2 ] || die "needs 2 cores (servers on core 0, wrk on core 1); this machine has $(nproc)"

if [ -n "${PORTICO_BIN:-}" ]; then
  bin=$PORTICO_BIN
else
  make -C "$root" -s build
  bin=$root/bin/portico
fi
[ -x "$bin" ] || die "no portico binary at $bin"

# --- cleanup -----------------------------------------------------------------
work=$(mktemp -d /tmp/portico-bench.XXXXXX)
pids=()
cleanup() {
  local p
  for p in "${pids[@]}"; do kill -TERM "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do
    for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
    kill -KILL "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
  done
  if [ "${KEEP:-0}" = 1 ]; then echo "work directory kept: $work"; else rm -rf "$work"; fi
}
trap cleanup EXIT
trap 'exit 130' INT TERM

# free_port prints a loopback TCP port nothing listens on.
used_ports=""
free_port() {
  local p
  for _ in $(seq 200); do
    p=$((20000 + RANDOM % 30000))
    case " $used_ports " in *" $p "*) continue ;; esac
    if ! ss -Htln "sport = :$p" | grep -q .; then
      used_ports="$used_ports $p"
      echo "$p"
      return
    fi
  done
  die "no free port found"
}

# wait_http URL: until it answers 200 (bounded: 60 s; a loaded machine
# can take that long).
wait_http() {
  for _ in $(seq 600); do
    if [ "$(curl -sk -o /dev/null -w '%{http_code}' --max-time 1 "$1")" = 200 ]; then return 0; fi
    sleep 0.1
  done
  die "$1 did not answer 200 within 60 s (logs in $work; KEEP=1 keeps them)"
}

# --- setup -------------------------------------------------------------------
# nginx workers run as an unprivileged user: they must read www/.
chmod 755 "$work"
mkdir -p "$work/www" "$work/edge" "$work/origin"
head -c 1024 /dev/zero | tr '\0' 'x' >"$work/www/1k"
openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes -days 2 \
  -subj /CN=127.0.0.1 -addext subjectAltName=IP:127.0.0.1 \
  -keyout "$work/key.pem" -out "$work/cert.pem" 2>/dev/null

backend_port=$(free_port)
mid_port=$(free_port)
front_port=$(free_port)
front_tls_port=$(free_port)

fill() { # template output, then KEY=VALUE pairs
  local in=$1 out=$2 args=()
  shift 2
  for kv in "$@"; do args+=(-e "s|@${kv%%=*}@|${kv#*=}|g"); done
  sed "${args[@]}" "$in" >"$out"
}
fill "$here/gateway/nginx-backend.conf" "$work/backend.conf" DIR="$work" PORT="$backend_port"
fill "$here/gateway/nginx-mid.conf" "$work/mid.conf" DIR="$work" PORT="$mid_port" BACKEND="$backend_port"
fill "$here/gateway/nginx-front.conf" "$work/front.conf" DIR="$work" PORT="$front_port" TLSPORT="$front_tls_port" MID="$mid_port"
fill "$here/gateway/portico.yaml" "$work/portico.yaml" BACKEND="$backend_port"
cp "$here/gateway/bench.yaml" "$work/bench.yaml"

start_nginx() { # name
  nice -n "$NICE" taskset -c 0 "$nginx_bin" -p "$work" -e "$work/$1.err" -c "$work/$1.conf" &
  pids+=($!)
  eval "pid_$1=$!"
}
start_nginx backend
start_nginx mid
start_nginx front

gogc_env=()
[ -n "${GOGC:-}" ] && gogc_env+=(GOGC="$GOGC")
[ -n "${GOMEMLIMIT:-}" ] && gogc_env+=(GOMEMLIMIT="$GOMEMLIMIT")

# Both print their addresses at info; neither logs per request.
origin_args=(origin --data-dir "$work/origin" --admin-listen 127.0.0.1:0 --data-listen 127.0.0.1:0 --config "$work/portico.yaml" --log-level info)
if [ -n "${PROFILE:-}" ]; then
  pprof_origin=127.0.0.1:$(free_port)
  pprof_edge=127.0.0.1:$(free_port)
  origin_args+=(--pprof-listen "$pprof_origin")
fi
env GOMAXPROCS=1 "${gogc_env[@]}" nice -n "$NICE" taskset -c 0 "$bin" "${origin_args[@]}" >"$work/origin.out" 2>"$work/origin.err" &
pids+=($!)
pid_origin=$!
for _ in $(seq 600); do grep -q 'origin serving' "$work/origin.err" 2>/dev/null && break; sleep 0.1; done
data_addr=$(sed -n 's/.*origin serving.* data=\([^ ]*\).*/\1/p' "$work/origin.err" | head -1)
edge_token=$(sed -n 's/.*edge token[^:]*:[[:space:]]*\(ptc_edge_[^[:space:]]*\).*/\1/p' "$work/origin.out" | head -1)
[ -n "$data_addr" ] && [ -n "$edge_token" ] || die "origin did not start: $(cat "$work/origin.err")"

case $data_addr in http://* | https://*) origin_url=$data_addr ;; *) origin_url=http://$data_addr ;; esac
edge_args=(edge --origin "$origin_url" --token "$edge_token" --data-dir "$work/edge"
  --https-listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --ops-listen ""
  --tls-cert "$work/cert.pem" --tls-key "$work/key.pem" --log-level info)
[ -n "${PROFILE:-}" ] && edge_args+=(--pprof-listen "$pprof_edge")
env GOMAXPROCS=1 "${gogc_env[@]}" nice -n "$NICE" taskset -c 0 "$bin" "${edge_args[@]}" >"$work/edge.out" 2>"$work/edge.err" &
pids+=($!)
pid_edge=$!
for _ in $(seq 600); do grep -q 'edge serving' "$work/edge.err" 2>/dev/null && break; sleep 0.1; done
edge_https=$(sed -n 's/.*edge serving.* https=\([^ ]*\) http=\([^ ]*\).*/\1/p' "$work/edge.err" | head -1)
edge_http=$(sed -n 's/.*edge serving.* https=\([^ ]*\) http=\([^ ]*\).*/\2/p' "$work/edge.err" | head -1)
[ -n "$edge_https" ] || die "edge did not start: $(cat "$work/edge.err")"

url_portico_tls="https://$edge_https/1k"
url_portico_plain="http://$edge_http/1k"
url_nginx_tls="https://127.0.0.1:$front_tls_port/1k"
url_nginx_plain="http://127.0.0.1:$front_port/1k"
wait_http "http://127.0.0.1:$backend_port/1k"
wait_http "$url_nginx_tls"
wait_http "$url_portico_tls"
wait_http "$url_portico_plain"
wait_http "$url_nginx_plain"
for u in "$url_portico_tls" "$url_nginx_tls"; do
  n=$(curl -sk "$u" | wc -c)
  [ "$n" = 1024 ] || die "$u answered $n bytes, not 1024"
done

# Server processes of each chain, nginx workers included; the backend is
# in both (each chain's requests cost it the same).
with_children() { local p; for p in "$@"; do echo "$p"; ps -o pid= --ppid "$p"; done; }
chain_portico=$(with_children "$pid_edge" "$pid_origin" "$pid_backend" | tr -s ' \n' ' ')
chain_nginx=$(with_children "$pid_front" "$pid_mid" "$pid_backend" | tr -s ' \n' ' ')
clk_tck=$(getconf CLK_TCK)
# cpu_ticks PID...: user+system CPU time the processes used so far.
cpu_ticks() {
  local p t=0 f
  for p in "$@"; do
    # fields 14 and 15 of /proc/PID/stat, counted after the ")" that ends
    # the command name
    f=$(sed 's/.*) //' "/proc/$p/stat" 2>/dev/null) || continue
    set -- $f
    t=$((t + ${12} + ${13}))
  done
  echo "$t"
}

# show_logs prints the end of every server log (when a run went wrong).
show_logs() {
  local f
  for f in "$work"/*.err; do
    [ -s "$f" ] && { echo "--- $f" >&2; tail -n 5 "$f" >&2; }
  done
}

# check_alive fails when a server process has exited (crashed, or killed
# by something else on the machine), naming it.
check_alive() {
  local n
  for n in edge origin front mid backend; do
    local v="pid_$n"
    if ! kill -0 "${!v}" 2>/dev/null; then
      show_logs
      die "the $n process (pid ${!v}) is gone"
    fi
  done
}

# --- runs --------------------------------------------------------------------
# run_wrk URL DURATION [PID...]: prints "rps p50_ms p99_ms errors
# cpu_us_per_request" (CPU of the given processes during the run, divided
# by the requests completed); fails on a response that is not 2xx. Socket
# errors (wrk's 2 s timeouts on a loaded machine) are counted and shown.
run_wrk() {
  local out url=$1 dur=$2 t0 t1
  shift 2
  local try rc
  for try in 1 2; do
    rc=0
    t0=$(cpu_ticks "$@")
    out=$(nice -n "$NICE" taskset -c 1 wrk -t1 -c"$CONNS" -d"$dur" --latency "$url" 2>&1) || rc=$?
    t1=$(cpu_ticks "$@")
    grep -q '^Requests/sec:' <<<"$out" && break
    # wrk ended without its summary (killed by something else on a shared
    # machine, or it could not start): say so, and run again once.
    echo "gateway.sh: wrk on $url ended without a result (exit $rc): $(tail -n 3 <<<"$out" | tr '\n' ' ')" >&2
    [ "$try" = 2 ] && die "wrk gave no result twice on $url"
  done
  if grep -q 'Non-2xx' <<<"$out"; then
    echo "$out" >&2
    show_logs
    die "wrk saw responses other than 2xx from $url"
  fi
  check_alive
  awk -v ticks=$((t1 - t0)) -v hz="$clk_tck" '
    function ms(v) {
      if (v ~ /us$/) return substr(v, 1, length(v)-2) / 1000
      if (v ~ /ms$/) return substr(v, 1, length(v)-2) + 0
      if (v ~ /s$/)  return substr(v, 1, length(v)-1) * 1000
      return v
    }
    /^Requests\/sec:/ { rps = $2 }
    $1 == "50%" { p50 = ms($2) }
    $1 == "99%" { p99 = ms($2) }
    /Socket errors/ { gsub(/,/, ""); err = $4 + $6 + $8 + $10 }
    / requests in / { n = $1 }
    END { printf "%.0f %.3f %.3f %d %.1f\n", rps, p50, p99, err, (n > 0 ? ticks / hz * 1e6 / n : 0) }' <<<"$out"
}

schemes=(tls)
[ "$PLAIN" = 1 ] && schemes+=(plain)
url_of() { local v="url_$1_$2"; echo "${!v}"; }
pids_of() { local v="chain_$1"; echo "${!v}"; }

echo "portico: $("$bin" version)   nginx: $("$nginx_bin" -v 2>&1 | sed 's/.*\///')   $(nproc) cores, load: $(cut -d' ' -f1-3 /proc/loadavg)"
echo "GOGC=${GOGC:-portico default} GOMEMLIMIT=${GOMEMLIMIT:-unset}  wrk -t1 -c$CONNS -d$DURATION --latency, $RUNS runs each, interleaved"
for s in "${schemes[@]}"; do
  for g in portico nginx; do run_wrk "$(url_of "$g" "$s")" 2s >/dev/null; done # warm pools
done
results=$work/results
: >"$results"
for i in $(seq "$RUNS"); do
  for s in "${schemes[@]}"; do
    for g in portico nginx; do
      # shellcheck disable=SC2046
      r=$(run_wrk "$(url_of "$g" "$s")" "$DURATION" $(pids_of "$g"))
      echo "$s $g $r" >>"$results"
      printf 'run %d  %-5s %-7s %7s rps  p50 %6s ms  p99 %6s ms  socket errors %s  cpu %s us/req\n' "$i" "$s" "$g" $r
    done
  done
done

echo
printf '%-6s %-8s %10s %10s %10s %10s %12s\n' scheme chain "median rps" "max rps" "p50 ms" "p99 ms" "cpu us/req"
for s in "${schemes[@]}"; do
  for g in portico nginx; do
    # medians of each column over this chain's runs
    awk -v s="$s" -v g="$g" '
      function median(a, n,   i, j, t) {
        for (i = 1; i <= n; i++) for (j = i + 1; j <= n; j++) if (a[j] < a[i]) { t = a[i]; a[i] = a[j]; a[j] = t }
        return n % 2 ? a[(n + 1) / 2] : (a[n / 2] + a[n / 2 + 1]) / 2
      }
      $1 == s && $2 == g { n++; r[n] = $3; p5[n] = $4; p9[n] = $5; c[n] = $7; if ($3 > mx) mx = $3 }
      END { printf "%-6s %-8s %10.0f %10.0f %10.3f %10.3f %12.1f\n", s, g, median(r, n), mx, median(p5, n), median(p9, n), median(c, n) }' "$results"
  done
done | tee "$work/summary"
echo
for s in "${schemes[@]}"; do
  awk -v s="$s" '
    $1 == s && $2 == "portico" { pm = $3; px = $4; pc = $7 }
    $1 == s && $2 == "nginx" { nm = $3; nx = $4; nc = $7 }
    END { printf "ratio portico/nginx (%s): rps median %.2f  max %.2f;  CPU per request nginx/portico %.2f\n", s, pm / nm, px / nx, nc / pc }' "$work/summary"
done

hwm() { sed -n 's/^VmHWM:[[:space:]]*\([0-9]*\) kB/\1/p' "/proc/$1/status"; }
echo "peak RSS: edge $(($(hwm "$pid_edge") / 1024)) MiB, origin $(($(hwm "$pid_origin") / 1024)) MiB"

if [ -n "${PROFILE:-}" ]; then
  mkdir -p "$PROFILE"
  secs=${DURATION%s}
  echo
  pscheme=${PROFILE_SCHEME:-tls}
  echo "profiling edge and origin during one more Portico $pscheme run (${secs}s) into $PROFILE"
  fetches=()
  for p in edge origin; do
    v="pprof_$p"
    curl -s -o "$PROFILE/$p.cpu.pprof" "http://${!v}/debug/pprof/profile?seconds=$((secs - 1))" &
    fetches+=($!)
    curl -s -o "$PROFILE/$p.allocs.pprof" "http://${!v}/debug/pprof/allocs?seconds=$((secs - 1))" &
    fetches+=($!)
    pids+=("${fetches[@]: -2}")
  done
  # shellcheck disable=SC2086
  echo "portico $pscheme: $(run_wrk "$(url_of portico "$pscheme")" "$DURATION" $chain_portico) (rps, p50 ms, p99 ms, socket errors, cpu us/req)"
  wait "${fetches[@]}"
  cp "$bin" "$PROFILE/portico"
  for p in edge origin; do
    echo "--- $p CPU"
    go tool pprof -top -nodecount=25 "$PROFILE/portico" "$PROFILE/$p.cpu.pprof" 2>/dev/null | sed -n '1,32p'
    echo "--- $p allocations (objects)"
    go tool pprof -top -nodecount=15 -sample_index=alloc_objects "$PROFILE/portico" "$PROFILE/$p.allocs.pprof" 2>/dev/null | sed -n '1,22p'
  done
fi
