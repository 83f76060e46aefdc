package hygiene

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-edge/portico/plugins"
)

// The end-to-end tests put a real net/http server on 127.0.0.1 in front of
// a raw TCP backend. The server's handler is the edge's sequence (Check,
// Sanitize, WrapBody, then a ReverseProxy with Rewrite and SanitizeForward);
// clients are raw TCP connections, so every byte is the attacker's choice.
// Each case says what the client gets and what the backend saw.

const ioTimeout = 5 * time.Second

// seen is one request as the backend received it.
type seen struct {
	method, target, host string
	header               http.Header
	body                 []byte
	complete             bool // the whole request, body included, arrived
}

// recordingBackend accepts connections and records each request it reads,
// answering complete ones with 200 "backend".
type recordingBackend struct {
	ln     net.Listener
	wg     sync.WaitGroup
	active atomic.Int32
	conns  atomic.Int32
	mu     sync.Mutex
	got    []seen
}

func startBackend(t *testing.T) *recordingBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &recordingBackend{ln: ln}
	b.wg.Add(1)
	go func() {
		defer b.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.conns.Add(1)
			b.active.Add(1)
			b.wg.Add(1)
			go func() {
				defer b.wg.Done()
				defer b.active.Add(-1)
				b.serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.wg.Wait()
	})
	return b
}

func (b *recordingBackend) serve(c net.Conn) {
	defer c.Close()
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	for {
		_ = c.SetDeadline(time.Now().Add(ioTimeout))
		req, err := http.ReadRequest(br)
		if err != nil {
			if !errors.Is(err, io.EOF) || br.Buffered() > 0 {
				b.add(seen{method: "(partial head)", body: raw.Bytes()})
			}
			return
		}
		body, err := io.ReadAll(req.Body)
		b.add(seen{
			method: req.Method, target: req.RequestURI, host: req.Host,
			header: req.Header, body: body, complete: err == nil,
		})
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 7\r\n\r\nbackend"); err != nil {
			return
		}
	}
}

func (b *recordingBackend) add(s seen) {
	b.mu.Lock()
	b.got = append(b.got, s)
	b.mu.Unlock()
}

func (b *recordingBackend) seen() []seen {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]seen(nil), b.got...)
}

// testEdge is a real http.Server whose handler does what the edge does.
type testEdge struct {
	addr      string
	lim       Limits
	backend   *recordingBackend
	transport *http.Transport
	handled   atomic.Int32
	mu        sync.Mutex
	checked   []Request
}

// newEdge returns the edge's handler in front of a new recording backend.
func newEdge(t *testing.T, lim Limits) (*testEdge, http.Handler) {
	t.Helper()
	e := &testEdge{lim: lim, backend: startBackend(t)}
	target, _ := url.Parse("http://" + e.backend.ln.Addr().String())
	e.transport = &http.Transport{
		DialContext:           (&net.Dialer{Timeout: ioTimeout}).DialContext,
		ResponseHeaderTimeout: ioTimeout,
	}
	proxy := &httputil.ReverseProxy{
		Transport: e.transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			SanitizeForward(pr.Out) // first, then the gateway's headers
			pr.SetURL(target)
			pr.SetXForwarded()
			pr.Out.Header.Set("X-Consumer-Id", "gateway-consumer")
			pr.Out.Header.Set("Portico-Route", "7")
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if herr := BodyError(err); herr != nil {
				herr.Write(w)
				return
			}
			plugins.WriteError(w, http.StatusBadGateway, "the backend could not be reached")
		},
		ErrorLog: log.New(io.Discard, "", 0),
	}
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.RequestURI != "/__probe" {
			e.handled.Add(1)
		}
		req, herr := Check(r, e.lim)
		if herr != nil {
			herr.Write(w)
			return
		}
		// Checking the same request again changes nothing (the guard
		// does not take the next request's head).
		if again, herr := Check(r, e.lim); herr != nil || again != req {
			t.Errorf("second Check of %s %s: %+v, %v", r.Method, r.RequestURI, again, herr)
		}
		if req.Close {
			w.Header().Set("Connection", "close")
		}
		Sanitize(r.Header)
		e.mu.Lock()
		e.checked = append(e.checked, req)
		e.mu.Unlock()
		WrapBody(r, e.lim.MaxBodyBytes)
		proxy.ServeHTTP(w, r)
	})
	t.Cleanup(e.transport.CloseIdleConnections)
	return e, handler
}

// startEdge serves the edge's handler with a real http.Server on
// 127.0.0.1, behind the guard or not.
func startEdge(t *testing.T, lim Limits, guarded bool) *testEdge {
	t.Helper()
	e, handler := newEdge(t, lim)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	e.addr = ln.Addr().String()
	if guarded {
		ln = Listener(ln)
	}
	srv := &http.Server{
		Handler:                      handler,
		ConnContext:                  ConnContext,
		DisableGeneralOptionsHandler: true,
		ReadHeaderTimeout:            ioTimeout,
		ErrorLog:                     log.New(io.Discard, "", 0),
	}
	go func() { _ = srv.Serve(ln) }()
	t.Cleanup(func() { _ = srv.Close() })
	return e
}

// settle waits (bounded) until the backend has finished with every
// connection the proxy opened, so that what it saw is final.
func (e *testEdge) settle(t *testing.T) []seen {
	t.Helper()
	e.transport.CloseIdleConnections()
	deadline := time.Now().Add(ioTimeout)
	for e.backend.active.Load() > 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := e.backend.active.Load(); n > 0 {
		t.Fatalf("backend still has %d connections open", n)
	}
	return e.backend.seen()
}

type reply struct {
	status int
	body   string
	header http.Header
}

// probe is a request the edge answers itself (501) without forwarding: if
// it is answered, the connection was kept open.
const probe = "TRACE /__probe HTTP/1.1\r\nHost: api.example\r\n\r\n"

// exchange writes raw to a new connection to the edge and reads up to n
// responses, then finds out whether the edge closed the connection: by
// waiting for EOF when a close is expected, else by sending the probe.
func exchange(t *testing.T, addr, raw string, n int, wantClosed bool) (replies []reply, closed bool) {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, ioTimeout)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	_ = c.SetDeadline(time.Now().Add(ioTimeout))
	if _, err := io.WriteString(c, raw); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(c)
	read := func() (reply, error) {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return reply{}, err
		}
		body, err := io.ReadAll(resp.Body)
		if err != nil {
			t.Fatalf("reading a response body: %v", err)
		}
		return reply{resp.StatusCode, string(body), resp.Header}, nil
	}
	for range n {
		r, err := read()
		if err != nil {
			return replies, true
		}
		replies = append(replies, r)
	}
	if wantClosed {
		if _, err := br.ReadByte(); err == nil {
			t.Fatalf("the edge sent more than %d responses", n)
		} else if errors.Is(err, os.ErrDeadlineExceeded) {
			return replies, false
		}
		return replies, true
	}
	if _, err := io.WriteString(c, probe); err != nil {
		return replies, true
	}
	r, err := read()
	if err != nil {
		return replies, true
	}
	if r.status != http.StatusNotImplemented {
		t.Fatalf("the probe got %d %q: the edge sent more than %d responses", r.status, r.body, n)
	}
	return replies, false
}

func statuses(rs []reply) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.status)
	}
	return out
}

type expect struct {
	statuses []int
	closed   bool
	handled  int // handler calls; -1: don't care
	// backend checks what the backend saw, after it settled.
	backend func(t *testing.T, got []seen, e *testEdge)
}

func nothing(t *testing.T, got []seen, e *testEdge) {
	t.Helper()
	if len(got) != 0 || e.backend.conns.Load() != 0 {
		t.Errorf("backend saw %d requests on %d connections, want none: %+v", len(got), e.backend.conns.Load(), got)
	}
}

// incomplete: whatever reached the backend, no request was complete.
func incomplete(t *testing.T, got []seen, _ *testEdge) {
	t.Helper()
	for _, s := range got {
		if s.complete {
			t.Errorf("backend received a complete request: %s %s body %q", s.method, s.target, s.body)
		}
	}
}

// exactly: the backend saw one complete request, with this method and
// target, and the gateway's forwarding headers.
func exactly(method, target string, more ...func(*testing.T, seen)) func(*testing.T, []seen, *testEdge) {
	return func(t *testing.T, got []seen, e *testEdge) {
		t.Helper()
		if len(got) != 1 || !got[0].complete {
			t.Fatalf("backend saw %+v, want exactly %s %s", got, method, target)
		}
		s := got[0]
		if s.method != method || s.target != target {
			t.Errorf("backend saw %s %s, want %s %s", s.method, s.target, method, target)
		}
		if s.host != e.backend.ln.Addr().String() {
			t.Errorf("backend saw Host %q, want the target's %q", s.host, e.backend.ln.Addr())
		}
		if got := s.header.Values("X-Forwarded-For"); len(got) != 1 || got[0] != "127.0.0.1" {
			t.Errorf("X-Forwarded-For = %q", got)
		}
		if got := s.header.Values("X-Consumer-Id"); len(got) != 1 || got[0] != "gateway-consumer" {
			t.Errorf("X-Consumer-Id = %q", got)
		}
		for _, f := range more {
			f(t, s)
		}
	}
}

func header(name, want string) func(*testing.T, seen) {
	return func(t *testing.T, s seen) {
		t.Helper()
		if got := s.header.Values(name); want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
			t.Errorf("backend saw %s = %q, want %q", name, got, want)
		}
	}
}

func body(want string) func(*testing.T, seen) {
	return func(t *testing.T, s seen) {
		t.Helper()
		if string(s.body) != want {
			t.Errorf("backend saw body %q, want %q", s.body, want)
		}
	}
}

const host = "Host: api.example\r\n"

type rawCase struct {
	name    string
	raw     string
	guarded expect
	// unguarded, when it differs: Go's TLS listener leaves no room for
	// the guard, and Check falls back to closing.
	unguarded *expect
}

func runRawCases(t *testing.T, lim Limits, cases []rawCase) {
	t.Helper()
	for _, tc := range cases {
		for _, guarded := range []bool{true, false} {
			want := tc.guarded
			name := tc.name + "/guarded"
			if !guarded {
				name = tc.name + "/unguarded"
				if tc.unguarded != nil {
					want = *tc.unguarded
				}
			}
			t.Run(name, func(t *testing.T) {
				e := startEdge(t, lim, guarded)
				n := len(want.statuses)
				replies, closed := exchange(t, e.addr, tc.raw, max(n, 1), want.closed)
				if got := statuses(replies); !equalInts(got, want.statuses) {
					t.Errorf("client got %v (%v), want %v", got, replies, want.statuses)
				}
				if closed != want.closed {
					t.Errorf("connection closed = %v, want %v", closed, want.closed)
				}
				for _, r := range replies {
					if r.status >= 400 && r.status != 501 && r.header.Get("Content-Type") == "application/json" &&
						!strings.HasPrefix(r.body, `{"message":`) {
						t.Errorf("error body %q is not a Portico error", r.body)
					}
				}
				if want.handled >= 0 && int(e.handled.Load()) != want.handled {
					t.Errorf("handler ran %d times, want %d", e.handled.Load(), want.handled)
				}
				want.backend(t, e.settle(t), e)
			})
		}
	}
}

func equalInts(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// Section B of the security checklist: framing and headers.
func TestRawFraming(t *testing.T) {
	goRejects := func(status int) expect {
		// Go's server answers before any handler runs and closes.
		return expect{statuses: []int{status}, closed: true, handled: 0, backend: nothing}
	}
	cases := []rawCase{
		{
			name:    "clean request",
			raw:     "GET /pets/1?limit=10 HTTP/1.1\r\n" + host + "\r\n",
			guarded: expect{statuses: []int{200}, handled: 1, backend: exactly("GET", "/pets/1?limit=10", header("X-Forwarded-Host", "api.example"))},
		},
		{
			name: "keep-alive and pipelining",
			raw: "POST /a HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" +
				"GET /b HTTP/1.1\r\n" + host + "\r\n",
			guarded: expect{statuses: []int{200, 200}, handled: 2, backend: func(t *testing.T, got []seen, _ *testEdge) {
				if len(got) != 2 || got[0].target != "/a" || string(got[0].body) != "hello" || got[1].target != "/b" {
					t.Errorf("backend saw %+v", got)
				}
			}},
		},
		{
			name:    "chunked body",
			raw:     "POST /up HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			guarded: expect{statuses: []int{200}, handled: 1, backend: exactly("POST", "/up", body("hello"))},
			// Without the guard, a chunked request could have hidden a
			// Content-Length: the connection closes after it.
			unguarded: &expect{statuses: []int{200}, closed: true, handled: 1, backend: exactly("POST", "/up", body("hello"))},
		},
		// [9] CL.TE with a pipelined request behind the body.
		{
			name: "B9 Content-Length with Transfer-Encoding",
			raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
				"GET /admin HTTP/1.1\r\n" + host + "\r\n",
			guarded: expect{statuses: []int{400}, closed: true, handled: 1, backend: nothing},
			// Go drops the Content-Length and frames by chunks; without
			// the guard the edge answers and closes, so /admin is never
			// read.
			unguarded: &expect{statuses: []int{200}, closed: true, handled: 1, backend: exactly("POST", "/", body(""))},
		},
		// [10] conflicting and obfuscated lengths: Go refuses them all
		// before the handler (501 for transfer codings it does not know).
		{name: "B10 duplicate differing Content-Length", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5\r\nContent-Length: 6\r\n\r\nhello!", guarded: goRejects(400)},
		{name: "B10 Content-Length list", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: 5, 5\r\n\r\nhello", guarded: goRejects(400)},
		{name: "B10 TE chunked, identity", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked, identity\r\n\r\n0\r\n\r\n", guarded: goRejects(501)},
		{name: "B10 TE ,chunked", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: ,chunked\r\n\r\n0\r\n\r\n", guarded: goRejects(501)},
		{name: "B10 TE vertical tab", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding:\x0bchunked\r\n\r\n0\r\n\r\n", guarded: goRejects(400)},
		{name: "B10 duplicate TE", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", guarded: goRejects(501)},
		{name: "B10 Content-Length +5", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: +5\r\n\r\nhello", guarded: goRejects(400)},
		{name: "B10 empty Content-Length", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length: \r\n\r\n", guarded: goRejects(400)},
		{
			// Go joins folded lines; only the guard sees the fold.
			name:      "B10 folded Transfer-Encoding",
			raw:       "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
			guarded:   expect{statuses: []int{400}, closed: true, handled: 1, backend: nothing},
			unguarded: &expect{statuses: []int{200}, closed: true, handled: 1, backend: exactly("POST", "/", body(""))},
		},
		// [11] header syntax.
		{name: "B11 space before colon", raw: "POST / HTTP/1.1\r\n" + host + "Content-Length : 5\r\n\r\nhello", guarded: goRejects(400)},
		{name: "B11 NUL in value", raw: "GET / HTTP/1.1\r\n" + host + "X-A: a\x00b\r\n\r\n", guarded: goRejects(400)},
		{name: "B11 bare CR in value", raw: "GET / HTTP/1.1\r\n" + host + "X-A: a\rb\r\n\r\n", guarded: goRejects(400)},
		{name: "B11 two Host headers", raw: "GET / HTTP/1.1\r\nHost: api.example\r\nHost: internal.svc\r\n\r\n", guarded: goRejects(400)},
		{
			name:      "B11 folded header",
			raw:       "GET / HTTP/1.1\r\n" + host + "X-A: a\r\n b\r\n\r\n",
			guarded:   expect{statuses: []int{400}, closed: true, handled: 1, backend: nothing},
			unguarded: &expect{statuses: []int{200}, handled: 1, backend: exactly("GET", "/", header("X-A", "a b"))},
		},
		// [12] malformed chunked bodies: the handler has started when Go
		// finds them; the backend never gets a complete request and the
		// client gets 400, not 502.
		{name: "B12 chunk size 0x5", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n0x5\r\nhello\r\n0\r\n\r\n", guarded: expect{statuses: []int{400}, closed: true, handled: 1, backend: incomplete}},
		{name: "B12 chunk size +5", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n+5\r\nhello\r\n0\r\n\r\n", guarded: expect{statuses: []int{400}, closed: true, handled: 1, backend: incomplete}},
		{name: "B12 bare CR in chunk line", raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n2\r\r;a\r\nhi\r\n0\r\n\r\n", guarded: expect{statuses: []int{400}, closed: true, handled: 1, backend: incomplete}},
		{
			// A valid first chunk large enough to be forwarded, then a
			// bad one: the backend has started receiving, and the
			// request is cut before its last chunk.
			name: "B12 bad chunk after forwarded data",
			raw: "POST / HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
				"8000\r\n" + strings.Repeat("d", 0x8000) + "\r\nzz\r\nhi\r\n0\r\n\r\n",
			guarded: expect{statuses: []int{400}, closed: true, handled: 1, backend: func(t *testing.T, got []seen, e *testEdge) {
				incomplete(t, got, e)
				if len(got) != 1 || len(got[0].body) == 0 {
					t.Errorf("backend saw %d requests; the first chunk should have started arriving", len(got))
				}
			}},
		},
		// [13] HTTP/1.0 with Transfer-Encoding: Go ignores the header
		// and would parse the body as the next request.
		{
			name:      "B13 HTTP/1.0 with Transfer-Encoding",
			raw:       "POST / HTTP/1.0\r\n" + host + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n",
			guarded:   expect{statuses: []int{400}, closed: true, handled: 1, backend: nothing},
			unguarded: &expect{statuses: []int{200}, closed: true, handled: 1, backend: exactly("POST", "/", body(""))},
		},
		// [14] absolute form.
		{
			name: "B14 absolute form against Host",
			raw:  "GET http://Internal.SVC/x HTTP/1.1\r\nHost: public.example\r\n\r\n",
			guarded: expect{statuses: []int{200}, handled: 1, backend: exactly("GET", "/x",
				header("X-Forwarded-Host", "internal.svc"))},
		},
		{name: "B14 absolute form with user info", raw: "GET http://user@internal.svc/x HTTP/1.1\r\n" + host + "\r\n", guarded: expect{statuses: []int{400}, handled: 1, backend: nothing}},
		{name: "B14 absolute form, other scheme", raw: "GET ftp://internal.svc/x HTTP/1.1\r\n" + host + "\r\n", guarded: expect{statuses: []int{400}, handled: 1, backend: nothing}},
		// [15] hop-by-hop abuse.
		{
			name: "B15 Connection names a gateway header",
			raw: "GET /x HTTP/1.1\r\n" + host + "Connection: close, X-Consumer-Id, X-Forwarded-For, Portico-Route\r\n" +
				"X-Consumer-Id: forged\r\n\r\n",
			guarded: expect{statuses: []int{200}, closed: true, handled: 1, backend: exactly("GET", "/x",
				header("Portico-Route", "7"), header("Connection", ""))},
		},
		{
			name: "B15 hop-by-hop headers",
			raw: "GET /x HTTP/1.1\r\n" + host + "Connection: keep-alive, X-Secret-Hop\r\nKeep-Alive: timeout=5\r\n" +
				"Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nX-Secret-Hop: 1\r\nProxy-Authorization: Basic eDp5\r\n\r\n",
			guarded: expect{statuses: []int{200}, handled: 1, backend: exactly("GET", "/x",
				header("Keep-Alive", ""), header("Proxy-Connection", ""), header("Te", ""), header("Trailer", ""),
				header("X-Secret-Hop", ""), header("Proxy-Authorization", ""))},
		},
		// [16] spoofed client headers.
		{
			name: "B16 spoofed forwarding headers",
			raw: "GET /x HTTP/1.1\r\n" + host + "X-Forwarded-For: 10.0.0.1\r\nX-Forwarded-Host: evil.example\r\n" +
				"X-Forwarded-Proto: https\r\nX-Forwarded-Port: 443\r\nX-Forwarded-Prefix: /admin\r\nForwarded: for=10.0.0.1\r\n" +
				"X-Real-IP: 10.0.0.1\r\nX-Original-URL: /admin\r\nX-Rewrite-URL: /admin\r\nX-Original-Host: internal\r\n" +
				"X-Host: internal\r\nX-Consumer-Id: admin\r\nPortico-Edge-Token: forged\r\n\r\n",
			guarded: expect{statuses: []int{200}, handled: 1, backend: exactly("GET", "/x",
				header("X-Forwarded-Host", "api.example"), header("X-Forwarded-Proto", "http"),
				header("X-Forwarded-Port", ""), header("X-Forwarded-Prefix", ""), header("Forwarded", ""),
				header("X-Real-Ip", ""), header("X-Original-Url", ""), header("X-Rewrite-Url", ""),
				header("X-Original-Host", ""), header("X-Host", ""), header("Portico-Edge-Token", ""))},
		},
		// [17] h2c upgrade: answered as plain HTTP/1.1, nothing passed on.
		{
			name: "B17 h2c upgrade",
			raw: "GET /x HTTP/1.1\r\n" + host + "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\n" +
				"HTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
			guarded: expect{statuses: []int{200}, handled: 1, backend: exactly("GET", "/x",
				header("Upgrade", ""), header("Connection", ""), header("Http2-Settings", ""))},
		},
		// [19] underscores.
		{name: "B19 underscore header", raw: "GET /x HTTP/1.1\r\n" + host + "X_Api_Key: k\r\n\r\n", guarded: expect{statuses: []int{400}, handled: 1, backend: nothing}},
	}
	runRawCases(t, Limits{}, cases)
}

// Section C of the checklist: the path the backend gets is the one routing
// and policies saw.
func TestRawPaths(t *testing.T) {
	ok := func(target, want string) rawCase {
		return rawCase{
			name:    target,
			raw:     "GET " + target + " HTTP/1.1\r\n" + host + "\r\n",
			guarded: expect{statuses: []int{200}, handled: 1, backend: exactly("GET", want)},
		}
	}
	bad := func(target string) rawCase {
		return rawCase{
			name:    target,
			raw:     "GET " + target + " HTTP/1.1\r\n" + host + "\r\n",
			guarded: expect{statuses: []int{400}, handled: 1, backend: nothing},
		}
	}
	cases := []rawCase{
		// [20]
		ok("/ok/../admin", "/admin"),
		ok("/./admin", "/admin"),
		ok("//admin", "/admin"),
		ok("/ok/%2e%2e/admin", "/admin"),
		ok("/ok/%2E%2E/admin?x=1", "/admin?x=1"),
		ok("/../../x", "/x"),
		// [21]
		bad("/x%2F..%2Fadmin"),
		bad("/admin%5c.."),
		bad(`/admin\..`),
		// [22]
		ok("/%61dmin", "/admin"),
		ok("/ADMIN", "/ADMIN"),
		bad("/admin;x"),
		bad("/user/..;x=y/admin"),
		// Escaped reserved characters stay data.
		ok("/a%3Fb%23c%20d?q=%23", "/a%3Fb%23c%20d?q=%23"),
		ok("/a%3fb", "/a%3Fb"),
		bad("/a%00"),
		// Go refuses an invalid escape in the path itself.
		{name: "/a%zz", raw: "GET /a%zz HTTP/1.1\r\n" + host + "\r\n", guarded: expect{statuses: []int{400}, closed: true, handled: 0, backend: nothing}},
		bad("/a?x=%zz"),
		bad("/a?x=1;y=2"),
		bad("/a%252e%252e/admin"),
		// [23] method override headers never reach the backend.
		{
			name:    "C23 method override",
			raw:     "GET /x HTTP/1.1\r\n" + host + "X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n\r\n",
			guarded: expect{statuses: []int{200}, handled: 1, backend: exactly("GET", "/x", header("X-Http-Method-Override", ""), header("X-Http-Method", ""), header("X-Method-Override", ""))},
		},
		// Methods.
		{name: "TRACE", raw: "TRACE /x HTTP/1.1\r\n" + host + "\r\n", guarded: expect{statuses: []int{501}, handled: 1, backend: nothing}},
		{name: "CONNECT", raw: "CONNECT internal.svc:443 HTTP/1.1\r\nHost: internal.svc:443\r\n\r\n", guarded: expect{statuses: []int{501}, handled: 1, backend: nothing}},
		{name: "extension method", raw: "PROPFIND /x HTTP/1.1\r\n" + host + "\r\n", guarded: expect{statuses: []int{501}, handled: 1, backend: nothing}},
		{name: "OPTIONS *", raw: "OPTIONS * HTTP/1.1\r\n" + host + "\r\n", guarded: expect{statuses: []int{400}, handled: 1, backend: nothing}},
		{name: "HTTP/1.2", raw: "GET /x HTTP/1.2\r\n" + host + "\r\n", guarded: expect{statuses: []int{505}, closed: true, handled: 1, backend: nothing}},
	}
	runRawCases(t, Limits{}, cases)
}

func TestRawSizes(t *testing.T) {
	lim := Limits{MaxBodyBytes: 16 << 10}
	cases := []rawCase{
		{
			name:    "too many header fields",
			raw:     "GET /x HTTP/1.1\r\n" + host + strings.Repeat("X-A: 1\r\n", 100) + "\r\n",
			guarded: expect{statuses: []int{431}, closed: true, handled: 1, backend: nothing},
		},
		{
			name:    "header fields too large",
			raw:     "GET /x HTTP/1.1\r\n" + host + "X-A: " + strings.Repeat("a", 33<<10) + "\r\n\r\n",
			guarded: expect{statuses: []int{431}, closed: true, handled: 1, backend: nothing},
		},
		{
			name:    "URI too long",
			raw:     "GET /" + strings.Repeat("a", 8<<10) + " HTTP/1.1\r\n" + host + "\r\n",
			guarded: expect{statuses: []int{414}, handled: 1, backend: nothing},
		},
		{
			name: "Content-Length over the limit",
			// Refused before the body is read; Go drains what it can
			// of an unread body before closing, so the client sends it.
			raw:     "POST /x HTTP/1.1\r\n" + host + "Content-Length: 16385\r\n\r\n" + strings.Repeat("b", 16385),
			guarded: expect{statuses: []int{413}, closed: true, handled: 1, backend: nothing},
		},
		{
			name:    "Content-Length at the limit",
			raw:     "POST /x HTTP/1.1\r\n" + host + "Content-Length: 16384\r\n\r\n" + strings.Repeat("b", 16<<10),
			guarded: expect{statuses: []int{200}, handled: 1, backend: exactly("POST", "/x", body(strings.Repeat("b", 16<<10)))},
		},
		{
			name: "chunked body over the limit",
			raw: "POST /x HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n" +
				"3000\r\n" + strings.Repeat("b", 0x3000) + "\r\n3000\r\n" + strings.Repeat("b", 0x3000) + "\r\n0\r\n\r\n",
			guarded: expect{statuses: []int{413}, closed: true, handled: 1, backend: incomplete},
		},
	}
	runRawCases(t, lim, cases)
}

// A valid WebSocket upgrade is recognised before Sanitize removes its
// headers; the edge hands it to its relay.
func TestRawWebSocketDecision(t *testing.T) {
	e := startEdge(t, Limits{}, true)
	raw := "GET /chat HTTP/1.1\r\n" + host + "Upgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	replies, _ := exchange(t, e.addr, raw, 1, false)
	e.mu.Lock()
	checked := e.checked
	e.mu.Unlock()
	if len(replies) != 1 || len(checked) != 1 || !checked[0].WebSocket {
		t.Fatalf("replies %v, checked %+v", replies, checked)
	}
	// This test edge has no relay: the plain forward carries no upgrade.
	got := e.settle(t)
	if len(got) != 1 || got[0].header.Get("Upgrade") != "" || got[0].header.Get("Connection") != "" {
		t.Fatalf("backend saw %+v", got)
	}
}

// The same edge over HTTP/2 (TLS, Go's server and client): the rules hold,
// and a stream's failure never asks to close the connection.
func TestH2EndToEnd(t *testing.T) {
	e, handler := newEdge(t, Limits{MaxBodyBytes: 16 << 10})
	srv := httptest.NewUnstartedServer(handler)
	srv.EnableHTTP2 = true
	srv.Config.ErrorLog = log.New(io.Discard, "", 0)
	srv.StartTLS()
	defer srv.Close()
	client := srv.Client()
	client.Timeout = ioTimeout

	do := func(req *http.Request) (int, string) {
		t.Helper()
		resp, err := client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.ProtoMajor != 2 {
			t.Fatalf("got %s, want HTTP/2", resp.Proto)
		}
		if resp.Header.Get("Connection") != "" {
			t.Errorf("HTTP/2 response carries Connection: %q", resp.Header.Get("Connection"))
		}
		return resp.StatusCode, string(b)
	}

	req, _ := http.NewRequest("GET", srv.URL+"/ok/%2e%2e/admin?x=1", nil)
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	if code, b := do(req); code != 200 || b != "backend" {
		t.Fatalf("normalised path: %d %q", code, b)
	}
	got := e.settle(t)
	if len(got) != 1 || got[0].target != "/admin?x=1" || got[0].header.Get("X-Forwarded-For") != "127.0.0.1" ||
		got[0].header.Get("X-Forwarded-Proto") != "https" {
		t.Fatalf("backend saw %+v", got)
	}

	req, _ = http.NewRequest("GET", srv.URL+"/x", nil)
	req.Header["X_Api_Key"] = []string{"k"}
	if code, b := do(req); code != 400 || !strings.Contains(b, "underscores") {
		t.Fatalf("underscore: %d %q", code, b)
	}

	req, _ = http.NewRequest("POST", srv.URL+"/x", strings.NewReader(strings.Repeat("b", 16<<10+1)))
	if code, _ := do(req); code != 413 {
		t.Fatalf("Content-Length over the limit: %d", code)
	}

	// A streamed body over the limit is cut: 413, and the backend never
	// gets all of it.
	pr, pw := io.Pipe()
	go func() {
		chunk := make([]byte, 4<<10)
		for range 16 {
			if _, err := pw.Write(chunk); err != nil {
				return
			}
		}
		pw.Close()
	}()
	req, _ = http.NewRequest("POST", srv.URL+"/stream", pr)
	code, _ := do(req)
	pw.CloseWithError(errors.New("test done"))
	if code != 413 {
		t.Fatalf("streamed body over the limit: %d", code)
	}
	got = e.settle(t)
	if len(got) != 2 || got[1].complete {
		t.Fatalf("backend saw %+v", got)
	}
}
