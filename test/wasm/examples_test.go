package wasmtest

import (
	"encoding/json"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/harness"
	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

var authorizers = []struct {
	name  string
	build func(t wasmbuild.TB) []byte
}{
	{"c", func(t wasmbuild.TB) []byte { return wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c") }},
	{"go", func(t wasmbuild.TB) []byte { return wasmbuild.Go(t, "examples/plugins/authorizer-go") }},
	{"rust", func(t wasmbuild.TB) []byte { return wasmbuild.Rust(t, "examples/plugins/authorizer-rust") }},
	{"assemblyscript", func(t wasmbuild.TB) []byte { return wasmbuild.AssemblyScript(t, "examples/plugins/authorizer-as") }},
}

func TestAuthorizerExamples(t *testing.T) {
	for _, a := range authorizers {
		t.Run(a.name, func(t *testing.T) {
			e := newEnv(t)
			digest := e.src.Add(a.build(t))
			ed := e.edge(spec(wasm.TypeAuthorizer, map[string]any{
				"module":          digest,
				"config":          "s3cr3t=alice, t0ken=bob",
				"identitySources": []string{"header.Authorization"},
				"cacheTTL":        "60s",
				"cacheMaxEntries": 100,
				"instances":       2,
			}))

			r := e.do("GET", ed.URL+"/pets", nil, "")
			if r.status != 401 || !strings.Contains(r.body, `"message"`) || !strings.HasPrefix(r.header.Get("Content-Type"), "application/json") {
				t.Fatalf("no token: %d %q %v", r.status, r.body, r.header)
			}
			r = e.do("GET", ed.URL+"/pets", map[string]string{"Authorization": "Bearer wrong"}, "")
			if r.status != 403 {
				t.Fatalf("bad token: %d %q", r.status, r.body)
			}
			if n := e.backend.Count(); n != 0 {
				t.Fatalf("backend saw %d requests before any was allowed", n)
			}
			for i := 0; i < 3; i++ { // the second and third come from the decision cache
				r = e.do("GET", ed.URL+"/pets?x=1", map[string]string{"Authorization": "Bearer s3cr3t", "X-Portico-User": "mallory"}, "")
				if r.status != 200 {
					t.Fatalf("good token: %d %q", r.status, r.body)
				}
				last := e.backend.Last()
				if got := last.Header.Values("X-Portico-User"); len(got) != 1 || got[0] != "alice" {
					t.Fatalf("backend got x-portico-user %q, want exactly [alice]", got)
				}
				if got := last.Header.Get("X-Test-Principal"); got != "alice" {
					t.Fatalf("principal %q, want alice", got)
				}
			}
			r = e.do("GET", ed.URL+"/pets", map[string]string{"Authorization": "Bearer t0ken"}, "")
			if r.status != 200 || e.backend.Last().Header.Get("X-Portico-User") != "bob" {
				t.Fatalf("second user: %d %v", r.status, e.backend.Last().Header)
			}
		})
	}
}

func TestAuthorizerCacheSkipsPlugin(t *testing.T) {
	e := newEnv(t)
	digest := e.src.Add(wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c"))
	ed := e.edge(spec(wasm.TypeAuthorizer, map[string]any{
		"module": digest, "config": "s3cr3t=alice",
		"identitySources": []string{"header.Authorization"}, "cacheTTL": "60s", "cacheMaxEntries": 2,
	}))
	calls := func() uint64 { return pluginCalls(t, e) }
	e.do("GET", ed.URL+"/", map[string]string{"Authorization": "Bearer s3cr3t"}, "")
	before := calls()
	for i := 0; i < 5; i++ {
		if r := e.do("GET", ed.URL+"/", map[string]string{"Authorization": "Bearer s3cr3t"}, ""); r.status != 200 {
			t.Fatalf("status %d", r.status)
		}
	}
	if after := calls(); after != before {
		t.Fatalf("cached decisions still called the plugin: %d calls before, %d after", before, after)
	}
	// Denials are cached too, and the cap evicts old entries.
	for _, tok := range []string{"a", "b", "c"} {
		if r := e.do("GET", ed.URL+"/", map[string]string{"Authorization": "Bearer " + tok}, ""); r.status != 403 {
			t.Fatalf("status %d", r.status)
		}
	}
	if after := calls(); after == before {
		t.Fatal("new identities did not reach the plugin")
	}
}

// pluginCalls reads the portico_wasm_calls_total of the only plugin.
func pluginCalls(t *testing.T, e *env) uint64 {
	t.Helper()
	return e.host.Stats().Calls
}

func TestTransformExample(t *testing.T) {
	e := newEnv(t)
	digest := e.src.Add(wasmbuild.Go(t, "examples/plugins/transform-go"))
	e.backend.Respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Internal", "secret")
		w.WriteHeader(201)
		_, _ = w.Write([]byte(`{"user_name":"bob","id":7}`))
	}
	ed := e.edge(spec(wasm.TypeTransform, map[string]any{
		"module": digest,
		"config": map[string]any{
			"requestRename":         map[string]string{"userName": "user_name"},
			"responseRename":        map[string]string{"user_name": "userName"},
			"requestHeaders":        map[string]string{"x-transformed": "request"},
			"responseHeaders":       map[string]string{"x-transformed": "response"},
			"removeResponseHeaders": []string{"x-internal"},
		},
		"instances": 1,
	}))
	r := e.do("POST", ed.URL+"/users", map[string]string{"Content-Type": "application/json"}, `{"userName":"bob"}`)
	if r.status != 201 {
		t.Fatalf("status %d %q", r.status, r.body)
	}
	last := e.backend.Last()
	var got map[string]any
	if err := json.Unmarshal(last.Body, &got); err != nil || got["user_name"] != "bob" || got["userName"] != nil {
		t.Fatalf("backend got body %q", last.Body)
	}
	if last.Header.Get("X-Transformed") != "request" {
		t.Fatalf("backend headers %v", last.Header)
	}
	var out map[string]any
	if err := json.Unmarshal([]byte(r.body), &out); err != nil || out["userName"] != "bob" || out["id"] != float64(7) || out["user_name"] != nil {
		t.Fatalf("client got body %q", r.body)
	}
	if r.header.Get("X-Transformed") != "response" || r.header.Get("X-Internal") != "" {
		t.Fatalf("client headers %v", r.header)
	}
}

func introspectionServer(t *testing.T) (*harness.Backend, *atomic.Int64) {
	t.Helper()
	var calls atomic.Int64
	b, err := harness.NewBackend(false)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	b.Respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		calls.Add(1)
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path != "/introspect" || r.Method != "POST":
			w.WriteHeader(404)
		case string(body) == "token=good":
			_, _ = w.Write([]byte(`{"active":true,"sub":"carol"}`))
		default:
			_, _ = w.Write([]byte(`{"active":false}`))
		}
	}
	return b, &calls
}

func TestIntrospectionExample(t *testing.T) {
	e := newEnv(t)
	is, calls := introspectionServer(t)
	digest := e.src.Add(wasmbuild.Go(t, "examples/plugins/introspect-go"))
	ed := e.edge(spec(wasm.TypeAuthorizer, map[string]any{
		"module":    digest,
		"config":    map[string]string{"upstream": "introspect", "path": "/introspect"},
		"upstreams": map[string]any{"introspect": map[string]string{"url": is.URL, "timeout": "1s"}},
		"instances": 1,
	}))
	if r := e.do("GET", ed.URL+"/", nil, ""); r.status != 401 {
		t.Fatalf("no token: %d %q", r.status, r.body)
	}
	if r := e.do("GET", ed.URL+"/", map[string]string{"Authorization": "Bearer bad"}, ""); r.status != 403 {
		t.Fatalf("bad token: %d %q", r.status, r.body)
	}
	r := e.do("GET", ed.URL+"/", map[string]string{"Authorization": "Bearer good"}, "")
	if r.status != 200 || e.backend.Last().Header.Get("X-Portico-User") != "carol" || e.backend.Last().Header.Get("X-Test-Principal") != "carol" {
		t.Fatalf("good token: %d %q %v", r.status, r.body, e.backend.Last())
	}
	if n := calls.Load(); n != 2 {
		t.Fatalf("introspection server got %d calls, want 2", n)
	}
}

func TestHTTPCallOutsideAllowList(t *testing.T) {
	e := newEnv(t)
	is, calls := introspectionServer(t)
	digest := e.src.Add(wasmbuild.Go(t, "examples/plugins/introspect-go"))
	// The plugin asks for "elsewhere"; only "introspect" is allowed.
	ed := e.edge(spec(wasm.TypeAuthorizer, map[string]any{
		"module":    digest,
		"config":    map[string]string{"upstream": "elsewhere", "path": "/introspect"},
		"upstreams": map[string]any{"introspect": map[string]string{"url": is.URL}},
	}))
	r := e.do("GET", ed.URL+"/", map[string]string{"Authorization": "Bearer good"}, "")
	if r.status != 503 {
		t.Fatalf("status %d %q, want the plugin's 503", r.status, r.body)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("a plugin reached an upstream outside its allow-list (%d calls)", n)
	}
	if e.backend.Count() != 0 {
		t.Fatal("request reached the backend")
	}
}

// TestPausedRequestReleasesInstance: while one request waits (paused) for its
// introspection call, the plugin's only instance serves other requests.
func TestPausedRequestReleasesInstance(t *testing.T) {
	e := newEnv(t)
	release := make(chan struct{})
	is, err := harness.NewBackend(false)
	if err != nil {
		t.Fatal(err)
	}
	defer is.Close()
	is.Respond = func(w http.ResponseWriter, r *http.Request, body []byte) {
		<-release
		_, _ = w.Write([]byte(`{"active":true,"sub":"dave"}`))
	}
	ed := e.edge(spec(wasm.TypeAuthorizer, map[string]any{
		"module":    e.src.Add(wasmbuild.Go(t, "examples/plugins/introspect-go")),
		"config":    map[string]string{"upstream": "introspect", "path": "/introspect"},
		"upstreams": map[string]any{"introspect": map[string]string{"url": is.URL, "timeout": "5s"}},
		"instances": 1,
	}))
	slow := make(chan resp, 1)
	go func() { slow <- e.do("GET", ed.URL+"/", map[string]string{"Authorization": "Bearer slow"}, "") }()
	eventually(t, "the first request to pause", func() bool { return is.Count() == 1 })
	for i := 0; i < 5; i++ {
		if r := e.do("GET", ed.URL+"/", nil, ""); r.status != 401 {
			t.Fatalf("request during the pause: %d", r.status)
		}
	}
	select {
	case r := <-slow:
		t.Fatalf("paused request finished early: %d", r.status)
	default:
	}
	close(release)
	if r := <-slow; r.status != 200 || e.backend.Last().Header.Get("X-Portico-User") != "dave" {
		t.Fatalf("paused request: %d %q", r.status, r.body)
	}
}
