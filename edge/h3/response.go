package h3

import (
	"errors"
	"fmt"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/quic-go/quic-go"
	"golang.org/x/net/http/httpguts"
)

// responseWriter is the http.ResponseWriter of one request. It also
// implements http.Flusher and what http.ResponseController looks for
// (FlushError, SetReadDeadline, SetWriteDeadline, EnableFullDuplex);
// Hijack is not offered (HTTP/3 has no connection to hand over).
type responseWriter struct {
	// mu is held through every method, and st is nil once the handler
	// returned (cutOff): a goroutine that kept the writer either runs
	// its call before the cut, on this request's stream, or panics after
	// it. It can never reach the stream state once it is pooled and
	// serves another request.
	mu sync.Mutex
	st *stream
}

// lock returns the stream with w.mu held; the caller unlocks.
func (w *responseWriter) lock(method string) *stream {
	w.mu.Lock()
	if w.st == nil {
		w.mu.Unlock()
		panic("h3: ResponseWriter." + method + " called after its handler returned")
	}
	return w.st
}

func (w *responseWriter) Header() http.Header {
	st := w.lock("Header")
	defer w.mu.Unlock()
	if st.header == nil {
		st.header = make(http.Header, 4)
	}
	return st.header
}

func (w *responseWriter) WriteHeader(code int) {
	st := w.lock("WriteHeader")
	defer w.mu.Unlock()
	st.writeHeader(code)
}

func (w *responseWriter) Write(p []byte) (int, error) {
	st := w.lock("Write")
	defer w.mu.Unlock()
	return st.write(p)
}

// WriteString saves io.WriteString a copy of s.
func (w *responseWriter) WriteString(s string) (int, error) {
	st := w.lock("WriteString")
	defer w.mu.Unlock()
	if !st.wroteHeader {
		st.writeHeader(http.StatusOK)
	}
	if st.canBuffer(len(s)) {
		st.written += int64(len(s))
		st.resp = append(st.resp, s...)
		return len(s), nil
	}
	return st.write([]byte(s))
}

// Flush sends the response header and what the handler wrote so far.
func (w *responseWriter) Flush() { _ = w.FlushError() }

// FlushError is Flush, with the error of the write (http.ResponseController).
func (w *responseWriter) FlushError() error {
	st := w.lock("Flush")
	defer w.mu.Unlock()
	if !st.wroteHeader {
		st.writeHeader(http.StatusOK)
	}
	return st.flush(nil)
}

// SetReadDeadline sets the deadline for reading the request body.
func (w *responseWriter) SetReadDeadline(t time.Time) error {
	st := w.lock("SetReadDeadline")
	defer w.mu.Unlock()
	return st.qs.SetReadDeadline(t)
}

// SetWriteDeadline sets the deadline for writing the response.
func (w *responseWriter) SetWriteDeadline(t time.Time) error {
	st := w.lock("SetWriteDeadline")
	defer w.mu.Unlock()
	st.deadlineSet = true
	return st.qs.SetWriteDeadline(t)
}

// cutOff ends the writer's access to the stream once the handler has
// returned. A goroutine the handler left behind may still be inside a
// call (a Write waiting for the client's flow control, say): then the
// response cannot be finished as the handler meant it; it is reset
// (H3_INTERNAL_ERROR), which also ends that Write, and the cut waits for
// the call to return.
func (st *stream) cutOff() {
	rw := st.rw
	if rw == nil || st.writerCut {
		return
	}
	st.writerCut = true
	if !rw.mu.TryLock() {
		st.abort(ErrInternalError)
		rw.mu.Lock()
		if rw.st != nil {
			st.srv.log.Debug("h3: a goroutine was still using the ResponseWriter when its handler returned; response reset", "client", st.c.remoteAddr, "stream", int64(st.qs.StreamID()))
			st.reset(ErrInternalError)
		}
	}
	rw.st = nil
	rw.mu.Unlock()
}

// EnableFullDuplex is a no-op: an HTTP/3 handler may always read the
// request body while it writes the response.
func (w *responseWriter) EnableFullDuplex() error { return nil }

// bodyAllowed reports whether a response with this status has content
// (RFC 9110 §6.4.1).
func bodyAllowed(status int) bool {
	return status >= 200 && status != http.StatusNoContent && status != http.StatusNotModified
}

// writeHeader is http.ResponseWriter.WriteHeader.
func (st *stream) writeHeader(code int) {
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("h3: invalid WriteHeader code %d", code))
	}
	if st.wroteHeader {
		st.srv.log.Debug("h3: superfluous WriteHeader call", "code", code, "status", st.status)
		return
	}
	if code < 200 {
		st.writeInterim(code)
		return
	}
	st.status, st.wroteHeader = code, true
	st.snapshotHeader()
	h := st.sent
	// What net/http leaves out for these statuses (suppressedHeaders),
	// and RFC 9110 §9.3.6: no Content-Length in a 2xx answer to CONNECT.
	switch {
	case code == http.StatusNotModified:
		delete(h, "Content-Type")
		delete(h, "Content-Length")
	case !bodyAllowed(code), st.isConnect() && code < 300:
		delete(h, "Content-Length")
	}
	if vv := h["Content-Length"]; len(vv) > 0 {
		if n, err := strconv.ParseUint(vv[0], 10, 63); err == nil {
			st.declared = int64(n)
		} else {
			st.srv.log.Warn("h3: handler set an invalid Content-Length; dropped", "value", vv[0])
			delete(h, "Content-Length")
		}
	}
}

// snapshotHeader copies the handler's header map, as it is when the final
// status is set, into st.sent (values and all, into one reused backing
// array): that is what the HEADERS frame carries, as with net/http, so a
// field set after WriteHeader (a Content-Length that the body would then
// not match, say) goes nowhere. Trailers are still read from the
// handler's map at the end.
func (st *stream) snapshotHeader() {
	if st.sent == nil {
		st.sent = make(http.Header, len(st.header)+2)
	}
	n := 0
	for _, vv := range st.header {
		n += len(vv)
	}
	vals := st.sentVals[:0]
	if cap(vals) < n {
		vals = make([]string, 0, n)
	}
	for k, vv := range st.header {
		if vv == nil {
			st.sent[k] = nil // "do not send" (Date) or "do not sniff" (Content-Type)
			continue
		}
		i := len(vals)
		vals = append(vals, vv...)
		st.sent[k] = vals[i:len(vals):len(vals)]
	}
	st.sentVals = vals
}

func (st *stream) isConnect() bool { return st.head.method == http.MethodConnect }

// writeInterim sends a 1xx response now, with the header fields set so
// far (as net/http does, for 103 Early Hints). HTTP/3 has no 101
// (RFC 9114 §4.5): that one is dropped.
func (st *stream) writeInterim(code int) {
	if code == http.StatusSwitchingProtocols {
		st.srv.log.Debug("h3: handler sent 101 Switching Protocols, which HTTP/3 does not have; dropped")
		return
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if code == http.StatusContinue && !st.continueSent.CompareAndSwap(0, 1) {
		return // sent already, or no longer meaningful
	}
	out := st.appendHeaders(st.out[:0], code, st.header, "")
	st.out = out[:0]
	_ = st.writeLocked(out)
}

// canBuffer reports whether n more body bytes go into the buffer: the
// status allows a body, the Content-Length allows n more, and they fit.
func (st *stream) canBuffer(n int) bool {
	return st.wroteHeader && !st.failed && !st.isHead && bodyAllowed(st.status) &&
		(st.declared < 0 || st.written+int64(n) <= st.declared) && len(st.resp)+n <= bodyBufSize
}

// write is http.ResponseWriter.Write.
func (st *stream) write(p []byte) (int, error) {
	if !st.wroteHeader {
		st.writeHeader(http.StatusOK)
	}
	if st.canBuffer(len(p)) {
		st.written += int64(len(p))
		st.resp = append(st.resp, p...)
		return len(p), nil
	}
	if st.failed {
		return 0, st.writeErr
	}
	if !bodyAllowed(st.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if st.declared >= 0 && st.written+int64(len(p)) > st.declared {
		return 0, http.ErrContentLength
	}
	st.written += int64(len(p))
	if st.isHead {
		// Nothing goes out, but net/http still sniffs the type from the
		// first write.
		if !st.sentHeader && len(p) > 0 {
			st.sniff(p, nil)
		}
		return len(p), nil
	}
	if err := st.flush(p); err != nil {
		return 0, err
	}
	return len(p), nil
}

// flush sends the HEADERS frame if it has not gone out, then the buffered
// body and p as one DATA frame.
func (st *stream) flush(p []byte) error {
	if st.failed {
		return st.writeErr
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	out := st.out[:0]
	if !st.sentHeader {
		st.sniff(st.resp, p)
		out = st.appendFinalHeaders(out, false)
	}
	if n := len(st.resp) + len(p); n > 0 {
		out = appendFrameHeader(out, frameData, uint64(n))
		out = append(out, st.resp...)
		st.resp = st.resp[:0]
		if len(p) <= bodyBufSize {
			out, p = append(out, p...), nil
		}
	}
	st.out = out[:0]
	if err := st.writeLocked(out); err != nil {
		return err
	}
	if len(p) > 0 {
		return st.writeLocked(p)
	}
	return nil
}

// finishResponse completes the response after the handler returned: the
// HEADERS frame if it is still unsent (with Content-Length, for the whole
// body is known), the rest of the body, the trailers, then the stream's
// end. A small response leaves in one write.
func (st *stream) finishResponse() {
	if st.failed {
		return
	}
	if !st.wroteHeader {
		st.writeHeader(http.StatusOK)
	}
	if st.declared >= 0 && st.written < st.declared && !st.isHead && bodyAllowed(st.status) {
		st.srv.log.Debug("h3: handler wrote less than its Content-Length; resetting the stream", "declared", st.declared, "written", st.written)
		st.reset(ErrInternalError)
		return
	}
	st.wmu.Lock()
	defer st.wmu.Unlock()
	out := st.out[:0]
	if !st.sentHeader {
		out = st.appendFinalHeaders(out, true)
	}
	if len(st.resp) > 0 {
		out = appendFrameHeader(out, frameData, uint64(len(st.resp)))
		out = append(out, st.resp...)
		st.resp = st.resp[:0]
	}
	out = st.appendTrailers(out)
	st.out = out[:0]
	if err := st.writeLocked(out); err != nil {
		return
	}
	_ = st.qs.Close()
}

// writeLocked writes b to the stream (st.wmu held). Up to tryWriteMax
// bytes are queued without waiting when the client's flow control allows;
// otherwise Write waits, within WriteTimeout. A failed write resets the
// stream.
func (st *stream) writeLocked(b []byte) error {
	if st.failed {
		return st.writeErr
	}
	if len(b) == 0 {
		return nil
	}
	if len(b) <= tryWriteMax {
		err := st.qs.TryWriteAll(b)
		if err == nil {
			return nil
		}
		if err != quic.ErrWouldBlock {
			return st.writeFailed(err)
		}
	}
	if d := st.srv.cfg.WriteTimeout; d > 0 && !st.deadlineSet {
		st.deadlineSet = true
		_ = st.qs.SetWriteDeadline(st.start.Add(d))
	}
	if _, err := st.qs.Write(b); err != nil {
		return st.writeFailed(err)
	}
	return nil
}

// writeFailed ends a response whose write failed: the client stopped
// reading it, the write deadline passed, or the connection is gone.
func (st *stream) writeFailed(err error) error {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		err = fmt.Errorf("h3: writing the response: %w (WriteTimeout or a write deadline)", err)
	}
	st.abort(ErrRequestCancelled)
	st.failed, st.writeErr = true, err
	return err
}

// appendFinalHeaders appends the final response's HEADERS frame. With
// complete, the handler has returned and the whole body is in st.resp:
// Content-Length can be set.
func (st *stream) appendFinalHeaders(out []byte, complete bool) []byte {
	st.sentHeader = true
	st.continueSent.Store(2)
	h := st.sent
	st.sniff(st.resp, nil)
	// The whole body is known: its length goes out with the header (not
	// into the handler's map, as net/http).
	var length string
	if complete && bodyAllowed(st.status) && !(st.isConnect() && st.status < 300) {
		if _, ok := h["Content-Length"]; !ok && (!st.isHead || st.written > 0) {
			length = st.lengthText(st.written)
		}
	}
	if vv, ok := h["Trailer"]; ok {
		for _, v := range vv {
			for key := range strings.SplitSeq(v, ",") {
				if key = http.CanonicalHeaderKey(strings.TrimSpace(key)); key != "" && httpguts.ValidTrailerHeader(key) {
					st.trailerKeys = append(st.trailerKeys, key)
				}
			}
		}
	}
	return st.appendHeaders(out, st.status, h, length)
}

// lengthText is strconv.FormatInt(n, 10), remembered: a stream state
// serving the same resource again does not allocate it again.
func (st *stream) lengthText(n int64) string {
	if n != st.lenVal || st.lenText == "" {
		st.lenVal, st.lenText = n, strconv.FormatInt(n, 10)
	}
	return st.lenText
}

// sniff sets a missing Content-Type from the body's first bytes (up to
// 512, DetectContentType's window, taken from a and then b), as net/http
// does: not when the handler set the field, even to nil, nor for an
// encoded body, nor when the status has no body, nor without a byte.
func (st *stream) sniff(a, b []byte) {
	h := st.sent
	if len(a)+len(b) == 0 {
		return
	}
	if _, ok := h["Content-Type"]; ok || !bodyAllowed(st.status) || h.Get("Content-Encoding") != "" {
		return
	}
	var body []byte
	switch {
	case len(b) == 0 || len(a) >= sniffLen:
		body = a
	case len(a) == 0:
		body = b
	default:
		var buf [sniffLen]byte
		n := copy(buf[:], a)
		n += copy(buf[n:], b)
		body = buf[:n]
	}
	h["Content-Type"] = []string{http.DetectContentType(body)}
}

// sniffLen is how many bytes http.DetectContentType looks at.
const sniffLen = 512

// appendHeaders appends a HEADERS frame: :status, then for a final
// response Date (unless h has it, even nil) and the computed
// Content-Length, then h's fields minus what HTTP/3 forbids, declared
// trailers, and names or values that are not valid (dropped, as
// x/net/http2 does). An interim (1xx) response never carries
// Content-Length (as net/http).
func (st *stream) appendHeaders(out []byte, status int, h http.Header, length string) []byte {
	b := sectionPrefix(st.section[:0])
	b = st.fenc.appendField(b, ":status", statusText(status))
	final := status >= 200
	if final {
		if _, ok := h["Date"]; !ok {
			b = append(b, st.srv.dates.encoded(time.Now())...)
		}
		if length != "" {
			b = st.fenc.appendField(b, "content-length", length)
		}
	}
	names := st.srv.names
	for k, vv := range h {
		if len(st.trailerKeys) > 0 && isTrailerKey(st.trailerKeys, k) || strings.HasPrefix(k, http.TrailerPrefix) {
			continue
		}
		if !final && k == "Content-Length" {
			continue
		}
		name := names.lowerName(k)
		if connectionSpecific(name) || !httpguts.ValidHeaderFieldName(name) {
			continue
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				continue
			}
			b = st.fenc.appendField(b, name, v)
		}
	}
	st.section = b
	out = appendFrameHeader(out, frameHeaders, uint64(len(b)))
	return append(out, b...)
}

func isTrailerKey(keys []string, k string) bool {
	for _, t := range keys {
		if t == k {
			return true
		}
	}
	return false
}

// appendTrailers appends the trailers' HEADERS frame, if there are any:
// the declared keys the handler gave values, and the keys set with
// http.TrailerPrefix.
func (st *stream) appendTrailers(out []byte) []byte {
	if len(st.trailerKeys) == 0 && !hasTrailerPrefix(st.header) {
		return out
	}
	b := sectionPrefix(st.section[:0])
	n := 0
	add := func(key string, vv []string) {
		if !httpguts.ValidTrailerHeader(key) {
			return
		}
		name := st.srv.names.lowerName(key)
		if connectionSpecific(name) || !httpguts.ValidHeaderFieldName(name) {
			return
		}
		for _, v := range vv {
			if httpguts.ValidHeaderFieldValue(v) {
				b = st.fenc.appendField(b, name, v)
				n++
			}
		}
	}
	for _, k := range st.trailerKeys {
		add(k, st.header[k])
	}
	for k, vv := range st.header {
		if key, ok := strings.CutPrefix(k, http.TrailerPrefix); ok {
			add(http.CanonicalHeaderKey(key), vv)
		}
	}
	st.section = b
	if n == 0 {
		return out
	}
	out = appendFrameHeader(out, frameHeaders, uint64(len(b)))
	return append(out, b...)
}

func hasTrailerPrefix(h http.Header) bool {
	for k := range h {
		if strings.HasPrefix(k, http.TrailerPrefix) {
			return true
		}
	}
	return false
}

// statusText is the :status value of a code, without allocating for the
// usual ones.
func statusText(code int) string {
	switch code {
	case 200:
		return "200"
	case 204:
		return "204"
	case 206:
		return "206"
	case 301:
		return "301"
	case 302:
		return "302"
	case 304:
		return "304"
	case 400:
		return "400"
	case 401:
		return "401"
	case 403:
		return "403"
	case 404:
		return "404"
	case 429:
		return "429"
	case 500:
		return "500"
	case 502:
		return "502"
	case 503:
		return "503"
	case 504:
		return "504"
	}
	return strconv.Itoa(code)
}
