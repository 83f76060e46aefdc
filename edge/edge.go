// Package edge is the edge node: it follows the origin's snapshots and
// serves requests through hygiene, routing, the policy pipeline and the
// forwarder to the origin.
//
// One *Edge is one http.Handler: every listener (HTTP/1.1, HTTP/2 and, with
// edge/listen, HTTP/3) calls the same ServeHTTP, so there is exactly one
// request pipeline whatever the protocol.
package edge

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/base32"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/follow"
	"github.com/portico-edge/portico/edge/forward"
	"github.com/portico-edge/portico/edge/hygiene"
	"github.com/portico-edge/portico/edge/router"
	"github.com/portico-edge/portico/edge/wsrelay"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/ipfilter"
)

// Config configures an edge.
type Config struct {
	// Origin is the origin's data-plane URL; Token the edge token.
	Origin *url.URL
	Token  string
	// OriginTLS configures TLS to an https origin; OriginTransport, when
	// set, replaces the forwarder's HTTP/1.1 pool (HTTP/3 toward the
	// origin); OriginClient fetches snapshots.
	OriginTLS       *tls.Config
	OriginTransport http.RoundTripper
	OriginClient    *http.Client
	// DataDir keeps the last good snapshot (and caches, plugins).
	DataDir string
	// Policies holds the policy factories this node supports.
	Policies *plugins.Registry
	// Forwarder overrides the default forwarder to Origin (tests,
	// regional endpoints hosted by the origin itself).
	Terminal plugins.Handler
	// HTTPSPort is the public HTTPS port, used in redirects from plain
	// HTTP; 443 is left out of the URL.
	HTTPSPort int
	// EndpointTypes lists the domain types this node serves; default edge.
	EndpointTypes []config.EndpointType
	// WebSocket bounds relayed WebSockets (idle timeout, message size).
	WebSocket wsrelay.Limits
	// Limits bound request sizes (headers, URI, body).
	Limits hygiene.Limits
	// TrustedProxies are the networks of proxies in front of this node
	// whose X-Forwarded-For is believed; empty believes none.
	TrustedProxies []netip.Prefix
	// Prepare, when set, readies node-wide data of a snapshot (key
	// tables) before it is compiled; the returned commit installs it once
	// the snapshot is accepted.
	Prepare func(*config.Snapshot) (commit func(), err error)
	Logger  *slog.Logger
	// Clock for tests; default time.Now.
	Now func() time.Time
}

// Edge is an edge node's request handler and configuration follower.
type Edge struct {
	cfg      Config
	log      *slog.Logger
	fwd      *forward.Forwarder
	terminal plugins.Handler
	follower *follow.Follower
	now      func() time.Time

	gen   atomic.Pointer[generation]
	ids   requestIDs
	pool  sync.Pool // *plugins.Exchange
	ready atomic.Bool

	relay      *wsrelay.Relay
	drainCtx   context.Context // ends when the edge starts draining
	startDrain context.CancelFunc
	wsMetrics  wsrelay.Metrics
}

// generation is one installed snapshot with the requests using it, so
// that its policies are closed only after its last request finished.
type generation struct {
	table   *router.Table
	refs    atomic.Int64
	retired atomic.Bool
	once    sync.Once
}

func (g *generation) release() {
	if g.refs.Add(-1) == 0 && g.retired.Load() {
		g.close()
	}
}

func (g *generation) close() {
	g.once.Do(func() { plugins.CloseAll(g.table.Policies()) })
}

// New returns an edge. It does not start following the origin: call Run.
func New(cfg Config) (*Edge, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if len(cfg.EndpointTypes) == 0 {
		cfg.EndpointTypes = []config.EndpointType{config.EndpointEdge}
	}
	if cfg.Policies == nil {
		r, _ := plugins.NewRegistry()
		cfg.Policies = r
	}
	if err := cfg.WebSocket.Validate(); err != nil {
		return nil, err
	}
	e := &Edge{cfg: cfg, log: cfg.Logger, now: cfg.Now}
	e.relay = &wsrelay.Relay{Limits: cfg.WebSocket, Metrics: &e.wsMetrics}
	e.drainCtx, e.startDrain = context.WithCancel(context.Background())
	e.ids.init()
	e.pool.New = func() any { return &plugins.Exchange{PathParams: make([]plugins.Param, 0, 4)} }
	e.terminal = plugins.HandlerFunc(e.finish)
	if cfg.Terminal == nil {
		fwd, err := forward.New(forward.Options{Origin: cfg.Origin, Token: cfg.Token, Logger: cfg.Logger, TLS: cfg.OriginTLS, Transport: cfg.OriginTransport})
		if err != nil {
			return nil, err
		}
		e.fwd = fwd
		e.follower = &follow.Follower{Origin: cfg.Origin, Token: cfg.Token, DataDir: cfg.DataDir, Apply: e.Apply, Log: cfg.Logger, Client: cfg.OriginClient}
	}
	return e, nil
}

// Run follows the origin until ctx ends, starting from the last good
// snapshot on disk when there is one.
func (e *Edge) Run(ctx context.Context) {
	if e.follower == nil {
		<-ctx.Done()
		return
	}
	if ok, err := e.follower.LoadLastGood(); err != nil {
		e.log.Warn("not using the snapshot kept on disk", "err", err)
	} else if !ok {
		e.log.Info("no snapshot on disk; waiting for the origin", "origin", e.cfg.Origin.String())
	}
	e.follower.Run(ctx)
}

// Ready reports whether the edge has a configuration to serve.
func (e *Edge) Ready() bool { return e.ready.Load() }

// Snapshot returns the snapshot being served, or nil.
func (e *Edge) Snapshot() *config.Snapshot {
	if g := e.gen.Load(); g != nil {
		return g.table.Snapshot
	}
	return nil
}

// Version returns the version of the snapshot being served, or "".
func (e *Edge) Version() string {
	if g := e.gen.Load(); g != nil {
		return g.table.Snapshot.Version
	}
	return ""
}

// Apply compiles a snapshot and, if it compiles, swaps it in. Requests in
// flight finish on the generation they started with.
func (e *Edge) Apply(snap *config.Snapshot) error {
	ctx := context.Background()
	commit := func() {}
	if e.cfg.Prepare != nil {
		var err error
		if commit, err = e.cfg.Prepare(snap); err != nil {
			return err
		}
	}
	table, err := router.Compile(snap, e.cfg.EndpointTypes, func(st *router.Stage, i int) (plugins.Handler, []plugins.Policy, error) {
		r := &st.Deployment.API.Routes[i]
		att := plugins.Attachments(st.Deployment, st.Stage, r)
		if len(att) == 0 {
			return e.terminal, nil, nil
		}
		return e.cfg.Policies.Build(ctx, att, e.terminal)
	})
	if err != nil {
		return err
	}
	g := &generation{table: table}
	commit()
	old := e.gen.Swap(g)
	e.ready.Store(true)
	if old != nil {
		old.retired.Store(true)
		if old.refs.Load() == 0 {
			old.close()
		}
	}
	e.log.Info("serving snapshot", "version", snap.Version, "domains", len(snap.Domains), "deployments", len(snap.Deployments))
	return nil
}

func (e *Edge) acquire() *generation {
	for {
		g := e.gen.Load()
		if g == nil {
			return nil
		}
		g.refs.Add(1)
		if e.gen.Load() == g {
			return g
		}
		g.release()
	}
}

// ServeHTTP is the request pipeline.
func (e *Edge) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := e.now()
	reqID := e.ids.next()
	w.Header()[plugins.RequestIDHeader] = []string{reqID}

	req, herr := hygiene.Check(r, e.cfg.Limits)
	if herr != nil {
		herr.Write(w)
		return
	}
	if req.Close {
		w.Header().Set("Connection", "close")
	}
	client := ipfilter.ClientAddr(r, e.cfg.TrustedProxies)
	hygiene.Sanitize(r.Header)
	if req.WebSocket {
		// Sanitize removed the hop-by-hop fields of the handshake; put
		// back their canonical form for the relay, which validates it.
		r.Header["Upgrade"] = []string{"websocket"}
		r.Header["Connection"] = []string{"Upgrade"}
	}
	hygiene.WrapBody(r, e.cfg.Limits.MaxBodyBytes)
	host, path := req.Host, req.EscapedPath
	g := e.acquire()
	if g == nil {
		w.Header().Set("Retry-After", "1")
		plugins.WriteError(w, http.StatusServiceUnavailable, "this edge has not received its configuration yet; try again shortly")
		return
	}
	defer g.release()
	e.serveRoute(w, r, g.table, start, reqID, client, host, path)
}

// serveRoute routes a checked request and runs its handler chain. It is
// apart from ServeHTTP so that each has few enough returns for Go to
// open-code their defers (a deferred call per request otherwise costs a
// runtime defer record and its unwinding).
func (e *Edge) serveRoute(w http.ResponseWriter, r *http.Request, table *router.Table, start time.Time, reqID string, client netip.Addr, host, path string) {
	h := table.Host(host)
	if h == nil {
		plugins.WriteError(w, http.StatusNotFound, fmt.Sprintf("no API is served at host %q", host))
		return
	}
	if !h.Allows(client) {
		// A private endpoint: the resource policy of the domain itself,
		// checked before anything else about the request is looked at.
		plugins.WriteError(w, http.StatusForbidden, "this API is not reachable from your network")
		return
	}
	tls := r.TLS != nil
	if !tls && h.Domain.PlainHTTP != config.PlainHTTPServe {
		e.redirect(w, r, host, path)
		return
	}
	st, routePath := h.Map(path)
	if st == nil {
		plugins.WriteError(w, http.StatusNotFound, fmt.Sprintf("no API is mapped at %s on host %q", path, host))
		return
	}
	ex := e.pool.Get().(*plugins.Exchange)
	defer e.putExchange(ex)
	method := r.Method
	if method == http.MethodOptions && r.Header.Get("Access-Control-Request-Method") != "" {
		// A CORS preflight is routed as the request it announces, so
		// that the route's CORS policy can answer it; if none does, the
		// terminal refuses it (see terminal).
		if res, _ := st.Tree.Match(http.MethodOptions, routePath, ex.PathParams[:0]); res.Index < 0 {
			method = r.Header.Get("Access-Control-Request-Method")
		}
	}
	res, params := st.Tree.Match(method, routePath, ex.PathParams[:0])
	if res.Index < 0 {
		if len(res.Allowed) > 0 {
			w.Header().Set("Allow", strings.Join(res.Allowed, ", "))
			plugins.WriteError(w, http.StatusMethodNotAllowed, fmt.Sprintf("%s is not allowed on %s; allowed: %s", r.Method, routePath, strings.Join(res.Allowed, ", ")))
			return
		}
		plugins.WriteError(w, http.StatusNotFound, fmt.Sprintf("no route matches %s %s", r.Method, routePath))
		return
	}
	*ex = plugins.Exchange{
		Request:    r,
		RequestID:  reqID,
		Client:     client,
		Host:       host,
		Path:       path,
		RoutePath:  routePath,
		TLS:        tls,
		Domain:     h.Domain,
		API:        st.API,
		Stage:      st.Stage,
		Deployment: st.Deployment,
		Route:      &st.Deployment.API.Routes[res.Index],
		RouteIndex: res.Index,
		PathParams: params,
		Start:      start,
	}
	// A request cancelled before its turn (an HTTP/2 client resetting
	// streams) must not reach policies or the origin.
	if r.Context().Err() != nil {
		return
	}
	st.Handlers[res.Index].ServeExchange(w, ex)
}

func (e *Edge) putExchange(ex *plugins.Exchange) {
	params := ex.PathParams[:0]
	*ex = plugins.Exchange{PathParams: params}
	e.pool.Put(ex)
}

// finish is the terminal handler: the request passed every policy.
func (e *Edge) finish(w http.ResponseWriter, ex *plugins.Exchange) {
	r := ex.Request
	if r.Method == http.MethodOptions && ex.Route.Method != http.MethodOptions && ex.Route.Method != config.MethodAny {
		// A preflight no CORS policy answered.
		w.Header().Set("Allow", ex.Route.Method)
		plugins.WriteError(w, http.StatusForbidden, "CORS is not enabled for this route")
		return
	}
	if e.cfg.Terminal != nil {
		e.cfg.Terminal.ServeExchange(w, ex)
		return
	}
	if wsrelay.IsUpgrade(r) {
		e.fwd.Upgrade(e.drainCtx, w, ex, e.relay)
		return
	}
	e.fwd.Forward(w, ex)
}

// Drain starts a graceful shutdown of what the HTTP server does not track:
// open WebSockets get close 1001. Call it before http.Server.Shutdown.
func (e *Edge) Drain() { e.startDrain() }

// WebSocketMetrics returns the relay's counters.
func (e *Edge) WebSocketMetrics() *wsrelay.Metrics { return &e.wsMetrics }

func (e *Edge) redirect(w http.ResponseWriter, r *http.Request, host, path string) {
	target := "https://" + host
	if p := e.cfg.HTTPSPort; p != 0 && p != 443 {
		target += ":" + strconv.Itoa(p)
	}
	target += path
	if r.URL.RawQuery != "" {
		target += "?" + r.URL.RawQuery
	}
	w.Header().Set("Location", target)
	plugins.WriteError(w, http.StatusPermanentRedirect, "use HTTPS: "+target)
}

// requestIDs makes request IDs: a random per-process prefix and a
// counter. Unique without coordination, cheap (no syscall per request),
// and sortable within one process.
type requestIDs struct {
	prefix string
	n      atomic.Uint64
}

func (g *requestIDs) init() {
	var b [5]byte
	_, _ = rand.Read(b[:])
	g.prefix = strings.ToLower(base32.StdEncoding.EncodeToString(b[:]))
}

func (g *requestIDs) next() string {
	n := g.n.Add(1)
	var buf [32]byte
	out := append(buf[:0], g.prefix...)
	out = append(out, '-')
	out = strconv.AppendUint(out, n, 36)
	return string(out)
}
