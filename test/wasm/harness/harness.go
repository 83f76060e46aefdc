// Package harness is an edge-like server for WASM plugin tests and
// benchmarks: a net/http server on 127.0.0.1 runs a plugin chain built by
// plugins.Registry, then forwards with httputil.ReverseProxy to a backend,
// adding the identity headers the chain established, the way the edge's
// forwarder does.
package harness

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/wasm"
)

// MemSource is a ModuleSource holding modules in memory.
type MemSource struct {
	mu sync.Mutex
	m  map[string][]byte
}

// Add stores a module and returns its digest.
func (s *MemSource) Add(b []byte) string {
	sum := sha256.Sum256(b)
	d := "sha256:" + hex.EncodeToString(sum[:])
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	s.m[d] = b
	s.mu.Unlock()
	return d
}

// Put stores bytes under a digest of the caller's choice (to test that the
// host checks what it gets).
func (s *MemSource) Put(digest string, b []byte) {
	s.mu.Lock()
	if s.m == nil {
		s.m = make(map[string][]byte)
	}
	s.m[digest] = b
	s.mu.Unlock()
}

// Module implements wasm.ModuleSource.
func (s *MemSource) Module(_ context.Context, digest string) ([]byte, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	b, ok := s.m[digest]
	if !ok {
		return nil, fmt.Errorf("no module %s", digest)
	}
	return b, nil
}

// Recorded is a request as the backend saw it.
type Recorded struct {
	Method, Path string
	Header       http.Header
	Body         []byte
}

// Backend is a recording backend. Its Respond function, if set, answers;
// otherwise it answers 200 with a 1 KiB body.
type Backend struct {
	URL     string
	Respond func(w http.ResponseWriter, r *http.Request, body []byte)

	srv   *http.Server
	count atomic.Int64
	mu    sync.Mutex
	last  *Recorded
}

var kib = func() []byte {
	b := make([]byte, 1024)
	for i := range b {
		b[i] = 'a' + byte(i%26)
	}
	return b
}()

// NewBackend starts a backend on 127.0.0.1.
func NewBackend(record bool) (*Backend, error) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	b := &Backend{URL: "http://" + ln.Addr().String()}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.count.Add(1)
		body, _ := io.ReadAll(r.Body)
		if record {
			b.mu.Lock()
			b.last = &Recorded{Method: r.Method, Path: r.URL.RequestURI(), Header: r.Header.Clone(), Body: body}
			b.mu.Unlock()
		}
		if b.Respond != nil {
			b.Respond(w, r, body)
			return
		}
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Content-Length", "1024")
		_, _ = w.Write(kib)
	}), ReadHeaderTimeout: 10 * time.Second}
	go b.srv.Serve(ln)
	return b, nil
}

// Last returns the last recorded request.
func (b *Backend) Last() *Recorded {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.last
}

// Count returns the number of requests served.
func (b *Backend) Count() int64 { return b.count.Load() }

// Close stops the backend.
func (b *Backend) Close() { _ = b.srv.Close() }

// Edge is the edge-like server.
type Edge struct {
	URL      string
	Addr     string
	policies []plugins.Policy
	srv      *http.Server
	reqID    atomic.Uint64
}

// EdgeConfig configures an Edge.
type EdgeConfig struct {
	Host    *wasm.Host // nil: no WASM policies
	Specs   []config.PolicySpec
	Backend string
	// HTTP2 also serves unencrypted HTTP/2 (h2c with prior knowledge).
	HTTP2 bool
	// Addr to listen on; empty means 127.0.0.1:0.
	Addr string
}

// NewEdge builds the chain and starts serving.
func NewEdge(ctx context.Context, cfg EdgeConfig) (*Edge, error) {
	var fs []plugins.Factory
	if cfg.Host != nil {
		fs = append(fs, cfg.Host.Authorizer(), cfg.Host.Transform())
	}
	reg, err := plugins.NewRegistry(fs...)
	if err != nil {
		return nil, err
	}
	target, err := url.Parse(cfg.Backend)
	if err != nil {
		return nil, err
	}
	transport := &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 30 * time.Second}
	proxy := &httputil.ReverseProxy{
		Rewrite:   func(pr *httputil.ProxyRequest) { pr.SetURL(target) },
		Transport: transport,
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if !errors.Is(err, context.Canceled) {
				plugins.WriteError(w, http.StatusBadGateway, "Bad gateway")
			}
		},
	}
	terminal := plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		r := ex.Request
		for k, v := range ex.Identity.Headers() {
			r.Header[k] = []string{v}
		}
		if ex.Identity.Principal != "" {
			r.Header.Set("X-Test-Principal", ex.Identity.Principal)
		}
		proxy.ServeHTTP(w, r)
	})
	var attached []plugins.Attached
	for _, s := range cfg.Specs {
		attached = append(attached, plugins.Attached{Spec: s, Scope: plugins.Scope{APIID: "test", Stage: "prod"}})
	}
	chain, policies, err := reg.Build(ctx, attached, terminal)
	if err != nil {
		return nil, err
	}
	addr := cfg.Addr
	if addr == "" {
		addr = "127.0.0.1:0"
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		plugins.CloseAll(policies)
		return nil, err
	}
	e := &Edge{URL: "http://" + ln.Addr().String(), Addr: ln.Addr().String(), policies: policies}
	e.srv = &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ex := &plugins.Exchange{
				Request:   r,
				RequestID: strconv.FormatUint(e.reqID.Add(1), 10),
				Host:      r.Host,
				Path:      r.URL.Path,
				RoutePath: r.URL.Path,
				Start:     time.Now(),
				// What the real edge's router fills in, for the portico.*
				// properties.
				API:   harnessAPI,
				Stage: harnessStage,
				Route: harnessRoute,
			}
			if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
				ex.Client = ap.Addr()
			}
			chain.ServeExchange(w, ex)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          nil,
	}
	if cfg.HTTP2 {
		var p http.Protocols
		p.SetHTTP1(true)
		p.SetUnencryptedHTTP2(true)
		e.srv.Protocols = &p
	}
	go e.srv.Serve(ln)
	return e, nil
}

// Close stops the server and closes the policies.
func (e *Edge) Close() {
	_ = e.srv.Close()
	plugins.CloseAll(e.policies)
}

// The API, stage and route every harness request is routed to.
var (
	harnessAPI   = &config.SnapshotAPI{ID: "harness"}
	harnessStage = &config.Stage{APIID: "harness", Name: "test"}
	harnessRoute = &config.Route{Method: config.MethodAny, Path: "/{proxy+}"}
)
