package wasm

import (
	"bytes"
	"errors"
	"io"
	"net/http"
	"strconv"

	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/runtime/proxywasm"
)

// transform runs the whole proxy-wasm stream: request headers and body on
// the way in, response headers and body on the way out. Bodies are buffered
// whole, up to the plugin's body cap, and handed to the guest once with
// end_of_stream set.
type transform struct {
	base
}

func (t *transform) Wrap(next plugins.Handler) plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		t.serve(w, ex, next)
	})
}

var errBodyTooLarge = errors.New("body is over the plugin's limit")

func (t *transform) serve(w http.ResponseWriter, ex *plugins.Exchange, next plugins.Handler) {
	r := ex.Request
	if !enter(r) {
		return
	}
	info := streamInfo(ex)
	st, err := t.p.NewStream(r.Context(), &info)
	if err != nil {
		if t.fail(w, r, err) {
			next.ServeExchange(w, ex)
		}
		return
	}
	defer st.Close()
	max := t.p.MaxBodyBytes()

	// Request.
	hasBody := r.Body != nil && r.Body != http.NoBody && r.ContentLength != 0
	h := st.RequestHeaderMap(r, scheme(r, ex.TLS))
	if !t.handle(w, ex, next, st, st.RequestHeaders(h, !hasBody)) {
		return
	}
	if hasBody {
		if r.ContentLength > int64(max) {
			plugins.WriteError(w, http.StatusRequestEntityTooLarge, "Request body too large")
			return
		}
		body, err := io.ReadAll(io.LimitReader(r.Body, int64(max)+1))
		if err != nil {
			if r.Context().Err() == nil {
				plugins.WriteError(w, http.StatusBadRequest, "Could not read the request body")
			}
			return
		}
		if len(body) > max {
			plugins.WriteError(w, http.StatusRequestEntityTooLarge, "Request body too large")
			return
		}
		// Should the plugin fail open, the request goes on with its body.
		r.Body = io.NopCloser(bytes.NewReader(body))
		if !t.handle(w, ex, next, st, st.RequestBodyCallback(body, true)) {
			return
		}
		body, _ = st.RequestBody()
		r.Body = io.NopCloser(bytes.NewReader(body))
		r.ContentLength = int64(len(body))
		r.Header.Del("Content-Length")
		r.TransferEncoding = nil
	}
	if err := applyPseudo(r, h); err != nil {
		t.fail(w, r, err)
		return
	}
	// The instance serves other requests while this one is upstream.
	st.Upstream()

	// Response.
	bw := &bufferWriter{w: w, max: max, header: make(http.Header), failOpen: t.failOpen}
	next.ServeExchange(bw, ex)
	if bw.passthrough {
		// Over the cap with fail-open: already streamed, unchanged.
		t.p.Metrics().Errors.Add(1)
		return
	}
	if bw.overflow {
		t.p.Metrics().Errors.Add(1)
		if r.Context().Err() == nil {
			plugins.WriteError(w, http.StatusBadGateway, "Response too large to transform")
		}
		return
	}
	status := bw.status
	if status == 0 {
		status = http.StatusOK
	}
	rh := &proxywasm.HeaderMap{Header: bw.header, Pseudo: []proxywasm.Pair{{Key: ":status", Value: strconv.Itoa(status)}}}
	body := bw.buf.Bytes()
	o := st.ResponseHeaders(rh, status, len(body) == 0)
	if o == proxywasm.Continue && len(body) > 0 {
		o = st.ResponseBodyCallback(body, true)
		body, _ = st.ResponseBody()
	}
	switch o {
	case proxywasm.Continue:
	case proxywasm.Respond:
		writeLocal(w, st.Local())
		return
	case proxywasm.Reset:
		panic(http.ErrAbortHandler)
	default:
		if t.fail(w, r, st.Err()) {
			t.write(w, bw.header, status, bw.buf.Bytes())
		}
		return
	}
	if v, ok := rh.PseudoValue(":status"); ok {
		if n, err := strconv.Atoi(v); err == nil && n >= 100 && n <= 599 {
			status = n
		}
	}
	t.write(w, bw.header, status, body)
}

func (t *transform) write(w http.ResponseWriter, h http.Header, status int, body []byte) {
	dst := w.Header()
	for k, vs := range h {
		dst[k] = vs
	}
	if status != http.StatusNoContent && status != http.StatusNotModified && status >= 200 {
		dst.Set("Content-Length", strconv.Itoa(len(body)))
	}
	dst.Del("Transfer-Encoding")
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// handle turns a request-side outcome into a response; it reports whether
// the request goes on.
func (t *transform) handle(w http.ResponseWriter, ex *plugins.Exchange, next plugins.Handler, st *proxywasm.Stream, o proxywasm.Outcome) bool {
	switch o {
	case proxywasm.Continue:
		return true
	case proxywasm.Respond:
		writeLocal(w, st.Local())
		return false
	case proxywasm.Reset:
		panic(http.ErrAbortHandler)
	}
	if t.fail(w, ex.Request, st.Err()) {
		// Fail open: the request goes on untransformed, and so does its
		// response.
		next.ServeExchange(w, ex)
	}
	return false
}

// bufferWriter holds the upstream response so the plugin can see and change
// all of it. Past the body cap it either streams the rest unchanged (fail
// open) or gives up (fail closed).
type bufferWriter struct {
	w           http.ResponseWriter
	header      http.Header
	status      int
	buf         bytes.Buffer
	max         int
	failOpen    bool
	overflow    bool
	passthrough bool
}

func (b *bufferWriter) Header() http.Header {
	if b.passthrough {
		return b.w.Header()
	}
	return b.header
}

func (b *bufferWriter) WriteHeader(code int) {
	if b.passthrough {
		b.w.WriteHeader(code)
		return
	}
	if b.status == 0 && code >= 200 {
		b.status = code
	}
}

func (b *bufferWriter) Write(p []byte) (int, error) {
	if b.passthrough {
		return b.w.Write(p)
	}
	if b.overflow {
		return 0, errBodyTooLarge
	}
	if b.status == 0 {
		b.status = http.StatusOK
	}
	if b.buf.Len()+len(p) > b.max {
		if !b.failOpen {
			b.overflow = true
			b.buf = bytes.Buffer{}
			return 0, errBodyTooLarge
		}
		b.passthrough = true
		dst := b.w.Header()
		for k, vs := range b.header {
			dst[k] = vs
		}
		b.w.WriteHeader(b.status)
		if _, err := b.w.Write(b.buf.Bytes()); err != nil {
			return 0, err
		}
		b.buf = bytes.Buffer{}
		return b.w.Write(p)
	}
	return b.buf.Write(p)
}

// Flush is a no-op while buffering: the plugin needs the whole body first.
func (b *bufferWriter) Flush() {
	if b.passthrough {
		if f, ok := b.w.(http.Flusher); ok {
			f.Flush()
		}
	}
}
