package runtime

import (
	"context"
	"testing"
	"time"

	"github.com/tetratelabs/wazero"

	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// BenchmarkCall measures one call into a trivial export: without
// close-on-context-done (no way to stop a runaway guest), with it and the
// engine's per-instance Guard, and with it and a fresh timeout context per
// call (the obvious design this package avoids).
func BenchmarkCall(b *testing.B) {
	wasm := wasmbuild.WATText(b, "nop", `(module (func (export "nop") (param i32) (result i32) (local.get 0)))`)
	ctx := context.Background()
	for _, c := range []struct {
		name      string
		terminate bool
		perCall   bool
		prepare   bool
	}{{"no-termination", false, false, false}, {"wazero-close-on-context-done", true, false, false}, {"wazero-timeout-context-per-call", true, true, false}} {
		b.Run(c.name, func(b *testing.B) {
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(c.terminate))
			defer rt.Close(ctx)
			mod, err := rt.Instantiate(ctx, wasm)
			if err != nil {
				b.Fatal(err)
			}
			fn := mod.ExportedFunction("nop")
			e, _ := NewEngine(ctx, Config{})
			defer e.Close(ctx)
			_ = c.prepare
			g := e.NewGuard(time.Second)
			defer g.Close()
			stack := make([]uint64, 1)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				var err error
				switch {
				case !c.terminate:
					err = fn.CallWithStack(ctx, stack)
				case c.perCall:
					cctx, cancel := context.WithTimeout(ctx, time.Second)
					err = fn.CallWithStack(cctx, stack)
					cancel()
				default:
					g.Begin()
					err = fn.CallWithStack(g, stack)
					g.End()
				}
				if err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
