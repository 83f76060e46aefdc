package h2

import (
	"errors"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"time"

	"golang.org/x/net/http/httpguts"
	"golang.org/x/net/http2/hpack"
)

// The write side. Handlers and the frame loop build frames under c.mu
// straight into c.wbuf (HPACK encoding included, so that the encoder's
// state follows the order of the frames); one writer goroutine per
// connection sends everything queued in one write per batch.

// headerBuf is where the HPACK encoder writes a header block.
type headerBuf struct{ b []byte }

func (h *headerBuf) Write(p []byte) (int, error) {
	h.b = append(h.b, p...)
	return len(p), nil
}

const (
	pooledBufSize = 16 << 10 // a fresh write queue's capacity
	maxPooledBuf  = 64 << 10 // larger queues are left to the GC
)

func (s *Server) getBuf() []byte {
	if b, ok := s.bufs.Get().(*[]byte); ok {
		return (*b)[:0]
	}
	return make([]byte, 0, pooledBufSize)
}

func (s *Server) putBuf(b []byte) {
	if cap(b) == 0 || cap(b) > maxPooledBuf {
		return
	}
	b = b[:0]
	s.bufs.Put(&b)
}

// buf returns the write queue, taking a buffer from the pool if the
// connection holds none.
func (c *conn) buf() []byte {
	if c.wbuf == nil {
		c.wbuf = c.srv.getBuf()
	}
	return c.wbuf
}

// wakeWriterLocked makes sure the writer will look at the queue.
func (c *conn) wakeWriterLocked() {
	if c.writerPending {
		return
	}
	c.writerPending = true
	select {
	case c.wake <- struct{}{}:
	default:
	}
}

// writeLoop sends the queue. After a wake-up it first yields, so that
// the handlers and the frame loop that are ready to run queue their frames
// too: their responses then leave in one TLS write instead of one each.
func (c *conn) writeLoop() {
	defer close(c.writerDone)
	var deadline time.Time
	for range c.wake {
		runtime.Gosched()
		for {
			c.mu.Lock()
			if len(c.wbuf) == 0 || c.werr != nil {
				c.writerPending = false
				if c.queueWaiters > 0 {
					c.cond.Broadcast()
				}
				// An idle connection holds no buffers.
				c.srv.putBuf(c.wbuf)
				c.srv.putBuf(c.spare)
				c.wbuf, c.spare, c.cuts, c.spareCuts = nil, nil, c.cuts[:0], c.spareCuts[:0]
				done := c.closed || c.werr != nil
				c.mu.Unlock()
				if done {
					return
				}
				break
			}
			out, cuts := c.wbuf, c.cuts
			c.wbuf, c.cuts = c.spare, c.spareCuts[:0]
			c.spare, c.spareCuts = nil, nil
			c.ctrlQueued = 0
			if c.wbuf != nil {
				c.wbuf = c.wbuf[:0]
			}
			c.mu.Unlock()

			if wt := c.cfg.WriteTimeout; wt > 0 {
				// Moving the deadline costs a timer update; moving it
				// only when an eighth of it has passed is close enough.
				if now := time.Now(); now.Add(wt).Sub(deadline) > wt/8 {
					deadline = now.Add(wt)
					_ = c.nc.SetWriteDeadline(deadline)
				}
			}
			err := c.send(out, cuts)

			c.mu.Lock()
			c.spare, c.spareCuts = out[:0], cuts[:0]
			if err != nil {
				c.werr = err
				c.cond.Broadcast()
				c.abortAllLocked(errConnClosed)
				c.mu.Unlock()
				_ = c.nc.Close() // ends the frame loop too
				return
			}
			if c.queueWaiters > 0 {
				c.cond.Broadcast()
			}
			c.mu.Unlock()
		}
	}
}

// send writes out, with a separate write (a separate TLS record) from
// each cut on.
func (c *conn) send(out []byte, cuts []int) error {
	from := 0
	for _, at := range cuts {
		if at <= from || at >= len(out) {
			continue
		}
		if _, err := c.nc.Write(out[from:at]); err != nil {
			return err
		}
		from = at
	}
	_, err := c.nc.Write(out[from:])
	return err
}

// responseWriter is the handler's http.ResponseWriter.
type responseWriter struct{ st *stream }

func (w *responseWriter) stream() *stream {
	st := w.st
	if st == nil {
		panic("h2: ResponseWriter used after the handler returned")
	}
	return st
}

func (w *responseWriter) Header() http.Header {
	st := w.stream()
	if st.hdr == nil {
		st.hdr = make(http.Header, 4)
	}
	return st.hdr
}

func (w *responseWriter) WriteHeader(code int) {
	st := w.stream()
	if st.wroteHeader {
		return
	}
	if code < 100 || code > 999 {
		panic("invalid WriteHeader code " + strconv.Itoa(code))
	}
	if code == http.StatusSwitchingProtocols {
		// HTTP/2 has no 101 (RFC 9113 §8.6: clients such as nghttp2 reset
		// the stream on it). As x/net has it, it is not a final status:
		// the handler's next WriteHeader or Write makes the response. It
		// is not sent at all.
		st.c.srv.log.Debug("http2: 101 Switching Protocols is not valid in HTTP/2; not sent", "stream", st.id)
		return
	}
	if code >= 100 && code <= 199 {
		if err := st.writeInformational(code); err != nil {
			st.c.srv.log.Debug("http2: informational response not sent", "stream", st.id, "error", err)
		}
		return
	}
	st.wroteHeader = true
	st.status = code
	st.declared = -1
	if cl := st.hdr["Content-Length"]; len(cl) > 0 {
		if n, err := strconv.ParseInt(cl[0], 10, 63); err == nil {
			st.declared = n
		}
	}
	st.snapshotHeader()
}

// snapshotHeader takes the header as it is at WriteHeader, as net/http
// does: what the handler changes afterwards (trailers, typically) is not
// part of the response header. The snapshot is a pooled slice of fields
// sharing the header's strings.
func (st *stream) snapshotHeader() {
	h := st.hdr
	_, st.hasType = h["Content-Type"]
	_, st.hasLen = h["Content-Length"]
	_, st.hasTE = h["Transfer-Encoding"]
	_, st.hasDate = h["Date"]
	// net/http does not sniff an encoded body: its type is not what the
	// octets look like.
	st.hasEncoding = h.Get("Content-Encoding") != ""
	st.snap = st.snap[:0]
	if len(h) == 0 {
		return
	}
	c := st.c
	c.mu.Lock()
	st.snap = c.appendWireFieldsLocked(st.snap, h, st)
	c.mu.Unlock()
}

var errTooLong = errors.New("http2: handler wrote more than declared Content-Length")

func (w *responseWriter) Write(p []byte) (int, error) { return w.write(p, "") }

func (w *responseWriter) WriteString(s string) (int, error) { return w.write(nil, s) }

func (w *responseWriter) write(p []byte, s string) (int, error) {
	st := w.stream()
	if !st.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	n := len(p) + len(s)
	if !bodyAllowed(st.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if st.declared >= 0 && st.written+int64(n) > st.declared {
		// Rejected, so not counted: finish compares what was accepted
		// with the declared length and resets a response that falls
		// short, instead of ending it as complete.
		return 0, errTooLong
	}
	st.written += int64(n)
	if len(st.buf)+n <= respBufSize {
		st.buf = append(st.buf, p...)
		st.buf = append(st.buf, s...)
		return n, nil
	}
	if s != "" {
		p = []byte(s)
	}
	if err := st.writeChunk(p, false); err != nil {
		return 0, err
	}
	return n, nil
}

// Flush sends the headers and what is buffered.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush reporting why the stream cannot be written to.
func (w *responseWriter) FlushError() error {
	st := w.stream()
	if !st.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	return st.writeChunk(nil, false)
}

// SetReadDeadline bounds reading the request body (zero: no bound); see
// Config.ReadTimeout for what happens when it passes. A deadline that has
// passed already stays passed.
func (w *responseWriter) SetReadDeadline(t time.Time) error {
	st := w.stream()
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st.readBy = t
	c.armSweepLocked(t)
	return nil
}

// SetWriteDeadline bounds writing the response: past it the stream is
// reset (zero: no bound).
func (w *responseWriter) SetWriteDeadline(t time.Time) error {
	st := w.stream()
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	st.writeBy = t
	c.armSweepLocked(t)
	return nil
}

// EnableFullDuplex: HTTP/2 streams are always full duplex.
func (w *responseWriter) EnableFullDuplex() error { return nil }

func bodyAllowed(status int) bool {
	switch {
	case status >= 100 && status <= 199, status == http.StatusNoContent, status == http.StatusNotModified:
		return false
	}
	return true
}

// errStreamClosed is what writes to a reset stream return.
var errStreamClosed = errors.New("http2: stream closed")

func (st *stream) writableLocked() error {
	c := st.c
	switch {
	case c.werr != nil, c.closed:
		return errConnClosed
	case st.reset:
		return errStreamClosed
	case st.localClosed:
		return errors.New("http2: response already complete")
	}
	return nil
}

// writeInformational sends a 1xx response with the handler's header,
// less Content-Length (a 1xx response has no content; x/net strips it
// too, and the header may already hold the final response's).
func (st *stream) writeInformational(code int) error {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := st.writableLocked(); err != nil {
		return err
	}
	c.hbuf.b = c.hbuf.b[:0]
	c.writeStatusLocked(code)
	st.snap = c.appendWireFieldsLocked(st.snap[:0], st.hdr, nil)
	for _, f := range st.snap {
		if f.Name != "content-length" {
			_ = c.henc.WriteField(f)
		}
	}
	st.snap = st.snap[:0]
	c.wbuf = appendHeaderBlock(c.buf(), st.id, c.hbuf.b, false, c.peerMaxFrame)
	c.wakeWriterLocked()
	return nil
}

// write100ContinueLocked sends "100 Continue" to a request that asked
// for it, when its handler first reads the body, unless the final
// response header has been sent already (net/http's HTTP/2 behaviour).
func (st *stream) write100ContinueLocked() {
	c := st.c
	c.waitQueueLocked()
	if st.sentHeader || st.writableLocked() != nil {
		return
	}
	c.hbuf.b = c.hbuf.b[:0]
	c.writeStatusLocked(http.StatusContinue)
	c.wbuf = appendHeaderBlock(c.buf(), st.id, c.hbuf.b, false, c.peerMaxFrame)
	c.wakeWriterLocked()
}

// finish completes the response after the handler returned: whatever is
// buffered, END_STREAM, and the trailers.
func (st *stream) finish() error {
	if !st.wroteHeader {
		st.rs.rw.WriteHeader(http.StatusOK)
	}
	if st.declared > st.written && bodyAllowed(st.status) && !st.isHead {
		// Ending the stream would pass a truncated body off as complete.
		c := st.c
		c.mu.Lock()
		defer c.mu.Unlock()
		c.waitQueueLocked()
		if !st.localClosed {
			c.serverResetLocked(st, ErrCodeInternal, "the response is shorter than its Content-Length")
		}
		return errTooShort
	}
	return st.writeChunk(nil, true)
}

var errTooShort = errors.New("http2: handler wrote less than declared Content-Length; stream reset")

// writeChunk sends the headers if not yet sent, the buffered data and p;
// final ends the stream.
func (st *stream) writeChunk(p []byte, final bool) error {
	c := st.c
	c.mu.Lock()
	defer c.mu.Unlock()
	if err := st.writableLocked(); err != nil {
		return err
	}
	var trailers []hpack.HeaderField
	if final {
		trailers = st.collectTrailers()
	}
	data := len(st.buf) + len(p)
	if st.isHead {
		data = 0
	}
	if !st.sentHeader {
		st.sentHeader = true
		end := final && data == 0 && len(trailers) == 0
		st.encodeResponseHeaderLocked(final, p)
		c.wbuf = appendHeaderBlock(c.buf(), st.id, c.hbuf.b, end, c.peerMaxFrame)
		c.wakeWriterLocked()
		if end {
			st.endLocalLocked()
			return nil
		}
	}
	if !st.isHead {
		end := final && len(trailers) == 0
		if len(st.buf) > 0 {
			if err := st.sendDataLocked(st.buf, end && len(p) == 0); err != nil {
				return err
			}
		}
		st.buf = st.buf[:0]
		if len(p) > 0 || end && data == 0 {
			if err := st.sendDataLocked(p, end); err != nil {
				return err
			}
		}
	} else {
		st.buf = st.buf[:0]
		if final && len(trailers) == 0 {
			if err := st.sendDataLocked(nil, true); err != nil {
				return err
			}
		}
	}
	if !final {
		return nil
	}
	if len(trailers) > 0 {
		if err := st.writableLocked(); err != nil {
			return err
		}
		c.hbuf.b = c.hbuf.b[:0]
		for _, f := range trailers {
			_ = c.henc.WriteField(f)
		}
		c.wbuf = appendHeaderBlock(c.buf(), st.id, c.hbuf.b, true, c.peerMaxFrame)
		c.wakeWriterLocked()
	}
	st.endLocalLocked()
	return nil
}

// endLocalLocked notes END_STREAM sent.
func (st *stream) endLocalLocked() {
	st.localClosed = true
	if st.remoteClosed {
		st.c.closeStreamLocked(st)
	}
}

// sendDataLocked queues p as DATA frames as the windows allow, waiting
// for WINDOW_UPDATEs and for queue space; end sets END_STREAM on the last.
func (st *stream) sendDataLocked(p []byte, end bool) error {
	c := st.c
	for {
		if err := st.writableLocked(); err != nil {
			return err
		}
		if len(c.wbuf) >= maxQueued {
			c.queueWaiters++
			c.cond.Wait()
			c.queueWaiters--
			continue
		}
		if len(p) == 0 {
			if end {
				c.wbuf = appendData(c.buf(), st.id, nil, true)
				c.wakeWriterLocked()
			}
			return nil
		}
		n := min(int64(len(p)), int64(c.peerMaxFrame), st.sendWindow, c.sendWindow)
		if n <= 0 {
			c.cond.Wait()
			continue
		}
		last := int(n) == len(p)
		c.wbuf = appendData(c.buf(), st.id, p[:n], end && last)
		st.sendWindow -= n
		c.sendWindow -= n
		p = p[n:]
		c.wakeWriterLocked()
		if last {
			return nil
		}
	}
}

// encodeResponseHeaderLocked HPACK-encodes the final response header
// (the snapshot taken at WriteHeader) into c.hbuf, adding what net/http
// adds: Date, a sniffed Content-Type, and the Content-Length of a response
// complete within the buffer.
func (st *stream) encodeResponseHeaderLocked(final bool, p []byte) {
	c := st.c
	c.hbuf.b = c.hbuf.b[:0]
	c.writeStatusLocked(st.status)
	for _, f := range st.snap {
		_ = c.henc.WriteField(f)
	}
	allowed := bodyAllowed(st.status)
	if !st.hasType && !st.hasEncoding && allowed {
		sniff := st.buf
		if len(sniff) == 0 {
			sniff = p
		}
		if len(sniff) > 0 {
			_ = c.henc.WriteField(hpack.HeaderField{Name: "content-type", Value: http.DetectContentType(sniff)})
		}
	}
	if final && !st.hasLen && !st.hasTE && allowed && (len(st.buf)+len(p) > 0 || !st.isHead) {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "content-length", Value: c.lengthString(len(st.buf) + len(p))})
	}
	if !st.hasDate {
		_ = c.henc.WriteField(hpack.HeaderField{Name: "date", Value: c.srv.date.get()})
	}
}

// lengthString formats n, reusing the previous string when n repeats (a
// service answering many same-sized responses).
func (c *conn) lengthString(n int) string {
	if n == c.lastLen && c.lastLenS != "" {
		return c.lastLenS
	}
	c.lastLen, c.lastLenS = n, strconv.Itoa(n)
	return c.lastLenS
}

func (c *conn) writeStatusLocked(code int) {
	var s string
	switch code {
	case 200:
		s = "200"
	case 204:
		s = "204"
	case 206:
		s = "206"
	case 304:
		s = "304"
	case 400:
		s = "400"
	case 404:
		s = "404"
	case 500:
		s = "500"
	default:
		s = strconv.Itoa(code)
	}
	_ = c.henc.WriteField(hpack.HeaderField{Name: ":status", Value: s})
}

// appendWireFieldsLocked appends h's fields that may go on the wire:
// valid names and values, no connection-specific fields, no trailers. With
// st, the "Trailer" names are noted as the response's declared trailers.
func (c *conn) appendWireFieldsLocked(out []hpack.HeaderField, h http.Header, st *stream) []hpack.HeaderField {
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		name := c.lowerKey(k)
		if !validFieldName(name) {
			continue
		}
		switch name {
		case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade", "te":
			continue
		case "trailer":
			if st != nil {
				st.declareTrailers(vv)
			}
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			out = append(out, hpack.HeaderField{Name: name, Value: strings.TrimSpace(v)})
		}
	}
	return out
}

func (st *stream) declareTrailers(vv []string) {
	for _, v := range vv {
		for _, k := range strings.Split(v, ",") {
			k = http.CanonicalHeaderKey(strings.TrimSpace(k))
			if k == "" || !httpguts.ValidTrailerHeader(k) {
				continue
			}
			st.trailerKeys = append(st.trailerKeys, k)
		}
	}
}

// collectTrailers returns the trailer fields to send: the declared names'
// values, and fields named with http.TrailerPrefix.
func (st *stream) collectTrailers() []hpack.HeaderField {
	h := st.hdr
	if len(h) == 0 {
		return nil
	}
	var out []hpack.HeaderField
	add := func(k string, vv []string) {
		name := strings.ToLower(k)
		if !validFieldName(name) || !httpguts.ValidTrailerHeader(http.CanonicalHeaderKey(k)) {
			return
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				out = append(out, hpack.HeaderField{Name: name, Value: strings.TrimSpace(v)})
			}
		}
	}
	for _, k := range st.trailerKeys {
		add(k, h[k])
	}
	for k, vv := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			add(k[len(http.TrailerPrefix):], vv)
		}
	}
	return out
}
