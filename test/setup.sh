#!/usr/bin/env bash
# Installs, when missing, what the tests use, then fetches the pinned test
# fixtures that are too large to commit. Safe to run repeatedly: it installs
# only what is absent.
#
# Debian packages are pinned to the versions the tests were written against
# (Debian 12). When the archive has moved on (a security update replaces a
# version), the script says so and installs the archive's current version
# of that package rather than failing: the pin records what was tested, the
# fallback keeps a security update from breaking CI.
set -euo pipefail
cd "$(dirname "$0")/.."

# package=version the tests were written against.
PINNED=(
	curl=7.88.1-10+deb12u15
	python3-websockets=10.4-1
	redis-server=5:7.0.15-1~deb12u10
	clang-19=1:19.1.7-3~deb12u1
	lld-19=1:19.1.7-3~deb12u1
	lld-14=1:14.0.6-12
	wasi-libc=0.0~git20220510.9886d3d-2
	libclang-rt-19-dev-wasm32=1:19.1.7-3~deb12u1
	rustc=1.63.0+dfsg1-2
	cargo=0.66.0+ds1-1
	libstd-rust-dev-wasm32=1.63.0+dfsg1-2
	wabt=1.0.32-1
	testssl.sh=3.0.8+dfsg-1
	slowhttptest=1.8.2-1+b1
	nghttp2-client=1.52.0-1+deb12u3
)

installed() { dpkg-query -W -f='${Status}' "$1" 2>/dev/null | grep -q "install ok installed"; }

missing=()
for pv in "${PINNED[@]}"; do
	installed "${pv%%=*}" || missing+=("$pv")
done
# Node.js and npm: the machine image may bring its own; only install
# Debian's when there is none, since the two conflict.
if ! command -v npm >/dev/null 2>&1; then
	missing+=(nodejs npm)
fi

if [ ${#missing[@]} -gt 0 ]; then
	SUDO=
	[ "$(id -u)" -ne 0 ] && SUDO=sudo
	echo "setup: installing Debian packages: ${missing[*]}"
	$SUDO apt-get update -qq
	want=()
	for pv in "${missing[@]}"; do
		pkg=${pv%%=*}
		if [ "$pkg" != "$pv" ] && ! apt-cache madison "$pkg" | awk '{print $3}' | grep -qxF "${pv#*=}"; then
			echo "setup: $pv is no longer in the archive; installing the archive's current $pkg" >&2
			want+=("$pkg")
		else
			want+=("$pv")
		fi
	done
	DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${want[@]}" >/dev/null
fi

# Large real OpenAPI documents for the importer's tests (pinned npm package).
./test/testdata/openapi/fetch.sh
