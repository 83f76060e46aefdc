package forward

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Proxy is the reverse proxy both Portico hops use (edge to origin, origin
// to backend). It does what httputil.ReverseProxy with Rewrite did for
// them, with less work per request:
//
//   - the caller prepares the outbound header in place on its own request
//     (PrepareHeader first, then the gateway's headers), so nothing is
//     cloned;
//   - a request without a body is written and its response read on the
//     caller's goroutine over a pooled HTTP/1.1 connection (h1Pool);
//     a request with a body goes through net/http's Transport, which
//     writes the body concurrently with reading the response (a server may
//     answer before reading it) and handles Expect: 100-continue;
//   - the response is copied with the same rules either way: hop-by-hop
//     headers removed, 1xx passed on, trailers passed on (announced or
//     not), every write flushed (streaming), a 101 refused (upgrades go
//     through wsrelay, never through here), a failed copy aborts the
//     client connection (http.ErrAbortHandler).
type Proxy struct {
	pools     *pools // nil: every request uses transport
	transport http.RoundTripper
	buffers   sync.Pool // *[]byte, 32 KiB
	// ErrorHandler answers a failed exchange (no response header sent
	// yet). err wraps context.DeadlineExceeded on a timeout and
	// context.Canceled when the client went away.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, err error)
}

// NewProxy returns a Proxy whose requests with a body use tr, and whose
// other requests use HTTP/1.1 connection pools configured by po; with po
// nil, every request uses tr (another protocol, such as HTTP/3).
func NewProxy(tr http.RoundTripper, po *PoolOptions) *Proxy {
	p := &Proxy{
		transport: tr,
		buffers:   sync.Pool{New: func() any { b := make([]byte, 32<<10); return &b }},
	}
	if po != nil {
		p.pools = newPools(*po)
	}
	return p
}

// CloseIdle closes idle connections of both paths.
func (p *Proxy) CloseIdle() {
	if p.pools != nil {
		p.pools.closeIdle()
	}
	if t, ok := p.transport.(interface{ CloseIdleConnections() }); ok {
		t.CloseIdleConnections()
	}
}

// Outbound is one request to send.
type Outbound struct {
	// In is the inbound request: its method, body, context and
	// ContentLength are used; its Header is the outbound header, prepared
	// with PrepareHeader.
	In *http.Request
	// Method overrides In.Method when set.
	Method string
	// Scheme (http or https) and Host (host[:port]) of the target; Host is
	// also the Host header.
	Scheme, Host string
	// Path is the escaped request path (Prefix is put before it), Query
	// the raw query, without '?'.
	Prefix, Path, Query string
	// HeaderTimeout bounds the wait for the response header; Deadline
	// bounds the whole exchange. Zero means none.
	HeaderTimeout time.Duration
	Deadline      time.Time
	// ModifyResponse may change the response before it is copied; an
	// error goes to the ErrorHandler.
	ModifyResponse func(*http.Response) error
}

// hopHeaders are removed from requests and responses (RFC 9110 7.6.1).
var hopHeaders = [...]string{
	"Connection", "Proxy-Connection", "Keep-Alive", "Proxy-Authenticate",
	"Proxy-Authorization", "Te", "Trailer", "Transfer-Encoding", "Upgrade",
}

// removeHopByHop removes hop-by-hop headers and those that Connection
// names.
func removeHopByHop(h http.Header) {
	for _, f := range h["Connection"] {
		for sf := range strings.SplitSeq(f, ",") {
			if sf = textproto.TrimString(sf); sf != "" {
				delete(h, textproto.CanonicalMIMEHeaderKey(sf))
			}
		}
	}
	for _, k := range hopHeaders {
		delete(h, k)
	}
}

// PrepareHeader turns an inbound header into an outbound one, in place:
// hop-by-hop headers and those named in Connection go, and Te: trailers
// stays when the client sent it (it says the client accepts trailers).
// Call it before adding the gateway's headers, so that no client header
// can remove them. Forwarding headers (X-Forwarded-*, Forwarded) are the
// caller's to replace.
func PrepareHeader(h http.Header) {
	te := tokenIn(h["Te"], "trailers")
	removeHopByHop(h)
	if te {
		h["Te"] = []string{"trailers"}
	}
}

func tokenIn(vs []string, token string) bool {
	for _, v := range vs {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(textproto.TrimString(t), token) {
				return true
			}
		}
	}
	return false
}

// Serve sends o and copies the response to w.
func (p *Proxy) Serve(w http.ResponseWriter, o *Outbound) {
	in := o.In
	if p.pools != nil && (in.ContentLength == 0 || in.Body == nil || in.Body == http.NoBody) {
		p.serveLean(w, o)
		return
	}
	p.serveTransport(w, o)
}

// serveTransport sends a request with a body through net/http's Transport.
func (p *Proxy) serveTransport(w http.ResponseWriter, o *Outbound) {
	in := o.In
	ctx := in.Context()
	if !o.Deadline.IsZero() {
		var cancel context.CancelFunc
		ctx, cancel = context.WithDeadline(ctx, o.Deadline)
		defer cancel()
	}
	var (
		mu   sync.Mutex
		done bool
	)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		Got1xxResponse: func(code int, header textproto.MIMEHeader) error {
			mu.Lock()
			defer mu.Unlock()
			if done {
				return nil
			}
			write1xx(w, code, http.Header(header))
			return nil
		},
	})
	h := in.Header
	if _, ok := h["User-Agent"]; !ok {
		h["User-Agent"] = []string{""} // not Go's default
	}
	path, raw := o.Prefix+o.Path, ""
	if strings.Contains(path, "%") {
		if u, err := url.PathUnescape(path); err == nil {
			path, raw = u, o.Prefix+o.Path
		}
	}
	method := in.Method
	if o.Method != "" {
		method = o.Method
	}
	var body io.ReadCloser
	if in.ContentLength != 0 && in.Body != nil && in.Body != http.NoBody {
		body = noCloseBody{in.Body}
	}
	out := (&http.Request{
		Method:        method,
		URL:           &url.URL{Scheme: o.Scheme, Host: o.Host, Path: path, RawPath: raw, RawQuery: cleanQuery(o.Query)},
		Proto:         "HTTP/1.1",
		ProtoMajor:    1,
		ProtoMinor:    1,
		Header:        h,
		Body:          body,
		ContentLength: in.ContentLength,
		Host:          o.Host,
	}).WithContext(ctx)
	res, err := p.transport.RoundTrip(out)
	mu.Lock()
	done = true
	mu.Unlock()
	if err != nil {
		p.fail(w, in, err)
		return
	}
	p.copyResponse(w, in, res, o.ModifyResponse, nil)
}

// noCloseBody keeps the Transport from closing the inbound body when it
// fails early: closing a body the client has not sent yet (100-continue)
// would block.
type noCloseBody struct{ io.Reader }

func (noCloseBody) Close() error { return nil }

// idempotent reports whether a request without a body may be sent again
// after its connection failed before any response byte (RFC 9110 9.2.2),
// as net/http's Transport decides.
func idempotent(r *http.Request, method string) bool {
	switch method {
	case http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace, http.MethodPut, http.MethodDelete:
		return true
	}
	_, a := r.Header["Idempotency-Key"]
	_, b := r.Header["X-Idempotency-Key"]
	return a || b
}

// serveLean sends a request without a body over a pooled connection.
func (p *Proxy) serveLean(w http.ResponseWriter, o *Outbound) {
	in := o.In
	method := in.Method
	if o.Method != "" {
		method = o.Method
	}
	pool := p.pools.pool(o.Scheme, o.Host)
	ctx := in.Context()
	if err := ctx.Err(); err != nil {
		p.fail(w, in, err)
		return
	}
	var (
		c   *h1Conn
		res *http.Response
		err error
	)
	stop := func() bool { return true }
	for attempt := 0; ; attempt++ {
		c, err = pool.get(ctx)
		if err != nil {
			p.fail(w, in, err)
			return
		}
		stop = context.AfterFunc(ctx, c.abort)
		res, err = p.roundTrip(c, o, method, w)
		if err == nil {
			break
		}
		stopped := stop()
		c.nc.Close()
		if !stopped {
			err = ctx.Err()
		}
		// A kept-alive connection the other side closed: try another
		// one, when sending the request again is safe.
		var se *staleError
		if errors.As(err, &se) {
			if stopped && attempt < 2 && idempotent(in, method) {
				continue
			}
			err = se.err
		}
		p.fail(w, in, err)
		return
	}
	body := &pooledBody{rc: res.Body, c: c, reusable: !res.Close, stop: stop}
	if res.Body == http.NoBody {
		body.release(true)
	}
	res.Body = body
	p.copyResponse(w, in, res, o.ModifyResponse, c)
}

// roundTrip writes the request head on c and reads the response head.
func (p *Proxy) roundTrip(c *h1Conn, o *Outbound, method string, w http.ResponseWriter) (*http.Response, error) {
	end := o.Deadline
	if o.HeaderTimeout > 0 {
		if t := time.Now().Add(o.HeaderTimeout); end.IsZero() || t.Before(end) {
			end = t
		}
	}
	// Timeouts are honoured to within 1% (at most 100 ms) early.
	slack := min(time.Until(end)/100, 100*time.Millisecond)
	if err := c.setDeadline(end, slack); err != nil {
		return nil, err
	}
	if err := writeHead(c, o, method); err != nil {
		var he *headerError
		if c.reused && !errors.As(err, &he) {
			return nil, &staleError{err}
		}
		return nil, err
	}
	if _, err := c.br.Peek(1); err != nil {
		if c.reused && (errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
			return nil, &staleError{err}
		}
		return nil, err
	}
	req := o.In
	if method != req.Method {
		// ReadResponse needs the method sent (a HEAD response has no body).
		req = &http.Request{Method: method, Header: req.Header}
	}
	for n1xx := 0; ; n1xx++ {
		res, err := http.ReadResponse(c.br, req)
		if err != nil {
			return nil, err
		}
		if res.StatusCode >= 200 || res.StatusCode == http.StatusSwitchingProtocols {
			// The header timeout ends here; the body gets the exchange's
			// deadline, unless it is already all in the buffer and
			// nothing more will be read for it.
			buffered := res.ContentLength >= 0 && int64(c.br.Buffered()) >= res.ContentLength
			if !end.Equal(o.Deadline) && !buffered {
				if err := c.setDeadline(o.Deadline, 0); err != nil {
					return nil, err
				}
			}
			return res, nil
		}
		if n1xx >= 10 {
			return nil, errors.New("forward: too many 1xx informational responses")
		}
		write1xx(w, res.StatusCode, res.Header)
	}
}

// staleError is a failure on a kept-alive connection before any byte of
// the response: the other side had closed it.
type staleError struct{ err error }

func (e *staleError) Error() string {
	return "forward: kept-alive connection was closed by the other side: " + e.err.Error()
}
func (e *staleError) Unwrap() error { return e.err }

// headerError is a header the gateway refuses to send.
type headerError struct{ name, what string }

func (e *headerError) Error() string {
	return fmt.Sprintf("forward: invalid header field %s for %q", e.what, e.name)
}

// writeHead writes an HTTP/1.1 request head without a body. Header names
// and values are checked as net/http's Transport checks them: a value that
// would end the line must never reach the next hop.
func writeHead(c *h1Conn, o *Outbound, method string) error {
	bw := c.bw
	bw.WriteString(method)
	bw.WriteByte(' ')
	if o.Prefix == "" && o.Path == "" {
		bw.WriteByte('/')
	}
	bw.WriteString(o.Prefix)
	bw.WriteString(o.Path)
	if q := cleanQuery(o.Query); q != "" {
		bw.WriteByte('?')
		bw.WriteString(q)
	}
	bw.WriteString(" HTTP/1.1\r\nHost: ")
	bw.WriteString(o.Host)
	bw.WriteString("\r\n")
	for k, vs := range o.In.Header {
		switch k {
		case "Host", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		case "User-Agent":
			if len(vs) == 0 || vs[0] == "" {
				continue
			}
		}
		if !validName(k) {
			bw.Reset(c.nc)
			return &headerError{k, "name"}
		}
		for _, v := range vs {
			if !validValue(v) {
				bw.Reset(c.nc)
				return &headerError{k, "value"}
			}
			bw.WriteString(k)
			bw.WriteString(": ")
			bw.WriteString(textproto.TrimString(v))
			bw.WriteString("\r\n")
		}
	}
	switch method {
	case http.MethodPost, http.MethodPut, http.MethodPatch:
		// As net/http does: these methods say they have an empty body.
		bw.WriteString("Content-Length: 0\r\n")
	}
	bw.WriteString("\r\n")
	return bw.Flush()
}

func validName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !isTokenByte(k[i]) {
			return false
		}
	}
	return true
}

func isTokenByte(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	return strings.IndexByte("!#$%&'*+-.^_`|~", b) >= 0
}

func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if b := v[i]; (b < ' ' && b != '\t') || b == 0x7f {
			return false
		}
	}
	return true
}

// cleanQuery drops query parameters that do not parse, as ReverseProxy
// does: a server would otherwise read a different query than the gateway.
func cleanQuery(s string) string {
	if strings.Count(s, "&")+1 > 10000 {
		return reencode(s)
	}
	for i := 0; i < len(s); {
		switch s[i] {
		case ';':
			return reencode(s)
		case '%':
			if i+2 >= len(s) || !ishex(s[i+1]) || !ishex(s[i+2]) {
				return reencode(s)
			}
			i += 3
		default:
			i++
		}
	}
	return s
}

func reencode(s string) string {
	v, _ := url.ParseQuery(s)
	return v.Encode()
}

func ishex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

// write1xx passes an informational response on (103 Early Hints, 100
// Continue from the next hop).
func write1xx(w http.ResponseWriter, code int, h http.Header) {
	// net/http sends the whole header map with a 1xx and does not clear
	// it after: send only the 1xx's own fields, then put back what the
	// gateway had set for the final response (X-Request-Id, HSTS, ...).
	dst := w.Header()
	saved := dst.Clone()
	clear(dst)
	copyHeader(dst, h)
	w.WriteHeader(code)
	clear(dst)
	for k, v := range saved {
		dst[k] = v
	}
}

// copyHeader adds src's values to dst. A name dst lacks takes src's slice
// as is (src is the next hop's response, used only here). A field the
// gateway already set with the very same single value (X-Request-Id, set
// by the edge and echoed by the origin) is not repeated.
func copyHeader(dst, src http.Header) {
	for k, vs := range src {
		if old, ok := dst[k]; ok {
			if len(old) == 1 && len(vs) == 1 && old[0] == vs[0] {
				continue
			}
			dst[k] = append(old, vs...)
		} else {
			dst[k] = vs
		}
	}
}

// fail answers a failed exchange through the ErrorHandler.
func (p *Proxy) fail(w http.ResponseWriter, r *http.Request, err error) {
	if errors.Is(err, os.ErrDeadlineExceeded) && !errors.Is(err, context.DeadlineExceeded) {
		err = fmt.Errorf("%w: %w", context.DeadlineExceeded, err)
	}
	if p.ErrorHandler != nil {
		p.ErrorHandler(w, r, err)
		return
	}
	w.WriteHeader(http.StatusBadGateway)
}

// copyResponse writes res to w. c is the lean path's connection (nil for
// the Transport path).
func (p *Proxy) copyResponse(w http.ResponseWriter, in *http.Request, res *http.Response, modify func(*http.Response) error, c *h1Conn) {
	if res.StatusCode == http.StatusSwitchingProtocols {
		// Nothing asked to switch protocols (Upgrade never leaves
		// through here): a backend that does is broken or hostile.
		res.Body.Close()
		p.fail(w, in, fmt.Errorf("forward: the next hop switched protocols (%q) on a request that did not ask to", res.Header.Get("Upgrade")))
		return
	}
	removeHopByHop(res.Header)
	if modify != nil {
		if err := modify(res); err != nil {
			res.Body.Close()
			p.fail(w, in, err)
			return
		}
	}
	h := w.Header()
	copyHeader(h, res.Header)
	announced := len(res.Trailer)
	if announced > 0 {
		keys := make([]string, 0, announced)
		for k := range res.Trailer {
			keys = append(keys, k)
		}
		h.Add("Trailer", strings.Join(keys, ", "))
	}
	w.WriteHeader(res.StatusCode)
	if err := p.copyBody(w, res.Body); err != nil {
		res.Body.Close()
		if in.Context().Value(http.ServerContextKey) != nil {
			// The response is cut short: all that is left is to abort
			// the client's connection (net/http recovers this panic).
			panic(http.ErrAbortHandler)
		}
		return
	}
	res.Body.Close()
	if len(res.Trailer) > 0 {
		// Force chunking: net/http must not compute a Content-Length
		// for a short body that has trailers.
		flush(w)
	}
	if len(res.Trailer) == announced {
		copyHeader(h, res.Trailer)
		return
	}
	for k, vs := range res.Trailer {
		k = http.TrailerPrefix + k
		for _, v := range vs {
			h.Add(k, v)
		}
	}
}

// copyBody copies and flushes after every write, so that streamed
// responses (server-sent events, long polls) reach the client as they come.
func (p *Proxy) copyBody(w http.ResponseWriter, body io.Reader) error {
	bp := p.buffers.Get().(*[]byte)
	defer p.buffers.Put(bp)
	buf := *bp
	fl := flusher(w)
	for {
		n, rerr := body.Read(buf)
		if n > 0 {
			if _, werr := w.Write(buf[:n]); werr != nil {
				return werr
			}
			if fl != nil {
				if err := fl.FlushError(); err != nil {
					return err
				}
			}
		}
		if rerr == io.EOF {
			return nil
		}
		if rerr != nil {
			return rerr
		}
	}
}

// flushErrorer is what net/http's ResponseWriter implements.
type flushErrorer interface{ FlushError() error }

type plainFlusher struct{ http.Flusher }

func (f plainFlusher) FlushError() error { f.Flush(); return nil }

type controllerFlusher struct{ rc *http.ResponseController }

func (f controllerFlusher) FlushError() error { return f.rc.Flush() }

func flusher(w http.ResponseWriter) flushErrorer {
	switch f := w.(type) {
	case flushErrorer:
		return f
	case http.Flusher:
		return plainFlusher{f}
	case interface{ Unwrap() http.ResponseWriter }:
		return controllerFlusher{http.NewResponseController(w)}
	}
	return nil
}

func flush(w http.ResponseWriter) {
	if f := flusher(w); f != nil {
		_ = f.FlushError()
	}
}
