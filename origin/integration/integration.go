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
	"net/http/httputil"
	"net/url"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/portico-edge/portico/config"
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
	proxy     *httputil.ReverseProxy
	patterns  sync.Map // pattern string -> *regexp.Regexp
}

// Options configure an Invoker.
type Options struct {
	Logger *slog.Logger
	// MaxIdleConnsPerHost bounds kept-alive connections per backend.
	MaxIdleConnsPerHost int
	// WebSocket bounds WebSockets relayed to backends.
	WebSocket wsrelay.Limits
}

type callKey struct{}

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
	iv.proxy = &httputil.ReverseProxy{
		Rewrite:      iv.rewrite,
		Transport:    tr,
		BufferPool:   newBufferPool(),
		ErrorHandler: iv.proxyError,
		ModifyResponse: func(res *http.Response) error {
			if st, _ := res.Request.Context().Value(callKey{}).(*callState); st != nil && st.call.Route.Integration.Type == config.IntegrationHTTP {
				return iv.mapResponse(res, st.call)
			}
			return nil
		},
		FlushInterval: -1, // stream responses as they come: APIs may send server-sent events
	}
	return iv
}

// Close closes relayed WebSockets (1001) and idle backend connections.
func (iv *Invoker) Close() {
	iv.drain()
	iv.transport.CloseIdleConnections()
}

// serveUpgrade relays a WebSocket upgrade to the backend. Only http and
// http_proxy routes get here; the checked relay replaces ReverseProxy's
// own upgrade handling, which would tunnel any 101 without limits.
func (iv *Invoker) serveUpgrade(w http.ResponseWriter, r *http.Request, target *url.URL, mapped http.Header, call *Call) {
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

// callState travels in the outbound request's context from Serve to the
// proxy's hooks.
type callState struct {
	call   *Call
	target *url.URL
	header http.Header // headers to set on the outbound request (http type: the only ones)
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
	target, hdr, err := buildTarget(r, call)
	if err != nil {
		plugins.WriteError(w, http.StatusBadRequest, err.Error())
		return
	}
	timeout := in.Timeout.Std()
	if timeout == 0 {
		timeout = config.DefaultIntegrationTimeout
	}
	if wsrelay.IsUpgrade(r) {
		iv.serveUpgrade(w, r, target, hdr, call)
		return
	}
	delete(r.Header, "Upgrade") // see serveUpgrade: no unchecked tunnels
	ctx, cancel := context.WithTimeout(r.Context(), timeout)
	defer cancel()
	st := &callState{call: call, target: target, header: hdr}
	ctx = context.WithValue(ctx, callKey{}, st)
	iv.proxy.ServeHTTP(w, r.WithContext(ctx))
}

func (iv *Invoker) rewrite(pr *httputil.ProxyRequest) {
	st := pr.In.Context().Value(callKey{}).(*callState)
	out := pr.Out
	out.URL = st.target
	out.Host = ""
	if st.call.Route.Integration.Type == config.IntegrationHTTP {
		// Only mapped parameters pass; keep what describes the body.
		keep := http.Header{}
		for _, h := range []string{"Content-Type", "Content-Encoding", "Content-Length", "Accept"} {
			if v, ok := out.Header[h]; ok {
				keep[h] = v
			}
		}
		out.Header = keep
	}
	// The edge set these after removing the client's; it is trusted.
	for _, h := range []string{"X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "Forwarded"} {
		if v, ok := pr.In.Header[h]; ok {
			out.Header[h] = v
		}
	}
	for k, v := range st.header {
		out.Header[k] = v
	}
	out.Header.Set(plugins.RequestIDHeader, st.call.RequestID)
	if in := st.call.Route.Integration.Method; in != "" {
		out.Method = in
	}
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

// buildTarget substitutes placeholders into the integration URI and maps
// parameters.
func buildTarget(r *http.Request, call *Call) (*url.URL, http.Header, error) {
	in := &call.Route.Integration
	raw := expandURI(in.URI, call)
	u, err := url.Parse(raw)
	if err != nil {
		return nil, nil, errors.New("the backend URL built for this request is not valid")
	}
	q := u.Query()
	added := false
	hdr := http.Header{}
	for dst, src := range in.Parameters {
		val, ok := paramValue(r, call, src)
		if !ok {
			continue
		}
		kind, name, _ := strings.Cut(dst, ".")
		switch kind {
		case "query":
			q.Set(name, val)
			added = true
		case "header":
			hdr.Set(name, val)
		case "path":
			// Path mappings are applied by expandURI through {name}.
		}
	}
	switch in.Type {
	case config.IntegrationHTTPProxy:
		// The client's query passes through, after the URI's own.
		if r.URL.RawQuery != "" {
			if u.RawQuery != "" || added {
				if added {
					u.RawQuery = q.Encode()
				}
				u.RawQuery += "&" + r.URL.RawQuery
			} else {
				u.RawQuery = r.URL.RawQuery
			}
		} else if added {
			u.RawQuery = q.Encode()
		}
	default:
		if added {
			u.RawQuery = q.Encode()
		}
	}
	return u, hdr, nil
}

// expandURI replaces ${stageVariables.NAME} and {param} in the URI. Path
// parameter values are escaped as one path segment, except a greedy
// parameter, whose slashes are kept.
func expandURI(uri string, call *Call) string {
	if !strings.ContainsAny(uri, "{$") {
		return uri
	}
	var b strings.Builder
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

type bufferPool struct{ p sync.Pool }

func newBufferPool() *bufferPool {
	return &bufferPool{p: sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }}}
}

func (b *bufferPool) Get() []byte  { return *(b.p.Get().(*[]byte)) }
func (b *bufferPool) Put(x []byte) { b.p.Put(&x) }
