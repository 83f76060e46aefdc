# tlsbench.sh: set-up shared by the TLS benchmark scripts (protocols.sh,
# h3.sh), sourced after they set RUNS, DURATION, ROOT and WORK. It gives
# them: PIDS (killed at exit, with WORK removed unless KEEP is set), need,
# free_port, a self-signed certificate for localhost and a 1 KiB body in
# WORK, PRIO (a higher priority and larger UDP buffers when run as root,
# restored at exit), caddyfile, and stats.

PIDS=()

tlsbench_cleanup() {
	for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
	wait 2>/dev/null || true
	if [[ -n "${RMEM_OLD:-}" ]]; then
		sysctl -qw net.core.rmem_max="$RMEM_OLD" net.core.wmem_max="$WMEM_OLD" || true
	fi
	[[ -n "${KEEP:-}" ]] || rm -rf "$WORK"
}
trap tlsbench_cleanup EXIT

# need TOOL WHERE-FROM: stop with exit status 2 when TOOL is missing.
need() { command -v "$1" >/dev/null || { echo "$(basename "$0"): $1 is not installed ($2)" >&2; exit 2; }; }

# free_port prints a loopback port free for both TCP and UDP.
free_port() { python3 - <<'PY'
import socket
for _ in range(50):
    t = socket.socket(); t.bind(("127.0.0.1", 0)); p = t.getsockname()[1]
    u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        u.bind(("127.0.0.1", p)); u.close(); t.close(); print(p); break
    except OSError:
        t.close(); u.close()
PY
}

# The certificate every server presents, and the body every server answers.
tlsbench_files() {
	openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 2 -subj /CN=localhost \
		-addext subjectAltName=DNS:localhost,IP:127.0.0.1 -keyout "$WORK/key.pem" -out "$WORK/cert.pem" 2>/dev/null
	head -c 1024 /dev/zero | tr '\0' x >"$WORK/index.html"
}

# As root, the servers and load generators run at a high priority, so that
# other work on a shared machine disturbs the comparison less, and QUIC
# gets the UDP buffers quic-go asks for.
PRIO=()
tlsbench_priority() {
	if [[ $(id -u) == 0 ]]; then
		PRIO=(nice -n -15)
		RMEM_OLD=$(sysctl -n net.core.rmem_max)
		WMEM_OLD=$(sysctl -n net.core.wmem_max)
		sysctl -qw net.core.rmem_max=7500000 net.core.wmem_max=7500000
	fi
}

# caddyfile PORT writes WORK/Caddyfile: Caddy answering the 1 KiB body over
# HTTP/1.1, HTTP/2 and HTTP/3 on PORT.
caddyfile() {
	cat >"$WORK/Caddyfile" <<CADDY
{
	admin off
	auto_https off
	servers {
		protocols h1 h2 h3
	}
}
https://localhost:$1 {
	tls $WORK/cert.pem $WORK/key.pem
	respond "$(cat "$WORK/index.html")" 200
}
CADDY
}

# stats "N N N ...": prints the median and the maximum.
stats() { tr ' ' '\n' <<<"$1" | grep -v '^$' | sort -n | awk '{a[NR]=$1} END {m=(NR%2)?a[(NR+1)/2]:(a[NR/2]+a[NR/2+1])/2; printf "%d %d\n", m, a[NR]}'; }
