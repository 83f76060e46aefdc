package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// testBackend echoes what it receives, names itself, and has a slow path.
func testBackend(name string) http.Handler {
	mux := http.NewServeMux()
	echo := func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend", name)
		_ = json.NewEncoder(w).Encode(map[string]any{
			"backend": name, "method": r.Method, "path": r.URL.EscapedPath(), "query": r.URL.RawQuery,
			"host": r.Host, "headers": r.Header, "body": string(body),
		})
	}
	mux.HandleFunc("/", echo)
	mux.HandleFunc("/slow", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done():
		}
		echo(w, r)
	})
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		c.SetReadLimit(4 << 20)
		for {
			typ, msg, err := c.Read(context.Background())
			if err != nil {
				return
			}
			if string(msg) == "close-1001" {
				c.Close(websocket.StatusGoingAway, "backend going away")
				return
			}
			if err := c.Write(context.Background(), typ, msg); err != nil {
				return
			}
		}
	})
	return mux
}

// echoed is what testBackend answers.
type echoed struct {
	Backend, Method, Path, Query, Host, Body string
	Headers                                  http.Header
}

// deadAddr returns a loopback address nothing listens on.
func deadAddr(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}

type shopEnv struct {
	o        *origin
	e        *edgeNode
	backend  string
	backend2 string
	config   string
	docs     map[string]string
}

func shopConfig(t *testing.T, b1, b2, down string) string {
	cfg := readFile(t, "testdata/shop.yaml.tmpl")
	return strings.NewReplacer("BACKEND2", b2, "BACKEND", b1, "DOWN", down).Replace(cfg)
}

// newShop starts a backend pair, an origin and an edge, and applies the
// shop config.
func newShop(t *testing.T) *shopEnv {
	t.Helper()
	env := &shopEnv{backend: backend(t, testBackend("one")), backend2: backend(t, testBackend("two"))}
	env.o = startOrigin(t, "")
	env.config = shopConfig(t, env.backend, env.backend2, deadAddr(t))
	env.docs = map[string]string{"shop-v1.yaml": readFile(t, "testdata/shop-v1.yaml"), "shop-v2.yaml": readFile(t, "testdata/shop-v2.yaml")}
	if code, body := env.o.apply(t, env.config, env.docs); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	env.e = startEdge(t, env.o, "")
	eventually(t, 10*time.Second, func() error {
		if r := env.e.do(t, "GET", "api.example.test", "/v1/version", nil, nil); r.StatusCode != 200 {
			return fmt.Errorf("edge not serving yet: %d %s", r.StatusCode, r.Body)
		}
		return nil
	})
	return env
}

func TestRequestThroughEdgeAndOrigin(t *testing.T) {
	env := newShop(t)
	r := env.e.do(t, "GET", "api.example.test", "/v1/items?color=red&size=1", nil, http.Header{"X-Custom": {"kept"}})
	if r.StatusCode != 200 {
		t.Fatalf("status %d: %s", r.StatusCode, r.Body)
	}
	var got echoed
	r.json(t, &got)
	if got.Backend != "one" || got.Path != "/items" || got.Query != "color=red&size=1" || got.Method != "GET" {
		t.Errorf("backend saw %+v", got)
	}
	reqID := r.Header.Get("X-Request-Id")
	if reqID == "" || got.Headers.Get("X-Request-Id") != reqID {
		t.Errorf("request ID: response %q, backend %q", reqID, got.Headers.Get("X-Request-Id"))
	}
	if got.Headers.Get("X-Custom") != "kept" {
		t.Errorf("http_proxy dropped a client header: %v", got.Headers)
	}
	if got.Headers.Get("X-Forwarded-For") != "127.0.0.1" || got.Headers.Get("X-Forwarded-Host") != "api.example.test" || got.Headers.Get("X-Forwarded-Proto") != "https" {
		t.Errorf("forwarded headers: %v", got.Headers)
	}
	for k := range got.Headers {
		if strings.HasPrefix(strings.ToLower(k), "portico-") {
			t.Errorf("backend received internal header %s", k)
		}
	}
	// POST with a body.
	r = env.e.do(t, "POST", "api.example.test", "/v1/items", strings.NewReader(`{"name":"x"}`), http.Header{"Content-Type": {"application/json"}})
	r.json(t, &got)
	if got.Method != "POST" || got.Body != `{"name":"x"}` {
		t.Errorf("POST: backend saw %+v", got)
	}
	// Greedy path parameter keeps its slashes.
	r = env.e.do(t, "GET", "api.example.test", "/v1/files/a/b/c.txt", nil, nil)
	r.json(t, &got)
	if got.Path != "/files/a/b/c.txt" {
		t.Errorf("greedy path: backend saw %q", got.Path)
	}
}

func TestHTTPIntegrationMapsParameters(t *testing.T) {
	env := newShop(t)
	r := env.e.do(t, "GET", "api.example.test", "/v1/items/42?ignored=1", nil, http.Header{"X-Not-Mapped": {"x"}})
	var got echoed
	r.json(t, &got)
	if got.Path != "/items/42" {
		t.Errorf("path parameter mapping: %q", got.Path)
	}
	if got.Query != "source=portico" {
		t.Errorf("query mapping: %q (an http integration passes only mapped parameters)", got.Query)
	}
	if got.Headers.Get("X-Tenant") != "acme" {
		t.Errorf("header from stage variable: %v", got.Headers)
	}
	if got.Headers.Get("X-Not-Mapped") != "" {
		t.Errorf("an http integration passed an unmapped header: %v", got.Headers)
	}
}

func TestStageVariablesAndBasePaths(t *testing.T) {
	env := newShop(t)
	var got echoed
	env.e.do(t, "GET", "api.example.test", "/test/items/7", nil, nil).json(t, &got)
	if got.Backend != "two" || got.Headers.Get("X-Tenant") != "test-tenant" {
		t.Errorf("stage test should use its own variables: %+v", got)
	}
	var v2 struct{ API string }
	r := env.e.do(t, "GET", "api.example.test", "/v2/items", nil, nil)
	r.json(t, &v2)
	if v2.API != "v2" {
		t.Errorf("/v2 should reach API shop-v2: %s", r.Body)
	}
	env.e.do(t, "GET", "api.example.test", "/v1/items", nil, nil).json(t, &got)
	if got.Backend != "one" {
		t.Errorf("/v1 should reach API shop stage prod: %+v", got)
	}
	// The root mapping of another domain, served over plain HTTP.
	res, err := http.Get("http://" + env.e.HTTP + "/items")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 404 {
		t.Errorf("127.0.0.1 is not a configured domain: got %d", res.StatusCode)
	}
	req, _ := http.NewRequest("GET", "http://"+env.e.HTTP+"/items", nil)
	req.Host = "plain.example.test"
	res, err = http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 200 {
		t.Errorf("plain.example.test serves plain HTTP at its root: got %d", res.StatusCode)
	}
	// api.example.test redirects plain HTTP to HTTPS.
	req, _ = http.NewRequest("GET", "http://"+env.e.HTTP+"/v1/items?a=1", nil)
	req.Host = "api.example.test"
	res, err = (&http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 308 || !strings.HasPrefix(res.Header.Get("Location"), "https://api.example.test") || !strings.HasSuffix(res.Header.Get("Location"), "/v1/items?a=1") {
		t.Errorf("plain HTTP: %d Location %q", res.StatusCode, res.Header.Get("Location"))
	}
}

func TestErrorsAreJSONWithRequestID(t *testing.T) {
	env := newShop(t)
	cases := []struct {
		name, method, host, path string
		status                   int
		allow                    string
	}{
		{"no route", "GET", "api.example.test", "/v1/nothing", 404, ""},
		{"no mapping", "GET", "api.example.test", "/v9/items", 404, ""},
		{"unknown host", "GET", "unknown.example.test", "/v1/items", 404, ""},
		{"method not allowed", "DELETE", "api.example.test", "/v1/items", 405, "GET, HEAD, POST"},
		{"backend refused", "GET", "api.example.test", "/v1/down", 502, ""},
		{"backend timeout", "GET", "api.example.test", "/v1/slow", 504, ""},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			r := env.e.do(t, c.method, c.host, c.path, nil, nil)
			if r.StatusCode != c.status {
				t.Fatalf("status %d, want %d: %s", r.StatusCode, c.status, r.Body)
			}
			if ct := r.Header.Get("Content-Type"); ct != "application/json" {
				t.Errorf("Content-Type %q", ct)
			}
			r.message(t)
			if r.Header.Get("X-Request-Id") == "" {
				t.Error("no X-Request-Id")
			}
			if c.allow != "" && r.Header.Get("Allow") != c.allow {
				t.Errorf("Allow %q, want %q", r.Header.Get("Allow"), c.allow)
			}
		})
	}
}

func TestDeployAndRollbackWithoutFailedRequests(t *testing.T) {
	env := newShop(t)
	version := func() string {
		var v struct{ Version string }
		r := env.e.do(t, "GET", "api.example.test", "/v1/version", nil, nil)
		if r.StatusCode != 200 {
			return fmt.Sprintf("status %d", r.StatusCode)
		}
		r.json(t, &v)
		return v.Version
	}
	if v := version(); v != "one" {
		t.Fatalf("version %q", v)
	}
	// Load in the background during every swap: no request may fail.
	ctx, stop := context.WithCancel(context.Background())
	var sent, failed atomic.Int64
	var firstFailure atomic.Value
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := 0; ctx.Err() == nil && n < 20000; n++ {
				req, _ := http.NewRequest("GET", env.e.url("/v1/items"), nil)
				req.Host = "api.example.test"
				res, err := env.e.client.Do(req)
				sent.Add(1)
				if err != nil {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, err.Error())
					continue
				}
				io.Copy(io.Discard, res.Body)
				res.Body.Close()
				if res.StatusCode != 200 {
					failed.Add(1)
					firstFailure.CompareAndSwap(nil, res.Status)
				}
			}
		}()
	}
	// Re-import a changed document and deploy it.
	env.o.mustAdmin(t, "PUT", "/v1/apis/shop", []byte(readFile(t, "testdata/shop-v1-changed.yaml")), nil)
	var dep struct{ ID string }
	env.o.mustAdmin(t, "POST", "/v1/apis/shop/stages/prod/deployments", map[string]string{"description": "version two"}, &dep)
	eventually(t, 5*time.Second, func() error {
		if v := version(); v != "two" {
			return fmt.Errorf("edge serves %q", v)
		}
		return nil
	})
	// Roll back to the previous deployment.
	env.o.mustAdmin(t, "POST", "/v1/apis/shop/stages/prod/rollback", map[string]string{}, nil)
	eventually(t, 5*time.Second, func() error {
		if v := version(); v != "one" {
			return fmt.Errorf("edge serves %q", v)
		}
		return nil
	})
	// And forward again, to the deployment by ID.
	env.o.mustAdmin(t, "POST", "/v1/apis/shop/stages/prod/rollback", map[string]string{"deploymentId": dep.ID}, nil)
	eventually(t, 5*time.Second, func() error {
		if v := version(); v != "two" {
			return fmt.Errorf("edge serves %q", v)
		}
		return nil
	})
	stop()
	wg.Wait()
	if failed.Load() > 0 {
		t.Fatalf("%d of %d requests failed during deploy and rollback; first: %v", failed.Load(), sent.Load(), firstFailure.Load())
	}
	t.Logf("%d requests, none failed, across one deploy and two rollbacks", sent.Load())
	var list struct {
		Deployments []struct {
			ID     string
			Stages []string
		}
	}
	env.o.mustAdmin(t, "GET", "/v1/apis/shop/deployments", nil, &list)
	if len(list.Deployments) < 3 {
		t.Errorf("deployments: %+v", list.Deployments)
	}
}

func TestBadInputKeepsServing(t *testing.T) {
	env := newShop(t)
	// A config file with mistakes: every one reported with its line.
	bad := strings.Replace(env.config, "name: prod\n        variables", "nmae: prod\n        variables", 1)
	code, body := env.o.apply(t, bad, env.docs)
	if code != 400 || !strings.Contains(body, "portico.yaml:") || !strings.Contains(body, `did you mean \"name\"`) {
		t.Errorf("bad config: %d %s", code, body)
	}
	// A document the importer cannot honour: the error names the pointer.
	doc := strings.Replace(readFile(t, "testdata/shop-v1.yaml"), "type: http_proxy", "type: aws_proxy", 1)
	code, body = env.o.admin(t, "PUT", "/v1/apis/shop", []byte(doc), nil)
	if code != 400 || !strings.Contains(body, "/paths/~1items/get/x-portico-integration") {
		t.Errorf("bad document: %d %s", code, body)
	}
	// Not YAML at all.
	code, body = env.o.admin(t, "POST", "/v1/apis", []byte("{{{"), nil)
	if code != 400 {
		t.Errorf("garbage document: %d %s", code, body)
	}
	// A deployment that cannot run (a stage variable missing) is refused.
	code, body = env.o.admin(t, "PUT", "/v1/apis/shop/stages/prod", map[string]any{"variables": map[string]string{"tenant": "x"}}, nil)
	if code != 400 || !strings.Contains(body, "backend") {
		t.Errorf("removing a used stage variable: %d %s", code, body)
	}
	// Everything still served as before.
	var got echoed
	env.e.do(t, "GET", "api.example.test", "/v1/items/1", nil, nil).json(t, &got)
	if got.Backend != "one" || got.Headers.Get("X-Tenant") != "acme" {
		t.Errorf("after refused changes the edge should serve the last good state: %+v", got)
	}
}

func TestAdminNeedsToken(t *testing.T) {
	o := startOrigin(t, "")
	for _, tok := range []string{"", "wrong", o.EdgeToken} {
		req, _ := http.NewRequest("GET", o.AdminURL+"/v1/apis", nil)
		if tok != "" {
			req.Header.Set("Authorization", "Bearer "+tok)
		}
		res, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		res.Body.Close()
		if res.StatusCode != 401 {
			t.Errorf("token %q: status %d, want 401", tok, res.StatusCode)
		}
	}
	var doc map[string]any
	o.mustAdmin(t, "GET", "/openapi.json", nil, &doc)
	if doc["openapi"] != "3.0.3" {
		t.Errorf("openapi.json: %v", doc["openapi"])
	}
	// The data plane refuses requests without an edge token.
	res, err := http.Get(o.DataURL + "/_portico/v1/snapshot")
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != 401 {
		t.Errorf("data plane without token: %d", res.StatusCode)
	}
}

func TestEdgeServesLastGoodSnapshotWhenOriginIsDown(t *testing.T) {
	env := newShop(t)
	edgeDir := env.e.DataDir
	env.e.stop()
	env.o.kill()
	e2 := startEdge(t, env.o, edgeDir)
	// The restarted edge routes with the snapshot it kept: unknown routes
	// get 404 and 405 from its own table, known ones fail cleanly with
	// 502 because the origin (which runs integrations) is down.
	if r := e2.do(t, "GET", "api.example.test", "/v1/nothing", nil, nil); r.StatusCode != 404 {
		t.Errorf("unknown route: %d %s", r.StatusCode, r.Body)
	}
	if r := e2.do(t, "DELETE", "api.example.test", "/v1/items", nil, nil); r.StatusCode != 405 {
		t.Errorf("wrong method: %d %s", r.StatusCode, r.Body)
	}
	if r := e2.do(t, "GET", "api.example.test", "/v1/items", nil, nil); r.StatusCode != 502 {
		t.Errorf("origin down: %d %s", r.StatusCode, r.Body)
	}
	// An edge with no snapshot at all says so.
	e3 := startEdge(t, env.o, "")
	if r := e3.do(t, "GET", "api.example.test", "/v1/items", nil, nil); r.StatusCode != 503 {
		t.Errorf("edge without any configuration: %d %s", r.StatusCode, r.Body)
	}
}

func TestOriginRestartKeepsState(t *testing.T) {
	env := newShop(t)
	dir := env.o.DataDir
	tok := env.o.AdminToken
	env.o.kill() // no graceful shutdown: bbolt commits are durable
	o2 := startOrigin(t, dir)
	o2.AdminToken = tok
	var apis struct{ APIs []struct{ Name string } }
	o2.mustAdmin(t, "GET", "/v1/apis", nil, &apis)
	if len(apis.APIs) != 2 {
		t.Errorf("after a kill and restart: %+v", apis)
	}
	if strings.Contains(o2.output(), "First start") {
		t.Error("a restart must not create new tokens")
	}
}

func TestCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		skipOrFail(t, "curl is not installed (Debian package curl)")
	}
	env := newShop(t)
	out, err := exec.Command(curl, "-sS", "--cacert", env.e.DataDir+"/dev-ca.pem", "--resolve", "api.example.test:"+portOf(env.e.HTTPS)+":127.0.0.1",
		"-D", "-", "https://api.example.test:"+portOf(env.e.HTTPS)+"/v1/items?x=1").CombinedOutput()
	if err != nil {
		t.Fatalf("curl: %v: %s", err, out)
	}
	s := string(out)
	if !strings.Contains(s, "HTTP/2 200") || !strings.Contains(strings.ToLower(s), "x-request-id:") || !strings.Contains(s, `"backend":"one"`) {
		t.Errorf("curl over HTTP/2:\n%s", s)
	}
	out, _ = exec.Command(curl, "-sS", "--http1.1", "-k", "-X", "PATCH", "-H", "Host: api.example.test", "https://"+env.e.HTTPS+"/v1/items").CombinedOutput()
	if !strings.Contains(string(out), "not allowed") {
		t.Errorf("curl 405 over HTTP/1.1: %s", out)
	}
}

func portOf(hostport string) string {
	_, p, _ := net.SplitHostPort(hostport)
	return p
}
