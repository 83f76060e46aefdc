package modules

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"strings"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/portico-edge/portico/runtime"
)

// Checker checks uploads: the module is compiled by the same engine code
// the node's WASM host uses (size cap, binary format, the engine's loop
// instrumentation, wazero's compiler), and its exports and imports are
// checked against what the proxy-wasm host requires. Starting the module
// needs its policy's configuration, so that part of admission happens at
// deploy.
//
// The compiled code lands in the same on-disk cache as the host's (the
// cache is keyed by content), so the deploy that follows an upload does
// not compile the module again.
type Checker struct {
	engine *runtime.Engine
}

// NewChecker returns a Checker whose compilation cache is under dataDir
// (dataDir/wasm-cache, shared with the node's WASM host). Close it.
func NewChecker(ctx context.Context, dataDir string, maxBytes int, log *slog.Logger) (*Checker, error) {
	e, err := runtime.NewEngine(ctx, runtime.Config{DataDir: dataDir, MaxModuleBytes: maxBytes, Logger: log})
	if err != nil {
		return nil, err
	}
	return &Checker{engine: e}, nil
}

// Close releases the engine.
func (c *Checker) Close(ctx context.Context) error { return c.engine.Close(ctx) }

// Check compiles a module and checks its proxy-wasm shape. The error says
// what is wrong with the module and how to fix it.
func (c *Checker) Check(ctx context.Context, module []byte) error {
	// The memory cap is the largest a policy may set: a module declaring
	// more than its policy allows is refused at deploy, where the policy's
	// limit is known.
	rt, err := c.engine.NewRuntime(ctx, runtime.Limits{MemoryPages: 65536})
	if err != nil {
		return err
	}
	defer rt.Close(context.Background())
	cm, err := rt.Compile(ctx, module)
	if err != nil {
		return err
	}
	defer cm.Close(context.Background())
	return checkShape(cm)
}

// checkShape applies the export and import rules of the proxy-wasm host's
// admission (runtime/proxywasm), in the same order and with the same
// advice, so that a module refused at deploy for its shape is refused at
// upload already.
func checkShape(cm wazero.CompiledModule) error {
	ex := cm.ExportedFunctions()
	if _, ok := cm.ExportedMemories()["memory"]; !ok {
		return errors.New("module exports no memory named \"memory\"; proxy-wasm plugins must export their linear memory")
	}
	_, v021 := ex["proxy_abi_version_0_2_1"]
	_, v020 := ex["proxy_abi_version_0_2_0"]
	if !v021 && !v020 {
		var found []string
		for name := range ex {
			if strings.HasPrefix(name, "proxy_abi_version_") {
				found = append(found, name)
			}
		}
		slices.Sort(found)
		if len(found) > 0 {
			return fmt.Errorf("module is built for proxy-wasm ABI %v; this host runs 0.2.1 and 0.2.0: rebuild it with a current SDK", found)
		}
		return errors.New("module exports no proxy_abi_version_0_2_1 (or _0_2_0) marker: it is not a proxy-wasm plugin, or was built without a proxy-wasm SDK")
	}
	if _, ok := ex["proxy_on_context_create"]; !ok {
		return errors.New("module does not export proxy_on_context_create, which every proxy-wasm plugin needs")
	}
	_, alloc := ex["proxy_on_memory_allocate"]
	_, malloc := ex["malloc"]
	if !alloc && !malloc {
		return errors.New("module exports neither proxy_on_memory_allocate nor malloc, so the host cannot hand it any data")
	}
	for _, m := range cm.ImportedMemories() {
		mod, name, _ := m.Import()
		return fmt.Errorf("module imports memory %s.%s; a plugin must define its own memory", mod, name)
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case "env", wasi_snapshot_preview1.ModuleName:
		default:
			return fmt.Errorf("module imports %s.%s; plugins may only import proxy-wasm (env) and WASI preview 1 functions", mod, name)
		}
		if mod == "env" && len(f.ResultTypes()) > 1 {
			return fmt.Errorf("module imports env.%s with %d results; no host function has that shape", name, len(f.ResultTypes()))
		}
	}
	return nil
}
