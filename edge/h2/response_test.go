package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"os"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// The request a handler sees is the one net/http builds for HTTP/2.
func TestRequestAsNetHTTPBuildsIt(t *testing.T) {
	type seen struct {
		proto, method, uri, host, path, query, remote string
		major, minor                                  int
		cl                                            int64
		header                                        http.Header
		trailer                                       http.Header
		body                                          string
		tls, noBody, serverKey, localAddr             bool
	}
	got := make(chan seen, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		got <- seen{
			proto: r.Proto, method: r.Method, uri: r.RequestURI, host: r.Host, path: r.URL.Path, query: r.URL.RawQuery,
			remote: r.RemoteAddr, major: r.ProtoMajor, minor: r.ProtoMinor, cl: r.ContentLength, header: r.Header.Clone(),
			trailer: r.Trailer.Clone(), body: string(b), tls: r.TLS != nil && r.TLS.NegotiatedProtocol == "h2",
			noBody: r.Body == http.NoBody, serverKey: r.Context().Value(http.ServerContextKey) != nil,
			localAddr: r.Context().Value(http.LocalAddrContextKey) != nil,
		}
	}))
	c := ts.dialRaw(t)
	// Two cookie fields, a declared trailer, a body in two DATA frames.
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "example.test:8443",
		":path", "/a/b?x=1&y=2", "cookie", "a=1", "user-agent", "raw", "cookie", "b=2", "trailer", "x-sum", "content-length", "5",
		"x-multi", "1", "x-multi", "2")...))
	c.raw(frame(frameData, 0, 1, []byte("abc")...))
	c.raw(frame(frameData, 0, 1, []byte("de")...))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.block("x-sum", "42")...))
	s := <-got
	if s.proto != "HTTP/2.0" || s.major != 2 || s.minor != 0 || s.method != "POST" || s.uri != "/a/b?x=1&y=2" ||
		s.host != "example.test:8443" || s.path != "/a/b" || s.query != "x=1&y=2" || s.cl != 5 || s.body != "abcde" ||
		!s.tls || s.noBody || !s.serverKey || !s.localAddr || !strings.HasPrefix(s.remote, "127.0.0.1:") {
		t.Fatalf("request: %+v", s)
	}
	if v := s.header["Cookie"]; len(v) != 1 || v[0] != "a=1; b=2" {
		t.Errorf("Cookie %q, want one field \"a=1; b=2\"", v)
	}
	if v := s.header["X-Multi"]; len(v) != 2 || v[0] != "1" || v[1] != "2" {
		t.Errorf("X-Multi %q", v)
	}
	if _, ok := s.header["Trailer"]; ok {
		t.Errorf("Trailer left in the header: %v", s.header)
	}
	if v := s.trailer.Get("X-Sum"); v != "42" {
		t.Errorf("trailer X-Sum %q, want 42 (trailers %v)", v, s.trailer)
	}
	if s.header.Get("Content-Length") != "5" || s.header.Get("User-Agent") != "raw" {
		t.Errorf("header %v", s.header)
	}

	// No body: END_STREAM on HEADERS.
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.get("/nobody")...))
	s = <-got
	if !s.noBody || s.cl != 0 {
		t.Errorf("bodiless request: NoBody %t ContentLength %d", s.noBody, s.cl)
	}
	// A body without content-length.
	c.raw(frame(frameHeaders, flagEndHeaders, 5, c.block(":method", "PUT", ":scheme", "https", ":authority", "localhost", ":path", "/put")...))
	c.raw(frame(frameData, flagEndStream, 5, 'x'))
	s = <-got
	if s.noBody || s.cl != -1 || s.body != "x" {
		t.Errorf("body without content-length: %+v", s)
	}
	// CONNECT: authority only.
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 7, c.block(":method", "CONNECT", ":authority", "origin.test:443")...))
	s = <-got
	if s.method != "CONNECT" || s.uri != "origin.test:443" || s.host != "origin.test:443" || s.path != "" {
		t.Errorf("CONNECT: %+v", s)
	}
	// Escaped paths go through url.ParseRequestURI.
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 9, c.get("/a%20b/c")...))
	s = <-got
	if s.path != "/a b/c" || s.uri != "/a%20b/c" {
		t.Errorf("escaped path: %+v", s)
	}
	// A host field equal to :authority is allowed, and left out of
	// r.Header; alone, it is the authority.
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 11, c.block(":method", "GET", ":scheme", "https", ":authority", "a.example", ":path", "/", "host", "a.example")...))
	s = <-got
	if _, ok := s.header["Host"]; ok || s.host != "a.example" {
		t.Errorf("host equal to :authority: r.Host %q, r.Header %v", s.host, s.header)
	}
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 13, c.block(":method", "GET", ":scheme", "https", ":path", "/", "host", "b.example")...))
	s = <-got
	if _, ok := s.header["Host"]; ok || s.host != "b.example" {
		t.Errorf("host without :authority: r.Host %q, r.Header %v", s.host, s.header)
	}
}

// The context is cancelled when the client resets the stream, when the
// connection ends, and when the handler returns.
func TestRequestContextCancelled(t *testing.T) {
	started := make(chan context.Context, 4)
	ended := make(chan error, 4)
	var kept context.Context
	var keptMu sync.Mutex
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/quick" {
			keptMu.Lock()
			kept = r.Context()
			keptMu.Unlock()
			return
		}
		// A derived context follows (through AfterFunc, no goroutine).
		ctx, cancel := context.WithTimeout(r.Context(), time.Minute)
		defer cancel()
		started <- ctx
		<-ctx.Done()
		ended <- context.Cause(ctx)
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/wait")...))
	<-started
	c.raw(frame(frameRSTStream, 0, 1, u32(uint32(http2.ErrCodeCancel))...))
	select {
	case err := <-ended:
		if !errors.Is(err, context.Canceled) || !strings.Contains(err.Error(), "reset by the client (CANCEL)") {
			t.Errorf("after RST_STREAM, the derived context's cause: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("context not cancelled by RST_STREAM")
	}
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.get("/wait")...))
	<-started
	c.conn.Close()
	select {
	case <-ended:
	case <-time.After(5 * time.Second):
		t.Fatal("context not cancelled when the connection closed")
	}
	resp, err := ts.client().Get(ts.url() + "/quick")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	keptMu.Lock()
	defer keptMu.Unlock()
	if kept.Err() != context.Canceled {
		t.Fatalf("after the handler returned: Err() = %v, want context.Canceled", kept.Err())
	}
}

// A request context keeps the Context contract: Err is exactly
// context.Canceled, and context.Cause says why the stream ended.
func TestRequestContextErrAndCause(t *testing.T) {
	type result struct{ err, cause error }
	got := make(chan result, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		got <- result{r.Context().Err(), context.Cause(r.Context())}
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	c.ping(t)
	c.raw(frame(frameRSTStream, 0, 1, u32(uint32(http2.ErrCodeCancel))...))
	res := <-got
	if res.err != context.Canceled {
		t.Errorf("Err() = %#v, want context.Canceled itself", res.err)
	}
	if !errors.Is(res.cause, context.Canceled) || res.cause.Error() != "http2: stream reset by the client (CANCEL)" {
		t.Errorf("context.Cause = %q", res.cause)
	}
}

// Cancelling the BaseContext reaches the requests' contexts, with its
// cause.
func TestRequestContextFollowsBaseContext(t *testing.T) {
	base, cancel := context.WithCancelCause(context.Background())
	defer cancel(nil)
	errShutdown := errors.New("base cancelled")
	got := make(chan error, 1)
	started := make(chan struct{})
	ts := startServer(t, Config{BaseContext: func(net.Conn) context.Context { return base }}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		select {
		case <-r.Context().Done():
			got <- context.Cause(r.Context())
		case <-time.After(5 * time.Second):
			got <- nil
		}
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	<-started
	cancel(errShutdown)
	if err := <-got; err != errShutdown {
		t.Fatalf("after the BaseContext was cancelled: cause %v, want %v", err, errShutdown)
	}
}

// The response writer behaves as net/http's HTTP/2 one for what the
// gateway's handlers use.
func TestResponseWriterParity(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/html":
			io.WriteString(w, "<!DOCTYPE html><html><body>hi</body></html>")
		case "/nosniff":
			w.Header()["Content-Type"] = nil
			io.WriteString(w, "<html></html>")
		case "/status":
			w.WriteHeader(http.StatusCreated)
			w.WriteHeader(http.StatusTeapot) // ignored
			io.WriteString(w, "made")
		case "/204":
			w.WriteHeader(http.StatusNoContent)
			if _, err := w.Write([]byte("x")); err != http.ErrBodyNotAllowed {
				panic(fmt.Sprintf("write on 204: %v", err))
			}
		case "/304":
			w.WriteHeader(http.StatusNotModified)
		case "/declared":
			w.Header().Set("Content-Length", "3")
			io.WriteString(w, "abc")
			if _, err := io.WriteString(w, "d"); err == nil {
				panic("write past Content-Length succeeded")
			}
		case "/big":
			w.Write(bytes.Repeat([]byte("b"), 100<<10))
		case "/date":
			w.Header().Set("Date", "custom")
		case "/empty":
		case "/gzip":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte{0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff})
		case "/hop":
			w.Header().Set("Connection", "close")
			w.Header().Set("Transfer-Encoding", "chunked")
			w.Header().Set("Keep-Alive", "5")
			w.Header().Set("Upgrade", "h2c")
			w.Header().Set("X-Bad", "a\nb")
			w.Header().Set("X-Good", "yes")
		}
	}))
	c := ts.client()
	get := func(method, path string) (*http.Response, string) {
		t.Helper()
		req, _ := http.NewRequest(method, ts.url()+path, nil)
		resp, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s %s: %v", method, path, err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}
	resp, body := get("GET", "/html")
	if ct := resp.Header.Get("Content-Type"); ct != "text/html; charset=utf-8" || resp.ContentLength != int64(len(body)) {
		t.Errorf("/html: %q, length %d", ct, resp.ContentLength)
	}
	resp, _ = get("GET", "/nosniff")
	if _, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("/nosniff: Content-Type %q sent", resp.Header.Get("Content-Type"))
	}
	resp, body = get("GET", "/status")
	if resp.StatusCode != http.StatusCreated || body != "made" {
		t.Errorf("/status: %d %q", resp.StatusCode, body)
	}
	resp, body = get("GET", "/204")
	if resp.StatusCode != 204 || body != "" || resp.Header.Get("Content-Length") != "" {
		t.Errorf("/204: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	resp, body = get("GET", "/304")
	if resp.StatusCode != 304 || body != "" {
		t.Errorf("/304: %d %q", resp.StatusCode, body)
	}
	resp, body = get("GET", "/declared")
	if body != "abc" || resp.ContentLength != 3 {
		t.Errorf("/declared: %q %d", body, resp.ContentLength)
	}
	resp, body = get("HEAD", "/html")
	if body != "" || resp.ContentLength != int64(len("<!DOCTYPE html><html><body>hi</body></html>")) || resp.Header.Get("Content-Type") != "text/html; charset=utf-8" {
		t.Errorf("HEAD /html: %q, length %d, %v", body, resp.ContentLength, resp.Header)
	}
	resp, body = get("HEAD", "/big")
	if body != "" || resp.ContentLength != -1 && resp.ContentLength != 0 {
		t.Errorf("HEAD /big: %q, length %d", body, resp.ContentLength)
	}
	resp, body = get("GET", "/big")
	if len(body) != 100<<10 || resp.ContentLength != -1 {
		t.Errorf("/big: %d octets, length %d", len(body), resp.ContentLength)
	}
	resp, _ = get("GET", "/date")
	if d := resp.Header.Get("Date"); d != "custom" {
		t.Errorf("/date: %q", d)
	}
	resp, body = get("GET", "/empty")
	if resp.StatusCode != 200 || body != "" || resp.Header.Get("Content-Length") != "0" || resp.Header.Get("Date") == "" {
		t.Errorf("/empty: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	if _, err := time.Parse(http.TimeFormat, resp.Header.Get("Date")); err != nil {
		t.Errorf("Date %q: %v", resp.Header.Get("Date"), err)
	}
	// An encoded body is not sniffed (it would be "application/x-gzip").
	resp, _ = get("GET", "/gzip")
	if ct, ok := resp.Header["Content-Type"]; ok {
		t.Errorf("/gzip: Content-Type %q sniffed from an encoded body", ct)
	}
	resp, _ = get("GET", "/hop")
	for _, k := range []string{"Connection", "Transfer-Encoding", "Keep-Alive", "Upgrade", "X-Bad"} {
		if v, ok := resp.Header[k]; ok {
			t.Errorf("/hop: %s %q sent", k, v)
		}
	}
	if resp.Header.Get("X-Good") != "yes" {
		t.Errorf("/hop: X-Good missing")
	}
}

// 1xx responses leave as their own HEADERS before the final one.
func TestInformationalResponses(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("X-Final", "1")
		io.WriteString(w, "final")
	}))
	var got []int
	var links []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		got = append(got, code)
		links = append(links, h.Get("Link"))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", ts.url()+"/", nil)
	resp, err := ts.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(got) != 2 || got[0] != 103 || links[0] != "</style.css>; rel=preload" {
		t.Errorf("1xx seen %v %q", got, links)
	}
	if resp.StatusCode != 200 || string(b) != "final" || resp.Header.Get("X-Final") != "1" || resp.Header.Get("Link") == "" {
		t.Errorf("final: %d %q %v", resp.StatusCode, b, resp.Header)
	}
}

// Declared and undeclared (http.TrailerPrefix) trailers reach the client
// after the body.
func TestResponseTrailers(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Declared")
		io.WriteString(w, "body")
		w.Header().Set("X-Declared", "d")
		w.Header().Set(http.TrailerPrefix+"X-Undeclared", "u")
	}))
	resp, err := ts.client().Get(ts.url() + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.Trailer.Get("X-Declared") != "d" || resp.Trailer.Get("X-Undeclared") != "u" {
		t.Fatalf("body %q trailers %v", b, resp.Trailer)
	}
	if resp.Header.Get("X-Declared") != "" {
		t.Fatalf("trailer sent as a header: %v", resp.Header)
	}
}

// Flush sends the headers and what was written, before the handler ends.
func TestFlushStreams(t *testing.T) {
	release := make(chan struct{})
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "first")
		if err := http.NewResponseController(w).Flush(); err != nil {
			panic(err)
		}
		<-release
		io.WriteString(w, "second")
	}))
	resp, err := ts.client().Get(ts.url() + "/")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "first" {
		t.Fatalf("before the handler ended: %q %v", buf, err)
	}
	close(release)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "second" {
		t.Fatalf("rest %q", rest)
	}
}

// The request body streams in while the handler answers: full duplex.
func TestFullDuplex(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		if err := rc.EnableFullDuplex(); err != nil {
			panic(err)
		}
		rc.Flush() // the headers first: the client waits for them
		buf := make([]byte, 64)
		for {
			n, err := r.Body.Read(buf)
			if n > 0 {
				w.Write(bytes.ToUpper(buf[:n]))
				rc.Flush()
			}
			if err != nil {
				return
			}
		}
	}))
	pr, pw := io.Pipe()
	req, _ := http.NewRequest("POST", ts.url()+"/", pr)
	resp, err := ts.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	for _, word := range []string{"ping", "pong", "done"} {
		pw.Write([]byte(word))
		buf := make([]byte, 4)
		if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != strings.ToUpper(word) {
			t.Fatalf("echo of %q: %q %v", word, buf, err)
		}
	}
	pw.Close()
	if rest, _ := io.ReadAll(resp.Body); len(rest) != 0 {
		t.Fatalf("trailing %q", rest)
	}
}

// Panics reset the stream (INTERNAL_ERROR); other panics are logged with
// their stack; the connection survives both.
func TestHandlerPanics(t *testing.T) {
	var logged bytes.Buffer
	var logMu sync.Mutex
	log := slog.New(slog.NewTextHandler(writerFunc(func(p []byte) (int, error) {
		logMu.Lock()
		defer logMu.Unlock()
		return logged.Write(p)
	}), nil))
	// A budget of one reset: the panics are the server's doing and must
	// not spend it.
	ts := startServer(t, Config{Logger: log, ResetBurst: 1, ResetRate: 0.001}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			panic(http.ErrAbortHandler)
		case "/boom":
			panic("boom")
		case "/exit":
			// runtime.Goexit ends the worker; the stream is reset too.
			panicGoexit()
		}
		io.WriteString(w, "fine")
	}))
	c := ts.dialRaw(t)
	for i, path := range []string{"/abort", "/boom", "/exit"} {
		id := uint32(1 + 2*i)
		c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.get(path)...))
		code, goAway, ok := c.rstOrGoAway(id, 5*time.Second)
		if !ok || goAway || code != http2.ErrCodeInternal {
			t.Errorf("%s: %v (GOAWAY %t, seen %t), want RST_STREAM INTERNAL_ERROR", path, code, goAway, ok)
		}
	}
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 7, c.get("/fine")...))
	if c.next(5*time.Second, func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamID == 7 }) == nil {
		t.Fatal("connection does not serve after the panics")
	}
	if n := ts.serverResets.Load(); n != 3 {
		t.Errorf("%d server resets counted, want 3", n)
	}
	sc := ts.connOf(t, c)
	sc.mu.Lock()
	tokens := sc.tokens
	sc.mu.Unlock()
	if tokens < 1 || c.goAway.Load() != nil || ts.Abusive() != 0 {
		t.Errorf("after three panics: %.1f reset tokens left of 1, GOAWAY %v, Abusive() %d", tokens, c.goAway.Load(), ts.Abusive())
	}
	logMu.Lock()
	defer logMu.Unlock()
	out := logged.String()
	if !strings.Contains(out, "boom") || !strings.Contains(out, "goroutine") {
		t.Errorf("panic not logged with its stack:\n%s", out)
	}
	if strings.Contains(out, "abort handler") {
		t.Errorf("http.ErrAbortHandler logged:\n%s", out)
	}
}

type writerFunc func([]byte) (int, error)

func (f writerFunc) Write(p []byte) (int, error) { return f(p) }

// Hijack is HTTP/1 only: over HTTP/2 it fails with a clear error.
func TestHijackNotSupported(t *testing.T) {
	errc := make(chan error, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _, err := http.NewResponseController(w).Hijack()
		errc <- err
	}))
	resp, err := ts.client().Get(ts.url() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if err := <-errc; !errors.Is(err, http.ErrNotSupported) {
		t.Fatalf("Hijack over HTTP/2: %v, want http.ErrNotSupported", err)
	}
}

// ResponseController's deadlines: past the write deadline the stream is
// reset; past the read deadline the body fails with
// os.ErrDeadlineExceeded.
func TestResponseControllerDeadlines(t *testing.T) {
	readErr := make(chan error, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		switch r.URL.Path {
		case "/read":
			rc.SetReadDeadline(time.Now().Add(100 * time.Millisecond))
			_, err := io.ReadAll(r.Body)
			readErr <- err
		case "/write":
			rc.SetWriteDeadline(time.Now().Add(100 * time.Millisecond))
			<-r.Context().Done()
		}
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/read")...))
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("body read past its deadline: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("read deadline not applied")
	}
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.get("/write")...))
	code, goAway, ok := c.rstOrGoAway(3, 5*time.Second)
	if !ok || goAway || code != http2.ErrCodeInternal {
		t.Errorf("write deadline: %v (GOAWAY %t, seen %t), want RST_STREAM INTERNAL_ERROR", code, goAway, ok)
	}
}

var _ = http2.ErrCodeNo

func panicGoexit() { runtime.Goexit() }

// A goroutine the handler leaves reading r.Body is woken when the
// handler returns and gets an error, instead of waiting forever on a
// stream that has been recycled.
func TestBodyReaderLeftByTheHandlerIsWoken(t *testing.T) {
	done := make(chan error, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		go func() {
			_, err := io.Copy(io.Discard, r.Body)
			done <- err
		}()
		time.Sleep(50 * time.Millisecond) // the goroutine waits in Read
		io.WriteString(w, "bye")
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")...))
	if code, _, ok := c.rstOrGoAway(1, 5*time.Second); !ok || code != http2.ErrCodeNo {
		t.Fatalf("no RST_STREAM(NO_ERROR) after the response: %v %t", code, ok)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("the body read after the handler returned ended without an error")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a goroutine reading r.Body still waits 5s after the handler returned")
	}
}

// Request trailers are copied into r.Trailer by the Read that returns
// io.EOF, on the handler's goroutine: a handler may look at r.Trailer
// while its body is still arriving (the race detector watches).
func TestRequestTrailersWrittenByTheReader(t *testing.T) {
	got := make(chan string, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		// The body and its trailers arrive meanwhile.
		for range 20 {
			_ = len(r.Trailer["X-Sum"])
			time.Sleep(10 * time.Millisecond)
		}
		if _, err := io.Copy(io.Discard, r.Body); err != nil {
			panic(err)
		}
		got <- r.Trailer.Get("X-Sum")
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/", "trailer", "x-sum")...))
	c.raw(frame(frameData, 0, 1, 'x'))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.block("x-sum", "1")...))
	if v := <-got; v != "1" {
		t.Fatalf("trailer X-Sum %q, want 1", v)
	}
}

// Expect: 100-continue is handled as net/http does for HTTP/2: the header
// is removed from r.Header, "100 Continue" goes out when the handler
// first reads the body, and not at all when the handler answers without
// reading it.
func TestExpectContinue(t *testing.T) {
	expect := make(chan []string, 2)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		expect <- r.Header["Expect"]
		if r.URL.Path == "/reject" {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, string(b))
	}))
	c := ts.dialRaw(t)
	put := func(id uint32, path string) {
		c.raw(frame(frameHeaders, flagEndHeaders, id, c.block(":method", "PUT", ":scheme", "https", ":authority", "localhost", ":path", path, "expect", "100-continue", "content-length", "5")...))
	}
	status := func(f http2.Frame) string {
		if h, ok := f.(*http2.MetaHeadersFrame); ok {
			return h.PseudoValue("status")
		}
		return ""
	}
	put(1, "/upload")
	if h := <-expect; h != nil {
		t.Errorf("r.Header[Expect] = %q, want it removed", h)
	}
	f := c.next(5*time.Second, func(f http2.Frame) bool { return f.Header().StreamID == 1 })
	if status(f) != "100" || f.Header().Flags.Has(http2.FlagHeadersEndStream) {
		t.Fatalf("first frame on the stream: %v (status %q), want HEADERS 100 without END_STREAM", f, status(f))
	}
	c.raw(frame(frameData, flagEndStream, 1, []byte("hello")...))
	f = c.next(5*time.Second, func(f http2.Frame) bool { return f.Header().StreamID == 1 })
	if status(f) != "200" {
		t.Fatalf("after the body: %v, want the final 200", f)
	}
	put(3, "/reject")
	<-expect
	f = c.next(5*time.Second, func(f http2.Frame) bool { return f.Header().StreamID == 3 })
	if status(f) != "403" {
		t.Fatalf("a handler that does not read: %v (status %q), want 403 and no 100", f, status(f))
	}
}

// A write past the declared Content-Length is rejected and not counted:
// the response that then falls short of its length is reset, not ended
// as if complete.
func TestRejectedWriteLeavesResponseShort(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "abc")
		if _, err := io.WriteString(w, "defg"); err == nil {
			panic("a write past Content-Length was accepted")
		}
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	n := 0
	for {
		f := c.next(5*time.Second, func(f http2.Frame) bool { return f.Header().StreamID == 1 })
		switch f := f.(type) {
		case nil:
			t.Fatal("the stream neither ended nor was reset")
		case *dataFrame:
			n += len(f.Data())
			if f.StreamEnded() {
				t.Fatalf("content-length 5, then %d octets and END_STREAM: a truncated response passed off as complete", n)
			}
		case *http2.MetaHeadersFrame:
			if f.StreamEnded() {
				t.Fatalf("the response ended with its HEADERS: %v", f.Fields)
			}
		case *http2.RSTStreamFrame:
			if f.ErrCode != http2.ErrCodeInternal {
				t.Fatalf("RST_STREAM %v, want INTERNAL_ERROR", f.ErrCode)
			}
			return
		}
	}
}

// TestInformationalHeaderAndSwitchingProtocols guards two rules of 1xx
// responses over HTTP/2: an informational response carries no
// Content-Length (the handler's header may already hold the final
// response's), and 101, which HTTP/2 does not have, is neither sent nor
// taken as the final status.
func TestInformationalHeaderAndSwitchingProtocols(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		w.Header().Set("Link", "</a.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusSwitchingProtocols)
		io.WriteString(w, "final")
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	var statuses []string
	for {
		f := c.next(5*time.Second, func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamID == 1 })
		if f == nil {
			t.Fatalf("statuses %v, then nothing", statuses)
		}
		h := f.(*http2.MetaHeadersFrame)
		status, cl := h.PseudoValue("status"), ""
		for _, hf := range h.RegularFields() {
			if hf.Name == "content-length" {
				cl = hf.Value
			}
		}
		statuses = append(statuses, status)
		if status == "103" && cl != "" {
			t.Errorf("103 Early Hints with content-length %q", cl)
		}
		if status[0] != '1' {
			if status != "200" || cl != "5" {
				t.Errorf("final response %s with content-length %q, want 200 and 5", status, cl)
			}
			break
		}
	}
	if len(statuses) != 2 || statuses[0] != "103" {
		t.Errorf("statuses sent %v, want [103 200]", statuses)
	}
	if n, end := c.dataOn(1, 5*time.Second); n != 5 || !end {
		t.Errorf("body: %d octets, end %t", n, end)
	}
}

// TestRequestTrailers guards how request trailers reach r.Trailer: once a
// request declared any, every trailer received is kept, undeclared ones
// too (as net/http's HTTP/1 server merges them; a gateway forwarding
// r.Trailer must not lose one); a request that declared none keeps a nil
// r.Trailer; a trailer block may span CONTINUATION frames; and trailers
// that end a body shorter than its Content-Length reset the stream.
func TestRequestTrailers(t *testing.T) {
	type seen struct {
		trailer http.Header
		err     error
	}
	got := make(chan seen, 1)
	started := make(chan struct{}, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		_, err := io.Copy(io.Discard, r.Body)
		got <- seen{r.Trailer.Clone(), err}
	}))
	c := ts.dialRaw(t)
	// post opens a stream and waits for its handler: a stream reset
	// before its handler starts never runs one.
	post := func(id uint32, kv ...string) {
		c.raw(frame(frameHeaders, flagEndHeaders, id, c.block(append([]string{":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/"}, kv...)...)...))
		<-started
	}

	post(1, "trailer", "x-sum")
	c.raw(frame(frameData, 0, 1, 'x'))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.block("x-sum", "1", "x-extra", "e", "x-extra", "f")...))
	s := <-got
	if s.err != nil || s.trailer.Get("X-Sum") != "1" || len(s.trailer["X-Extra"]) != 2 {
		t.Errorf("declared X-Sum, sent X-Sum and X-Extra twice: r.Trailer %v (body error %v)", s.trailer, s.err)
	}

	post(3)
	c.raw(frame(frameData, 0, 3, 'x'))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.block("x-sum", "1")...))
	if s := <-got; s.err != nil || s.trailer != nil {
		t.Errorf("no trailer declared: r.Trailer %v (body error %v), want nil", s.trailer, s.err)
	}

	// A trailer block in HEADERS and two CONTINUATION frames.
	post(5, "trailer", "x-a, x-b")
	c.raw(frame(frameData, 0, 5, 'x'))
	block := c.block("x-a", "1", "x-b", strings.Repeat("b", 40))
	c.raw(frame(frameHeaders, flagEndStream, 5, block[:3]...))
	c.raw(frame(frameContinuation, 0, 5, block[3:10]...))
	c.raw(frame(frameContinuation, flagEndHeaders, 5, block[10:]...))
	if s := <-got; s.err != nil || s.trailer.Get("X-A") != "1" || len(s.trailer.Get("X-B")) != 40 {
		t.Errorf("trailers in CONTINUATION frames: r.Trailer %v (body error %v)", s.trailer, s.err)
	}

	// Trailers after all the declared octets are fine; after fewer, the
	// body is malformed (RFC 9113 §8.1.1).
	post(7, "content-length", "3", "trailer", "x-sum")
	c.raw(frame(frameData, 0, 7, 'a', 'b', 'c'))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 7, c.block("x-sum", "3")...))
	if s := <-got; s.err != nil || s.trailer.Get("X-Sum") != "3" {
		t.Errorf("content-length 3, 3 octets, trailers: r.Trailer %v (body error %v)", s.trailer, s.err)
	}
	post(9, "content-length", "3", "trailer", "x-sum")
	c.raw(frame(frameData, 0, 9, 'a', 'b'))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 9, c.block("x-sum", "2")...))
	if code, goAway, ok := c.rstOrGoAway(9, 5*time.Second); !ok || goAway || code != http2.ErrCodeProtocol {
		t.Errorf("content-length 3, 2 octets, trailers: %v (GOAWAY %t, seen %t), want RST_STREAM PROTOCOL_ERROR", code, goAway, ok)
	}
	if s := <-got; s.err == nil {
		t.Errorf("content-length 3, 2 octets, trailers: the body ended without an error, r.Trailer %v", s.trailer)
	}
}

// TestReadDeadlinePassed guards what a passed read deadline means: Read
// returns what had arrived, then an error wrapping os.ErrDeadlineExceeded
// for good; what the client sends afterwards is dropped with its
// connection window given back; and the handler may still answer.
func TestReadDeadlinePassed(t *testing.T) {
	passed := make(chan struct{})
	more := make(chan struct{})
	type result struct {
		read      string
		err, err2 error
	}
	got := make(chan result, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b := make([]byte, 1)
		io.ReadFull(r.Body, b) // "abc" has arrived
		http.NewResponseController(w).SetReadDeadline(time.Now())
		rest, err := io.ReadAll(r.Body) // "bc", then the deadline's error
		close(passed)
		<-more // "def" has arrived meanwhile
		n, err2 := r.Body.Read(make([]byte, 10))
		got <- result{string(b) + string(rest) + strings.Repeat("?", n), err, err2}
		io.WriteString(w, "answered")
	}))
	c := ts.dialRaw(t)
	sc := ts.connOf(t, c)
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")...))
	c.raw(frame(frameData, 0, 1, 'a', 'b', 'c'))
	<-passed
	c.raw(frame(frameData, 0, 1, 'd', 'e', 'f'))
	c.ping(t)
	sc.mu.Lock()
	window := sc.recvWindow + sc.recvUnacked
	sc.mu.Unlock()
	close(more)
	r := <-got
	if r.read != "abc" || !errors.Is(r.err, os.ErrDeadlineExceeded) || !errors.Is(r.err2, os.ErrDeadlineExceeded) {
		t.Errorf("read %q, then %v, then %v; want \"abc\", then os.ErrDeadlineExceeded twice", r.read, r.err, r.err2)
	}
	if window != int64(sc.cfg.ConnWindow) {
		t.Errorf("connection window %d after DATA past the read deadline, want all %d given back", window, sc.cfg.ConnWindow)
	}
	if n, end := c.dataOn(1, 5*time.Second); n != len("answered") || !end {
		t.Errorf("response after the read deadline: %d octets, end %t", n, end)
	}
}

// TestHeaderTableSizeZero guards SETTINGS_HEADER_TABLE_SIZE 0 from the
// client: the response encoder uses no dynamic table (it signals the size
// update, then indexes nothing), so a decoder that allows none decodes
// every response, repeated fields included.
func TestHeaderTableSizeZero(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Custom", "some value that would be indexed")
		io.WriteString(w, "x")
	}))
	conn, err := tls.Dial("tcp", ts.addr, ts.pki.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.Write([]byte(http2.ClientPreface))
	fr := http2.NewFramer(conn, conn)
	fr.WriteSettings(http2.Setting{ID: http2.SettingHeaderTableSize, Val: 0})
	var enc bytes.Buffer
	e := hpack.NewEncoder(&enc)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}} {
		e.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
	}
	// Wait for the server's SETTINGS and our SETTINGS' ACK first.
	conn.SetReadDeadline(time.Now().Add(5 * time.Second))
	acked := false
	for !acked {
		f, err := fr.ReadFrame()
		if err != nil {
			t.Fatal(err)
		}
		if s, ok := f.(*http2.SettingsFrame); ok {
			if s.IsAck() {
				acked = true
			} else {
				fr.WriteSettingsAck()
			}
		}
	}
	var fields []string
	dec := hpack.NewDecoder(0, func(f hpack.HeaderField) { fields = append(fields, f.Name) })
	for id := uint32(1); id < 20; id += 2 { // 10 responses
		fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: enc.Bytes(), EndStream: true, EndHeaders: true})
		for {
			conn.SetReadDeadline(time.Now().Add(3 * time.Second))
			f, err := fr.ReadFrame()
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := f.(*http2.HeadersFrame); ok {
				if _, err := dec.Write(h.HeaderBlockFragment()); err != nil {
					t.Fatalf("stream %d: decoding with a 0-octet table: %v", id, err)
				}
				if err := dec.Close(); err != nil {
					t.Fatal(err)
				}
			}
			if d, ok := f.(*http2.DataFrame); ok && d.StreamEnded() {
				break
			}
		}
	}
	if len(fields) < 10*3 { // :status, x-custom, date at least
		t.Errorf("%d fields decoded from 10 responses", len(fields))
	}
}
