package proxywasm

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/portico-edge/portico/runtime"
	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

func newEngine(t testing.TB) *runtime.Engine {
	t.Helper()
	e, err := runtime.NewEngine(context.Background(), runtime.Config{DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = e.Close(context.Background()) })
	return e
}

// newCAuthorizer admits the C example authorizer (config "s3cr3t=alice")
// with one instance; it is closed when tb ends.
func newCAuthorizer(tb testing.TB) *Plugin {
	tb.Helper()
	mod := wasmbuild.C(tb, "examples/plugins/authorizer-c/authorizer.c")
	p, err := NewPlugin(context.Background(), newEngine(tb), Config{Name: "authz", Module: mod, PluginConfig: []byte("s3cr3t=alice"), Instances: 1})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { closePlugin(p) })
	return p
}

func requestMap(r *http.Request) *HeaderMap {
	return &HeaderMap{Header: r.Header, Pseudo: []Pair{
		{":method", r.Method}, {":path", r.URL.RequestURI()}, {":authority", r.Host}, {":scheme", "http"},
	}}
}

// authorizers builds the bearer-token authorizer in every language.
var authorizers = []struct {
	name  string
	build func(t *testing.T) []byte
}{
	{"c", func(t *testing.T) []byte { return wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c") }},
	{"go", func(t *testing.T) []byte { return wasmbuild.Go(t, "examples/plugins/authorizer-go") }},
	{"rust", func(t *testing.T) []byte { return wasmbuild.Rust(t, "examples/plugins/authorizer-rust") }},
	{"assemblyscript", func(t *testing.T) []byte { return wasmbuild.AssemblyScript(t, "examples/plugins/authorizer-as") }},
}

func TestAuthorizers(t *testing.T) {
	for _, a := range authorizers {
		t.Run(a.name, func(t *testing.T) { testAuthorizer(t, a.build(t)) })
	}
}

func testAuthorizer(t *testing.T, mod []byte) {
	e := newEngine(t)
	ctx := context.Background()
	p, err := NewPlugin(ctx, e, Config{Name: "authz", Module: mod, PluginConfig: []byte("s3cr3t=alice, other=bob"), Instances: 2})
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close(ctx)

	for _, tc := range []struct {
		auth    string
		outcome Outcome
		status  int
		user    string
	}{
		{"", Respond, 401, ""},
		{"Bearer nope", Respond, 403, ""},
		{"Bearer s3cr3t", Continue, 0, "alice"},
		{"Bearer other", Continue, 0, "bob"},
	} {
		r, _ := http.NewRequest("GET", "http://example.test/pets?x=1", nil)
		if tc.auth != "" {
			r.Header.Set("Authorization", tc.auth)
		}
		s, err := p.NewStream(ctx, &StreamInfo{Request: r})
		if err != nil {
			t.Fatal(err)
		}
		h := requestMap(r)
		o := s.RequestHeaders(h, true)
		if o != tc.outcome {
			t.Fatalf("%q: outcome %v, want %v (err %v)", tc.auth, o, tc.outcome, s.Err())
		}
		if o == Respond && s.Local().Status != tc.status {
			t.Fatalf("%q: status %d, want %d", tc.auth, s.Local().Status, tc.status)
		}
		if tc.user != "" {
			if got := r.Header.Get("X-Portico-User"); got != tc.user {
				t.Fatalf("%q: x-portico-user %q, want %q", tc.auth, got, tc.user)
			}
			if v, _ := s.Property("portico.principal"); v != tc.user {
				t.Fatalf("%q: principal %q", tc.auth, v)
			}
		}
		s.Close()
	}
	if n := p.Live(); n != 1 {
		t.Fatalf("live instances %d, want 1", n)
	}
	snap := p.Metrics().Snapshot()
	if snap.Traps != 0 || snap.Timeouts != 0 {
		t.Fatalf("unexpected failures: %+v", snap)
	}
}

func TestRejectsBadConfig(t *testing.T) {
	mod := wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c")
	e := newEngine(t)
	_, err := NewPlugin(context.Background(), e, Config{Name: "authz", Module: mod, PluginConfig: []byte("garbage")})
	if err == nil {
		t.Fatal("plugin with a bad config was admitted")
	}
	t.Log(err)
	_ = time.Second
}

// TestHostCallsRefusedAfterClose: wazero can enter a host function of a
// module that has been closed before it reports the closure; the host must
// refuse to act for it.
func TestHostCallsRefusedAfterClose(t *testing.T) {
	ctx := context.Background()
	p := newCAuthorizer(t)
	r, _ := http.NewRequest("GET", "http://example.test/", nil)
	s, err := p.NewStream(ctx, &StreamInfo{Request: r})
	if err != nil {
		t.Fatal(err)
	}
	in := s.in
	in.mu.Lock()
	fn := in.fn.reqHeaders
	in.effective = s
	s.req = requestMap(r)
	// Close the module underneath the instance, then call into it the way a
	// stale reference would.
	_ = in.mod.Close(ctx)
	before := p.Refused()
	_, callErr := fn.Call(in.guard, uint64(s.id), 0, 1)
	in.effective = nil
	in.mu.Unlock()
	refused := p.Refused() - before
	t.Logf("call into closed module: err=%v, host calls refused=%d", callErr, refused)
	if s.local != nil {
		t.Fatal("a closed module sent a local response through the host")
	}
	if callErr == nil && refused == 0 {
		t.Fatal("call into a closed module neither failed nor was refused by the host")
	}
	// The stream fails instead of running on the dead instance.
	if o := s.RequestHeaders(requestMap(r), true); o != Fail {
		t.Fatalf("outcome on a closed instance: %v", o)
	}
	s.Close()
	// The pool replaces it.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s2, err := p.NewStream(ctx, &StreamInfo{Request: r})
		if err == nil {
			o := s2.RequestHeaders(requestMap(r), true)
			s2.Close()
			if o != Respond {
				t.Fatalf("replacement instance: outcome %v", o)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement instance: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// procExit exits through WASI in its request-headers callback when the
// request has a body (end_of_stream false), and lets it through otherwise.
const procExit = `(module
  (import "wasi_snapshot_preview1" "proc_exit" (func $exit (param i32)))
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_memory_allocate") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (local.get 2)) (then (call $exit (i32.const 3))))
    (i32.const 0)))`

// A guest that exits (WASI proc_exit) closes its own module in the middle
// of a callback: the request fails, and the instance is replaced, never
// called again.
func TestProcExitDiscardsInstance(t *testing.T) {
	mod := wasmbuild.WATText(t, "proc-exit", procExit)
	ctx := context.Background()
	p, err := NewPlugin(ctx, newEngine(t), Config{Name: "exit", Module: mod, Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer closePlugin(p)
	r, _ := http.NewRequest("GET", "http://example.test/", nil)
	s, err := p.NewStream(ctx, &StreamInfo{Request: r})
	if err != nil {
		t.Fatal(err)
	}
	in := s.in
	if o := s.RequestHeaders(requestMap(r), false); o != Fail {
		t.Fatalf("outcome of a callback that exited: %v", o)
	}
	t.Logf("error: %v", s.Err())
	s.Close()
	if !in.dead() {
		t.Fatal("the instance whose module exited is not marked dead")
	}
	deadline := time.Now().Add(5 * time.Second)
	for {
		s2, err := p.NewStream(ctx, &StreamInfo{Request: r})
		if err == nil {
			if s2.in == in {
				t.Fatal("the exited instance served another request")
			}
			o := s2.RequestHeaders(requestMap(r), true)
			s2.Close()
			if o != Continue {
				t.Fatalf("replacement instance: outcome %v", o)
			}
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no replacement instance: %v", err)
		}
		time.Sleep(10 * time.Millisecond)
	}
	if snap := p.Metrics().Snapshot(); snap.Traps != 1 {
		t.Fatalf("traps %d, want 1 (the exit)", snap.Traps)
	}
}
