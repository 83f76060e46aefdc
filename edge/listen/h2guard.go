package listen

import (
	"crypto/tls"
	"encoding/binary"
	"fmt"
	"net/http"
	goruntime "runtime"
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

	// rstAt collects, during one Write, where the RST_STREAM frames in it
	// start (relative to its buffer; negative when the frame header began
	// in an earlier Write). Touched only by Write.
	rstAt []int

	w batchWriter
}

func newH2Conn(c *tls.Conn, lim HTTP2Limits, bufs *bufferPool, onKill func(string)) *h2Conn {
	hc := &h2Conn{
		Conn:   c,
		lim:    lim,
		onKill: onKill,
		in:     frameScanner{skip: len(http2.ClientPreface)},
		tokens: float64(lim.ResetBurst),
		last:   time.Now(),
	}
	hc.w.conn = c
	hc.w.bufs = bufs
	hc.w.cond.L = &hc.w.mu
	return hc
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
	c.rstAt = c.rstAt[:0]
	if _, reason := c.out.scan(p, c.outboundHeader, c.outboundRST); reason != "" {
		c.kill(reason)
	}
	return c.w.write(p, c.rstAt)
}

// outboundHeader notes where each RST_STREAM the server writes starts, so
// that it leaves in a TLS record of its own. The server sends
// RST_STREAM(NO_ERROR) right after a complete response to a request whose
// body it did not read (RFC 9113 §8.1); in one record with that response,
// curl 7.88 (Debian 12's) reports the stream closed and drops the response
// it has just received. Separate records reach it as separate reads.
func (c *h2Conn) outboundHeader(typ, _ byte, _ uint32) string {
	if typ == frameRSTStream {
		c.rstAt = append(c.rstAt, c.out.frameStart)
	}
	return ""
}

// Close sends what is still queued (a GOAWAY, the last responses), then
// closes the connection. A client that stops reading cannot hold it open:
// after closeDrainTimeout the socket is closed under the writer.
func (c *h2Conn) Close() error {
	t := time.AfterFunc(closeDrainTimeout, func() { _ = c.Conn.Close() })
	c.w.drain()
	t.Stop()
	return c.Conn.Close()
}

// closeDrainTimeout bounds how long Close waits for queued writes.
const closeDrainTimeout = 2 * time.Second

// batchWriter queues the server's writes and sends them from its own
// goroutine, as many as have queued up by the time it runs. x/net's server
// flushes whenever its write queue runs empty, which on a busy core is after
// nearly every frame: one TLS record and one system call per frame (1.75
// write calls per request measured under h2load). The writer goroutine runs
// only once the handlers and the frame loop that were ready have run, so
// their frames leave together.
//
// Some frames must not share a TLS record with what precedes them (see
// h2Conn.outboundHeader): the queue keeps those offsets as cuts, and the
// writer sends the bytes on either side of a cut with separate writes.
type batchWriter struct {
	conn interface{ Write([]byte) (int, error) }
	bufs *bufferPool // nil: allocate

	mu        sync.Mutex
	cond      sync.Cond // signalled when the queue empties or the writer fails
	queue     []byte
	cuts      []int // offsets in queue where a new write must begin, ascending
	spare     []byte
	spareCuts []int
	running   bool
	err       error
}

// maxQueued bounds what a connection may have queued: the server's writes
// block beyond it, as a slow client's socket would make them.
const maxQueued = 256 << 10

// write queues p. cuts are offsets in p (ascending; negative ones reach
// back into what was queued before) where a separate write must begin.
func (b *batchWriter) write(p []byte, cuts []int) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.err == nil && len(b.queue) >= maxQueued {
		b.cond.Wait()
	}
	if b.err != nil {
		return 0, b.err
	}
	if b.queue == nil {
		b.queue = b.bufs.get()
	}
	base := len(b.queue)
	for _, c := range cuts {
		// A cut at 0 of the queue, or in bytes already sent, is where a
		// write begins anyway.
		if at := base + c; at > 0 && (len(b.cuts) == 0 || at > b.cuts[len(b.cuts)-1]) {
			b.cuts = append(b.cuts, at)
		}
	}
	b.queue = append(b.queue, p...)
	if !b.running {
		b.running = true
		go b.run()
	}
	return len(p), nil
}

func (b *batchWriter) run() {
	for {
		// Let what is ready to run (handlers, the frame loop) queue its
		// frames first.
		goruntime.Gosched()
		b.mu.Lock()
		if len(b.queue) == 0 || b.err != nil {
			b.running = false
			// An idle connection holds no buffers; the next burst, on this
			// connection or another, takes them from the pool instead of
			// growing new ones.
			b.bufs.put(b.queue)
			b.bufs.put(b.spare)
			b.queue, b.spare, b.spareCuts = nil, nil, nil
			b.cond.Broadcast()
			b.mu.Unlock()
			return
		}
		out, cuts := b.queue, b.cuts
		b.queue, b.cuts = b.spare[:0], b.spareCuts[:0]
		b.mu.Unlock()
		err := b.send(out, cuts)
		b.mu.Lock()
		b.spare, b.spareCuts = out[:0], cuts[:0]
		if err != nil && b.err == nil {
			b.err = err
		}
		b.cond.Broadcast()
		b.mu.Unlock()
	}
}

// bufferPool recycles the batch writers' queues across the connections of
// one server. Growing a queue from nothing on every burst was 7% of the
// CPU under h2load.
type bufferPool struct{ p sync.Pool }

const (
	pooledBufSize = 16 << 10 // what a fresh queue starts with
	maxPooledBuf  = 64 << 10 // larger queues are left to the GC
)

func (bp *bufferPool) get() []byte {
	if bp != nil {
		if b, ok := bp.p.Get().(*[]byte); ok {
			return (*b)[:0]
		}
	}
	return make([]byte, 0, pooledBufSize)
}

func (bp *bufferPool) put(b []byte) {
	if bp == nil || cap(b) == 0 || cap(b) > maxPooledBuf {
		return
	}
	b = b[:0]
	bp.p.Put(&b)
}

// send writes out, with a separate write from each cut on.
func (b *batchWriter) send(out []byte, cuts []int) error {
	from := 0
	for _, c := range cuts {
		if _, err := b.conn.Write(out[from:c]); err != nil {
			return err
		}
		from = c
	}
	_, err := b.conn.Write(out[from:])
	return err
}

// drain waits until the queue has been written or the writer failed.
func (b *batchWriter) drain() {
	b.mu.Lock()
	defer b.mu.Unlock()
	for b.running && b.err == nil {
		b.cond.Wait()
	}
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
	// frameStart is, while onHeader runs, where the frame starts in the
	// chunk being scanned (negative when its header began in an earlier one).
	frameStart int

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
			s.frameStart = start
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
	workers *handlerWorkers // nil: run on the server's goroutine
	slots   chan struct{}
	started atomic.Int64
}

func newHandlerGuard(next http.Handler, max uint32, workers *handlerWorkers) *handlerGuard {
	return &handlerGuard{next: next, workers: workers, slots: make(chan struct{}, max)}
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
	if g.workers != nil {
		g.workers.serve(g.next, w, r)
		return
	}
	g.next.ServeHTTP(w, r)
}
