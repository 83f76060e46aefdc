package h2

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"runtime/debug"
	"sync"
	"time"

	"golang.org/x/net/http2/hpack"
)

// stream is one request and its response. Streams are pooled: nothing a
// handler may keep after it returns (the request, its context, body and
// response writer) points into a stream once the stream is recycled.
type stream struct {
	c   *conn
	id  uint32
	req *http.Request
	rs  *requestState
	// cancel ends the request's context (context.WithCancelCause of the
	// connection's base): Err is context.Canceled, Cause says why.
	cancel context.CancelCauseFunc

	// Guarded by c.mu.
	inMap        bool // in c.streams: open or half-closed
	started      bool // handed to a worker
	pending      bool // in c.pending
	handlerDone  bool
	reset        bool // reset by either side
	remoteClosed bool // END_STREAM received (or reset)
	localClosed  bool // END_STREAM sent (or reset)
	sendWindow   int64
	recvWindow   int64 // what the client may still send on the stream
	recvUnacked  int64 // consumed octets not yet given back
	declLen      int64 // the request's content-length, or -1
	received     int64 // request body octets received
	body         []byte
	bodyOff      int
	bodyErr      error       // io.EOF after END_STREAM, or why the body failed
	bodyDone     bool        // nobody reads the body any more: arriving data is dropped
	trailers     http.Header // request trailers as received
	reqTrailer   http.Header // the request's Trailer map (declared names)
	readBy       time.Time
	writeBy      time.Time

	// The response, owned by the handler's goroutine.
	hdr         http.Header
	status      int
	wroteHeader bool
	sentHeader  bool
	isHead      bool
	declared    int64  // the Content-Length the handler set, or -1
	written     int64  // body octets accepted (a write past Content-Length is not)
	buf         []byte // the handler's first writes, up to respBufSize
	trailerKeys []string
	snap        []hpack.HeaderField // the header at WriteHeader, in wire form
	hasType     bool                // ... and whether it had Content-Type,
	hasLen      bool                // Content-Length,
	hasTE       bool                // Transfer-Encoding,
	hasDate     bool                // Date,
	hasEncoding bool                // a non-empty Content-Encoding
}

// respBufSize is how much of a response is held back so that a small one
// leaves as HEADERS and DATA(END_STREAM) together, with its length.
const respBufSize = 4 << 10

// requestState is what a request allocates: everything a handler may keep
// after it returns, in one allocation.
type requestState struct {
	rw   responseWriter
	body requestBody
	url  url.URL
}

func (s *Server) getStream() *stream {
	if st, ok := s.streams.Get().(*stream); ok {
		return st
	}
	return &stream{buf: make([]byte, 0, respBufSize)}
}

func (s *Server) putStream(st *stream) {
	buf, body := st.buf[:0], st.body[:0]
	if cap(body) > 16<<10 {
		body = nil
	}
	clear(st.trailerKeys)
	clear(st.snap)
	keys, snap := st.trailerKeys[:0], st.snap[:0]
	*st = stream{buf: buf, body: body, trailerKeys: keys, snap: snap}
	s.streams.Put(st)
}

// maybeRecycleLocked returns a stream to the pool once nothing refers to
// it: off the table, and its handler finished or never to start.
func (c *conn) maybeRecycleLocked(st *stream) {
	if st.inMap || st.pending || st.started && !st.handlerDone {
		return
	}
	c.srv.putStream(st)
}

// creditLocked gives consumed octets back to the stream's window, in
// WINDOW_UPDATEs of at least a quarter of it, while the client still sends.
func (st *stream) creditLocked(n int64) {
	c := st.c
	st.recvUnacked += n
	if st.remoteClosed || c.closed || st.recvUnacked < int64(c.cfg.StreamWindow)/4 {
		return
	}
	c.wbuf = appendWindowUpdate(c.buf(), st.id, uint32(st.recvUnacked))
	st.recvWindow += st.recvUnacked
	st.recvUnacked = 0
	c.wakeWriterLocked()
}

// wakeBodyLocked wakes the goroutines waiting in the request body's Read:
// data, END_STREAM or an error arrived, or the stream went. The condition
// variable belongs to the request, not to the pooled stream, so that a
// reader still waiting when the stream is recycled is woken, not lost.
func (st *stream) wakeBodyLocked() {
	st.rs.body.cond.Broadcast()
}

// copyTrailersLocked fills the request's Trailer map once the body is
// complete. A request that declared trailers gets every trailer received,
// declared or not, as net/http's HTTP/1 server merges them: a gateway
// that forwards r.Trailer must not lose a field because the client did
// not announce it (x/net keeps only the declared names). A request that
// declared none keeps r.Trailer nil, and what arrived was not kept. It
// runs on the goroutine whose Read returned io.EOF, so that r.Trailer is
// never written while the handler may be reading it.
func (st *stream) copyTrailersLocked() {
	for k, vv := range st.trailers {
		st.reqTrailer[k] = vv
	}
}

// Run serves the stream on one of the server's workers (workpool.Job).
func (st *stream) Run() {
	c := st.c
	c.mu.Lock()
	reset := st.reset
	c.mu.Unlock()
	if reset {
		// Reset between the frame loop's hand-off and now (the worker
		// pool was slow to get to it): the client has given up on it,
		// and a handler would do its work for nobody.
		st.handlerReturned(false, nil, true)
		return
	}
	panicked := true
	defer func() {
		var v any
		if panicked {
			v = recover()
		}
		st.handlerReturned(panicked, v, false)
	}()
	st.c.srv.handler.ServeHTTP(&st.rs.rw, st.req)
	panicked = false
}

// handlerReturned completes the response (or resets the stream after a
// panic), cancels the request's context, and gives the handler's slot to
// the next waiting stream. skipped: the handler never ran (the stream was
// reset before it could).
func (st *stream) handlerReturned(panicked bool, v any, skipped bool) {
	c := st.c
	if panicked {
		if v != nil && v != http.ErrAbortHandler {
			c.srv.log.Error("http2: panic serving request", "client", c.remote, "method", st.req.Method,
				"uri", st.req.RequestURI, "panic", fmt.Sprint(v), "stack", string(debug.Stack()))
		}
	} else if skipped {
		// Nothing to complete: the stream is reset.
	} else if err := st.finish(); err != nil && err != errStreamClosed && err != errConnClosed {
		c.srv.log.Debug("http2: response not completed", "client", c.remote, "stream", st.id, "error", err)
	}
	st.rs.rw.st = nil

	c.mu.Lock()
	if panicked {
		c.waitQueueLocked()
		if !st.localClosed {
			c.serverResetLocked(st, ErrCodeInternal, "the handler panicked")
		}
	}
	st.bodyDone = true
	st.rs.body.st = nil
	st.wakeBodyLocked() // a goroutine the handler left reading gets errBodyClosed
	if n := int64(len(st.body) - st.bodyOff); n > 0 {
		st.bodyOff = len(st.body)
		c.creditConnLocked(n)
	}
	if st.inMap && st.localClosed && !st.remoteClosed {
		c.waitQueueLocked()
		if st.inMap && !st.remoteClosed && !c.closed {
			// The response is complete and the rest of the body is not
			// wanted: RST_STREAM(NO_ERROR) tells the client to stop
			// sending (RFC 9113 §8.1).
			c.appendRSTLocked(st.id, ErrCodeNo)
			c.wakeWriterLocked()
			st.remoteClosed = true
			c.closeStreamLocked(st)
		}
	}
	st.cancel(errHandlerReturned)
	c.running--
	var next *stream
	for len(c.pending) > 0 && next == nil {
		p := c.pending[0]
		c.pending[0] = nil
		c.pending = c.pending[1:]
		p.pending = false
		if p.reset { // not expected: an abort takes the stream off the queue
			c.maybeRecycleLocked(p)
			continue
		}
		next = p
		next.started = true
		c.running++
	}
	if c.goingAway && c.active == 0 && c.running == 0 {
		c.finishLocked()
	}
	c.updateIdleLocked()
	// Only now may the stream be recycled.
	st.handlerDone = true
	c.maybeRecycleLocked(st)
	c.mu.Unlock()
	if next != nil {
		c.srv.workers.Go(next)
	}
}

// requestBody is the handler's r.Body: what the client has sent on the
// stream, readable while more arrives.
type requestBody struct {
	c      *conn
	st     *stream   // nil once the handler has returned
	cond   sync.Cond // L is c.mu; see stream.wakeBodyLocked
	closed bool
	sawEOF bool // Read has returned io.EOF (and copied the trailers)
	// needsContinue: the request said Expect: 100-continue and the first
	// Read has not happened yet.
	needsContinue bool
}

var errBodyClosed = errors.New("http: invalid Read on closed Body")

func (b *requestBody) Read(p []byte) (int, error) {
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st := b.st
	if st == nil || b.closed {
		return 0, errBodyClosed
	}
	if b.needsContinue {
		b.needsContinue = false
		st.write100ContinueLocked()
		if b.st != st || b.closed {
			return 0, errBodyClosed
		}
	}
	for {
		if st.bodyOff < len(st.body) {
			n := copy(p, st.body[st.bodyOff:])
			st.bodyOff += n
			if st.bodyOff == len(st.body) {
				st.body, st.bodyOff = st.body[:0], 0
			}
			c.creditConnLocked(int64(n))
			st.creditLocked(int64(n))
			return n, nil
		}
		if st.bodyErr != nil {
			if st.bodyErr == io.EOF && !b.sawEOF {
				b.sawEOF = true
				st.copyTrailersLocked()
			}
			return 0, st.bodyErr
		}
		if len(p) == 0 {
			return 0, nil
		}
		b.cond.Wait()
		if b.st != st || b.closed {
			return 0, errBodyClosed
		}
	}
}

// Close stops reading: what arrives from now on is dropped (its window
// given back), and once the response is complete the client is told to
// stop sending.
func (b *requestBody) Close() error {
	c := b.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if b.closed || b.st == nil {
		b.closed = true
		return nil
	}
	b.closed = true
	st := b.st
	st.bodyDone = true
	if n := int64(len(st.body) - st.bodyOff); n > 0 {
		st.body, st.bodyOff = st.body[:0], 0
		c.creditConnLocked(n)
	}
	b.cond.Broadcast()
	return nil
}

// canceled is the cause of a request context's cancellation: why the
// stream ended. It is context.Canceled to errors.Is, as the context's Err
// is exactly.
type canceled struct{ err error }

func (e canceled) Error() string   { return e.err.Error() }
func (e canceled) Unwrap() []error { return []error{e.err, context.Canceled} }

var errHandlerReturned error = canceled{errors.New("http2: the handler returned")}

// Deadlines: one timer per connection, armed for the earliest deadline
// of its streams (ReadTimeout, WriteTimeout, ResponseController's). A
// stream whose write deadline passes is reset; a body whose read deadline
// passes fails with os.ErrDeadlineExceeded.

func (c *conn) armSweepLocked(t time.Time) {
	if t.IsZero() || c.closed {
		return
	}
	if !c.sweepAt.IsZero() && !t.Before(c.sweepAt) {
		return
	}
	c.sweepAt = t
	d := time.Until(t)
	if c.sweep == nil {
		c.sweep = time.AfterFunc(d, c.sweepDeadlines)
	} else {
		c.sweep.Reset(d)
	}
}

var errReadDeadline = fmt.Errorf("http2: request body read deadline: %w", os.ErrDeadlineExceeded)

func (c *conn) sweepDeadlines() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sweepAt = time.Time{}
	if c.closed {
		return
	}
	now := time.Now()
	var next time.Time
	earliest := func(t time.Time) {
		if !t.IsZero() && (next.IsZero() || t.Before(next)) {
			next = t
		}
	}
	for _, st := range c.streams {
		if st.handlerDone {
			continue
		}
		if !st.writeBy.IsZero() && !st.localClosed {
			if !now.Before(st.writeBy) {
				st.writeBy = time.Time{}
				c.serverResetLocked(st, ErrCodeInternal, "the response's write deadline passed")
				continue
			}
			earliest(st.writeBy)
		}
		if !st.readBy.IsZero() && !st.remoteClosed {
			if !now.Before(st.readBy) {
				// What has arrived stays readable; what arrives from now
				// on is dropped, as x/net's closed pipe drops it.
				st.readBy = time.Time{}
				if st.bodyErr == nil {
					st.bodyErr = errReadDeadline
				}
				st.bodyDone = true
				st.wakeBodyLocked()
				continue
			}
			earliest(st.readBy)
		}
	}
	c.armSweepLocked(next)
}
