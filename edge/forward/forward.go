// Package forward sends requests that passed the edge's pipeline to the
// origin's data plane, over pooled connections, with the routing and
// identity headers of the edge-to-origin contract (docs/architecture.md).
//
// Both Portico hops proxy with this package's Proxy (the origin's
// integrations too): it does what httputil.ReverseProxy with Rewrite did,
// with less work per request (see Proxy). The outbound header is prepared
// (hop-by-hop headers and those a client names in Connection removed)
// before the gateway's headers are added, so nothing the edge adds here
// can be removed by a client's Connection header.
package forward

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/portico-edge/portico/edge/hygiene"
	"github.com/portico-edge/portico/edge/wsrelay"
	"github.com/portico-edge/portico/plugins"
)

// Edge-to-origin headers.
const (
	HeaderEdgeToken  = "Portico-Edge-Token"
	HeaderDeployment = "Portico-Deployment"
	HeaderStage      = "Portico-Stage"
	HeaderRoute      = "Portico-Route"
)

// Options configure a Forwarder.
type Options struct {
	Origin *url.URL // the origin's data-plane base URL (http or https)
	Token  string   // the edge token
	// Transport overrides the default pooled transport (for example with
	// an HTTP/3 transport).
	Transport http.RoundTripper
	// TLS configures connections to an https origin.
	TLS    *tls.Config
	Logger *slog.Logger
	// Timeout bounds a forwarded exchange up to the response headers
	// when the route's own integration timeout is not known; the origin
	// enforces integration timeouts itself.
	Timeout time.Duration
}

// Forwarder forwards exchanges to the origin.
type Forwarder struct {
	origin    *url.URL
	prefix    string // the origin URL's path, without its final slash
	token     []string
	proxy     *Proxy
	transport http.RoundTripper
	timeout   time.Duration
	tls       *tls.Config
	log       *slog.Logger
}

// New returns a Forwarder.
func New(o Options) (*Forwarder, error) {
	if o.Origin == nil || (o.Origin.Scheme != "http" && o.Origin.Scheme != "https") || o.Origin.Host == "" {
		return nil, errors.New("forward: the origin must be an http:// or https:// URL such as http://127.0.0.1:9901")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.Timeout == 0 {
		o.Timeout = 5*time.Minute + 10*time.Second
	}
	tr := o.Transport
	var pool *PoolOptions
	if tr == nil {
		// Both carry HTTP/1.1 only: say so in ALPN, on configs of their
		// own (net/http's HTTP/2 set-up edits a shared config in place).
		h1TLS := func() *tls.Config {
			if o.TLS == nil {
				return nil
			}
			c := o.TLS.Clone()
			c.NextProtos = []string{"http/1.1"}
			return c
		}
		// HTTP/1.1 keep-alive with a deep idle pool: on loopback it
		// measured faster than one multiplexed h2c connection (see
		// docs/performance.md), and it keeps a slow response from
		// holding up others behind it. Requests without a body take the
		// lean path (PoolOptions); the Transport carries those with one.
		pool = &PoolOptions{TLS: h1TLS(), MaxIdlePerHost: 1024, MaxIdle: 4096, IdleTimeout: 90 * time.Second, DialTimeout: 5 * time.Second}
		tr = &http.Transport{
			Proxy:                 nil,
			DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
			TLSClientConfig:       h1TLS(),
			TLSHandshakeTimeout:   5 * time.Second,
			MaxIdleConns:          4096,
			MaxIdleConnsPerHost:   1024,
			IdleConnTimeout:       90 * time.Second,
			ExpectContinueTimeout: time.Second,
			ResponseHeaderTimeout: o.Timeout,
			DisableCompression:    true,
			ForceAttemptHTTP2:     false,
			WriteBufferSize:       16 << 10,
			ReadBufferSize:        16 << 10,
		}
	}
	f := &Forwarder{
		origin: o.Origin, prefix: strings.TrimSuffix(o.Origin.EscapedPath(), "/"),
		token: []string{o.Token}, transport: tr, timeout: o.Timeout, tls: o.TLS, log: o.Logger,
	}
	f.proxy = NewProxy(tr, pool)
	f.proxy.ErrorHandler = f.proxyError
	return f, nil
}

// Forward sends the exchange to the origin and copies the response back.
// The exchange's request is modified in place: it is the edge's own.
func (f *Forwarder) Forward(w http.ResponseWriter, ex *plugins.Exchange) {
	r := ex.Request
	h := r.Header
	// Hop-by-hop headers, those the client names in Connection and the
	// client's forwarding headers go first; then the gateway's.
	PrepareHeader(h)
	// Upgrades go through Upgrade and its checked relay; anything else
	// that asks to switch protocols (h2c, a malformed WebSocket handshake)
	// must not become an unchecked tunnel (PrepareHeader removed Upgrade).
	f.setHeaders(h, ex)
	r.Trailer = nil // trailers would reach the origin after every check
	o := Outbound{
		In:            r,
		Scheme:        f.origin.Scheme,
		Host:          f.origin.Host,
		Prefix:        f.prefix,
		Path:          ex.RoutePath,
		Query:         r.URL.RawQuery,
		HeaderTimeout: f.timeout,
	}
	f.proxy.Serve(w, &o)
}

// setHeaders adds the edge-to-origin headers (after the client's were
// cleaned).
func (f *Forwarder) setHeaders(h http.Header, ex *plugins.Exchange) {
	client := ex.Client.String()
	proto := "http"
	if ex.TLS {
		proto = "https"
	}
	// One allocation for the eight values (each field gets a slice of
	// length and capacity 1, so that appending to one never touches
	// another).
	v := [...]string{
		ex.Deployment.ID, ex.API.ID + "/" + ex.Stage.Name, strconv.Itoa(ex.RouteIndex), ex.RequestID,
		client, ex.Host, proto, forwardedValue(client, ex.Host, proto),
	}
	vs := v[:]
	h[HeaderEdgeToken] = f.token
	h[HeaderDeployment] = vs[0:1:1]
	h[HeaderStage] = vs[1:2:2]
	h[HeaderRoute] = vs[2:3:3]
	h[plugins.RequestIDHeader] = vs[3:4:4]
	h["X-Forwarded-For"] = vs[4:5:5]
	h["X-Forwarded-Host"] = vs[5:6:6]
	h["X-Forwarded-Proto"] = vs[6:7:7]
	h["Forwarded"] = vs[7:8:8]
	if n := ex.Identity.NumHeaders(); n > 0 {
		// One allocation for the identity's values too, and none when
		// the request already holds exactly the identity's value, as it
		// does after a WASM authorizer set its headers on the request.
		var ids []string
		i := 0
		for k, v := range ex.Identity.Headers() {
			if cur := h[k]; len(cur) == 1 && cur[0] == v {
				continue
			}
			if ids == nil {
				ids = make([]string, n)
			}
			ids[i] = v
			h[k] = ids[i : i+1 : i+1]
			i++
		}
	}
}

func forwardedValue(client, host, proto string) string {
	var b strings.Builder
	b.Grow(len(client) + len(host) + 32)
	b.WriteString("for=")
	if strings.Contains(client, ":") {
		b.WriteString(`"[` + client + `]"`)
	} else {
		b.WriteString(client)
	}
	b.WriteString(";host=")
	if needsEscape(host) {
		b.WriteString(strconv.Quote(host))
	} else {
		b.WriteByte('"')
		b.WriteString(host)
		b.WriteByte('"')
	}
	b.WriteString(";proto=")
	b.WriteString(proto)
	return b.String()
}

// needsEscape reports whether s cannot go between double quotes as is.
func needsEscape(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; c < ' ' || c >= 0x7f || c == '"' || c == '\\' {
			return true
		}
	}
	return false
}

func unescapedPath(p string) string {
	if !strings.Contains(p, "%") {
		return p
	}
	if u, err := url.PathUnescape(p); err == nil {
		return u
	}
	return p
}

func (f *Forwarder) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	if herr := hygiene.BodyError(err); herr != nil {
		// The client's body failed (malformed chunk, over the limit):
		// the origin got an incomplete request, the client its own error.
		herr.Write(w)
		return
	}
	switch {
	case errors.Is(err, context.Canceled) && r.Context().Err() != nil:
		// The client went away; nobody reads this.
		w.WriteHeader(499)
	case errors.Is(err, context.DeadlineExceeded):
		plugins.WriteError(w, http.StatusGatewayTimeout, "the origin did not answer in time")
	default:
		f.log.Warn("origin unreachable", "origin", f.origin.Host, "err", err)
		plugins.WriteError(w, http.StatusBadGateway, "the origin gateway could not be reached")
	}
}

// Close releases idle connections to the origin.
func (f *Forwarder) Close() { f.proxy.CloseIdle() }

// Transport returns the transport used toward the origin for requests
// with a body (and for all requests when Options.Transport was set).
func (f *Forwarder) Transport() http.RoundTripper { return f.transport }

// Upgrade relays a WebSocket upgrade to the origin with the same headers a
// plain request gets. ctx ends the relay (the edge's drain).
func (f *Forwarder) Upgrade(ctx context.Context, w http.ResponseWriter, ex *plugins.Exchange, relay *wsrelay.Relay) {
	r := ex.Request
	h := wsrelay.ForwardHeader(r.Header)
	// Gateway headers go in after the client's were cleaned, so that no
	// Connection header of the client's can remove them.
	f.setHeaders(h, ex)
	u := *f.origin
	u.Path = strings.TrimSuffix(f.origin.Path, "/") + unescapedPath(ex.RoutePath)
	u.RawPath = strings.TrimSuffix(f.origin.Path, "/") + ex.RoutePath
	u.RawQuery = r.URL.RawQuery
	out := &http.Request{Method: http.MethodGet, URL: &u, Host: f.origin.Host, Header: h}
	up := wsrelay.Upstream{Request: out, Dial: f.dialOrigin}
	if err := relay.Serve(ctx, w, r, up); err != nil {
		f.log.Debug("websocket relay ended", "err", err, "request_id", ex.RequestID)
	}
}

// dialOrigin opens a connection to the origin's data plane for a relay.
func (f *Forwarder) dialOrigin(ctx context.Context) (net.Conn, error) {
	host := f.origin.Host
	if f.origin.Port() == "" {
		if f.origin.Scheme == "https" {
			host = net.JoinHostPort(f.origin.Hostname(), "443")
		} else {
			host = net.JoinHostPort(f.origin.Hostname(), "80")
		}
	}
	d := &net.Dialer{Timeout: 5 * time.Second}
	if f.origin.Scheme != "https" {
		return d.DialContext(ctx, "tcp", host)
	}
	cfg := f.tls.Clone()
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if cfg.ServerName == "" {
		cfg.ServerName = f.origin.Hostname()
	}
	cfg.NextProtos = []string{"http/1.1"}
	return (&tls.Dialer{NetDialer: d, Config: cfg}).DialContext(ctx, "tcp", host)
}
