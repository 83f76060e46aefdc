// Package runtime is Portico's WebAssembly engine: it compiles plugin
// modules with wazero (caching the machine code on disk), checks them
// before they can reach the request path, and runs them as a bounded pool of
// long-lived instances, each call under a deadline.
//
// The package knows nothing about any plugin ABI; runtime/proxywasm builds
// the proxy-wasm host on top of it.
//
// The package is named runtime after its directory; importers that also need
// the standard library's runtime package alias one of the two.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
)

// DefaultMaxModuleBytes caps the size of a module accepted for compilation.
// A 25 MB standard-Go module takes seconds to compile; anything much larger
// is more likely a mistake or an attack on the control plane than a plugin.
const DefaultMaxModuleBytes = 40 << 20

// DefaultMemoryPages is the default memory cap of one instance: 512 pages of
// 64 KiB, 32 MiB. Standard-Go guests need at least 32 pages to start.
const DefaultMemoryPages = 512

// Config configures an Engine.
type Config struct {
	// DataDir is where compiled machine code is cached, so that a restart
	// does not pay the full compile again. Empty means an in-memory cache.
	DataDir string
	// MaxModuleBytes caps the size of a module; zero means
	// DefaultMaxModuleBytes.
	MaxModuleBytes int
	// Logger receives engine and plugin logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer, when set, gets the engine's metrics collector. Use the
	// node's own registry, not the global one.
	Registerer prometheus.Registerer
}

// Engine owns the compilation cache, the deadline watchdog and the metrics
// of every plugin runtime created from it. It is safe for concurrent use.
type Engine struct {
	cache    wazero.CompilationCache
	maxBytes int
	logger   *slog.Logger
	watchdog *watchdog
	metrics  *collector

	mu     sync.Mutex
	closed bool
}

// NewEngine returns an engine. Close it when the node stops.
func NewEngine(ctx context.Context, cfg Config) (*Engine, error) {
	e := &Engine{
		maxBytes: cfg.MaxModuleBytes,
		logger:   cfg.Logger,
	}
	if e.maxBytes <= 0 {
		e.maxBytes = DefaultMaxModuleBytes
	}
	if e.logger == nil {
		e.logger = slog.Default()
	}
	if cfg.DataDir != "" {
		dir := filepath.Join(cfg.DataDir, "wasm-cache")
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, fmt.Errorf("wasm engine: creating the compilation cache directory: %w", err)
		}
		c, err := wazero.NewCompilationCacheWithDir(dir)
		if err != nil {
			return nil, fmt.Errorf("wasm engine: opening the compilation cache in %s: %w", dir, err)
		}
		e.cache = c
	} else {
		e.cache = wazero.NewCompilationCache()
	}
	e.metrics = newCollector()
	if cfg.Registerer != nil {
		if err := cfg.Registerer.Register(e.metrics); err != nil {
			_ = e.cache.Close(ctx)
			return nil, fmt.Errorf("wasm engine: registering metrics: %w", err)
		}
	}
	e.watchdog = newWatchdog()
	return e, nil
}

// Logger returns the engine's logger.
func (e *Engine) Logger() *slog.Logger { return e.logger }

// MaxModuleBytes is the size cap applied by Compile.
func (e *Engine) MaxModuleBytes() int { return e.maxBytes }

// Limits bound what one plugin may use.
type Limits struct {
	// MemoryPages caps each instance's linear memory, in 64 KiB pages.
	MemoryPages uint32
}

// ErrModuleTooLarge is returned by Compile for modules over the size cap.
var ErrModuleTooLarge = errors.New("module too large")

// Runtime is one wazero runtime, holding the compiled module, the host
// modules and the instances of one plugin.
type Runtime struct {
	wazero.Runtime
	engine *Engine
}

// NewRuntime returns a wazero runtime that shares the engine's compilation
// cache, caps memory at limits.MemoryPages and can interrupt a running guest
// (wazero's close-on-context-done, driven by the engine's watchdog).
func (e *Engine) NewRuntime(ctx context.Context, limits Limits) (*Runtime, error) {
	e.mu.Lock()
	closed := e.closed
	e.mu.Unlock()
	if closed {
		return nil, errors.New("wasm engine is closed")
	}
	pages := limits.MemoryPages
	if pages == 0 {
		pages = DefaultMemoryPages
	}
	if pages > 65536 {
		return nil, fmt.Errorf("memory limit of %d pages is over the 65536 pages (4 GiB) a 32-bit module can address", pages)
	}
	cfg := wazero.NewRuntimeConfigCompiler().
		WithCompilationCache(e.cache).
		WithMemoryLimitPages(pages).
		// Runaway guests are stopped by the interrupt checks Compile
		// adds, not by wazero's own (see instrument).
		WithCloseOnContextDone(false).
		WithCustomSections(false)
	return &Runtime{Runtime: wazero.NewRuntimeWithConfig(ctx, cfg), engine: e}, nil
}

// Compile checks the module's size and compiles it. Errors say what is wrong
// with the module, for the person deploying it.
func (r *Runtime) Compile(ctx context.Context, wasm []byte) (wazero.CompiledModule, error) {
	if len(wasm) > r.engine.maxBytes {
		return nil, fmt.Errorf("%w: %d bytes, the limit is %d bytes; strip debug sections (for example -Wl,--strip-all or wasm-opt --strip-debug) or raise the node's module size limit",
			ErrModuleTooLarge, len(wasm), r.engine.maxBytes)
	}
	if len(wasm) < 8 || string(wasm[:4]) != "\x00asm" {
		return nil, errors.New("not a WebAssembly binary module (the file does not start with \\0asm); upload the .wasm file, not its text format or a wrapper")
	}
	inst, err := instrument(wasm)
	if err != nil {
		return nil, fmt.Errorf("preparing module: %w", err)
	}
	cm, err := r.CompileModule(ctx, inst)
	if err != nil {
		return nil, fmt.Errorf("compiling module: %w", err)
	}
	return cm, nil
}

// Interrupter returns what stops a running call of mod: it sets the
// interrupt flag Compile added, and the guest traps at its next loop
// iteration. It reports false when mod was not compiled by Compile.
func Interrupter(mod api.Module) (func(), bool) {
	g, ok := mod.ExportedGlobal(InterruptGlobal).(api.MutableGlobal)
	if !ok {
		return nil, false
	}
	return func() { g.Set(1) }, true
}

// Close closes the engine's cache and stops its watchdog. Runtimes created
// from it must be closed first.
func (e *Engine) Close(ctx context.Context) error {
	e.mu.Lock()
	if e.closed {
		e.mu.Unlock()
		return nil
	}
	e.closed = true
	e.mu.Unlock()
	e.watchdog.stop()
	return e.cache.Close(ctx)
}
