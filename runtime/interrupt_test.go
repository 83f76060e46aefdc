package runtime

import (
	"context"
	"strings"
	"testing"

	"github.com/tetratelabs/wazero"

	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// TestInstrumentKeepsMeaning runs an instrumented loop of many more
// iterations than the budget and checks its result.
func TestInstrumentKeepsMeaning(t *testing.T) {
	wasm := wasmbuild.WATText(t, "sum-loop", `(module (memory 1) (global $g (mut i32) (i32.const 7))
	  (func (export "run") (param $n i32) (result i32) (local $s i32)
	    (loop $l (local.set $s (i32.add (local.get $s) (local.get $n))) (local.set $n (i32.sub (local.get $n) (i32.const 1)))
	      (br_if $l (i32.gt_s (local.get $n) (i32.const 0))))
	    (i32.add (local.get $s) (global.get $g))))`)
	out, err := instrument(wasm)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	rt := wazero.NewRuntime(ctx)
	defer rt.Close(ctx)
	mod, err := rt.Instantiate(ctx, out)
	if err != nil {
		t.Fatal(err)
	}
	res, err := mod.ExportedFunction("run").Call(ctx, 1000)
	if err != nil || res[0] != 500500+7 {
		t.Fatalf("result %v, %v; want 500507", res, err)
	}
	stop, ok := Interrupter(mod)
	if !ok {
		t.Fatal("no interrupt global")
	}
	stop()
	if _, err := mod.ExportedFunction("run").Call(ctx, 1000); err == nil || !strings.Contains(err.Error(), "unreachable") {
		t.Fatalf("interrupted call: %v", err)
	}
}

func TestInstrumentRejects(t *testing.T) {
	for name, wat := range map[string]string{
		"reserved export": `(module (memory 1) (global (export "portico.interrupt") i32 (i32.const 0)))`,
		"no memory":       `(module (func))`,
	} {
		b := wasmbuild.WATText(t, strings.ReplaceAll(name, " ", "-"), wat)
		if _, err := instrument(b); err == nil {
			t.Errorf("%s: instrumented", name)
		}
	}
}
