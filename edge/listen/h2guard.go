package listen

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2"
)

// HTTP/2 frame types and flags the guard looks at (RFC 9113 §6).
const (
	frameHeaders      = 0x1
	frameRSTStream    = 0x3
	frameContinuation = 0x9
	flagEndHeaders    = 0x4
	frameHeaderLen    = 9
)

// h2Conn sits between the TLS connection and x/net's HTTP/2 server and
// watches the frames going both ways, because the server has no hook for
// what it needs to stop: a client that makes streams end early, either by
// resetting them itself (rapid reset, CVE-2023-44487) or by provoking the
// server to reset them (MadeYouReset, CVE-2025-8671), and a header block
// split into endless CONTINUATION frames (CVE-2023-45288).
//
// When a connection goes over budget, the next Read returns an
// http2.ConnectionError(ENHANCE_YOUR_CALM), cut at the start of the
// offending frame: the server treats it like a protocol violation it found
// itself, sends GOAWAY with that code and closes the connection, and the
// frames after the cut never reach it.
type h2Conn struct {
	*tls.Conn // ConnectionState, deadlines, Close

	lim    HTTP2Limits
	onKill func(reason string)

	in  frameScanner // client → server; touched only by Read
	out frameScanner // server → client; touched only by Write

	// killed holds the error Read returns once the budget is spent; set
	// from Read or Write.
	killed atomic.Pointer[error]

	mu     sync.Mutex // guards the reset budget, shared by Read and Write
	tokens float64
	last   time.Time

	// header-block state, touched only by Read.
	inBlock       bool
	continuations int
}

func newH2Conn(c *tls.Conn, lim HTTP2Limits, onKill func(string)) *h2Conn {
	return &h2Conn{
		Conn:   c,
		lim:    lim,
		onKill: onKill,
		in:     frameScanner{skip: len(http2.ClientPreface)},
		tokens: float64(lim.ResetBurst),
		last:   time.Now(),
	}
}

func (c *h2Conn) Read(p []byte) (int, error) {
	if e := c.killed.Load(); e != nil {
		return 0, *e
	}
	n, err := c.Conn.Read(p)
	if n > 0 {
		if cut, reason := c.in.scan(p[:n], c.inbound, nil); reason != "" {
			c.kill(reason)
			if cut == 0 {
				return 0, *c.killed.Load()
			}
			// Hand over the complete frames before the offending one; the
			// next Read reports the error.
			return cut, nil
		}
	}
	return n, err
}

func (c *h2Conn) Write(p []byte) (int, error) {
	// Writes come from one goroutine at a time (the server serialises
	// frame writes), so the outbound scanner needs no lock.
	if _, reason := c.out.scan(p, nil, c.outboundRST); reason != "" {
		c.kill(reason)
	}
	return c.Conn.Write(p)
}

// inbound looks at one frame header from the client; a non-empty reason
// ends the connection before this frame is processed.
func (c *h2Conn) inbound(typ, flags byte, stream uint32) string {
	switch typ {
	case frameHeaders:
		c.inBlock = flags&flagEndHeaders == 0
		c.continuations = 0
	case frameContinuation:
		c.continuations++
		if c.continuations > c.lim.MaxContinuationFrames {
			return fmt.Sprintf("more than %d CONTINUATION frames in one header block", c.lim.MaxContinuationFrames)
		}
		if flags&flagEndHeaders != 0 {
			c.inBlock = false
		}
	case frameRSTStream:
		if !c.spend() {
			return fmt.Sprintf("stream reset budget spent (client RST_STREAM; burst %d, %.0f/s)", c.lim.ResetBurst, c.lim.ResetRate)
		}
	}
	return ""
}

// outboundRST looks at the error code of each RST_STREAM the server writes.
// Codes other than NO_ERROR are the server's answer to a client that broke
// a rule on a stream; each spends the same budget as a client reset.
func (c *h2Conn) outboundRST(code uint32) string {
	if code == uint32(http2.ErrCodeNo) {
		return ""
	}
	if !c.spend() {
		return fmt.Sprintf("stream reset budget spent (server RST_STREAM %v provoked by the client; burst %d, %.0f/s)",
			http2.ErrCode(code), c.lim.ResetBurst, c.lim.ResetRate)
	}
	return ""
}

// spend takes one token from the reset budget, a token bucket refilled at
// ResetRate per second up to ResetBurst.
func (c *h2Conn) spend() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	now := time.Now()
	c.tokens += now.Sub(c.last).Seconds() * c.lim.ResetRate
	c.last = now
	if max := float64(c.lim.ResetBurst); c.tokens > max {
		c.tokens = max
	}
	c.tokens--
	return c.tokens >= 0
}

func (c *h2Conn) kill(reason string) {
	err := error(http2.ConnectionError(http2.ErrCodeEnhanceYourCalm))
	if c.killed.CompareAndSwap(nil, &err) && c.onKill != nil {
		c.onKill(reason)
	}
}

// frameScanner follows frame boundaries in a byte stream split into
// arbitrary chunks, calling a function for each frame header. For
// RST_STREAM it also collects the 4-byte error code, which the outbound
// direction needs.
type frameScanner struct {
	skip    int // bytes still to skip: the client preface, or a frame's payload
	hdr     [frameHeaderLen]byte
	hdrN    int
	rstCode [4]byte
	rstN    int // >0 while collecting an RST_STREAM payload; bytes collected+1
}

// scan feeds b through the scanner. onHeader (if not nil) sees each frame
// header, onRST (if not nil) each RST_STREAM's error code. When either
// returns a reason, scan stops and returns it with the offset in b where the
// offending frame's header started (0 if it started in an earlier chunk).
func (s *frameScanner) scan(b []byte, onHeader func(typ, flags byte, stream uint32) string, onRST func(code uint32) string) (cut int, reason string) {
	i := 0
	for i < len(b) {
		if s.rstN > 0 {
			k := copy(s.rstCode[s.rstN-1:], b[i:])
			s.rstN += k
			i += k
			s.skip -= k
			if s.rstN == 5 {
				s.rstN = 0
				if onRST != nil {
					if r := onRST(binary.BigEndian.Uint32(s.rstCode[:])); r != "" {
						return i, r // outbound: the cut is not used
					}
				}
			}
			continue
		}
		if s.skip > 0 {
			k := min(s.skip, len(b)-i)
			s.skip -= k
			i += k
			continue
		}
		start := i - s.hdrN
		k := copy(s.hdr[s.hdrN:], b[i:])
		s.hdrN += k
		i += k
		if s.hdrN < frameHeaderLen {
			break
		}
		s.hdrN = 0
		length := int(s.hdr[0])<<16 | int(s.hdr[1])<<8 | int(s.hdr[2])
		typ, flags := s.hdr[3], s.hdr[4]
		stream := binary.BigEndian.Uint32(s.hdr[5:9]) & 0x7fffffff
		s.skip = length
		if onHeader != nil {
			if r := onHeader(typ, flags, stream); r != "" {
				return max(start, 0), r
			}
		}
		if typ == frameRSTStream && length == 4 && onRST != nil {
			s.rstN = 1
		}
	}
	return len(b), ""
}

// handlerGuard caps the handlers running on one HTTP/2 connection at the
// advertised stream limit and never starts one for a stream that is
// already gone. The server frees a stream's slot when the stream is reset,
// while its handler may still run: without this cap a client that gets its
// streams reset (by RST_STREAM or by provoking the server) runs unbounded
// handlers, and each can cost an origin request.
type handlerGuard struct {
	next    http.Handler
	slots   chan struct{}
	started atomic.Int64
}

func newHandlerGuard(next http.Handler, max uint32) *handlerGuard {
	return &handlerGuard{next: next, slots: make(chan struct{}, max)}
}

func (g *handlerGuard) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	ctx := r.Context()
	if ctx.Err() != nil {
		return // reset before it started: nobody is waiting for an answer
	}
	select {
	case g.slots <- struct{}{}:
	case <-ctx.Done():
		return
	}
	defer func() { <-g.slots }()
	if ctx.Err() != nil {
		return
	}
	g.started.Add(1)
	g.next.ServeHTTP(w, r)
}
