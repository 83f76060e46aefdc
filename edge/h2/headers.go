package h2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// headerBlock collects one header block (HEADERS and its CONTINUATIONs)
// as the HPACK decoder emits its fields, validating each as it comes. It
// belongs to the frame loop.
type headerBlock struct {
	c             *conn
	active        bool // between HEADERS and END_HEADERS
	stream        uint32
	endStream     bool
	continuations int

	kind      blockKind
	selfDep   bool // HEADERS whose priority depends on its own stream
	size      int  // the decoded header list size (RFC 9113 §6.5.2)
	encoded   int  // the octets of the block as sent (compressed)
	tooLarge  bool
	malformed string // why the block is malformed, if it is

	sawRegular                                bool
	pseudoSeen                                uint8
	method, scheme, authority, path, protocol string
	host, contentLength                       string
	hosts                                     int
	fields                                    []hpack.HeaderField
	cookies                                   int
}

type blockKind uint8

const (
	blockRequest      blockKind = iota // a new stream's request
	blockTrailers                      // an open stream's trailers
	blockIgnore                        // decoded for HPACK state, then dropped
	blockStreamClosed                  // decoded, then STREAM_CLOSED for a half-closed stream
)

const (
	pseudoMethod = 1 << iota
	pseudoScheme
	pseudoAuthority
	pseudoPath
	pseudoProtocol
)

func (hb *headerBlock) reset(id uint32, endStream bool) {
	fields := hb.fields[:0]
	clear(hb.fields)
	*hb = headerBlock{c: hb.c, stream: id, endStream: endStream, fields: fields, active: true}
}

func (hb *headerBlock) bad(format string, a ...any) {
	if hb.malformed == "" {
		hb.malformed = fmt.Sprintf(format, a...)
	}
}

// emit receives each decoded field.
func (hb *headerBlock) emit(f hpack.HeaderField) {
	if hb.kind == blockIgnore || hb.kind == blockStreamClosed {
		return
	}
	hb.size += len(f.Name) + len(f.Value) + 32
	if hb.size > hb.c.cfg.MaxHeaderBytes {
		// Keep decoding, so that the HPACK state stays in step, but keep
		// nothing more.
		hb.tooLarge = true
		hb.c.hdec.SetEmitEnabled(false)
		return
	}
	if hb.malformed != "" {
		return
	}
	if strings.HasPrefix(f.Name, ":") {
		if hb.kind == blockTrailers {
			hb.bad("pseudo-header %s in trailers", f.Name)
			return
		}
		if hb.sawRegular {
			hb.bad("pseudo-header %s after a regular field", f.Name)
			return
		}
		var bit uint8
		var dst *string
		switch f.Name {
		case ":method":
			bit, dst = pseudoMethod, &hb.method
		case ":scheme":
			bit, dst = pseudoScheme, &hb.scheme
		case ":authority":
			bit, dst = pseudoAuthority, &hb.authority
		case ":path":
			bit, dst = pseudoPath, &hb.path
		case ":protocol":
			bit, dst = pseudoProtocol, &hb.protocol
		default:
			hb.bad("unknown pseudo-header %s", f.Name)
			return
		}
		if hb.pseudoSeen&bit != 0 {
			hb.bad("duplicate pseudo-header %s", f.Name)
			return
		}
		hb.pseudoSeen |= bit
		*dst = f.Value
		return
	}
	hb.sawRegular = true
	if !validFieldName(f.Name) {
		hb.bad("invalid header field name %q (names are lower-case tokens)", f.Name)
		return
	}
	if !validFieldValue(f.Value) {
		hb.bad("invalid value of header field %s", f.Name)
		return
	}
	switch f.Name {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		hb.bad("connection-specific header field %s", f.Name)
		return
	case "te":
		if f.Value != "trailers" {
			hb.bad("te: %q (only \"trailers\" is allowed)", f.Value)
			return
		}
	case "content-length":
		if hb.kind == blockRequest {
			if hb.contentLength != "" && hb.contentLength != f.Value {
				hb.bad("conflicting content-length fields %q and %q", hb.contentLength, f.Value)
				return
			}
			hb.contentLength = f.Value
		}
	case "host":
		// Kept apart, as net/http has it: checked against :authority
		// and left out of r.Header.
		hb.hosts++
		hb.host = f.Value
		return
	case "cookie":
		hb.cookies++
	}
	hb.fields = append(hb.fields, f)
}

// validFieldName: a token in lower case (RFC 9113 §8.2.1).
func validFieldName(s string) bool {
	if len(s) == 0 {
		return false
	}
	for i := 0; i < len(s); i++ {
		b := s[i]
		if b >= 'A' && b <= 'Z' {
			return false
		}
	}
	return httpguts.ValidHeaderFieldName(s)
}

// validFieldValue: no NUL, CR or LF, no leading or trailing whitespace
// (RFC 9113 §8.2.1).
func validFieldValue(s string) bool {
	if len(s) > 0 {
		if c := s[0]; c == ' ' || c == '\t' {
			return false
		}
		if c := s[len(s)-1]; c == ' ' || c == '\t' {
			return false
		}
	}
	return httpguts.ValidHeaderFieldValue(s)
}

// canonicalKey maps a lower-case field name to http.Header's form, from a
// table of common names or the connection's cache, so that common
// requests allocate no key strings.
func (c *conn) canonicalKey(name string) string {
	if k, ok := commonCanonical[name]; ok {
		return k
	}
	if k, ok := c.canon[name]; ok {
		return k
	}
	k := http.CanonicalHeaderKey(name)
	if size := cachedNameSize(name); c.canonBytes+size <= maxCachedNameBytes && len(name) <= maxCachedName {
		if c.canon == nil {
			c.canon = make(map[string]string)
		}
		c.canon[name] = k
		c.canonBytes += size
	}
	return k
}

// lowerKey maps an http.Header key to its lower-case wire form.
func (c *conn) lowerKey(k string) string {
	if l, ok := commonLower[k]; ok {
		return l
	}
	if l, ok := c.lower[k]; ok {
		return l
	}
	l := strings.ToLower(k)
	if size := cachedNameSize(k); c.lowerBytes+size <= maxCachedNameBytes && len(k) <= maxCachedName {
		if c.lower == nil {
			c.lower = make(map[string]string)
		}
		c.lower[k] = l
		c.lowerBytes += size
	}
	return l
}

// Each connection's name caches are bounded in octets, not entries: the
// client chooses the names (CVE-2021-44716). Names longer than
// maxCachedName are converted every time; a cache holds up to
// maxCachedNameBytes, counting both strings and some map overhead.
const (
	maxCachedName      = 64
	maxCachedNameBytes = 4 << 10
)

func cachedNameSize(name string) int { return 2*len(name) + 64 }

var commonCanonical = func() map[string]string {
	m := make(map[string]string)
	for _, k := range []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Credentials", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods",
		"Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Access-Control-Max-Age",
		"Access-Control-Request-Headers", "Access-Control-Request-Method", "Age", "Allow", "Alt-Svc",
		"Authorization", "Cache-Control", "Content-Disposition", "Content-Encoding", "Content-Language",
		"Content-Length", "Content-Location", "Content-Range", "Content-Type", "Cookie", "Date", "Etag",
		"Expect", "Expires", "Forwarded", "From", "Host", "If-Match", "If-Modified-Since", "If-None-Match",
		"If-Range", "If-Unmodified-Since", "Last-Modified", "Link", "Location", "Max-Forwards", "Origin",
		"Priority", "Proxy-Authenticate", "Proxy-Authorization", "Range", "Referer", "Refresh", "Retry-After",
		"Sec-Fetch-Dest", "Sec-Fetch-Mode", "Sec-Fetch-Site", "Sec-Fetch-User", "Server", "Set-Cookie",
		"Strict-Transport-Security", "Te", "Trailer", "User-Agent", "Vary", "Via", "Www-Authenticate",
		"X-Api-Key", "X-Content-Type-Options", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Frame-Options", "X-Request-Id", "X-Requested-With", "X-Xss-Protection", "Grpc-Timeout",
		"Grpc-Encoding", "Grpc-Accept-Encoding", "Traceparent", "Tracestate", "Upgrade-Insecure-Requests",
	} {
		m[strings.ToLower(k)] = k
	}
	return m
}()

var commonLower = func() map[string]string {
	m := make(map[string]string, len(commonCanonical))
	for l, k := range commonCanonical {
		m[k] = l
	}
	return m
}()

// processHeaders starts a header block: a new request, or an open
// stream's trailers.
func (c *conn) processHeaders(fh frameHeader, p []byte) error {
	id := fh.StreamID
	if id == 0 {
		return connError{ErrCodeProtocol, "HEADERS on stream 0"}
	}
	if id%2 == 0 {
		return connError{ErrCodeProtocol, fmt.Sprintf("HEADERS on even stream %d: clients open odd streams", id)}
	}
	p, _, err := stripPadding(fh, p)
	if err != nil {
		return err
	}
	hb := &c.hb
	hb.reset(id, fh.Flags&flagEndStream != 0)
	if fh.Flags&flagPriority != 0 {
		if len(p) < 5 {
			return connError{ErrCodeFrameSize, "HEADERS too short for its priority fields"}
		}
		if dep := uint32(p[0]&0x7f)<<24 | uint32(p[1])<<16 | uint32(p[2])<<8 | uint32(p[3]); dep == id {
			hb.selfDep = true
		}
		p = p[5:]
	}
	c.mu.Lock()
	st := c.streams[id]
	switch {
	case st != nil && st.remoteClosed:
		hb.kind = blockStreamClosed
	case st != nil:
		// The stream is looked up again when the block ends: it may be
		// closed and recycled, even handed to another connection, while
		// the block is still arriving.
		hb.kind = blockTrailers
	case id <= c.maxClientID:
		reset := c.wasResetLocked(id) || c.goingAway && id > c.lastStreamID
		c.mu.Unlock()
		if !reset {
			return connError{ErrCodeProtocol, fmt.Sprintf("HEADERS on stream %d, not above the last one opened (%d)", id, c.maxClientID)}
		}
		hb.kind = blockIgnore
		c.mu.Lock()
	default:
		c.maxClientID = id
		if c.goingAway {
			// Streams above the GOAWAY's last stream id are ignored
			// (RFC 9113 §6.8); the client retries them elsewhere.
			hb.kind = blockIgnore
		}
	}
	c.mu.Unlock()
	if hb.kind == blockIgnore {
		// Decoded for the HPACK state's sake, then dropped: work for no
		// request.
		if err := c.spendControl("header blocks on reset or ignored streams", 1); err != nil {
			return err
		}
	}
	return c.headerFragment(p, fh.Flags&flagEndHeaders != 0)
}

func (c *conn) processContinuation(fh frameHeader, p []byte) error {
	hb := &c.hb
	if !hb.active || fh.StreamID != hb.stream {
		return connError{ErrCodeProtocol, fmt.Sprintf("CONTINUATION on stream %d without a header block in progress", fh.StreamID)}
	}
	hb.continuations++
	if hb.continuations > c.cfg.MaxContinuationFrames {
		return c.abusive(fmt.Sprintf("more than %d CONTINUATION frames in one header block", c.cfg.MaxContinuationFrames))
	}
	return c.headerFragment(p, fh.Flags&flagEndHeaders != 0)
}

func (c *conn) headerFragment(p []byte, end bool) error {
	// The block's octets as sent are bounded too: HPACK keeps decoding
	// past MaxHeaderBytes (to stay in step), and CONTINUATION frames
	// alone would allow 33 x 16 KiB. Compressed, a header list is no
	// larger than decoded (32 octets per field are counted), so a block
	// over twice the limit could only ever be answered 431.
	c.hb.encoded += len(p)
	if limit := maxBlockOctets(c.cfg); c.hb.encoded > limit {
		return connError{ErrCodeProtocol, fmt.Sprintf("the header block of stream %d exceeds %d octets (MaxHeaderBytes %d)", c.hb.stream, limit, c.cfg.MaxHeaderBytes)}
	}
	if _, err := c.hdec.Write(p); err != nil {
		if errors.Is(err, hpack.ErrStringLength) {
			// Refused before it is buffered: a string that never ends
			// would otherwise be held whole by the decoder.
			return connError{ErrCodeProtocol, fmt.Sprintf("a header field in the block of stream %d is longer than %d octets (MaxHeaderBytes %d)", c.hb.stream, maxBlockOctets(c.cfg), c.cfg.MaxHeaderBytes)}
		}
		return connError{ErrCodeCompression, fmt.Sprintf("decoding the header block of stream %d: %v", c.hb.stream, err)}
	}
	if !end {
		return nil
	}
	c.hb.active = false
	err := c.hdec.Close()
	c.hdec.SetEmitEnabled(true)
	if err != nil {
		return connError{ErrCodeCompression, fmt.Sprintf("decoding the header block of stream %d: %v", c.hb.stream, err)}
	}
	return c.endHeaders()
}

// maxBlockOctets bounds a header block as sent, and any string in it.
func maxBlockOctets(cfg *Config) int { return max(2*cfg.MaxHeaderBytes, minMaxFrameSize) }

// endHeaders acts on a complete header block.
func (c *conn) endHeaders() error {
	hb := &c.hb
	id := hb.stream
	switch hb.kind {
	case blockIgnore:
		return nil
	case blockStreamClosed:
		return c.streamErrorNoState(id, ErrCodeStreamClosed)
	case blockTrailers:
		return c.endTrailers()
	}
	if hb.selfDep {
		return c.refuse(id, ErrCodeProtocol, "stream depends on itself")
	}
	if hb.tooLarge {
		return c.headerListTooLarge(id, hb.endStream)
	}
	if hb.malformed != "" {
		return c.refuse(id, ErrCodeProtocol, hb.malformed)
	}
	rs := new(requestState)
	st := c.srv.getStream()
	req, reason := c.newRequest(hb, rs, st)
	if reason != "" {
		c.srv.putStream(st)
		return c.refuse(id, ErrCodeProtocol, reason)
	}
	c.mu.Lock()
	if c.closed {
		c.mu.Unlock()
		c.dropRequest(st)
		return nil
	}
	if c.active >= int(c.cfg.MaxConcurrentStreams) {
		c.mu.Unlock()
		c.dropRequest(st)
		return c.refuse(id, ErrCodeRefusedStream, "over SETTINGS_MAX_CONCURRENT_STREAMS")
	}
	st.c, st.id, st.req, st.rs = c, id, req, rs
	rs.body.cond.L = &c.mu
	st.sendWindow = c.peerInitWindow
	st.recvWindow = c.streamRecvInit
	st.inMap = true
	c.streams[id] = st
	c.active++
	if hb.endStream {
		st.remoteClosed = true
		st.bodyErr = io.EOF
	}
	st.isHead = req.Method == http.MethodHead
	st.declared = -1
	if c.cfg.ReadTimeout > 0 || c.cfg.WriteTimeout > 0 {
		now := time.Now()
		if c.cfg.ReadTimeout > 0 && !hb.endStream {
			st.readBy = now.Add(c.cfg.ReadTimeout)
			c.armSweepLocked(st.readBy)
		}
		if c.cfg.WriteTimeout > 0 {
			st.writeBy = now.Add(c.cfg.WriteTimeout)
			c.armSweepLocked(st.writeBy)
		}
	}
	c.updateIdleLocked()
	start := c.running < int(c.cfg.MaxConcurrentStreams)
	if start {
		c.running++
		st.started = true
	} else {
		st.pending = true
		c.pending = append(c.pending, st)
	}
	c.mu.Unlock()
	if start {
		c.srv.workers.Go(st)
	}
	return nil
}

// errRequestDropped is the cause of the context of a request built and
// then dropped: the connection closed, or the stream was refused.
var errRequestDropped error = canceled{errors.New("http2: request dropped before its handler started")}

// dropRequest gives back a stream whose request was built but will never
// reach a handler: its context is cancelled (a BaseContext that can be
// cancelled would otherwise keep it registered) and the stream is pooled.
func (c *conn) dropRequest(st *stream) {
	st.cancel(errRequestDropped)
	c.srv.putStream(st)
}

// refuse resets a stream that never reached a handler; the reset budget
// pays for it.
func (c *conn) refuse(id uint32, code ErrCode, reason string) error {
	c.srv.log.Debug("HTTP/2 request refused", "client", c.remote, "stream", id, "code", code.String(), "reason", reason)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamErrorLocked(id, code)
}

// headerListTooLarge answers 431 to a request whose header list exceeds
// MaxHeaderBytes. The answer is a control reply (bounded with the others
// while the client does not read) and a refused request: it spends a
// token of the reset budget, as a reset stream would. With HPACK's
// dynamic table, an oversized header list costs its sender a few octets.
func (c *conn) headerListTooLarge(id uint32, endStream bool) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closed {
		return nil
	}
	c.hbuf.b = c.hbuf.b[:0]
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: "431"})
	_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: "0"})
	before := len(c.buf())
	c.wbuf = appendHeaderBlock(c.wbuf, id, c.hbuf.b, true, c.peerMaxFrame)
	if !endStream {
		// The response is complete; the body is not wanted.
		c.appendRSTLocked(id, ErrCodeNo)
	}
	if err := c.queueControlLocked(len(c.wbuf) - before); err != nil {
		return err
	}
	if !c.takeResetLocked() {
		return c.calmLocked(c.resetBudgetSpent("431 answers to oversized header lists"))
	}
	return nil
}

// endTrailers takes the request trailers of an open stream; they end it.
func (c *conn) endTrailers() error {
	hb := &c.hb
	c.mu.Lock()
	defer c.mu.Unlock()
	// Never a *stream kept from the HEADERS frame: streams are pooled, and
	// one closed while its trailers were arriving may serve another
	// connection's request by now.
	st := c.streams[hb.stream]
	if st == nil || st.remoteClosed {
		// Closed or reset while the block was arriving: decoded for
		// nothing, as a block on an ignored stream.
		if !c.takeControl(1) {
			return c.calmLocked(controlFlood("header blocks on reset or ignored streams"))
		}
		return nil
	}
	if st.c != c || st.id != hb.stream {
		panic("h2: stream table holds another connection's stream")
	}
	switch {
	case !hb.endStream:
		return c.streamErrorLocked(st.id, ErrCodeProtocol)
	case hb.tooLarge, hb.malformed != "":
		return c.streamErrorLocked(st.id, ErrCodeProtocol)
	case st.declLen >= 0 && st.received != st.declLen:
		return c.streamErrorLocked(st.id, ErrCodeProtocol)
	}
	for _, f := range hb.fields {
		k := c.canonicalKey(f.Name)
		if !httpguts.ValidTrailerHeader(k) {
			return c.streamErrorLocked(st.id, ErrCodeProtocol)
		}
		if st.reqTrailer == nil {
			continue // none declared: r.Trailer stays nil (copyTrailersLocked)
		}
		if st.trailers == nil {
			st.trailers = make(http.Header)
		}
		st.trailers[k] = append(st.trailers[k], f.Value)
	}
	c.endRemoteLocked(st)
	return nil
}

// newRequest builds the handler's request as net/http builds one for
// HTTP/2, or says why the request is malformed.
func (c *conn) newRequest(hb *headerBlock, rs *requestState, st *stream) (*http.Request, string) {
	if hb.pseudoSeen&pseudoProtocol != 0 {
		return nil, "the :protocol pseudo-header (extended CONNECT) is not supported"
	}
	if hb.method == "" || !httpguts.ValidHeaderFieldName(hb.method) {
		return nil, fmt.Sprintf("missing or invalid :method %q", hb.method)
	}
	isConnect := hb.method == http.MethodConnect
	authority := hb.authority
	switch {
	case hb.hosts > 1:
		return nil, fmt.Sprintf("%d host fields", hb.hosts)
	case hb.hosts == 1 && authority == "":
		authority = hb.host
	case hb.hosts == 1 && hb.host != authority:
		// Compared exactly, as net/http does.
		return nil, fmt.Sprintf("host %q differs from :authority %q", hb.host, authority)
	}
	if strings.IndexByte(authority, '@') >= 0 && (hb.scheme == "http" || hb.scheme == "https") {
		return nil, fmt.Sprintf("userinfo in authority %q (RFC 9113 §8.3.1)", authority)
	}
	if authority != "" && !httpguts.ValidHostHeader(authority) {
		return nil, fmt.Sprintf("invalid authority %q", authority)
	}
	u := &rs.url
	var requestURI string
	if isConnect {
		if hb.pseudoSeen&(pseudoScheme|pseudoPath) != 0 {
			return nil, "CONNECT with :scheme or :path"
		}
		if hb.authority == "" {
			return nil, "CONNECT without :authority"
		}
		u.Host = hb.authority
		requestURI = hb.authority
	} else {
		if hb.pseudoSeen&pseudoScheme == 0 || hb.scheme == "" {
			return nil, "missing :scheme"
		}
		if hb.path == "" {
			return nil, "missing or empty :path"
		}
		if hb.path[0] != '/' && !(hb.path == "*" && hb.method == http.MethodOptions) {
			return nil, fmt.Sprintf(":path %q is neither an absolute path nor \"*\" for OPTIONS", hb.path)
		}
		if !parseRequestPath(hb.path, u) {
			pu, err := url.ParseRequestURI(hb.path)
			if err != nil {
				return nil, fmt.Sprintf("invalid :path %q: %v", hb.path, err)
			}
			*u = *pu
		}
		requestURI = hb.path
	}

	cl := int64(-1)
	if hb.contentLength != "" {
		n, err := strconv.ParseUint(hb.contentLength, 10, 63)
		if err != nil {
			return nil, fmt.Sprintf("invalid content-length %q", hb.contentLength)
		}
		cl = int64(n)
	}
	st.declLen = cl
	if hb.endStream {
		if cl > 0 {
			return nil, fmt.Sprintf("content-length %d on a request without a body", cl)
		}
		cl = 0
	}

	h := make(http.Header, len(hb.fields))
	vals := make([]string, len(hb.fields))
	var cookie []string
	for i, f := range hb.fields {
		if f.Name == "cookie" && hb.cookies > 1 {
			cookie = append(cookie, f.Value)
			continue
		}
		k := c.canonicalKey(f.Name)
		if prev, ok := h[k]; ok {
			h[k] = append(prev, f.Value)
			continue
		}
		vals[i] = f.Value
		h[k] = vals[i : i+1 : i+1]
	}
	if cookie != nil {
		h["Cookie"] = []string{strings.Join(cookie, "; ")}
	}
	var trailer http.Header
	if decl := h["Trailer"]; len(decl) > 0 {
		for _, v := range decl {
			for _, k := range strings.Split(v, ",") {
				k = http.CanonicalHeaderKey(strings.TrimSpace(k))
				switch k {
				case "Transfer-Encoding", "Trailer", "Content-Length", "":
					// Not allowed as trailers: ignored, as net/http does.
				default:
					if trailer == nil {
						trailer = make(http.Header)
					}
					trailer[k] = nil
				}
			}
		}
		delete(h, "Trailer")
	}

	// Expect: 100-continue is the server's business, as net/http has it:
	// the header goes, and "100 Continue" is sent when the handler first
	// reads the body (if its response has not started by then).
	expect := httpguts.HeaderValuesContainsToken(h["Expect"], "100-continue")
	if expect {
		delete(h, "Expect")
	}
	var body io.ReadCloser = http.NoBody
	if !hb.endStream {
		rs.body.st = st
		rs.body.c = c
		rs.body.needsContinue = expect
		body = &rs.body
	}
	// A context of the standard kind: Err is exactly context.Canceled
	// (or the base's DeadlineExceeded), context.Cause says why the stream
	// ended, and the BaseContext's cancellation reaches it. With the
	// default BaseContext (never cancelled) nothing registers with a
	// parent.
	ctx, cancel := context.WithCancelCause(c.base)
	st.cancel = cancel
	rs.rw.st = st
	r := http.Request{
		Method:        hb.method,
		URL:           u,
		Proto:         "HTTP/2.0",
		ProtoMajor:    2,
		ProtoMinor:    0,
		Header:        h,
		Body:          body,
		ContentLength: cl,
		Host:          authority,
		RemoteAddr:    c.remote,
		RequestURI:    requestURI,
		TLS:           c.tls,
		Trailer:       trailer,
	}
	st.reqTrailer = trailer
	return r.WithContext(ctx), ""
}

// parseRequestPath is url.ParseRequestURI for the common request target:
// a path of octets that url would neither unescape nor escape, then
// optionally "?" and a query of printable ASCII. It fills u as
// url.ParseRequestURI would and reports true, or reports false for
// anything else, which the caller hands to url.ParseRequestURI.
func parseRequestPath(p string, u *url.URL) bool {
	if len(p) == 0 || p[0] != '/' {
		return false
	}
	i := 0
	for ; i < len(p); i++ {
		b := p[i]
		if b == '?' {
			break
		}
		if !pathOctet(b) {
			return false
		}
	}
	for j := i + 1; j < len(p); j++ {
		if b := p[j]; b <= ' ' || b >= 0x7f {
			return false
		}
	}
	if i == len(p) {
		u.Path = p
		return true
	}
	u.Path, u.RawQuery = p[:i], p[i+1:]
	if u.RawQuery == "" {
		u.ForceQuery = true
	}
	return true
}

// pathOctet reports whether b stands for itself in a URL path as net/url
// sees it (neither unescaped nor escaped): letters, digits, "-._~" and
// "$&+,;=:@/".
func pathOctet(b byte) bool {
	switch {
	case 'a' <= b && b <= 'z', 'A' <= b && b <= 'Z', '0' <= b && b <= '9':
		return true
	}
	switch b {
	case '-', '.', '_', '~', '$', '&', '+', ',', ';', '=', ':', '@', '/':
		return true
	}
	return false
}
