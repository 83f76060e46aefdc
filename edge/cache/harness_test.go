package cache

import (
	"context"
	"encoding/json"
	"io"
	"log"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/prometheus/client_golang/prometheus"
)

// fakeClock is the injectable clock: windows are crossed by advancing it,
// never by sleeping.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// testAuth is a stand-in for the authentication policies: it runs at
// PhaseAuthorize and establishes an identity from a bearer token or an API
// key, as the real ones do.
type testAuth struct{}

func (testAuth) Type() string         { return "test-auth" }
func (testAuth) Phase() plugins.Phase { return plugins.PhaseAuthorize }
func (testAuth) New(context.Context, config.PolicySpec, plugins.Scope) (plugins.Policy, error) {
	return testAuth{}, nil
}

func (testAuth) Wrap(next plugins.Handler) plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		if tok, ok := strings.CutPrefix(ex.Request.Header.Get("Authorization"), "Bearer "); ok {
			ex.Identity.Principal, ex.Identity.Source = tok, "jwt"
		}
		if k := ex.Request.Header.Get("X-Api-Key"); k != "" {
			ex.Identity.Principal, ex.Identity.Source, ex.Identity.APIKeyID = "key-"+k, "api-key", "key-"+k
		}
		next.ServeExchange(w, ex)
	})
}

// origin is a real HTTP server on 127.0.0.1 that counts the requests it
// receives and answers with a handler the test sets.
type origin struct {
	srv  *httptest.Server
	hits atomic.Int64
	mu   sync.Mutex
	h    http.HandlerFunc
	last *http.Request
}

func (o *origin) handle(h http.HandlerFunc) {
	o.mu.Lock()
	o.h = h
	o.mu.Unlock()
}

func (o *origin) lastRequest() *http.Request {
	o.mu.Lock()
	defer o.mu.Unlock()
	return o.last
}

// env is an edge (a real HTTP server on 127.0.0.1 running the policy chain
// built by plugins.Registry.Build) in front of an origin.
type env struct {
	t       *testing.T
	clock   *fakeClock
	factory *Factory
	reg     *prometheus.Registry
	origin  *origin
	edge    *httptest.Server
	client  *http.Client
	chains  map[string]plugins.Handler // by path prefix
	routes  map[string]*config.Route
	stages  map[string]*config.Stage
}

type envOpts struct {
	stageCfg string // stage-level cache policy config (JSON)
	routes   []testRoute
	opts     Options
	// originTimeout bounds the wait for the origin's response headers (0: none).
	originTimeout time.Duration
	// originMaxHeaderBytes is the origin server's header limit (0: Go's default).
	originMaxHeaderBytes int
}

type testRoute struct {
	prefix   string // requests whose path starts with it use this route
	stage    string // stage name; default "prod"
	routeCfg string // route-level cache policy config, "" for none
	keys     []string
}

func newEnv(t *testing.T, o envOpts) *env {
	t.Helper()
	e := &env{
		t:      t,
		clock:  &fakeClock{t: time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)},
		reg:    prometheus.NewRegistry(),
		origin: &origin{},
		chains: map[string]plugins.Handler{},
		routes: map[string]*config.Route{},
		stages: map[string]*config.Stage{},
	}
	e.origin.h = func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") }
	e.origin.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.origin.hits.Add(1)
		e.origin.mu.Lock()
		h := e.origin.h
		e.origin.last = r
		e.origin.mu.Unlock()
		h(w, r)
	}))
	e.origin.srv.Config.MaxHeaderBytes = o.originMaxHeaderBytes
	e.origin.srv.Start()
	t.Cleanup(e.origin.srv.Close)

	opts := o.opts
	if opts.MaxBytes == 0 {
		opts.MaxBytes = 64 << 20
	}
	opts.Clock = e.clock.Now
	opts.Registerer = e.reg
	f, err := NewFactory(opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	e.factory = f
	reg, err := plugins.NewRegistry(f, testAuth{})
	if err != nil {
		t.Fatal(err)
	}
	target, _ := url.Parse(e.origin.srv.URL)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	tr.ResponseHeaderTimeout = o.originTimeout
	proxy := &httputil.ReverseProxy{
		Transport: tr,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	terminal := plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		proxy.ServeHTTP(w, ex.Request)
	})
	routes := o.routes
	if len(routes) == 0 {
		routes = []testRoute{{prefix: "/"}}
	}
	for _, tr := range routes {
		stageName := tr.stage
		if stageName == "" {
			stageName = "prod"
		}
		st := e.stages[stageName]
		if st == nil {
			st = &config.Stage{APIID: "api1", Name: stageName}
			e.stages[stageName] = st
		}
		route := &config.Route{Method: "GET", Path: tr.prefix, CacheKeyParameters: tr.keys}
		attached := []plugins.Attached{{Spec: config.PolicySpec{Type: "test-auth"}, Scope: plugins.Scope{APIID: "api1"}}}
		if o.stageCfg != "" {
			attached = append(attached, plugins.Attached{
				Spec:  config.PolicySpec{Type: Type, Config: json.RawMessage(o.stageCfg)},
				Scope: plugins.Scope{APIID: "api1", Stage: stageName},
			})
		}
		if tr.routeCfg != "" {
			attached = append(attached, plugins.Attached{
				Spec:  config.PolicySpec{Type: Type, Config: json.RawMessage(tr.routeCfg)},
				Scope: plugins.Scope{APIID: "api1", Stage: stageName, Route: route.Key()},
			})
		}
		h, _, err := reg.Build(context.Background(), attached, terminal)
		if err != nil {
			t.Fatal(err)
		}
		key := stageName + " " + tr.prefix
		e.chains[key] = h
		e.routes[key] = route
	}
	e.edge = httptest.NewServer(http.HandlerFunc(e.serve))
	t.Cleanup(e.edge.Close)
	e.client = &http.Client{Timeout: 10 * time.Second}
	return e
}

// serve stands in for the edge's hygiene and router: canonical host,
// path, stage (from the X-Test-Stage header, default prod) and route
// (longest prefix).
func (e *env) serve(w http.ResponseWriter, r *http.Request) {
	stage := r.Header.Get("X-Test-Stage")
	if stage == "" {
		stage = "prod"
	}
	r.Header.Del("X-Test-Stage")
	best := ""
	for key := range e.chains {
		st, prefix, _ := strings.Cut(key, " ")
		if st == stage && strings.HasPrefix(r.URL.Path, prefix) && len(prefix) > len(best) {
			best = prefix
		}
	}
	if best == "" {
		plugins.WriteError(w, http.StatusNotFound, "no route")
		return
	}
	key := stage + " " + best
	ex := &plugins.Exchange{
		Request:   r,
		Host:      canonicalHost(r.Host),
		Path:      r.URL.Path,
		RoutePath: r.URL.Path,
		Stage:     e.stages[stage],
		Route:     e.routes[key],
		Start:     time.Now(),
	}
	e.chains[key].ServeExchange(w, ex)
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (e *env) do(method, path string, hdr ...string) resp {
	e.t.Helper()
	req, err := http.NewRequest(method, e.edge.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		if strings.EqualFold(hdr[i], "Host") {
			req.Host = hdr[i+1]
			continue
		}
		req.Header.Add(hdr[i], hdr[i+1])
	}
	return e.doReq(req)
}

func (e *env) doReq(req *http.Request) resp {
	e.t.Helper()
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp{res.StatusCode, res.Header, string(b)}
}

func (e *env) get(path string, hdr ...string) resp { return e.do(http.MethodGet, path, hdr...) }

func (e *env) hits() int64 { return e.origin.hits.Load() }

// expect checks status, X-Cache and body of a response.
func expect(t *testing.T, what string, r resp, status int, xcache, body string) {
	t.Helper()
	if r.status != status || r.header.Get("X-Cache") != xcache || (body != "*" && r.body != body) {
		t.Fatalf("%s: got %d X-Cache=%q body=%q; want %d X-Cache=%q body=%q",
			what, r.status, r.header.Get("X-Cache"), r.body, status, xcache, body)
	}
}

func (e *env) wantHits(n int64) {
	e.t.Helper()
	if got := e.hits(); got != n {
		e.t.Fatalf("origin received %d requests, want %d", got, n)
	}
}

// eventually polls cond for up to 5 s.
func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}
