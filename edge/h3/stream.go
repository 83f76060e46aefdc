package h3

import (
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"net/url"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/quic-go"
)

// Buffer sizes. A request stream is read through readBufSize bytes; a
// header block larger than that is read into a buffer of its own. The
// response body is held in up to bodyBufSize bytes before it goes out, so
// that a small response leaves as one stream write, its Content-Length
// known.
const (
	readBufSize = 4 << 10
	bodyBufSize = 8 << 10
	// tryWriteMax is the most written with TryWriteAll, which queues
	// without waiting; larger writes go through Write, which waits for
	// flow control instead of copying everything at once.
	tryWriteMax = 32 << 10
)

// stream is one request stream's state. It is pooled: the buffers, the
// decoded fields and the QPACK encoder serve one request after another.
// What the handler receives (the http.Request, its header map, the
// ResponseWriter, the Body) is new for every request. The ResponseWriter
// and the Body are cut off from the stream, each under its own lock, when
// the handler returns and before the state goes back to the pool: a call
// after that panics (ResponseWriter) or fails (Body.Read), a call still
// running then is waited for (a ResponseWriter call resets the response
// first, which ends a blocked write), so nothing the handler kept can
// reach the state once it serves another request.
type stream struct {
	srv   *Server
	c     *conn
	qs    *quic.Stream
	start time.Time

	rd     streamReader
	rbuf   []byte
	big    []byte // a header block larger than rbuf
	fields []field
	fdec   *fieldDecoder
	head   requestHead

	req  *http.Request
	body *requestBody // nil when the request had no body

	// request body state, used by the body's reader
	dataLeft     uint64 // bytes left in the current DATA frame
	received     int64
	bodyDone     bool // the stream's end was read
	trailersRead bool
	bodyErr      error // sticky

	// response state, used by the handler's goroutine
	rw           *responseWriter
	header       http.Header // the handler's map
	sent         http.Header // its snapshot when the final status was set (reused)
	sentVals     []string    // the snapshot's values (reused)
	status       int
	wroteHeader  bool // the final status is set
	sentHeader   bool // the final HEADERS frame went out
	isHead       bool
	declared     int64 // the handler's Content-Length, -1 if none
	written      int64
	resp         []byte // response body not sent yet
	out          []byte // frames being put together
	fenc         *fieldEncoder
	section      []byte // a field section being encoded
	trailerKeys  []string
	failed       bool  // the stream is reset; the response is over
	writeErr     error // what writes return once failed
	deadlineSet  bool
	writerCut    bool  // cutOff ran
	lenVal       int64 // lengthText's last answer, and its text
	lenText      string
	wmu          sync.Mutex   // orders 100 Continue and the response
	continueSent atomic.Int32 // 0: may send 100 Continue, 1: sent, 2: the response started

	// handlerDone is set when the handler has returned and its response
	// is complete (or reset): from then on a body read that fails, on a
	// goroutine the handler left behind, must not touch the response.
	handlerDone atomic.Bool
}

func (s *Server) newStream(c *conn, qs *quic.Stream) *stream {
	st, _ := s.streams.Get().(*stream)
	if st == nil {
		st = &stream{srv: s, rbuf: make([]byte, readBufSize), fields: make([]field, 0, 16),
			fdec: newFieldDecoder(s.decoder, s.names), fenc: newFieldEncoder()}
	}
	st.c, st.qs, st.start = c, qs, time.Now()
	st.declared = -1
	st.rd.reset(qs, st.rbuf)
	return st
}

// release returns st to the pool, cleared.
func (st *stream) release() {
	st.c, st.qs, st.req, st.body, st.rw, st.header = nil, nil, nil, nil, nil, nil
	st.rd.reset(nil, st.rbuf)
	clear(st.fields[:cap(st.fields)]) // drop the strings
	st.fields = st.fields[:0]
	st.head = requestHead{}
	st.dataLeft, st.received, st.bodyDone, st.trailersRead, st.bodyErr = 0, 0, false, false, nil
	st.status, st.wroteHeader, st.sentHeader, st.isHead = 0, false, false, false
	st.written = 0
	st.resp, st.out = st.resp[:0], st.out[:0]
	if len(st.sent) > 64 || cap(st.sentVals) > 256 {
		st.sent, st.sentVals = nil, nil // a map does not shrink when cleared
	}
	clear(st.sent)
	clear(st.sentVals[:cap(st.sentVals)])
	st.sentVals = st.sentVals[:0]
	clear(st.trailerKeys)
	st.trailerKeys = st.trailerKeys[:0]
	st.failed, st.writeErr, st.deadlineSet, st.writerCut = false, nil, false, false
	st.continueSent.Store(0)
	st.handlerDone.Store(false)
	if cap(st.big) > 64<<10 {
		st.big = nil
	}
	if cap(st.resp) > 4*bodyBufSize {
		st.resp = nil
	}
	if cap(st.out) > 4*bodyBufSize {
		st.out = nil
	}
	if cap(st.section) > 64<<10 {
		st.section = nil
	}
	// What a large request or response left behind is not kept for the
	// next one (the fields' strings are cleared above).
	if cap(st.fields) > 256 {
		st.fields = make([]field, 0, 16)
	}
	if cap(st.trailerKeys) > 32 {
		st.trailerKeys = nil
	}
	if cap(st.fdec.scratch) > 4<<10 {
		st.fdec.scratch = nil
	}
	if cap(st.fenc.scratch.b) > 4<<10 {
		st.fenc.scratch.b = nil
	}
	st.srv.streams.Put(st)
}

// Run serves the request stream from its first byte to its end, on one of
// the server's workers (workpool.Job).
func (st *stream) Run() {
	c := st.c
	finished := false
	defer func() {
		if finished {
			return
		}
		// Either the handler ended its goroutine (runtime.Goexit), or
		// this package has a bug that panicked: as net/http does, one
		// request fails, not the whole server.
		if v := recover(); v != nil {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			st.srv.log.Error("h3: internal error serving a request (a bug: please report it)", "client", c.remoteAddr, "panic", v, "stack", string(buf))
		}
		st.reset(ErrInternalError)
		st.done(c)
	}()
	if err := st.readRequest(); err != nil {
		st.fail(err)
	} else {
		returned := st.runHandler()
		st.cutOff()
		if returned {
			st.finishResponse()
		}
	}
	finished = true
	st.done(c)
}

// done ends the request: the client may open another stream in its place,
// the connection counts one request less, the state goes back to the
// pool.
func (st *stream) done(c *conn) {
	st.qs.ReleaseStreamCredit()
	if b := st.body; b != nil {
		// Stop a client still sending a body nobody reads (H3_NO_ERROR:
		// RFC 9114 §4.1.1); this also wakes a handler's goroutine still
		// blocked reading it, before the body is cut off. That goroutine's
		// read then fails, and must leave the response alone: it is
		// complete, and its FIN may still be unacknowledged, when quic-go
		// would still turn a CancelWrite into RESET_STREAM.
		st.handlerDone.Store(true)
		st.qs.CancelRead(strCode(ErrNoError))
		b.detach()
	}
	st.cutOff() // cut already, unless the handler ended its goroutine
	st.release()
	c.requestDone()
}

// readRequest reads the request's HEADERS frame and builds st.req.
func (st *stream) readRequest() error {
	srv := st.srv
	if d := srv.cfg.ReadHeaderTimeout; d > 0 {
		_ = st.qs.SetReadDeadline(st.start.Add(d))
	}
	var length uint64
	for {
		t, l, err := st.rd.frameHeader()
		if err != nil {
			return st.readError(err, "before the request's HEADERS frame")
		}
		if t == frameHeaders {
			length = l
			break
		}
		if err := unexpectedOnRequestStream(t, false); err != nil {
			return err
		}
		if err := st.rd.discard(l); err != nil {
			return st.readError(err, "in a frame before the request's HEADERS")
		}
	}
	limit := srv.cfg.MaxFieldSectionSize
	if length > uint64(limit) {
		return errHeadersTooLarge
	}
	block, err := st.block(int(length))
	if err != nil {
		return st.readError(err, "in the request's HEADERS frame")
	}
	st.fields, err = st.fdec.decode(block, limit, st.fields[:0])
	if err != nil {
		if err == errFieldSectionTooLarge {
			return errHeadersTooLarge
		}
		return err
	}
	h := &st.head
	if err := parseRequestHead(st.fields, h); err != nil {
		return streamErr(ErrMessageError, "malformed request: %v", err)
	}

	var u *url.URL
	requestURI := h.path
	if h.method == http.MethodConnect {
		u, requestURI = &url.URL{Host: h.authority}, h.authority
	} else if u, err = parseRequestPath(h.path); err != nil {
		return streamErr(ErrMessageError, "malformed request: :path %q: %v", h.path, err)
	}
	if h.header == nil {
		h.header = make(http.Header)
	}
	var body io.ReadCloser = http.NoBody
	contentLength := h.contentLength
	if st.rd.atEOF() {
		// The HEADERS frame ended the stream: no body.
		if h.contentLength > 0 {
			return streamErr(ErrMessageError, "malformed request: content-length %d and no body", h.contentLength)
		}
		contentLength = 0
	} else {
		st.body = &requestBody{st: st, qs: st.qs}
		body = st.body
		if !h.expectContinue {
			st.continueSent.Store(2)
		}
		switch d := srv.cfg.ReadTimeout; {
		case d > 0:
			_ = st.qs.SetReadDeadline(st.start.Add(d))
		case srv.cfg.ReadHeaderTimeout > 0:
			_ = st.qs.SetReadDeadline(time.Time{})
		}
	}
	r := http.Request{
		Method:        h.method,
		URL:           u,
		Proto:         "HTTP/3.0",
		ProtoMajor:    3,
		Header:        h.header,
		Body:          body,
		ContentLength: contentLength,
		Host:          h.authority,
		Trailer:       h.trailer,
		RemoteAddr:    st.c.remoteAddr,
		RequestURI:    requestURI,
		TLS:           st.c.tls(),
	}
	st.req = r.WithContext(&requestContext{Context: st.qs.Context(), c: st.c})
	st.isHead = h.method == http.MethodHead
	st.rw = &responseWriter{st: st}
	return nil
}

// block returns the next n bytes of the stream: from the read buffer, or a
// buffer of its own when larger.
func (st *stream) block(n int) ([]byte, error) {
	if n <= len(st.rbuf) {
		return st.rd.next(n)
	}
	if cap(st.big) < n {
		st.big = make([]byte, n)
	}
	b := st.big[:n]
	return b, st.rd.readFull(b)
}

// errHeadersTooLarge answers 431 instead of a stream error.
var errHeadersTooLarge = errors.New("request header section larger than MaxFieldSectionSize")

// errPeerGone ends a request quietly: the client reset the stream, or the
// connection is gone.
var errPeerGone = errors.New("client reset the stream or closed the connection")

// errReadStopped is a read of the request stream after this server
// stopped reading it (CancelRead: the handler returned, or closed the
// body): nothing to do about it.
var errReadStopped = errors.New("h3: the request body is no longer read (its handler returned or closed it)")

// readError turns a failed read of the request stream into what to do
// about it.
func (st *stream) readError(err error, where string) error {
	var se *quic.StreamError
	var ne net.Error
	switch {
	case err == io.EOF:
		return streamErr(ErrRequestIncomplete, "stream ended %s", where)
	case err == errTruncated:
		return connErr(ErrFrameError, "request stream %d ended inside a frame %s", st.qs.StreamID(), where)
	case st.c.qc.Context().Err() != nil:
		return errPeerGone
	case errors.As(err, &se) && !se.Remote:
		return errReadStopped
	case errors.As(err, &se):
		return errPeerGone
	case errors.As(err, &ne) && ne.Timeout():
		return &streamError{code: ErrRequestIncomplete, reason: "no complete request in time (" + where + ")", readOnly: true, cause: err}
	}
	return streamErr(ErrInternalError, "reading the request stream: %v", err)
}

// unexpectedOnRequestStream reports the frames a request stream may not
// carry (RFC 9114 §7.2, RFC 9218 §7.1): a connection error
// H3_FRAME_UNEXPECTED. DATA is unexpected before HEADERS and after
// trailers.
func unexpectedOnRequestStream(t uint64, dataAllowed bool) error {
	switch {
	case t == frameData && !dataAllowed:
		return connErr(ErrFrameUnexpected, "DATA frame where a HEADERS frame belongs")
	case t == frameCancelPush, t == frameSettings, t == framePushPromise, t == frameGoAway, t == frameMaxPushID,
		t == framePriorityUpdate, t == framePriorityPush:
		return connErr(ErrFrameUnexpected, "frame type 0x%x on a request stream", t)
	case http2Frame(t):
		return connErr(ErrFrameUnexpected, "HTTP/2 frame type 0x%x", t)
	}
	return nil
}

// fail ends a request that could not be served.
func (st *stream) fail(err error) {
	var ce *connError
	var se *streamError
	switch {
	case err == errHeadersTooLarge:
		// RFC 9114 §4.2.2 suggests 431; the rest of the request is not
		// wanted.
		st.qs.CancelRead(strCode(ErrExcessiveLoad))
		st.writeHeader(http.StatusRequestHeaderFieldsTooLarge)
		st.finishResponse()
	case errors.As(err, &ce):
		st.c.close(ce)
	case errors.As(err, &se):
		st.srv.log.Debug("h3: resetting request stream", "client", st.c.remoteAddr, "stream", int64(st.qs.StreamID()), "code", se.code.String(), "reason", se.reason)
		st.reset(se.code)
	default: // errPeerGone
		st.reset(ErrRequestCancelled)
	}
}

// reset aborts the stream in both directions and ends the response (on
// the handler's goroutine, or after it returned).
func (st *stream) reset(code ErrCode) {
	st.abort(code)
	if !st.failed {
		st.failed = true
		st.writeErr = errStreamReset
	}
}

// abort aborts the stream in both directions; any goroutine may call it
// (the response's writes then fail inside quic-go).
func (st *stream) abort(code ErrCode) {
	st.qs.CancelRead(strCode(code))
	st.qs.CancelWrite(strCode(code))
}

var errStreamReset = errors.New("h3: the request's stream was reset")

// runHandler runs the handler and reports whether it returned. A panic
// resets the stream (H3_INTERNAL_ERROR), logged unless it is
// http.ErrAbortHandler.
func (st *stream) runHandler() (returned bool) {
	defer func() {
		if returned {
			return
		}
		v := recover()
		if v == nil {
			return // runtime.Goexit: serve cleans up
		}
		if v != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			st.srv.log.Error("h3: panic serving request", "client", st.c.remoteAddr, "method", st.req.Method, "uri", st.req.RequestURI, "panic", v, "stack", string(buf))
		}
		st.reset(ErrInternalError)
	}()
	st.srv.handler.ServeHTTP(st.rw, st.req)
	return true
}

// requestContext is a request's context: the stream's own, which quic-go
// cancels when the response ends, when the client stops reading it
// (STOP_SENDING, which a client sends when it abandons a request), when
// this server resets the stream, and when the connection closes. No
// goroutine or timer watches it. Its values are http.LocalAddrContextKey,
// then those of Config.BaseContext's context, then the stream's.
type requestContext struct {
	context.Context
	c *conn
}

func (r *requestContext) Value(key any) any {
	if key == http.LocalAddrContextKey {
		return r.c.localAddr
	}
	if r.c.base != nil {
		if v := r.c.base.Value(key); v != nil {
			return v
		}
	}
	return r.Context.Value(key)
}
