package forward

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
)

// paths: every behaviour of the response side holds on both paths of the
// Proxy: a request without a body (lean HTTP/1.1 path) and one with a body
// (net/http's Transport).
var paths = []struct {
	name   string
	method string
	body   string
}{
	{"lean GET", http.MethodGet, ""},
	{"transport POST", http.MethodPost, "payload"},
}

func newReq(t *testing.T, method, url, body string) *http.Request {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	return r
}

var client = &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DisableCompression: true}}

func TestForwardHeaders(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			o := newRawOrigin(t, okResponse)
			e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
			r := newReq(t, p.method, e.URL+"/items/a%20b?x=1&y=2", p.body)
			// Hop-by-hop fields, fields named in Connection (among them
			// gateway headers a client would like removed), and
			// forwarding headers a client would like to spoof.
			r.Header["Connection"] = []string{"X-Custom, Portico-Route, X-Forwarded-For, Portico-Edge-Token"}
			r.Header["X-Custom"] = []string{"removed"}
			r.Header["Keep-Alive"] = []string{"timeout=5"}
			r.Header["Proxy-Authorization"] = []string{"Basic eDp5"}
			r.Header["Proxy-Connection"] = []string{"keep-alive"}
			r.Header["Te"] = []string{"trailers, deflate"}
			r.Header["X-Forwarded-For"] = []string{"203.0.113.9"}
			r.Header["X-Forwarded-Host"] = []string{"evil.example"}
			r.Header["X-Forwarded-Proto"] = []string{"http"}
			r.Header["Forwarded"] = []string{"for=203.0.113.9"}
			r.Header["X-Kept"] = []string{"a", "b"}
			r.Header["User-Agent"] = []string{""} // none: the origin must not get Go's
			res, err := client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, res); res.StatusCode != 200 || body != "ok" {
				t.Fatalf("status %d, body %q", res.StatusCode, body)
			}
			s := o.next(t)
			if s.Method != p.method || s.URI != "/items/a%20b?x=1&y=2" || s.Body != p.body {
				t.Errorf("origin got %s %s body %q", s.Method, s.URI, s.Body)
			}
			want := map[string][]string{
				"Host":               {o.URL.Host},
				"Portico-Edge-Token": {"tok"},
				"Portico-Deployment": {"dep1"},
				"Portico-Stage":      {"api1/prod"},
				"Portico-Route":      {"3"},
				"X-Request-Id":       {"req-1"},
				"X-Forwarded-For":    {"192.0.2.7"},
				"X-Forwarded-Host":   {"api.example.test"},
				"X-Forwarded-Proto":  {"https"},
				"Forwarded":          {`for=192.0.2.7;host="api.example.test";proto=https`},
				"Te":                 {"trailers"},
				"X-Kept":             {"a", "b"},
			}
			for k, v := range want {
				if got := s.Header[k]; strings.Join(got, "|") != strings.Join(v, "|") {
					t.Errorf("%s: origin got %q, want %q", k, got, v)
				}
			}
			for _, k := range []string{"Connection", "X-Custom", "Keep-Alive", "Proxy-Authorization", "Proxy-Connection", "Upgrade", "User-Agent"} {
				if v, ok := s.Header[k]; ok {
					t.Errorf("%s reached the origin: %q", k, v)
				}
			}
		})
	}
}

func TestForwardTeOnlyWhenAsked(t *testing.T) {
	o := newRawOrigin(t, okResponse)
	e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
	r := newReq(t, http.MethodGet, e.URL+"/x", "")
	r.Header["Te"] = []string{"deflate"}
	res, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	if v, ok := o.next(t).Header["Te"]; ok {
		t.Errorf("Te reached the origin without trailers asked for: %q", v)
	}
}

func TestForwardIdentityHeadersReplaceClients(t *testing.T) {
	o := newRawOrigin(t, okResponse)
	e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
	e.Identity = map[string][]string{"X-User": {"alice"}}
	r := newReq(t, http.MethodGet, e.URL+"/x", "")
	r.Header["X-User"] = []string{"mallory"}
	r.Header["Connection"] = []string{"X-User"} // cannot remove the gateway's
	res, err := client.Do(r)
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	if got := o.next(t).Header["X-User"]; len(got) != 1 || got[0] != "alice" {
		t.Errorf("X-User at the origin: %q", got)
	}
}

func TestForwardRefusesHeaderInjection(t *testing.T) {
	o := newRawOrigin(t, okResponse)
	e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
	e.Identity = map[string][]string{"X-User": {"alice\r\nX-Admin: 1"}}
	res, err := client.Get(e.URL + "/x")
	if err != nil {
		t.Fatal(err)
	}
	readAll(t, res)
	if res.StatusCode != http.StatusBadGateway {
		t.Errorf("status %d, want 502", res.StatusCode)
	}
	o.none(t)
}

func TestForwardRequestTrailersDropped(t *testing.T) {
	o := newRawOrigin(t, okResponse)
	e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
	addr := strings.TrimPrefix(e.URL, "http://")
	res := rawRequest(t, addr, "POST /x HTTP/1.1\r\nHost: a\r\nTrailer: X-Evil\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\n0\r\nX-Evil: 1\r\n\r\n")
	if res.StatusCode != 200 {
		t.Fatalf("status %d", res.StatusCode)
	}
	s := o.next(t)
	if s.Body != "body" || len(s.Trailer) != 0 {
		t.Errorf("origin got body %q, trailer %v", s.Body, s.Trailer)
	}
	if _, ok := s.Header["Trailer"]; ok {
		t.Error("the Trailer header reached the origin")
	}
}

func TestForwardResponseHeadersAndTrailers(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			o := newRawOrigin(t, func(c net.Conn, _ seen) bool {
				_, err := io.WriteString(c, "HTTP/1.1 200 OK\r\n"+
					"Connection: X-Private\r\nX-Private: 1\r\nKeep-Alive: timeout=1\r\nX-Public: 2\r\nX-Request-Id: req-1\r\nSet-Cookie: a=1\r\nSet-Cookie: b=2\r\n"+
					"Trailer: X-Sum\r\nTransfer-Encoding: chunked\r\n\r\n"+
					"5\r\nhello\r\n0\r\nX-Sum: 42\r\nX-Late: 7\r\n\r\n")
				return err == nil
			})
			e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
			res, err := client.Do(newReq(t, p.method, e.URL+"/x", p.body))
			if err != nil {
				t.Fatal(err)
			}
			if body := readAll(t, res); body != "hello" {
				t.Errorf("body %q", body)
			}
			if res.Header.Get("X-Public") != "2" || res.Header.Get("X-Private") != "" || res.Header.Get("Keep-Alive") != "" {
				t.Errorf("response header: %v", res.Header)
			}
			if got := res.Header["X-Request-Id"]; len(got) != 1 {
				t.Errorf("X-Request-Id set by the edge and echoed by the origin: %q, want one", got)
			}
			if got := res.Header["Set-Cookie"]; len(got) != 2 {
				t.Errorf("Set-Cookie: %q", got)
			}
			if res.Trailer.Get("X-Sum") != "42" || res.Trailer.Get("X-Late") != "7" {
				t.Errorf("trailers: %v", res.Trailer)
			}
		})
	}
}

func TestForward1xx(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			o := newRawOrigin(t, func(c net.Conn, _ seen) bool {
				_, err := io.WriteString(c, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"+
					"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
				return err == nil
			})
			e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
			var got []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				got = append(got, fmt.Sprintf("%d %s", code, h.Get("Link")))
				return nil
			}}
			r := newReq(t, p.method, e.URL+"/x", p.body)
			r = r.WithContext(httptrace.WithClientTrace(r.Context(), trace))
			res, err := client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			readAll(t, res)
			if len(got) != 1 || got[0] != "103 </a.css>; rel=preload" {
				t.Errorf("1xx responses: %q", got)
			}
			if res.StatusCode != 200 || res.Header.Get("Link") != "" {
				t.Errorf("final response %d with Link %q", res.StatusCode, res.Header.Get("Link"))
			}
		})
	}
}

func TestForwardStreamsWithFlush(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			release := make(chan struct{})
			o := newRawOrigin(t, func(c net.Conn, _ seen) bool {
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nfirst\n\r\n")
				select { // the rest only once the client has the first event
				case <-release:
				case <-time.After(5 * time.Second):
				}
				_, err := io.WriteString(c, "7\r\nsecond\n\r\n0\r\n\r\n")
				return err == nil
			})
			e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
			req := newReq(t, p.method, e.URL+"/events", p.body)
			first, rest := make(chan string, 1), make(chan string, 1)
			go func() {
				res, err := client.Do(req)
				if err != nil {
					first <- "error: " + err.Error()
					return
				}
				defer res.Body.Close()
				br := bufio.NewReader(res.Body)
				line, _ := br.ReadString('\n')
				first <- line
				b, _ := io.ReadAll(br)
				rest <- string(b)
			}()
			select {
			case line := <-first:
				if line != "first\n" {
					close(release)
					t.Fatalf("first event %q", line)
				}
			case <-time.After(3 * time.Second):
				close(release)
				t.Fatal("the first event was held back: the forwarder does not flush")
			}
			close(release)
			select {
			case r := <-rest:
				if r != "second\n" {
					t.Errorf("rest %q", r)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("the rest of the stream did not arrive")
			}
		})
	}
}

func TestForwardRefusesSwitchingProtocols(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			o := newRawOrigin(t, func(c net.Conn, _ seen) bool {
				io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\nTUNNEL")
				return false
			})
			e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
			r := newReq(t, p.method, e.URL+"/x", p.body)
			r.Header["Connection"] = []string{"Upgrade, HTTP2-Settings"}
			r.Header["Upgrade"] = []string{"h2c"}
			r.Header["Http2-Settings"] = []string{"AAMAAABkAAQAAP__"}
			res, err := client.Do(r)
			if err != nil {
				t.Fatal(err)
			}
			body := readAll(t, res)
			if res.StatusCode != http.StatusBadGateway || strings.Contains(body, "TUNNEL") {
				t.Errorf("status %d, body %q", res.StatusCode, body)
			}
			s := o.next(t)
			for _, k := range []string{"Upgrade", "Connection", "Http2-Settings"} {
				if v, ok := s.Header[k]; ok {
					t.Errorf("%s reached the origin: %q", k, v)
				}
			}
		})
	}
}

func TestForwardWebSocketGoesThroughRelay(t *testing.T) {
	// The origin: a WebSocket echo that reports the gateway headers.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	gotRoute := make(chan string, 1)
	srv := &http.Server{ReadHeaderTimeout: 5 * time.Second, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gotRoute <- r.Header.Get("Portico-Route") + " " + r.Header.Get("X-Forwarded-For")
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		typ, msg, err := c.Read(r.Context())
		if err != nil {
			return
		}
		_ = c.Write(r.Context(), typ, msg)
		c.Close(websocket.StatusNormalClosure, "")
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	o := newEdgeFront(t, Options{Origin: mustURL(t, "http://"+ln.Addr().String()), Token: "tok"})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	c, _, err := websocket.Dial(ctx, strings.Replace(o.URL, "http", "ws", 1)+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	if err := c.Write(ctx, websocket.MessageText, []byte("ping")); err != nil {
		t.Fatal(err)
	}
	_, msg, err := c.Read(ctx)
	if err != nil || string(msg) != "ping" {
		t.Fatalf("echo %q, %v", msg, err)
	}
	if got := <-gotRoute; got != "3 192.0.2.7" {
		t.Errorf("origin saw %q", got)
	}
}

func TestForwardClientBodyErrors(t *testing.T) {
	o := newRawOrigin(t, okResponse)
	e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
	e.MaxBody = 8
	addr := strings.TrimPrefix(e.URL, "http://")
	cases := []struct {
		name string
		req  string
		want int
	}{
		{"malformed chunk", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n4\r\nbody\r\nzz\r\n", http.StatusBadRequest},
		{"over the limit, chunked", "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n10\r\n0123456789abcdef\r\n0\r\n\r\n", http.StatusRequestEntityTooLarge},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			res := rawRequest(t, addr, c.req)
			if res.StatusCode != c.want {
				t.Errorf("status %d, want %d", res.StatusCode, c.want)
			}
			o.none(t)
		})
	}
}

func TestForwardErrors(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			t.Run("deadline is 504", func(t *testing.T) {
				silent := newRawOrigin(t, func(c net.Conn, _ seen) bool {
					time.Sleep(2 * time.Second)
					return false
				})
				e := newEdgeFront(t, Options{Origin: silent.URL, Token: "tok", Timeout: 200 * time.Millisecond})
				res, err := client.Do(newReq(t, p.method, e.URL+"/x", p.body))
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, res)
				if res.StatusCode != http.StatusGatewayTimeout {
					t.Errorf("status %d, want 504", res.StatusCode)
				}
			})
			t.Run("refused is 502", func(t *testing.T) {
				ln, _ := net.Listen("tcp", "127.0.0.1:0")
				dead := mustURL(t, "http://"+ln.Addr().String())
				ln.Close()
				e := newEdgeFront(t, Options{Origin: dead, Token: "tok"})
				res, err := client.Do(newReq(t, p.method, e.URL+"/x", p.body))
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, res)
				if res.StatusCode != http.StatusBadGateway {
					t.Errorf("status %d, want 502", res.StatusCode)
				}
			})
			t.Run("garbage is 502", func(t *testing.T) {
				bad := newRawOrigin(t, func(c net.Conn, _ seen) bool {
					io.WriteString(c, "SSH-2.0-OpenSSH\r\n\r\n")
					return false
				})
				e := newEdgeFront(t, Options{Origin: bad.URL, Token: "tok"})
				res, err := client.Do(newReq(t, p.method, e.URL+"/x", p.body))
				if err != nil {
					t.Fatal(err)
				}
				readAll(t, res)
				if res.StatusCode != http.StatusBadGateway {
					t.Errorf("status %d, want 502", res.StatusCode)
				}
			})
			t.Run("cut body aborts the client connection", func(t *testing.T) {
				cut := newRawOrigin(t, func(c net.Conn, _ seen) bool {
					io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\nonly this")
					return false
				})
				e := newEdgeFront(t, Options{Origin: cut.URL, Token: "tok"})
				res, err := client.Do(newReq(t, p.method, e.URL+"/x", p.body))
				if err != nil {
					t.Fatal(err)
				}
				if _, err := io.ReadAll(res.Body); err == nil {
					t.Error("the client read a cut response as complete")
				}
				res.Body.Close()
			})
		})
	}
}

func TestForwardReusesConnections(t *testing.T) {
	o := newRawOrigin(t, okResponse)
	e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
	for i := range 5 {
		method := http.MethodGet
		if i == 2 {
			method = http.MethodHead
		}
		res, err := client.Do(newReq(t, method, e.URL+"/x", ""))
		if err != nil {
			t.Fatal(err)
		}
		readAll(t, res)
		if res.StatusCode != 200 {
			t.Fatalf("status %d", res.StatusCode)
		}
		o.next(t)
	}
	if n := o.conns.Load(); n != 1 {
		t.Errorf("%d connections to the origin for 5 sequential requests, want 1", n)
	}
}

func TestForwardRetriesStaleConnection(t *testing.T) {
	// The origin closes every connection after one response without
	// saying so: the next request on the kept connection finds it closed
	// and must be retried on a new one (it is a GET: idempotent).
	o := newRawOrigin(t, func(c net.Conn, s seen) bool {
		okResponse(c, s)
		return false
	})
	e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
	for range 3 {
		res, err := client.Get(e.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, res); res.StatusCode != 200 || body != "ok" {
			t.Fatalf("status %d, body %q", res.StatusCode, body)
		}
		o.next(t)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

func TestForwardHonoursConnectionClose(t *testing.T) {
	o := newRawOrigin(t, func(c net.Conn, _ seen) bool {
		io.WriteString(c, "HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok")
		return false
	})
	e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
	for range 3 {
		res, err := client.Get(e.URL + "/x")
		if err != nil {
			t.Fatal(err)
		}
		if body := readAll(t, res); res.StatusCode != 200 || body != "ok" || res.Header.Get("Connection") != "" {
			t.Fatalf("status %d, body %q, header %v", res.StatusCode, body, res.Header)
		}
		o.next(t)
	}
	if n := o.conns.Load(); n != 3 {
		t.Errorf("%d connections for 3 requests answered with Connection: close, want 3", n)
	}
}

func TestForwardCancelsWhenTheClientLeaves(t *testing.T) {
	for _, p := range paths {
		t.Run(p.name, func(t *testing.T) {
			// The origin never answers; it reports how long the gateway
			// kept the connection open after the client gave up.
			closedAfter := make(chan time.Duration, 1)
			o := newRawOrigin(t, func(c net.Conn, _ seen) bool {
				start := time.Now()
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				_, _ = c.Read(make([]byte, 1)) // returns when the gateway closes
				closedAfter <- time.Since(start)
				return false
			})
			e := newEdgeFront(t, Options{Origin: o.URL, Token: "tok"})
			ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
			defer cancel()
			r := newReq(t, p.method, e.URL+"/x", p.body).WithContext(ctx)
			if res, err := client.Do(r); err == nil {
				res.Body.Close()
				t.Fatalf("status %d for a request the client cancelled", res.StatusCode)
			}
			select {
			case d := <-closedAfter:
				if d > 4*time.Second {
					t.Errorf("the gateway kept the origin's connection %v after the client left", d)
				}
			case <-time.After(6 * time.Second):
				t.Fatal("the origin's connection stayed open")
			}
		})
	}
}

// An identity header the request already holds with the identity's value
// (a WASM authorizer sets its headers on the request itself) is left as it
// is; a different value, or several, is replaced by the identity's.
func TestSetHeadersKeepsIdentityAlreadyOnTheRequest(t *testing.T) {
	f, err := New(Options{Origin: &url.URL{Scheme: "http", Host: "127.0.0.1:1"}, Token: "tok", Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	r, _ := http.NewRequest(http.MethodGet, "http://api.example.test/x", nil)
	same := []string{"alice"}
	r.Header["X-User"] = same
	r.Header["X-Role"] = []string{"admin"}
	r.Header["X-Team"] = []string{"a", "b"}
	ex := testExchange(r)
	ex.Identity.SetHeader("X-User", "alice")
	ex.Identity.SetHeader("X-Role", "reader")
	ex.Identity.SetHeader("X-Team", "a")
	ex.Identity.SetHeader("X-New", "1")
	f.setHeaders(r.Header, ex)
	if got := r.Header["X-User"]; len(got) != 1 || &got[0] != &same[0] {
		t.Errorf("X-User was replaced: %q", got)
	}
	for k, want := range map[string]string{"X-Role": "reader", "X-Team": "a", "X-New": "1"} {
		if got := r.Header[k]; len(got) != 1 || cap(got) != 1 || got[0] != want {
			t.Errorf("%s: %q (cap %d), want [%q] with capacity 1", k, got, cap(got), want)
		}
	}
}
