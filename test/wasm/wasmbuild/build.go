// Package wasmbuild builds the example and hostile plugins from source for
// tests, with the same commands examples/plugins/build.sh uses, and caches
// the results by a hash of their inputs.
//
// A missing toolchain skips the test with what to install, unless PORTICO_CI
// is set, when it fails the test: CI must never pass by skipping.
package wasmbuild

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
)

// TB is the part of testing.TB the builders use.
type TB interface {
	Helper()
	Fatalf(format string, args ...any)
	Skipf(format string, args ...any)
	Logf(format string, args ...any)
}

var _ TB = (testing.TB)(nil)

// Root returns the repository root (the directory holding go.mod).
func Root() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Clean(filepath.Join(filepath.Dir(file), "..", "..", ".."))
}

// Path joins a repository-relative path to the root.
func Path(rel string) string { return filepath.Join(Root(), filepath.FromSlash(rel)) }

// Tool returns the path of a tool, skipping (or failing, in CI) when absent.
func Tool(t TB, name, install string) string {
	t.Helper()
	p, err := exec.LookPath(name)
	if err == nil {
		return p
	}
	for _, dir := range []string{"/usr/bin", "/usr/local/bin"} {
		if _, err := os.Stat(filepath.Join(dir, name)); err == nil {
			return filepath.Join(dir, name)
		}
	}
	if os.Getenv("PORTICO_CI") != "" {
		t.Fatalf("%s is not installed (PORTICO_CI is set, so this is a failure): %s", name, install)
	}
	t.Skipf("%s is not installed; to run this test: %s", name, install)
	return ""
}

var (
	cacheOnce sync.Once
	cacheDir  string
	buildMu   sync.Mutex
)

// CacheDir is where built modules are kept between test runs:
// $PORTICO_WASM_CACHE, or a folder in the user cache directory.
func CacheDir() string {
	cacheOnce.Do(func() {
		cacheDir = os.Getenv("PORTICO_WASM_CACHE")
		if cacheDir == "" {
			base, err := os.UserCacheDir()
			if err != nil {
				base = os.TempDir()
			}
			cacheDir = filepath.Join(base, "portico-wasm-test")
		}
		_ = os.MkdirAll(cacheDir, 0o755)
	})
	return cacheDir
}

// hashInputs hashes files (or every file under directories), skipping
// build outputs and dependencies.
func hashInputs(extra string, paths ...string) string {
	h := sha256.New()
	h.Write([]byte(extra))
	for _, p := range paths {
		_ = filepath.WalkDir(p, func(path string, d fs.DirEntry, err error) error {
			if err != nil {
				return nil
			}
			if d.IsDir() {
				switch d.Name() {
				case "target", "node_modules", "build":
					return filepath.SkipDir
				}
				return nil
			}
			b, err := os.ReadFile(path)
			if err != nil {
				return nil
			}
			fmt.Fprintf(h, "%s\x00%d\x00", filepath.ToSlash(path), len(b))
			h.Write(b)
			return nil
		})
	}
	return hex.EncodeToString(h.Sum(nil))[:24]
}

// cached returns the cached output for key or builds it with fn into out.
func cached(t TB, name, key string, fn func(out string) error) []byte {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	out := filepath.Join(CacheDir(), name+"-"+key+".wasm")
	if b, err := os.ReadFile(out); err == nil && len(b) > 0 {
		return b
	}
	tmp := out + ".tmp"
	if err := fn(tmp); err != nil {
		t.Fatalf("building %s: %v", name, err)
	}
	if err := os.Rename(tmp, out); err != nil {
		t.Fatalf("building %s: %v", name, err)
	}
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatalf("building %s: %v", name, err)
	}
	return b
}

func run(dir string, env []string, name string, args ...string) error {
	cmd := exec.Command(name, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		return fmt.Errorf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return nil
}

// C builds a C plugin from one source file with clang-19 and wasi-libc.
func C(t TB, src string) []byte {
	t.Helper()
	clang := Tool(t, "clang-19", "apt-get install -y clang-19 lld-19 wasi-libc libclang-rt-19-dev-wasm32")
	Tool(t, "wasm-ld-19", "apt-get install -y lld-19")
	if _, err := os.Stat("/usr/lib/wasm32-wasi/libc.a"); err != nil {
		Tool(t, "wasi-libc-is-missing", "apt-get install -y wasi-libc")
	}
	src = Path(src)
	key := hashInputs("c1", src, Path("sdk/c"))
	return cached(t, strings.TrimSuffix(filepath.Base(src), ".c"), key, func(out string) error {
		return run(filepath.Dir(src), nil, clang, "--target=wasm32-wasi", "--sysroot=/usr", "-O2", "-mexec-model=reactor",
			"-Wl,--strip-all", "-I", Path("sdk/c"), "-o", out, src)
	})
}

// Go builds a standard-Go plugin package (GOOS=wasip1, c-shared).
func Go(t TB, pkgDir string) []byte {
	t.Helper()
	goBin, err := exec.LookPath("go")
	if err != nil {
		goBin = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	dir := Path(pkgDir)
	key := hashInputs("go1"+runtime.Version(), dir, Path("sdk/go"))
	return cached(t, filepath.Base(dir), key, func(out string) error {
		return run(dir, []string{"GOOS=wasip1", "GOARCH=wasm", "CGO_ENABLED=0"}, goBin, "build", "-buildmode=c-shared", "-trimpath", "-o", out, ".")
	})
}

// Rust builds a Rust plugin crate with Debian's cargo and prebuilt
// wasm32-wasi standard library, offline.
func Rust(t TB, crateDir string) []byte {
	t.Helper()
	cargo := "/usr/bin/cargo"
	rustc := "/usr/bin/rustc"
	install := "apt-get install -y rustc cargo libstd-rust-dev-wasm32 lld-14"
	Tool(t, "wasm-ld-14", install)
	if _, err := os.Stat(cargo); err != nil {
		Tool(t, "cargo-from-debian-is-missing", install)
	}
	if _, err := os.Stat("/usr/lib/rustlib/wasm32-wasi"); err != nil {
		Tool(t, "libstd-rust-dev-wasm32-is-missing", install)
	}
	dir := Path(crateDir)
	key := hashInputs("rs1", dir, Path("sdk/rust"))
	return cached(t, filepath.Base(dir), key, func(out string) error {
		target := filepath.Join(CacheDir(), "cargo-target")
		if err := run(dir, []string{"RUSTC=" + rustc, "CARGO_TARGET_DIR=" + target, "CARGO_NET_OFFLINE=true"},
			cargo, "build", "--offline", "--release", "--target", "wasm32-wasi"); err != nil {
			return err
		}
		name := strings.ReplaceAll(filepath.Base(dir), "-", "_")
		b, err := os.ReadFile(filepath.Join(target, "wasm32-wasi", "release", name+".wasm"))
		if err != nil {
			return err
		}
		return os.WriteFile(out, b, 0o644)
	})
}

// AssemblyScript builds an AssemblyScript plugin: npm ci (pinned versions
// from its package-lock.json) then asc.
func AssemblyScript(t TB, projDir string) []byte {
	t.Helper()
	npm := Tool(t, "npm", "apt-get install -y nodejs npm")
	dir := Path(projDir)
	key := hashInputs("as2", dir)
	return cached(t, filepath.Base(dir), key, func(out string) error {
		if _, err := os.Stat(filepath.Join(dir, "node_modules", ".bin", "asc")); err != nil {
			if err := run(dir, nil, npm, "ci", "--no-audit", "--no-fund"); err != nil {
				return fmt.Errorf("%w (npm needs the registry the first time)", err)
			}
		}
		return run(dir, nil, filepath.Join(dir, "node_modules", ".bin", "asc"), "assembly/index.ts",
			"--config", "node_modules/@assemblyscript/wasi-shim/asconfig.json",
			"-O3", "--noAssert", "--use", "abort=abort_proc_exit", "--use", "ASC_GC_GRANULARITY=65536",
			"--exportStart", "_initialize", "--runtime", "incremental", "-o", out)
	})
}

// WAT builds a module from WebAssembly text with wabt's wat2wasm.
func WAT(t TB, src string) []byte {
	t.Helper()
	wat2wasm := Tool(t, "wat2wasm", "apt-get install -y wabt")
	src = Path(src)
	key := hashInputs("wat1", src)
	return cached(t, strings.TrimSuffix(filepath.Base(src), ".wat"), key, func(out string) error {
		return run(filepath.Dir(src), nil, wat2wasm, src, "-o", out)
	})
}

// WATText builds a module from WebAssembly text given inline.
func WATText(t TB, name, text string) []byte {
	t.Helper()
	wat2wasm := Tool(t, "wat2wasm", "apt-get install -y wabt")
	key := hashInputs("watt1" + text)
	return cached(t, name, key, func(out string) error {
		src := out + ".wat"
		if err := os.WriteFile(src, []byte(text), 0o644); err != nil {
			return err
		}
		defer os.Remove(src)
		return run(filepath.Dir(src), nil, wat2wasm, src, "-o", out)
	})
}

// Sorted returns the keys of a map in order, for stable test output.
func Sorted[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
