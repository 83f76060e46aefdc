// Package edgetest is a minimal stand-in for the edge, for testing and
// benchmarking the access policies through real HTTP servers on 127.0.0.1:
// it resolves the client address, matches one API stage's routes, runs the
// plugins.Registry chain and forwards accepted requests, with the identity
// headers the policies set, to a recording backend. The real edge replaces
// it; it deliberately does nothing else (no hygiene, no TLS).
package edgetest

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/ipfilter"
)

// Config describes the one API stage the edge serves.
type Config struct {
	APIID, Stage  string
	APIPolicies   []config.PolicySpec
	StagePolicies []config.PolicySpec
	// Routes are matched by method (or ANY) and exact path; a route's
	// Path may end in "/{proxy+}" to match everything below it.
	Routes []config.Route
	// Trusted are the proxies whose X-Forwarded-For is believed.
	Trusted []netip.Prefix
	// Backend is the URL requests are forwarded to.
	Backend string
}

type route struct {
	r     *config.Route
	chain plugins.Handler
}

// Handler is the stand-in edge.
type Handler struct {
	c        Config
	api      *config.SnapshotAPI
	stage    *config.Stage
	routes   []route
	policies []plugins.Policy
	client   *http.Client
}

// New builds the chains of every route.
func New(ctx context.Context, reg *plugins.Registry, c Config) (*Handler, error) {
	h := &Handler{c: c,
		api:   &config.SnapshotAPI{ID: c.APIID, Name: c.APIID},
		stage: &config.Stage{APIID: c.APIID, Name: c.Stage},
		client: &http.Client{Transport: &http.Transport{
			MaxIdleConnsPerHost: 256, IdleConnTimeout: time.Minute,
		}, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }},
	}
	terminal := plugins.HandlerFunc(h.forward)
	for i := range c.Routes {
		r := &c.Routes[i]
		var att []plugins.Attached
		for _, s := range c.APIPolicies {
			att = append(att, plugins.Attached{Spec: s, Scope: plugins.Scope{APIID: c.APIID}})
		}
		for _, s := range c.StagePolicies {
			att = append(att, plugins.Attached{Spec: s, Scope: plugins.Scope{APIID: c.APIID, Stage: c.Stage}})
		}
		for _, s := range r.Policies {
			att = append(att, plugins.Attached{Spec: s, Scope: plugins.Scope{APIID: c.APIID, Stage: c.Stage, Route: r.Key()}})
		}
		chain, ps, err := reg.Build(ctx, att, terminal)
		if err != nil {
			plugins.CloseAll(h.policies)
			return nil, fmt.Errorf("route %s: %w", r.Key(), err)
		}
		h.policies = append(h.policies, ps...)
		h.routes = append(h.routes, route{r, chain})
	}
	return h, nil
}

// Close closes the policies.
func (h *Handler) Close() { plugins.CloseAll(h.policies) }

func (h *Handler) match(method, path string) *route {
	for i := range h.routes {
		r := h.routes[i].r
		if r.Method != config.MethodAny && r.Method != method {
			continue
		}
		if prefix, ok := strings.CutSuffix(r.Path, "/{proxy+}"); ok {
			if strings.HasPrefix(path, prefix+"/") {
				return &h.routes[i]
			}
			continue
		}
		if r.Path == path {
			return &h.routes[i]
		}
	}
	return nil
}

// ServeHTTP implements http.Handler.
func (h *Handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	rt := h.match(r.Method, r.URL.Path)
	if rt == nil && r.Method == http.MethodOptions {
		// A CORS preflight names the method it asks about; the real edge
		// routes it the same way.
		rt = h.match(r.Header.Get("Access-Control-Request-Method"), r.URL.Path)
		for i := 0; rt == nil && i < len(h.routes); i++ {
			if h.routes[i].r.Path == r.URL.Path {
				rt = &h.routes[i] // the cors policy refuses the method
			}
		}
	}
	if rt == nil {
		plugins.WriteError(w, http.StatusNotFound, "Not Found")
		return
	}
	host, _, err := net.SplitHostPort(r.Host)
	if err != nil {
		host = r.Host
	}
	ex := &plugins.Exchange{
		Request: r, RequestID: "test", Client: ipfilter.ClientAddr(r, h.c.Trusted),
		Host: strings.ToLower(host), Path: r.URL.Path, RoutePath: r.URL.Path,
		API: h.api, Stage: h.stage, Route: rt.r, Start: time.Now(),
	}
	rt.chain.ServeExchange(w, ex)
}

// forward sends the request to the backend with the identity headers,
// replacing any a client sent under the same names.
func (h *Handler) forward(w http.ResponseWriter, ex *plugins.Exchange) {
	r := ex.Request
	out, err := http.NewRequestWithContext(r.Context(), r.Method, h.c.Backend+r.URL.RequestURI(), r.Body)
	if err != nil {
		plugins.WriteError(w, http.StatusBadGateway, "Bad Gateway")
		return
	}
	out.ContentLength = r.ContentLength
	for k, v := range r.Header {
		out.Header[k] = v
	}
	for k, v := range ex.Identity.Headers() {
		out.Header[k] = []string{v}
	}
	out.Header.Set("X-Forwarded-For", ex.Client.String())
	resp, err := h.client.Do(out)
	if err != nil {
		plugins.WriteError(w, http.StatusBadGateway, "Bad Gateway")
		return
	}
	defer resp.Body.Close()
	for k, v := range resp.Header {
		w.Header()[k] = v
	}
	w.WriteHeader(resp.StatusCode)
	_, _ = io.Copy(w, resp.Body)
}

// Start serves h on 127.0.0.1 until the test ends.
func Start(t testing.TB, reg *plugins.Registry, c Config) *httptest.Server {
	t.Helper()
	h, err := New(context.Background(), reg, c)
	if err != nil {
		t.Fatal(err)
	}
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.Close(); h.Close() })
	return srv
}

// Recorded is one request the backend received.
type Recorded struct {
	Method, URI string
	Header      http.Header
	Body        []byte
}

// Backend records what reaches it and answers 200 with a 1 KiB body.
type Backend struct {
	mu   sync.Mutex
	reqs []Recorded
	keep bool
}

var body1K = bytes.Repeat([]byte("x"), 1024)

// NewBackend returns a backend that records requests when record is true.
func NewBackend(record bool) *Backend { return &Backend{keep: record} }

// ServeHTTP implements http.Handler.
func (b *Backend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if b.keep {
		body, _ := io.ReadAll(r.Body)
		b.mu.Lock()
		b.reqs = append(b.reqs, Recorded{r.Method, r.RequestURI, r.Header.Clone(), body})
		b.mu.Unlock()
	}
	w.Header().Set("Content-Type", "text/plain")
	_, _ = w.Write(body1K)
}

// Requests returns what the backend has received so far.
func (b *Backend) Requests() []Recorded {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]Recorded(nil), b.reqs...)
}

// StartBackend serves a recording backend on 127.0.0.1 until the test ends.
func StartBackend(t testing.TB) (*Backend, *httptest.Server) {
	b := NewBackend(true)
	srv := httptest.NewServer(b)
	t.Cleanup(srv.Close)
	return b, srv
}

// Do sends a request and returns the status, headers and body; it fails the
// test on transport errors.
func Do(t testing.TB, req *http.Request) (int, http.Header, string) {
	t.Helper()
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, resp.Header, string(b)
}

// Get is Do for a GET with the given headers ("Name: value").
func Get(t testing.TB, url string, headers ...string) (int, http.Header, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	return Do(t, req)
}
