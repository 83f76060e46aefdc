package hygiene

import (
	"errors"
	"io"
	"net/http"
	"os"
	"strconv"
	"sync/atomic"
)

// Body wraps a request body so that a failure on the client's side is told
// apart from a failure of the origin. Go's server frames a chunked body
// while the handler reads it, so a malformed chunk ("0x5", "+5", a bare CR)
// or a body over the limit only shows up as a read error once forwarding
// has begun. The forwarder's transport then aborts the outbound request
// without its final chunk (or short of its Content-Length), so the origin
// never receives a complete request, and RoundTrip fails: without Body the
// client would get 502 for its own mistake.
type Body struct {
	rc      io.ReadCloser
	left    int64 // bytes still allowed
	max     int64
	h1      bool
	chunked bool
	err     atomic.Pointer[Error]
}

// WrapBody replaces r.Body with a Body that allows at most max bytes
// (DefaultMaxBodyBytes when max <= 0) and records client-side failures. It
// returns nil, and changes nothing, when r has no body.
func WrapBody(r *http.Request, max int64) *Body {
	if r.Body == nil || r.Body == http.NoBody {
		return nil
	}
	if max <= 0 {
		max = DefaultMaxBodyBytes
	}
	b := &Body{rc: r.Body, left: max, max: max, h1: r.ProtoMajor == 1}
	for _, te := range r.TransferEncoding {
		if te == "chunked" {
			b.chunked = true
		}
	}
	r.Body = b
	return b
}

// Read reads from the client's body. Past the limit, or when the client's
// framing breaks, it returns an *Error (and keeps returning it).
func (b *Body) Read(p []byte) (int, error) {
	if e := b.err.Load(); e != nil {
		return 0, e
	}
	if len(p) == 0 {
		return 0, nil
	}
	// Read at most one byte past the limit: enough to know it was passed.
	if int64(len(p)) > b.left+1 {
		p = p[:b.left+1]
	}
	n, err := b.rc.Read(p)
	if int64(n) > b.left {
		n = int(b.left)
		b.left = 0
		e := &Error{
			Status:  http.StatusRequestEntityTooLarge,
			Message: "the request body is larger than " + strconv.FormatInt(b.max, 10) + " bytes",
			Close:   b.h1,
		}
		b.err.Store(e)
		return n, e
	}
	b.left -= int64(n)
	if err != nil && err != io.EOF {
		e := b.classify(err)
		b.err.Store(e)
		return n, e
	}
	return n, err
}

// Close closes the client's body.
func (b *Body) Close() error { return b.rc.Close() }

// ClientError returns the client-side failure Read met, or nil. It is safe
// on a nil Body and from any goroutine.
func (b *Body) ClientError() *Error {
	if b == nil {
		return nil
	}
	return b.err.Load()
}

// BodyError returns the client-side body failure in err's chain, or nil.
// A forwarder's ErrorHandler calls it first: Go's Transport gives errors
// from reading the request body priority over the connection errors they
// cause, so a non-nil answer means the request failed because of the
// client, and is what to answer with instead of 502. (ReverseProxy hands
// the ErrorHandler its outbound copy of the request, whose Body is wrapped
// again, which is why the error, not the request, is asked.)
func BodyError(err error) *Error {
	var herr *Error
	if errors.As(err, &herr) {
		return herr
	}
	return nil
}

func (b *Body) classify(err error) *Error {
	var mbe *http.MaxBytesError
	switch {
	case errors.As(err, &mbe):
		return &Error{
			Status:  http.StatusRequestEntityTooLarge,
			Message: "the request body is larger than " + strconv.FormatInt(mbe.Limit, 10) + " bytes",
			Close:   b.h1,
		}
	case errors.Is(err, os.ErrDeadlineExceeded):
		return &Error{Status: http.StatusRequestTimeout, Message: "the request body was not received in time", Close: b.h1}
	case errors.Is(err, io.ErrUnexpectedEOF):
		return &Error{Status: http.StatusBadRequest, Message: "the request body ended before it was complete", Close: b.h1}
	case b.chunked:
		return &Error{Status: http.StatusBadRequest, Message: "the request body's chunked encoding is malformed", Close: true}
	}
	return &Error{Status: http.StatusBadRequest, Message: "the request body could not be read", Close: b.h1}
}
