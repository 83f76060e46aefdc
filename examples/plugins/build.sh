#!/usr/bin/env bash
# Builds every example plugin (and the hostile test modules) from source.
#
#   examples/plugins/build.sh            # into bin/plugins/
#   OUT=/tmp/plugins examples/plugins/build.sh
#
# Toolchains (Debian 12): clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32
# (C); Go 1.24+ (Go); rustc cargo libstd-rust-dev-wasm32 lld-14 (Rust, offline);
# nodejs npm (AssemblyScript; the first build runs npm ci for the pinned
# packages); wabt (WAT).
set -euo pipefail

root=$(cd "$(dirname "$0")/../.." && pwd)
out=${OUT:-$root/bin/plugins}
ex=$root/examples/plugins
mkdir -p "$out"

echo "C: authorizer-c"
clang-19 --target=wasm32-wasi --sysroot=/usr -O2 -mexec-model=reactor -Wl,--strip-all \
  -I "$root/sdk/c" -o "$out/authorizer-c.wasm" "$ex/authorizer-c/authorizer.c"

for p in authorizer-go transform-go introspect-go; do
  echo "Go: $p"
  (cd "$ex/$p" && GOOS=wasip1 GOARCH=wasm CGO_ENABLED=0 go build -buildmode=c-shared -trimpath -o "$out/$p.wasm" .)
done

echo "Rust: authorizer-rust"
(cd "$ex/authorizer-rust" && CARGO_TARGET_DIR="$out/.cargo-target" /usr/bin/cargo build --offline --release --quiet)
cp "$out/.cargo-target/wasm32-wasi/release/authorizer_rust.wasm" "$out/authorizer-rust.wasm"

echo "AssemblyScript: authorizer-as"
(
  cd "$ex/authorizer-as"
  [ -x node_modules/.bin/asc ] || npm ci --no-audit --no-fund --silent
  npx asc assembly/index.ts --config node_modules/@assemblyscript/wasi-shim/asconfig.json \
    -O3 --noAssert --use abort=abort_proc_exit --use ASC_GC_GRANULARITY=65536 \
    --exportStart _initialize --runtime incremental -o "$out/authorizer-as.wasm"
)

for f in "$root"/test/wasm/hostile/*.wat; do
  name=$(basename "${f%.wat}")
  echo "WAT: hostile-$name"
  wat2wasm "$f" -o "$out/hostile-$name.wasm"
done

echo
(cd "$out" && for f in *.wasm; do printf '%-28s %8d bytes  sha256:%s\n' "$f" "$(stat -c %s "$f")" "$(sha256sum "$f" | cut -d' ' -f1)"; done)
