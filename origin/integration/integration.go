// Package integration runs a route's integration at the origin: it calls
// the HTTP backend (http and http_proxy types) or answers from the
// configuration (mock).
//
// The two HTTP types differ the way they do in API Gateway: http_proxy
// passes the whole request (headers, query, body) and the whole response;
// http passes only the mapped parameters and the body, and maps the
// response through the integration responses.
package integration

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/forward"
	"github.com/portico-edge/portico/edge/wsrelay"
	"github.com/portico-edge/portico/plugins"
)

// Call is one request to run through an integration.
type Call struct {
	Route     *config.Route
	Variables map[string]string // the stage's variables
	Params    []plugins.Param   // path parameters of the matched route
	RequestID string
}

// Invoker runs integrations. One Invoker serves all routes: it holds the
// connection pool to backends.
type Invoker struct {
	relay     *wsrelay.Relay
	drainCtx  context.Context
	drain     context.CancelFunc
	log       *slog.Logger
	transport *http.Transport
	proxy     *forward.Proxy
	patterns  sync.Map // pattern string -> *regexp.Regexp
	targets   sync.Map // expanded integration URI -> *url.URL (parsed once)
	ntargets  atomic.Int32
}

// Options configure an Invoker.
type Options struct {
	Logger *slog.Logger
	// MaxIdleConnsPerHost bounds kept-alive connections per backend.
	MaxIdleConnsPerHost int
	// WebSocket bounds WebSockets relayed to backends.
	WebSocket wsrelay.Limits
}

// New returns an Invoker.
func New(o Options) *Invoker {
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.MaxIdleConnsPerHost == 0 {
		o.MaxIdleConnsPerHost = 256
	}
	tr := &http.Transport{
		Proxy:                 nil, // backends are reached directly, never through an environment proxy
		DialContext:           (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:          4096,
		MaxIdleConnsPerHost:   o.MaxIdleConnsPerHost,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   5 * time.Second,
		ExpectContinueTimeout: time.Second,
		ResponseHeaderTimeout: 0, // bounded per call by the integration timeout
		DisableCompression:    true,
	}
	iv := &Invoker{log: o.Logger, transport: tr, relay: &wsrelay.Relay{Limits: o.WebSocket, Metrics: &wsrelay.Metrics{}}}
	iv.drainCtx, iv.drain = context.WithCancel(context.Background())
	// Requests without a body take the lean HTTP/1.1 path; the Transport
	// carries those with one (forward.Proxy). Responses stream as they
	// come: APIs may send server-sent events.
	iv.proxy = forward.NewProxy(tr, &forward.PoolOptions{
		MaxIdlePerHost: o.MaxIdleConnsPerHost,
		MaxIdle:        4096,
		IdleTimeout:    90 * time.Second,
		DialTimeout:    5 * time.Second,
	})
	iv.proxy.ErrorHandler = iv.proxyError
	return iv
}

// Close closes relayed WebSockets (1001) and idle backend connections.
func (iv *Invoker) Close() {
	iv.drain()
	iv.proxy.CloseIdle()
}

// serveUpgrade relays a WebSocket upgrade to the backend. Only http and
// http_proxy routes get here; the checked relay replaces ReverseProxy's
// own upgrade handling, which would tunnel any 101 without limits.
func (iv *Invoker) serveUpgrade(w http.ResponseWriter, r *http.Request, t target, mapped http.Header, call *Call) {
	target := &url.URL{Scheme: t.scheme, Host: t.host, RawQuery: t.query}
	target.Path, _ = url.PathUnescape(t.path)
	target.RawPath = t.path
	h := wsrelay.ForwardHeader(r.Header)
	if call.Route.Integration.Type == config.IntegrationHTTP {
		h = http.Header{}
		for _, k := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded", "Origin"} {
			if v, ok := r.Header[k]; ok {
				h[k] = v
			}
		}
	}
	for k, v := range mapped {
		h[k] = v
	}
	h.Set(plugins.RequestIDHeader, call.RequestID)
	out := &http.Request{Method: http.MethodGet, URL: target, Host: target.Host, Header: h}
	dial := func(ctx context.Context) (net.Conn, error) {
		host := target.Host
		if target.Port() == "" {
			port := "80"
			if target.Scheme == "https" {
				port = "443"
			}
			host = net.JoinHostPort(target.Hostname(), port)
		}
		d := &net.Dialer{Timeout: 5 * time.Second}
		if target.Scheme == "https" {
			return (&tls.Dialer{NetDialer: d, Config: &tls.Config{ServerName: target.Hostname(), NextProtos: []string{"http/1.1"}}}).DialContext(ctx, "tcp", host)
		}
		return d.DialContext(ctx, "tcp", host)
	}
	if err := iv.relay.Serve(iv.drainCtx, w, r, wsrelay.Upstream{Dial: dial, Request: out}); err != nil {
		iv.log.Debug("websocket relay to backend ended", "err", err, "request_id", call.RequestID)
	}
}

// Serve runs the call's integration and writes the response.
func (iv *Invoker) Serve(w http.ResponseWriter, r *http.Request, call *Call) {
	in := &call.Route.Integration
	switch in.Type {
	case config.IntegrationMock:
		serveMock(w, in.Mock)
		return
	case config.IntegrationHTTP, config.IntegrationHTTPProxy:
	default:
		plugins.WriteError(w, http.StatusInternalServerError, "the route's integration is not runnable")
		return
	}
	t, hdr, err := iv.buildTarget(r, call)
	if errors.Is(err, errNotHTTP) {
		iv.log.Warn("integration URI is not callable", "uri", call.Route.Integration.URI, "request_id", call.RequestID)
		plugins.WriteError(w, http.StatusBadGateway, err.Error())
		return
	}
	if err != nil {
		plugins.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	timeout := in.Timeout.Std()
	if timeout == 0 {
		timeout = config.DefaultIntegrationTimeout
	}
	if wsrelay.IsUpgrade(r) {
		iv.serveUpgrade(w, r, t, hdr, call)
		return
	}
	// Hop-by-hop headers (Upgrade among them: no unchecked tunnels, see
	// serveUpgrade) and those named in Connection go first.
	forward.PrepareHeader(r.Header)
	if in.Type == config.IntegrationHTTP {
		// Only mapped parameters pass; keep what describes the body.
		keep := make(http.Header, 8)
		for _, h := range []string{"Content-Type", "Content-Encoding", "Content-Length", "Accept"} {
			if v, ok := r.Header[h]; ok {
				keep[h] = v
			}
		}
		// The edge set these after removing the client's; it is trusted.
		for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
			if v, ok := r.Header[h]; ok {
				keep[h] = v
			}
		}
		r.Header = keep
	}
	h := r.Header
	for k, v := range hdr {
		h[k] = v
	}
	h[plugins.RequestIDHeader] = []string{call.RequestID}
	// Via records this hop (RFC 9110 7.6.3) with the protocol the request
	// arrived in: an operator can see how edges reach the origin.
	h["Via"] = append(h["Via"], viaFor(r))
	o := forward.Outbound{
		In:       r,
		Method:   in.Method,
		Scheme:   t.scheme,
		Host:     t.host,
		Path:     t.path,
		Query:    t.query,
		Deadline: time.Now().Add(timeout),
	}
	if in.Type == config.IntegrationHTTP && len(in.Responses) > 0 {
		o.ModifyResponse = func(res *http.Response) error { return iv.mapResponse(res, call) }
	}
	iv.proxy.Serve(w, &o)
}

func (iv *Invoker) proxyError(w http.ResponseWriter, r *http.Request, err error) {
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		plugins.WriteError(w, http.StatusGatewayTimeout, "the backend did not answer in time")
	case errors.Is(err, context.Canceled):
		// The client went away; nobody reads this.
		w.WriteHeader(499)
	default:
		iv.log.Debug("backend call failed", "err", err)
		plugins.WriteError(w, http.StatusBadGateway, "the backend could not be reached or sent an invalid response")
	}
}

// target is where a call goes: scheme, host[:port], escaped path, raw query.
type target struct{ scheme, host, path, query string }

// maxParsedTargets bounds the cache of parsed integration URIs. URIs built
// from path parameters are not cached (one per value); those built from
// stage variables are few, but variables change, hence a bound.
const maxParsedTargets = 4096

// parse returns the parsed URL of an expanded integration URI. The result
// is shared: never modify it.
func (iv *Invoker) parse(raw string, cache bool) (*url.URL, error) {
	if v, ok := iv.targets.Load(raw); ok {
		return v.(*url.URL), nil
	}
	u, err := url.Parse(raw)
	if err != nil {
		return nil, err
	}
	if cache && iv.ntargets.Load() < maxParsedTargets {
		if _, loaded := iv.targets.LoadOrStore(raw, u); !loaded {
			iv.ntargets.Add(1)
		}
	}
	return u, nil
}

// errNotHTTP: the integration's URI (after substitution) is not one the
// invoker can call; a configuration problem, not the client's.
var errNotHTTP = errors.New("the integration's backend URL is not an http:// or https:// URL with a host")

// hasPathParams reports whether uri holds {param} placeholders (as opposed
// to ${stageVariables.NAME} only).
func hasPathParams(uri string) bool {
	for i := 0; i < len(uri); i++ {
		if uri[i] == '{' && (i == 0 || uri[i-1] != '$') {
			return true
		}
	}
	return false
}

// buildTarget substitutes placeholders into the integration URI and maps
// parameters.
func (iv *Invoker) buildTarget(r *http.Request, call *Call) (target, http.Header, error) {
	in := &call.Route.Integration
	raw := expandURI(in.URI, call)
	u, err := iv.parse(raw, !hasPathParams(in.URI))
	if err != nil {
		return target{}, nil, errors.New("the backend URL built for this request is not valid")
	}
	if (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return target{}, nil, errNotHTTP
	}
	t := target{scheme: u.Scheme, host: u.Host, path: u.EscapedPath(), query: u.RawQuery}
	var (
		q     url.Values
		added bool
		hdr   http.Header
	)
	for dst, src := range in.Parameters {
		val, ok := paramValue(r, call, src)
		if !ok {
			continue
		}
		kind, name, _ := strings.Cut(dst, ".")
		switch kind {
		case "query":
			if q == nil {
				q = u.Query()
			}
			q.Set(name, val)
			added = true
		case "header":
			if hdr == nil {
				hdr = http.Header{}
			}
			hdr.Set(name, val)
		case "path":
			// Path mappings are applied by expandURI through {name}.
		}
	}
	if added {
		t.query = q.Encode()
	}
	// http_proxy: the client's query passes through, after the URI's own.
	if in.Type == config.IntegrationHTTPProxy && r.URL.RawQuery != "" {
		if t.query != "" {
			t.query += "&" + r.URL.RawQuery
		} else {
			t.query = r.URL.RawQuery
		}
	}
	return t, hdr, nil
}

// expandURI replaces ${stageVariables.NAME} and {param} in the URI. Path
// parameter values are escaped as one path segment, except a greedy
// parameter, whose slashes are kept.
func expandURI(uri string, call *Call) string {
	if !strings.ContainsAny(uri, "{$") {
		return uri
	}
	var b strings.Builder
	b.Grow(len(uri) + 64)
	for i := 0; i < len(uri); {
		switch {
		case strings.HasPrefix(uri[i:], "${stageVariables."):
			end := strings.IndexByte(uri[i:], '}')
			if end < 0 {
				b.WriteString(uri[i:])
				return b.String()
			}
			name := uri[i+len("${stageVariables.") : i+end]
			b.WriteString(call.Variables[name])
			i += end + 1
		case uri[i] == '{':
			end := strings.IndexByte(uri[i:], '}')
			if end < 0 {
				b.WriteString(uri[i:])
				return b.String()
			}
			name := uri[i+1 : i+end]
			name = strings.TrimSuffix(name, "+")
			// A greedy route parameter keeps its slashes whichever way
			// the URI writes it ({proxy} or {proxy+}, as AWS exports do).
			greedy := strings.Contains(call.Route.Path, "{"+name+"+}")
			val := pathParamFor(call, name)
			if greedy {
				b.WriteString(escapeGreedy(val))
			} else {
				b.WriteString(url.PathEscape(val))
			}
			i += end + 1
		default:
			b.WriteByte(uri[i])
			i++
		}
	}
	return b.String()
}

// pathParamFor returns the value of a backend path parameter: a mapping
// "path.NAME" when there is one, else the route's parameter of that name.
func pathParamFor(call *Call, name string) string {
	if src, ok := call.Route.Integration.Parameters["path."+name]; ok {
		if v, ok := paramValue(nil, call, src); ok {
			return v
		}
	}
	for _, p := range call.Params {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

func escapeGreedy(s string) string {
	parts := strings.Split(s, "/")
	for i, p := range parts {
		parts[i] = url.PathEscape(p)
	}
	return strings.Join(parts, "/")
}

func paramValue(r *http.Request, call *Call, src string) (string, bool) {
	switch {
	case len(src) >= 2 && src[0] == '\'' && src[len(src)-1] == '\'':
		return src[1 : len(src)-1], true
	case strings.HasPrefix(src, "stageVariables."):
		v, ok := call.Variables[strings.TrimPrefix(src, "stageVariables.")]
		return v, ok
	case strings.HasPrefix(src, "request.path."):
		name := strings.TrimPrefix(src, "request.path.")
		for _, p := range call.Params {
			if p.Name == name {
				return p.Value, true
			}
		}
	case r == nil:
	case strings.HasPrefix(src, "request.query."):
		vs, ok := r.URL.Query()[strings.TrimPrefix(src, "request.query.")]
		if ok && len(vs) > 0 {
			return vs[0], true
		}
	case strings.HasPrefix(src, "request.header."):
		v := r.Header.Get(strings.TrimPrefix(src, "request.header."))
		return v, v != ""
	}
	return "", false
}

func serveMock(w http.ResponseWriter, m *config.MockResponse) {
	h := w.Header()
	for k, v := range m.Headers {
		h.Set(k, v)
	}
	if h.Get("Content-Type") == "" && m.Body != "" {
		h.Set("Content-Type", "application/json")
	}
	h.Set("Content-Length", strconv.Itoa(len(m.Body)))
	w.WriteHeader(m.Status)
	_, _ = w.Write([]byte(m.Body))
}

// mapResponse applies integration responses to a backend response (http
// type): the first pattern matching the status, else the default.
func (iv *Invoker) mapResponse(res *http.Response, call *Call) error {
	rs := call.Route.Integration.Responses
	if len(rs) == 0 {
		return nil
	}
	code := strconv.Itoa(res.StatusCode)
	var chosen *config.IntegrationResponse
	for i := range rs {
		if rs[i].Pattern == "" {
			if chosen == nil {
				chosen = &rs[i]
			}
			continue
		}
		re, err := iv.pattern(rs[i].Pattern)
		if err == nil && re.MatchString(code) {
			chosen = &rs[i]
			break
		}
	}
	if chosen == nil {
		return nil
	}
	backend := res.Header.Clone()
	// Non-proxy integrations return only mapped headers, plus what
	// describes the body.
	kept := http.Header{}
	for _, h := range []string{"Content-Type", "Content-Length", "Content-Encoding"} {
		if v, ok := backend[h]; ok {
			kept[h] = v
		}
	}
	for name, src := range chosen.Headers {
		if len(src) >= 2 && src[0] == '\'' {
			kept.Set(name, src[1:len(src)-1])
		} else if h, ok := strings.CutPrefix(src, "integration.response.header."); ok {
			if v := backend.Get(h); v != "" {
				kept.Set(name, v)
			}
		}
	}
	res.Header = kept
	if chosen.Status != 0 {
		res.StatusCode = chosen.Status
		res.Status = strconv.Itoa(chosen.Status) + " " + http.StatusText(chosen.Status)
	}
	return nil
}

func (iv *Invoker) pattern(p string) (*regexp.Regexp, error) {
	if re, ok := iv.patterns.Load(p); ok {
		return re.(*regexp.Regexp), nil
	}
	re, err := regexp.Compile("^(?:" + p + ")$")
	if err != nil {
		return nil, err
	}
	iv.patterns.Store(p, re)
	return re, nil
}

// viaFor returns this hop's Via entry for a request.
func viaFor(r *http.Request) string {
	switch {
	case r.ProtoMajor == 3:
		return "3 portico"
	case r.ProtoMajor == 2:
		return "2 portico"
	case r.ProtoMinor == 0:
		return "1.0 portico"
	}
	return "1.1 portico"
}
