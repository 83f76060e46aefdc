package runtime

import (
	"context"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// BenchmarkLoop1000 measures a guest loop of 1000 iterations: plain, with
// the termination checks wazero puts on every loop back-edge, and with the
// engine's own instrumentation (see instrument).
func BenchmarkLoop1000(b *testing.B) {
	wasm := wasmbuild.WATText(b, "loop1000", `(module (memory 1) (func (export "run") (param $n i32) (result i32) (local $s i32)
	  (loop $l (local.set $s (i32.add (local.get $s) (local.get $n))) (local.set $n (i32.sub (local.get $n) (i32.const 1)))
	    (br_if $l (i32.gt_s (local.get $n) (i32.const 0))))
	  (local.get $s)))`)
	ctx := context.Background()
	instrumented, err := instrument(wasm)
	if err != nil {
		b.Fatal(err)
	}
	for _, c := range []struct {
		name  string
		term  bool
		bytes []byte
	}{{"no-checks", false, wasm}, {"wazero-checks", true, wasm}, {"instrumented", false, instrumented}} {
		b.Run(c.name, func(b *testing.B) {
			rt := wazero.NewRuntimeWithConfig(ctx, wazero.NewRuntimeConfigCompiler().WithCloseOnContextDone(c.term))
			defer rt.Close(ctx)
			mod, err := rt.Instantiate(ctx, c.bytes)
			if err != nil {
				b.Fatal(err)
			}
			fn := mod.ExportedFunction("run")
			stack := []uint64{1000}
			for i := 0; i < b.N; i++ {
				stack[0] = 1000
				if err := fn.CallWithStack(ctx, stack); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}
