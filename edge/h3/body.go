package h3

import (
	"errors"
	"io"
	"net/http"
	"sync"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
)

// requestBody is a request's Body: the DATA frames' payload, read as the
// handler asks, so QUIC flow control paces the client to the handler.
// Trailers, when they come, fill Request.Trailer (if the request announced
// any) before Read returns io.EOF. The mutex lets the handler read from another goroutine and
// still be cut off cleanly when it returns.
type requestBody struct {
	mu     sync.Mutex
	st     *stream      // nil once the handler returned
	qs     *quic.Stream // st's QUIC stream; set once, never pooled
	closed bool
}

var errBodyAfterHandler = errors.New("h3: request body read after its handler returned")

func (b *requestBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	switch {
	case b.st == nil:
		return 0, errBodyAfterHandler
	case b.closed:
		return 0, http.ErrBodyReadAfterClose
	}
	return b.st.readBody(p)
}

// Close tells the client to stop sending the rest (H3_NO_ERROR, RFC 9114
// §4.1.1): the response does not need it.
//
// A Read blocked on the stream holds b.mu until the client sends more or
// the read deadline passes; a forwarder that closes the body while its
// transport still reads it must not wait for that. So when the lock is
// busy, the read side is cancelled first, which wakes the reader (a read
// stopped by the server never touches the response).
func (b *requestBody) Close() error {
	if !b.mu.TryLock() {
		b.qs.CancelRead(strCode(ErrNoError))
		b.mu.Lock()
	}
	defer b.mu.Unlock()
	if b.st != nil && !b.closed && !b.st.bodyDone {
		b.st.qs.CancelRead(strCode(ErrNoError))
	}
	b.closed = true
	return nil
}

func (b *requestBody) detach() {
	b.mu.Lock()
	b.st = nil
	b.mu.Unlock()
}

// continueFrame is the HEADERS frame of 100 Continue: :status 100 from the
// static table.
func continueFrame() []byte {
	var w appendWriter
	enc := qpack.NewEncoder(&w)
	_ = enc.WriteField(qpack.HeaderField{Name: ":status", Value: "100"})
	return append(appendFrameHeader(nil, frameHeaders, uint64(len(w.b))), w.b...)
}

// readBody reads the request body (b.mu held).
func (st *stream) readBody(p []byte) (int, error) {
	if st.bodyErr != nil {
		return 0, st.bodyErr
	}
	if st.continueSent.Load() == 0 {
		st.sendContinue()
	}
	for {
		if st.dataLeft > 0 {
			if uint64(len(p)) > st.dataLeft {
				p = p[:st.dataLeft]
			}
			n, err := st.rd.read(p)
			st.dataLeft -= uint64(n)
			st.received += int64(n)
			if err != nil {
				if err == io.EOF {
					err = errTruncated
				}
				return n, st.bodyFailed(st.readError(err, "inside a DATA frame"))
			}
			return n, nil
		}
		if st.bodyDone {
			return 0, io.EOF
		}
		t, l, err := st.rd.frameHeader()
		if err == io.EOF {
			if st.head.contentLength >= 0 && st.received != st.head.contentLength {
				return 0, st.bodyFailed(streamErr(ErrMessageError, "malformed request: content-length %d, body of %d bytes", st.head.contentLength, st.received))
			}
			st.bodyDone = true
			return 0, io.EOF
		}
		if err != nil {
			return 0, st.bodyFailed(st.readError(err, "in the request body"))
		}
		switch {
		case t == frameData && !st.trailersRead:
			if st.head.contentLength >= 0 && uint64(st.received)+l > uint64(st.head.contentLength) {
				return 0, st.bodyFailed(streamErr(ErrMessageError, "malformed request: content-length %d, more body than that", st.head.contentLength))
			}
			st.dataLeft = l
		case t == frameHeaders && !st.trailersRead:
			if err := st.readTrailers(l); err != nil {
				return 0, st.bodyFailed(err)
			}
		case t == frameHeaders:
			return 0, st.bodyFailed(connErr(ErrFrameUnexpected, "HEADERS frame after the trailers"))
		default:
			if err := unexpectedOnRequestStream(t, false); err != nil {
				if t == frameData {
					err = connErr(ErrFrameUnexpected, "DATA frame after the trailers")
				}
				return 0, st.bodyFailed(err)
			}
			if err := st.rd.discard(l); err != nil {
				return 0, st.bodyFailed(st.readError(err, "in a frame of the request body"))
			}
		}
	}
}

// readTrailers reads the trailer section, limited as the header section
// is.
func (st *stream) readTrailers(length uint64) error {
	limit := st.srv.cfg.MaxFieldSectionSize
	if length > uint64(limit) {
		return streamErr(ErrExcessiveLoad, "trailer section of %d bytes, over MaxFieldSectionSize", length)
	}
	block, err := st.block(int(length))
	if err != nil {
		return st.readError(err, "in the request's trailers")
	}
	st.fields, err = st.fdec.decode(block, limit, st.fields[:0])
	if err == errFieldSectionTooLarge {
		return streamErr(ErrExcessiveLoad, "trailer section over MaxFieldSectionSize once decoded")
	}
	if err != nil {
		return err
	}
	// As x/net/http2: trailers fill the map the Trailer header announced
	// (made with the request, so every copy of it, r.WithContext's
	// included, shares it), announced or not; without an announcement
	// they are checked and dropped.
	if err := parseTrailers(st.fields, st.head.trailer); err != nil {
		return streamErr(ErrMessageError, "malformed trailers: %v", err)
	}
	st.trailersRead = true
	return nil
}

// bodyFailed acts on an error met while reading the body, and returns
// what Read returns from now on. Only a client's protocol violation
// resets the stream (or closes the connection); a read deadline that
// passed stops the reading side alone; a client that reset its
// upload, a connection that is gone, or a read this server stopped itself
// fail the read alone, and the handler may still answer. Once the
// handler has returned, the response is never touched.
func (st *stream) bodyFailed(err error) error {
	var ce *connError
	var se *streamError
	switch {
	case err == errPeerGone, err == errReadStopped:
		st.bodyErr = err
	case errors.As(err, &ce):
		st.c.close(ce)
		st.bodyErr = err
	case errors.As(err, &se) && se.readOnly:
		// A read deadline passed: stop reading (x/net/http2 fails the
		// read alone too); the handler may still answer.
		st.bodyErr = err
		st.qs.CancelRead(strCode(se.code))
	case errors.As(err, &se):
		st.bodyErr = err
		if se.code == ErrMessageError {
			st.bodyErr = io.ErrUnexpectedEOF
		}
		if st.handlerDone.Load() {
			break
		}
		st.srv.log.Debug("h3: resetting request stream", "client", st.c.remoteAddr, "stream", int64(st.qs.StreamID()), "code", se.code.String(), "reason", se.reason)
		st.abort(se.code)
	default:
		st.bodyErr = err
	}
	return st.bodyErr
}

// sendContinue sends 100 Continue before the first read of a body the
// client is waiting to send (Expect: 100-continue), unless the response
// has started.
func (st *stream) sendContinue() {
	st.wmu.Lock()
	defer st.wmu.Unlock()
	if st.continueSent.CompareAndSwap(0, 1) {
		_ = st.qs.TryWriteAll(st.srv.continueFrame)
	}
}
