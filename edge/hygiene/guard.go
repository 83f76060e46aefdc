package hygiene

import (
	"bytes"
	"context"
	"net"
	"net/http"
	"sync"
)

// Go's HTTP/1 server removes the evidence of two framing attacks before any
// handler runs, so Check cannot see them in the *http.Request:
//
//   - Content-Length together with Transfer-Encoding: chunked. Go drops
//     Content-Length, frames the body as chunked and keeps the connection
//     open; RFC 9112 6.3 says the server MUST close it, because a front
//     proxy that used Content-Length reads the rest as another request.
//   - Transfer-Encoding on HTTP/1.0. Go deletes the header and reads no
//     body; the "body" is then parsed as the next request. RFC 9112 6.1
//     says to treat the framing as faulty and close.
//
// Go also accepts obsolete line folding ("Transfer-Encoding:\r\n chunked")
// and joins the lines; RFC 9112 5.2 allows a server to reject it, and it is
// a classic smuggling disguise.
//
// The guard sees them: Listener wraps each connection so that the request
// heads are followed as the bytes reach Go's parser, with the same framing
// rules Go applies, and what was seen waits in a small queue until Check
// takes it for the matching request. Check then answers 400 and closes.
// The guard only works where Go parses plaintext HTTP/1 from the wrapped
// connection. edge/listen terminates TLS itself and can hand Go's HTTP/1
// server the decrypted stream through a Conn (listen.Config.HTTP1Conn);
// where no guard is in place, Check falls back to asking for the
// connection to be closed after any request these attacks could hide in
// (HTTP/1.0, or a chunked body).

// Listener wraps ln so that every accepted connection is a *Conn. Use it for
// listeners whose connections Go's server reads as plaintext HTTP/1, with
// ConnContext set on the http.Server.
func Listener(ln net.Listener) net.Listener { return &listener{ln} }

type listener struct{ net.Listener }

func (l *listener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return NewConn(c), nil
}

// Conn follows the HTTP/1 request heads read through it. Every request
// read from a Conn must pass through Check, in order: a request that
// skipped it is detected and the next one is refused. (Checking the same
// *http.Request again is fine.)
type Conn struct {
	net.Conn
	mu sync.Mutex
	s  sniffer
	// The request last checked and its verdict, so that checking the
	// same request twice does not take the next request's head.
	last    *http.Request
	lastErr *Error
}

// NewConn wraps c.
func NewConn(c net.Conn) *Conn { return &Conn{Conn: c} }

// Read reads from the connection and follows what it read.
func (c *Conn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if n > 0 {
		c.mu.Lock()
		c.s.feed(p[:n])
		c.mu.Unlock()
	}
	return n, err
}

// NetConn returns the wrapped connection (a *tls.Conn when the guard sits
// above TLS), as tls.Conn.NetConn does.
func (c *Conn) NetConn() net.Conn { return c.Conn }

// CloseWrite half-closes the connection when the wrapped one can; Go's
// server uses it to let the client read an error before the connection
// goes away.
func (c *Conn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

type connKey struct{}

// ConnContext is an http.Server.ConnContext that lets Check find the
// guard of a *Conn. Call it from the edge's own ConnContext, if it has one.
func ConnContext(ctx context.Context, c net.Conn) context.Context {
	if g, ok := c.(*Conn); ok {
		return context.WithValue(ctx, connKey{}, g)
	}
	return ctx
}

// checkFraming checks an HTTP/1 request against what its connection's
// guard saw. Without a guard it asks for the connection to be closed after
// the requests a hidden framing attack would ride in.
func checkFraming(r *http.Request) (mustClose bool, err *Error) {
	g, _ := r.Context().Value(connKey{}).(*Conn)
	if g == nil {
		return r.ProtoMinor == 0 || len(r.TransferEncoding) > 0, nil
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.s.off {
		return r.ProtoMinor == 0 || len(r.TransferEncoding) > 0, nil
	}
	if g.last != r {
		g.last, g.lastErr = r, g.s.take(fingerprint(r.Method, r.RequestURI))
	}
	if g.lastErr != nil {
		e := *g.lastErr
		return false, &e
	}
	return false, nil
}

const (
	flagCLTE = 1 << iota // Content-Length and Transfer-Encoding
	flagTE10             // Transfer-Encoding on HTTP/1.0
	flagFold             // obsolete line folding
)

type head struct {
	fp    uint64 // FNV-1a of "METHOD TARGET"
	flags uint8
}

const queueSize = 16

// Sniffer states.
const (
	stLineStart = iota
	stReqLine
	stFieldStart
	stFieldName
	stFieldValue
	stBody
	stChunkSize
	stChunkExt
	stChunkData
	stChunkEnd
	stTrailerStart
	stTrailerLine
)

// sniffer follows a stream of HTTP/1 requests with Go's framing rules,
// keeping O(1) state whatever it reads. When something is not what Go
// would accept, Go refuses the request and closes the connection, so the
// sniffer just stops ("lost"); Check then refuses anything it cannot match.
type sniffer struct {
	state   uint8
	started bool
	off     bool // the connection carries TLS, not plaintext HTTP/1
	lost    bool
	cr      bool // a CR was read and must be followed by LF

	q     [queueSize]head
	qHead int
	qLen  int

	// The head being read.
	fp       uint64
	spaces   int
	proto    [8]byte
	protoN   int
	flags    uint8
	clSeen   bool
	cl       uint64
	teN      int
	teChunk  bool
	nameN    int
	isCL     bool
	isTE     bool
	vState   uint8 // value parse: 0 leading space, 1 in value, 2 trailing space, 3 invalid
	vNum     uint64
	vPos     int
	left     uint64 // body or chunk bytes still to skip
	digits   int
	chunkEnd int
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

func fingerprint(method, target string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(method); i++ {
		h = (h ^ uint64(method[i])) * fnvPrime
	}
	h = (h ^ ' ') * fnvPrime
	for i := 0; i < len(target); i++ {
		h = (h ^ uint64(target[i])) * fnvPrime
	}
	return h
}

// take pops the head recorded for the request with fingerprint fp. Heads
// before it belong to requests Go answered itself (OPTIONS * with the
// general options handler, an unsupported Expect) or that skipped Check.
func (s *sniffer) take(fp uint64) *Error {
	for s.qLen > 0 {
		h := s.q[s.qHead]
		s.qHead = (s.qHead + 1) % queueSize
		s.qLen--
		if h.flags != 0 {
			// Either this request's framing is bad, or that of one
			// before it that Go answered without Check: the
			// connection is not to be trusted either way.
			s.lost = true
			return flagError(h.flags)
		}
		if h.fp == fp {
			return nil
		}
	}
	s.lost = true
	return rejectClose(http.StatusBadRequest, "the request's framing could not be verified; send it again on a new connection")
}

func flagError(flags uint8) *Error {
	switch {
	case flags&flagTE10 != 0:
		return rejectClose(http.StatusBadRequest, "HTTP/1.0 requests cannot use Transfer-Encoding")
	case flags&flagCLTE != 0:
		return rejectClose(http.StatusBadRequest, "the request has both Content-Length and Transfer-Encoding; send only one")
	}
	return rejectClose(http.StatusBadRequest, "header fields folded over several lines (obs-fold) are not allowed")
}

func (s *sniffer) lose() { s.lost = true }

func (s *sniffer) feed(p []byte) {
	if s.off || s.lost {
		return
	}
	if !s.started {
		s.started = true
		if p[0] == 0x16 { // a TLS handshake record: this guard is below TLS
			s.off = true
			return
		}
	}
	for i := 0; i < len(p) && !s.lost; {
		if s.state == stBody || s.state == stChunkData {
			n := uint64(len(p) - i)
			if n > s.left {
				n = s.left
			}
			s.left -= n
			i += int(n)
			if s.left == 0 {
				if s.state == stBody {
					s.state = stLineStart
				} else {
					s.state = stChunkEnd
					s.chunkEnd = 0
				}
			}
			continue
		}
		if !s.cr && (s.state == stFieldValue && !s.isCL && !s.isTE || s.state == stChunkExt || s.state == stTrailerLine) {
			// Nothing to follow until the end of the line: skip to it.
			// A CR inside makes Go refuse the request, whatever the
			// guard thinks of it.
			j := bytes.IndexByte(p[i:], '\n')
			if j < 0 {
				return
			}
			i += j
		}
		s.step(p[i])
		i++
	}
}

// step reads one byte of a head, chunk line or trailer.
func (s *sniffer) step(c byte) {
	switch s.state {
	case stLineStart:
		// Go tolerates empty lines before a request line after a POST
		// and refuses them otherwise; either way nothing to follow.
		if c == '\r' || c == '\n' {
			return
		}
		s.beginHead()
		s.state = stReqLine
	case stChunkEnd:
		// Exactly CRLF after chunk data, as Go requires.
		if s.chunkEnd == 0 && c == '\r' {
			s.chunkEnd = 1
			return
		}
		if s.chunkEnd == 1 && c == '\n' {
			s.state = stChunkSize
			s.left, s.digits = 0, 0
			return
		}
		s.lose()
		return
	}
	if s.cr {
		s.cr = false
		if c != '\n' {
			s.lose() // a bare CR: Go refuses it wherever it appears here
			return
		}
	} else if c == '\r' {
		s.cr = true
		return
	}
	if c == '\n' {
		s.endLine()
		return
	}
	switch s.state {
	case stReqLine:
		if c == ' ' {
			s.spaces++
			if s.spaces == 1 {
				s.fp = (s.fp ^ ' ') * fnvPrime
			}
			if s.spaces > 2 {
				s.lose() // a space in the version: Go refuses it
			}
			return
		}
		if s.spaces < 2 {
			s.fp = (s.fp ^ uint64(c)) * fnvPrime
			return
		}
		if s.protoN == len(s.proto) {
			s.lose()
			return
		}
		s.proto[s.protoN] = c
		s.protoN++
	case stFieldStart:
		if c == ' ' || c == '\t' {
			// obs-fold: this line continues the previous field.
			s.flags |= flagFold
			s.isCL, s.isTE = false, false
			s.state = stFieldValue
			return
		}
		s.nameN = 0
		s.isCL, s.isTE = true, true
		s.state = stFieldName
		s.nameByte(c)
	case stFieldName:
		s.nameByte(c)
	case stFieldValue:
		s.valueByte(c)
	case stChunkSize:
		if v, ok := hexVal(c); ok {
			s.digits++
			if s.digits > 16 {
				s.lose()
				return
			}
			s.left = s.left<<4 | uint64(v)
			return
		}
		if s.digits == 0 {
			s.lose()
			return
		}
		// Extensions or whitespace: Go checks them; whatever it
		// accepts, the size is the hex digits read so far.
		s.state = stChunkExt
	case stChunkExt, stTrailerLine:
	case stTrailerStart:
		s.state = stTrailerLine
	}
}

const (
	nameCL = "content-length"
	nameTE = "transfer-encoding"
)

func (s *sniffer) nameByte(c byte) {
	if c == ':' {
		s.isCL = s.isCL && s.nameN == len(nameCL)
		s.isTE = s.isTE && s.nameN == len(nameTE)
		s.state = stFieldValue
		s.vState, s.vNum, s.vPos = 0, 0, 0
		return
	}
	lc := lower(c)
	s.isCL = s.isCL && s.nameN < len(nameCL) && nameCL[s.nameN] == lc
	s.isTE = s.isTE && s.nameN < len(nameTE) && nameTE[s.nameN] == lc
	s.nameN++
}

// valueByte follows a Content-Length or Transfer-Encoding value the way Go
// reads it: optional whitespace, the value, optional whitespace.
func (s *sniffer) valueByte(c byte) {
	if !s.isCL && !s.isTE || s.vState == 3 {
		return
	}
	ws := c == ' ' || c == '\t'
	switch s.vState {
	case 0:
		if ws {
			return
		}
		s.vState = 1
	case 2:
		if !ws {
			s.vState = 3
		}
		return
	}
	if ws {
		s.vState = 2
		return
	}
	if s.isCL {
		if c < '0' || c > '9' || s.vNum > (1<<63-1)/10 {
			s.vState = 3
			return
		}
		s.vNum = s.vNum*10 + uint64(c-'0')
		s.vPos++
		return
	}
	if s.vPos >= len("chunked") || lower(c) != "chunked"[s.vPos] {
		s.vState = 3
		return
	}
	s.vPos++
}

func (s *sniffer) endLine() {
	switch s.state {
	case stReqLine:
		// Go reads "HTTP/1.N" heads itself; anything else (the HTTP/2
		// preface, garbage) it refuses or hands over, and nothing more
		// on this connection is HTTP/1.
		if s.spaces != 2 || s.protoN != 8 || string(s.proto[:7]) != "HTTP/1." ||
			s.proto[7] < '0' || s.proto[7] > '9' {
			s.lose()
			return
		}
		s.state = stFieldStart
	case stFieldStart:
		s.endHead()
	case stFieldName:
		s.lose() // a field line without a colon: Go refuses it
	case stFieldValue:
		s.endField()
		s.state = stFieldStart
	case stChunkSize, stChunkExt:
		if s.digits == 0 {
			s.lose()
			return
		}
		if s.left == 0 {
			s.state = stTrailerStart
		} else {
			s.state = stChunkData
		}
	case stTrailerStart:
		s.state = stLineStart // the chunked message is complete
	case stTrailerLine:
		s.state = stTrailerStart
	}
}

func (s *sniffer) endField() {
	if s.isCL {
		if s.vState == 0 || s.vState == 3 {
			s.lose() // empty or invalid: Go refuses it
			return
		}
		if s.clSeen && s.cl != s.vNum {
			s.lose() // differing values: Go refuses them
			return
		}
		s.clSeen, s.cl = true, s.vNum
	}
	if s.isTE {
		s.teN++
		s.teChunk = s.vPos == len("chunked") && (s.vState == 1 || s.vState == 2)
	}
}

func (s *sniffer) beginHead() {
	s.fp = fnvOffset
	s.spaces, s.protoN, s.flags = 0, 0, 0
	s.clSeen, s.cl, s.teN, s.teChunk = false, 0, 0, false
}

func (s *sniffer) endHead() {
	v10 := s.proto[7] == '0'
	if s.teN > 0 {
		if v10 {
			s.flags |= flagTE10
		} else if s.clSeen {
			s.flags |= flagCLTE
		}
	}
	if s.qLen == queueSize {
		s.lose() // deeper pipelining than any client needs
		return
	}
	s.q[(s.qHead+s.qLen)%queueSize] = head{fp: s.fp, flags: s.flags}
	s.qLen++
	if s.flags != 0 {
		// Check refuses this request and closes the connection; what
		// follows is not worth following.
		s.lose()
		return
	}
	switch {
	case s.teN > 0 && !v10:
		if s.teN != 1 || !s.teChunk {
			s.lose() // Go answers 501 and closes
			return
		}
		s.state = stChunkSize
		s.left, s.digits = 0, 0
	case s.clSeen && s.cl > 0:
		s.state = stBody
		s.left = s.cl
	default:
		s.state = stLineStart
	}
}

func hexVal(c byte) (byte, bool) {
	if isHex(c) {
		return unhex(c), true
	}
	return 0, false
}
