package e2e

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// The WASM plugins run as users run them: modules built from source
// (test/wasm/wasmbuild), uploaded with `portico ctl plugins upload`,
// attached with `portico ctl plugins attach`, admitted by the origin,
// fetched and cached by a real edge, and exercised through it.

const pluginsHost = "wasm.example.test"

// pluginsDoc is the API the plugins guard: every path goes to the backend.
const pluginsDoc = `openapi: 3.0.3
info: {title: Plugins, version: "1"}
x-portico-integration:
  type: http_proxy
  uri: http://${stageVariables.backend}
paths:
  /hello:
    get: {operationId: hello, responses: {"200": {description: ok}}}
  /users:
    post: {operationId: addUser, responses: {"201": {description: created}}}
`

// pluginBackend records what reaches it. /users answers with a JSON body
// and an internal header for the transform to rewrite; anything else
// echoes the request.
type pluginBackend struct {
	addr  string
	mu    sync.Mutex
	count int
	last  *http.Request
	body  []byte
}

func newPluginBackend(t *testing.T) *pluginBackend {
	b := &pluginBackend{}
	b.addr = backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.count++
		b.last, b.body = r, body
		b.mu.Unlock()
		w.Header().Set("Content-Type", "application/json")
		if r.URL.Path == "/users" {
			var in struct {
				Name string `json:"user_name"`
			}
			_ = json.Unmarshal(body, &in)
			w.Header().Set("X-Internal", "secret")
			w.WriteHeader(http.StatusCreated)
			_ = json.NewEncoder(w).Encode(map[string]any{"user_name": in.Name, "id": 7})
			return
		}
		_ = json.NewEncoder(w).Encode(map[string]any{"path": r.URL.Path})
	}))
	return b
}

func (b *pluginBackend) seen() (int, http.Header, []byte) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.last == nil {
		return b.count, nil, nil
	}
	return b.count, b.last.Header.Clone(), b.body
}

type wasmEnv struct {
	o       *origin
	e       *edgeNode
	edgeDir string
	backend *pluginBackend
	work    string
}

// newWASMEnv starts an origin and an edge, imports the plugins API and
// creates its domain. The edge shares the origin's compilation cache
// (both compile the same modules for the same machine; the cache is keyed
// by content), which saves compiling each Go module twice; it still
// fetches every module from the origin.
func newWASMEnv(t *testing.T) *wasmEnv {
	t.Helper()
	env := &wasmEnv{backend: newPluginBackend(t), work: t.TempDir()}
	env.o = startOrigin(t, "")
	env.o.mustAdmin(t, "POST", "/v1/apis?name=plugins", []byte(pluginsDoc), nil)
	env.o.mustAdmin(t, "PUT", "/v1/domains/"+pluginsHost, map[string]any{}, nil)
	env.edgeDir = t.TempDir()
	if err := os.MkdirAll(filepath.Join(env.o.DataDir, "wasm-cache"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.Symlink(filepath.Join(env.o.DataDir, "wasm-cache"), filepath.Join(env.edgeDir, "wasm-cache")); err != nil {
		t.Fatal(err)
	}
	env.e = startEdge(t, env.o, env.edgeDir)
	return env
}

// ctl runs `portico ctl` against the origin.
func (env *wasmEnv) ctl(args ...string) (string, error) {
	cmd := exec.Command(binary, append([]string{"ctl", "--admin-url", env.o.AdminURL, "--token", env.o.AdminToken}, args...)...)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	err := cmd.Run()
	return out.String(), err
}

func (env *wasmEnv) mustCtl(t *testing.T, args ...string) string {
	t.Helper()
	out, err := env.ctl(args...)
	if err != nil {
		t.Fatalf("portico ctl %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

var reUploaded = regexp.MustCompile(`(?:Uploaded module|Module) (sha256:[0-9a-f]{64}) `)

// upload writes a module to a file and uploads it with ctl.
func (env *wasmEnv) upload(t *testing.T, name string, mod []byte) string {
	t.Helper()
	file := filepath.Join(env.work, name+".wasm")
	if err := os.WriteFile(file, mod, 0o600); err != nil {
		t.Fatal(err)
	}
	out := env.mustCtl(t, "plugins", "upload", file)
	m := reUploaded.FindStringSubmatch(out)
	if m == nil {
		t.Fatalf("plugins upload printed no digest:\n%s", out)
	}
	return m[1]
}

// stage creates a deployed stage mapped at /NAME, without policies.
func (env *wasmEnv) stage(t *testing.T, name string) {
	t.Helper()
	env.o.mustAdmin(t, "PUT", "/v1/apis/plugins/stages/"+name, map[string]any{"variables": map[string]string{"backend": env.backend.addr}}, nil)
	env.o.mustAdmin(t, "POST", "/v1/apis/plugins/stages/"+name+"/deployments", map[string]string{}, nil)
	env.o.mustAdmin(t, "PUT", "/v1/domains/"+pluginsHost+"/mappings/"+name, map[string]string{"api": "plugins", "stage": name}, nil)
}

// attach attaches a plugin to a stage with ctl; stage policies take
// effect without a deploy.
func (env *wasmEnv) attach(t *testing.T, stage, typ, digest string, cfg map[string]any) {
	t.Helper()
	b, _ := json.Marshal(cfg)
	out := env.mustCtl(t, "plugins", "attach", "--api", "plugins", "--stage", stage, "--type", typ, "--module", digest, "--config", string(b))
	if !strings.Contains(out, "on stage "+stage+" of API plugins") {
		t.Fatalf("plugins attach:\n%s", out)
	}
}

func (env *wasmEnv) get(t *testing.T, path string, hdr http.Header) *response {
	t.Helper()
	return env.e.do(t, "GET", pluginsHost, path, nil, hdr)
}

// waitStatus waits (bounded) until the edge answers path with status: the
// edge has applied the snapshot with the plugin.
func (env *wasmEnv) waitStatus(t *testing.T, path string, hdr http.Header, status int) {
	t.Helper()
	eventually(t, 60*time.Second, func() error {
		if r := env.get(t, path, hdr); r.StatusCode != status {
			return fmt.Errorf("GET %s: %d %s, waiting for %d", path, r.StatusCode, r.Body, status)
		}
		return nil
	})
}

// try is get for goroutines other than the test's: it reports errors
// instead of failing the test.
func (env *wasmEnv) try(path string) (int, string, error) {
	req, err := http.NewRequest("GET", env.e.url(path), nil)
	if err != nil {
		return 0, "", err
	}
	req.Host = pluginsHost
	res, err := env.e.client.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.StatusCode, string(b), err
}

func bearer(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

var exampleAuthorizers = []struct {
	name  string
	build func(t wasmbuild.TB) []byte
}{
	{"c", func(t wasmbuild.TB) []byte { return wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c") }},
	{"go", func(t wasmbuild.TB) []byte { return wasmbuild.Go(t, "examples/plugins/authorizer-go") }},
	{"rust", func(t wasmbuild.TB) []byte { return wasmbuild.Rust(t, "examples/plugins/authorizer-rust") }},
	{"assemblyscript", func(t wasmbuild.TB) []byte { return wasmbuild.AssemblyScript(t, "examples/plugins/authorizer-as") }},
}

func TestWASMPluginsThroughTheEdge(t *testing.T) {
	env := newWASMEnv(t)
	env.stage(t, "none")
	env.waitStatus(t, "/none/hello", nil, 200)

	for _, a := range exampleAuthorizers {
		t.Run("authorizer "+a.name, func(t *testing.T) {
			digest := env.upload(t, "authorizer-"+a.name, a.build(t))
			env.stage(t, a.name)
			env.attach(t, a.name, "wasm-authorizer", digest, map[string]any{"config": "s3cr3t=alice, t0ken=bob", "instances": 2})
			path := "/" + a.name + "/hello"
			env.waitStatus(t, path, nil, 401)
			before, _, _ := env.backend.seen()

			r := env.get(t, path, nil)
			if r.StatusCode != 401 || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") || r.message(t) != "Unauthorized" {
				t.Errorf("no token: %d %s %q", r.StatusCode, r.Header.Get("Content-Type"), r.Body)
			}
			if r := env.get(t, path, bearer("wrong")); r.StatusCode != 403 || r.message(t) != "Forbidden" {
				t.Errorf("unknown token: %d %q", r.StatusCode, r.Body)
			}
			if n, _, _ := env.backend.seen(); n != before {
				t.Fatalf("the backend saw %d refused requests", n-before)
			}
			hdr := bearer("s3cr3t")
			hdr.Set("X-Portico-User", "mallory")
			r = env.get(t, path, hdr)
			if r.StatusCode != 200 {
				t.Fatalf("good token: %d %s", r.StatusCode, r.Body)
			}
			_, got, _ := env.backend.seen()
			if v := got.Values("X-Portico-User"); len(v) != 1 || v[0] != "alice" {
				t.Errorf("the backend got X-Portico-User %q, want exactly [alice] (the plugin's, never the client's)", v)
			}
			if r := env.get(t, path, bearer("t0ken")); r.StatusCode != 200 {
				t.Errorf("second user: %d %s", r.StatusCode, r.Body)
			}
			if _, got, _ := env.backend.seen(); got.Get("X-Portico-User") != "bob" {
				t.Errorf("second user: backend got %v", got)
			}
			// A stage without the plugin is not affected.
			if r := env.get(t, "/none/hello", nil); r.StatusCode != 200 {
				t.Errorf("stage without a plugin: %d %s", r.StatusCode, r.Body)
			}
			// The edge keeps the module it fetched, by digest.
			if _, err := os.Stat(filepath.Join(env.edgeDir, "modules", strings.TrimPrefix(digest, "sha256:")+".wasm")); err != nil {
				t.Errorf("the edge did not keep the module: %v", err)
			}
		})
	}

	t.Run("transform", func(t *testing.T) {
		digest := env.upload(t, "transform-go", wasmbuild.Go(t, "examples/plugins/transform-go"))
		env.stage(t, "transform")
		env.attach(t, "transform", "wasm-transform", digest, map[string]any{
			"config": map[string]any{
				"requestRename":         map[string]string{"userName": "user_name"},
				"responseRename":        map[string]string{"user_name": "userName"},
				"requestHeaders":        map[string]string{"x-transformed": "request"},
				"responseHeaders":       map[string]string{"x-transformed": "response"},
				"removeResponseHeaders": []string{"x-internal"},
			},
			"instances": 1,
		})
		var r *response
		eventually(t, 60*time.Second, func() error {
			r = env.e.do(t, "POST", pluginsHost, "/transform/users", strings.NewReader(`{"userName":"bob"}`), http.Header{"Content-Type": {"application/json"}})
			if r.Header.Get("X-Transformed") != "response" {
				return fmt.Errorf("not transformed yet: %d %v %s", r.StatusCode, r.Header, r.Body)
			}
			return nil
		})
		if r.StatusCode != 201 {
			t.Fatalf("status %d %s", r.StatusCode, r.Body)
		}
		var out map[string]any
		r.json(t, &out)
		if out["userName"] != "bob" || out["id"] != float64(7) || out["user_name"] != nil {
			t.Errorf("client got %s", r.Body)
		}
		if r.Header.Get("X-Internal") != "" {
			t.Errorf("the transform did not remove X-Internal: %v", r.Header)
		}
		_, got, body := env.backend.seen()
		var in map[string]any
		if err := json.Unmarshal(body, &in); err != nil || in["user_name"] != "bob" || in["userName"] != nil {
			t.Errorf("backend got body %q", body)
		}
		if got.Get("X-Transformed") != "request" {
			t.Errorf("backend got headers %v", got)
		}
	})

	t.Run("introspection through an allow-listed upstream, decisions cached", func(t *testing.T) {
		var calls atomic.Int64
		is := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			calls.Add(1)
			body, _ := io.ReadAll(r.Body)
			w.Header().Set("Content-Type", "application/json")
			switch {
			case r.URL.Path != "/introspect" || r.Method != "POST":
				w.WriteHeader(404)
			case string(body) == "token=good":
				_, _ = w.Write([]byte(`{"active":true,"sub":"carol"}`))
			default:
				_, _ = w.Write([]byte(`{"active":false}`))
			}
		}))
		digest := env.upload(t, "introspect-go", wasmbuild.Go(t, "examples/plugins/introspect-go"))
		env.stage(t, "introspect")
		env.attach(t, "introspect", "wasm-authorizer", digest, map[string]any{
			"config":          map[string]string{"upstream": "introspect", "path": "/introspect"},
			"upstreams":       map[string]any{"introspect": map[string]string{"url": "http://" + is, "timeout": "1s"}},
			"identitySources": []string{"header.Authorization"},
			"cacheTTL":        "60s",
			"instances":       1,
		})
		env.waitStatus(t, "/introspect/hello", nil, 401)
		calls.Store(0)
		for i := 0; i < 3; i++ {
			if r := env.get(t, "/introspect/hello", bearer("bad")); r.StatusCode != 403 {
				t.Fatalf("bad token: %d %s", r.StatusCode, r.Body)
			}
		}
		for i := 0; i < 4; i++ {
			r := env.get(t, "/introspect/hello", bearer("good"))
			if r.StatusCode != 200 {
				t.Fatalf("good token: %d %s", r.StatusCode, r.Body)
			}
			if _, got, _ := env.backend.seen(); got.Get("X-Portico-User") != "carol" {
				t.Fatalf("backend got %v", got)
			}
		}
		// One call per token: the others were answered from the cache.
		if n := calls.Load(); n != 2 {
			t.Errorf("the introspection server got %d calls for 7 requests with 2 tokens, want 2", n)
		}
	})

	t.Run("hostile module", func(t *testing.T) {
		digest := env.upload(t, "hostile-loop", wasmbuild.WAT(t, "test/wasm/hostile/loop.wat"))
		env.stage(t, "hostile")
		env.attach(t, "hostile", "wasm-authorizer", digest, map[string]any{
			"instances": 2, "failurePolicy": "closed", "limits": map[string]any{"callbackTimeout": "50ms"},
		})
		loop := http.Header{"X-Loop": {"1"}}
		env.waitStatus(t, "/hostile/hello", loop, 500)

		// Other requests, to the same plugin and elsewhere, keep being
		// served while looping requests are stopped.
		stop := make(chan struct{})
		var wg sync.WaitGroup
		var others, failed atomic.Int64
		var firstFailure atomic.Value
		for _, p := range []string{"/hostile/hello", "/none/hello"} {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for {
					select {
					case <-stop:
						return
					default:
					}
					status, body, err := env.try(p)
					others.Add(1)
					if err != nil || status != 200 {
						failed.Add(1)
						firstFailure.CompareAndSwap(nil, fmt.Sprintf("%s: %d %s %v", p, status, body, err))
					}
				}
			}()
		}
		for i := 0; i < 3; i++ {
			start := time.Now()
			r := env.get(t, "/hostile/hello", loop)
			took := time.Since(start)
			if r.StatusCode != 500 || r.message(t) != "Authorizer error" {
				t.Errorf("looping request: %d %s", r.StatusCode, r.Body)
			}
			// A liveness bound, not a speed claim: the 50 ms deadline
			// stopped the loop, the request did not hang.
			if took > 10*time.Second {
				t.Errorf("looping request answered after %s", took)
			}
			time.Sleep(200 * time.Millisecond)
		}
		close(stop)
		wg.Wait()
		if failed.Load() > 0 {
			t.Errorf("%d of %d other requests failed while a plugin looped; first: %v", failed.Load(), others.Load(), firstFailure.Load())
		}
		if others.Load() < 2 {
			t.Errorf("only %d other requests were made", others.Load())
		}
	})

	guarded := false
	t.Run("bad modules are refused and the edge keeps serving", func(t *testing.T) {
		c := exampleAuthorizers[0]
		good := env.upload(t, "authorizer-c", c.build(t))
		env.stage(t, "guarded")
		env.attach(t, "guarded", "wasm-authorizer", good, map[string]any{"config": "s3cr3t=alice"})
		env.waitStatus(t, "/guarded/hello", nil, 401)

		// Refused at upload, with the reason.
		text := filepath.Join(env.work, "plugin.wat")
		if err := os.WriteFile(text, []byte("(module)"), 0o600); err != nil {
			t.Fatal(err)
		}
		for _, tc := range []struct{ file, want string }{
			{text, "400 Bad Request: the module cannot be used as a plugin: not a WebAssembly binary module"},
			{writeModule(t, env.work, "notproxy", wasmbuild.WATText(t, "e2e-notproxy", `(module (memory (export "memory") 1))`)), "400 Bad Request: the module cannot be used as a plugin: module exports no proxy_abi_version_0_2_1"},
		} {
			out, err := env.ctl("plugins", "upload", tc.file)
			if err == nil || !strings.Contains(out, tc.want) {
				t.Errorf("upload %s: %v\n%s", filepath.Base(tc.file), err, out)
			}
		}

		// Refused at deploy (here a stage change, admitted the same way),
		// with the reason.
		hugemem := env.upload(t, "hostile-hugemem", wasmbuild.WAT(t, "test/wasm/hostile/hugemem.wat"))
		trapStart := env.upload(t, "trap-start", wasmbuild.WATText(t, "e2e-trap-start", `(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "_initialize") unreachable))`))
		missing := "sha256:" + strings.Repeat("0", 64)
		for _, tc := range []struct {
			digest string
			cfg    string
			want   string
		}{
			{good, `{}`, "proxy_on_configure: the plugin refused its configuration (returned false); the plugin logged: authorizer-c: config must be"},
			{hugemem, `{}`, "section memory: min 60000 pages (3 Gi) over limit of 512 pages"},
			{trapStart, `{}`, "plugin start-up failed in starting the module (_initialize)"},
			{missing, `{}`, "no module " + missing + " is uploaded to this origin"},
			{good, `{"config": "a=b", "limits": {"callbackTimeout": "1h"}}`, "limits.callbackTimeout 1h0m0s must be between 1ms and 10s"},
		} {
			out, err := env.ctl("plugins", "attach", "--api", "plugins", "--stage", "guarded", "--type", "wasm-authorizer", "--replace", "--module", tc.digest, "--config", tc.cfg)
			if err == nil || !strings.Contains(out, `400 Bad Request: API "plugins" cannot be deployed to stage "guarded"`) || !strings.Contains(out, tc.want) {
				t.Errorf("attaching %s with %s: %v\n%s", tc.digest, tc.cfg, err, out)
			}
		}
		// An API-level policy naming a missing module: the deploy is refused.
		env.mustCtl(t, "plugins", "attach", "--api", "plugins", "--type", "wasm-authorizer", "--module", missing)
		out, err := env.ctl("deploy", "plugins", "guarded")
		if err == nil || !strings.Contains(out, "no module "+missing+" is uploaded to this origin") {
			t.Errorf("deploying with a missing module: %v\n%s", err, out)
		}
		env.mustCtl(t, "apis", "set-policies", "plugins", "-f", writeModule(t, env.work, "no-policies.json", []byte("[]")))

		// The edge still serves the last good state.
		if r := env.get(t, "/guarded/hello", nil); r.StatusCode != 401 {
			t.Errorf("no token after refused changes: %d %s", r.StatusCode, r.Body)
		}
		if r := env.get(t, "/guarded/hello", bearer("s3cr3t")); r.StatusCode != 200 {
			t.Errorf("good token after refused changes: %d %s", r.StatusCode, r.Body)
		}
		// The module in use cannot be deleted; an unused one can.
		if out, err := env.ctl("plugins", "delete", good); err == nil || !strings.Contains(out, "409 Conflict: module "+good+" is in use by") {
			t.Errorf("deleting a module in use: %v\n%s", err, out)
		}
		if out := env.mustCtl(t, "plugins", "delete", trapStart); !strings.Contains(out, "Deleted module") {
			t.Errorf("deleting an unused module:\n%s", out)
		}
		guarded = true
	})

	// Last: it stops the origin.
	t.Run("edge restarted with the origin down", func(t *testing.T) {
		if !guarded {
			t.Skip("needs the guarded stage of the previous test")
		}
		env.e.stop()
		env.o.stop()
		e := startEdge(t, env.o, env.edgeDir)
		eventually(t, 60*time.Second, func() error {
			if r := e.do(t, "GET", pluginsHost, "/guarded/hello", nil, nil); r.StatusCode != 401 {
				return fmt.Errorf("no token: %d %s", r.StatusCode, r.Body)
			}
			return nil
		})
		if r := e.do(t, "GET", pluginsHost, "/guarded/hello", nil, bearer("wrong")); r.StatusCode != 403 {
			t.Errorf("unknown token, origin down: %d %s", r.StatusCode, r.Body)
		}
		// Allowed, then the origin is unreachable.
		if r := e.do(t, "GET", pluginsHost, "/guarded/hello", nil, bearer("s3cr3t")); r.StatusCode != 502 && r.StatusCode != 503 {
			t.Errorf("good token, origin down: %d %s", r.StatusCode, r.Body)
		}
		if r := e.do(t, "GET", pluginsHost, "/hostile/hello", nil, http.Header{"X-Loop": {"1"}}); r.StatusCode != 500 {
			t.Errorf("hostile module from the cache: %d %s", r.StatusCode, r.Body)
		}
	})
}

func writeModule(t *testing.T, dir, name string, b []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if !strings.Contains(name, ".") {
		p += ".wasm"
	}
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}
