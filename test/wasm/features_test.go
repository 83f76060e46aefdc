package wasmtest

import (
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// TestHostFeatures runs a plugin that uses shared data with CAS, queues,
// ticks, metrics and properties.
func TestHostFeatures(t *testing.T) {
	e := newEnv(t)
	ed := e.edge(spec(wasm.TypeAuthorizer, map[string]any{"module": e.src.Add(wasmbuild.Go(t, "test/wasm/plugins/features")), "instances": 1}))
	get := func(path string) string {
		t.Helper()
		r := e.do("GET", ed.URL+path, nil, "")
		if r.status != 200 {
			t.Fatalf("%s: %d %q", path, r.status, r.body)
		}
		return r.body
	}
	if got := get("/cas"); got != "cas-ok v2" {
		t.Fatalf("/cas: %q", got)
	}
	if a, b := get("/count"), get("/count"); a != "1" || b != "2" {
		t.Fatalf("/count: %q then %q", a, b)
	}
	get("/enqueue")
	eventually(t, "the queued item to be delivered", func() bool { return get("/shared/queued") == "hello" })
	eventually(t, "ticks", func() bool { n, _ := strconv.Atoi(get("/shared/ticks")); return n >= 2 })
	props := get("/props")
	for _, want := range []string{"request.path=/props", "request.method=GET", "source.address=127.0.0.1:", "destination.address=127.0.0.1:", "plugin_name=",
		"portico.api_id=harness\n", "portico.stage=test\n", "portico.route=" + config.MethodAny + " /{proxy+}\n"} {
		if !strings.Contains(props, want) {
			t.Fatalf("properties %q lack %q", props, want)
		}
	}
	if r := e.do("GET", ed.URL+"/other", nil, ""); r.status != 200 || e.backend.Count() != 1 {
		t.Fatalf("pass-through: %d, backend saw %d", r.status, e.backend.Count())
	}
}

// TestUnknownImportStubbed: a module importing an env function the host does
// not know is admitted; the function answers UNIMPLEMENTED (12).
func TestUnknownImportStubbed(t *testing.T) {
	e := newEnv(t)
	mod := wasmbuild.WATText(t, "unknown-import", `(module
	  (import "env" "proxy_vendor_extension" (func $ext (param i32) (result i32)))
	  (memory (export "memory") 1)
	  `+watAlloc+`
	  (func (export "proxy_abi_version_0_2_1"))
	  (func (export "proxy_on_context_create") (param i32 i32))
	  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
	    (if (i32.ne (call $ext (i32.const 1)) (i32.const 12)) (then unreachable))
	    (i32.const 0)))`)
	ed := e.edge(spec(wasm.TypeAuthorizer, map[string]any{"module": e.src.Add(mod)}))
	if r := e.do("GET", ed.URL+"/", nil, ""); r.status != 200 {
		t.Fatalf("status %d %q", r.status, r.body)
	}
}

func eventually(t *testing.T, what string, f func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !f() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
