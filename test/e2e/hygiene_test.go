package e2e

// Request hygiene through the real binary: a `portico origin` and a
// `portico edge` process on loopback, in front of a raw TCP recorder that
// keeps every byte the backend received. Clients are raw TCP and TLS
// connections (every byte is the attacker's choice) on both of the edge's
// listeners: plain HTTP, which has the HTTP/1 framing guard, and HTTPS,
// where Go's server needs the *tls.Conn itself and there is no guard (the
// edge answers and closes instead: edge/hygiene/README.md). curl covers what
// a real client does (HTTP/2, absolute form through a proxy, h2c upgrade).
//
// Numbers in brackets refer to shared/notes/security-checklist.md.
//
// What the edge does not answer itself: Go's HTTP/1 server refuses some
// heads before any handler runs (conflicting lengths, bad header syntax,
// header blocks over http.Server.MaxHeaderBytes plus Go's 4 KiB slack). Those
// answers are Go's plain text, without a request ID; the cases below mark
// them goAnswers and check the status, the close and that nothing reached
// the backend.

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	// hygIOTimeout is the deadline of every raw connection, client and
	// backend side.
	hygIOTimeout = 10 * time.Second
	// hygQuiet is how long the recorder must have had no connection open
	// and no new one before what it saw counts as final. A request the
	// edge aborted (a bad chunk, a body over the limit) may still be
	// reaching the backend through the origin when the client has its
	// answer.
	hygQuiet = 200 * time.Millisecond
	hygHost  = "Host: api.example.test\r\n"
	// hygProbe is answered by the edge itself (501, nothing forwarded):
	// if it is answered, the connection was kept open.
	hygProbe = "TRACE /__probe HTTP/1.1\r\n" + hygHost + "\r\n"
	// hygBackendBody is the recorder's fixed answer.
	hygBackendBody = "recorded"
)

// recorded is one request as the backend read it off the wire.
type recorded struct {
	Method, Target, Proto, Host string
	Header                      http.Header
	Body                        []byte
	Complete                    bool      // the head and the whole body arrived
	Raw                         []byte    // this request's bytes as received
	At                          time.Time // when its connection was accepted
}

// recorder is a raw TCP backend: it parses each request only to know where
// it ends, records its bytes, and answers a fixed 200 with Connection:
// close. It keeps reading after answering, so that anything else the
// origin writes on the connection is recorded too.
type recorder struct {
	ln net.Listener
	wg sync.WaitGroup

	mu     sync.Mutex
	reqs   []recorded
	conns  int
	active int
	last   time.Time // last accept or close
}

func startRecorder(t *testing.T) *recorder {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &recorder{ln: ln, last: time.Now()}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			r.mu.Lock()
			r.conns++
			r.active++
			r.last = time.Now()
			r.mu.Unlock()
			r.wg.Add(1)
			go func() {
				defer r.wg.Done()
				r.serve(c)
				r.mu.Lock()
				r.active--
				r.last = time.Now()
				r.mu.Unlock()
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		r.wg.Wait()
	})
	return r
}

func (r *recorder) addr() string { return r.ln.Addr().String() }

func (r *recorder) serve(c net.Conn) {
	defer c.Close()
	at := time.Now()
	var raw bytes.Buffer
	br := bufio.NewReader(io.TeeReader(c, &raw))
	consumed := func() int { return raw.Len() - br.Buffered() }
	for range 64 {
		_ = c.SetDeadline(time.Now().Add(hygIOTimeout))
		start := consumed()
		req, err := http.ReadRequest(br)
		if err != nil {
			// Bytes that do not make a request head: record them.
			if raw.Len() > start {
				r.add(recorded{Method: "(incomplete head)", Raw: bytes.Clone(raw.Bytes()[start:]), At: at})
			}
			return
		}
		body, err := io.ReadAll(req.Body)
		r.add(recorded{
			Method: req.Method, Target: req.RequestURI, Proto: req.Proto, Host: req.Host,
			Header: req.Header, Body: body, Complete: err == nil,
			Raw: bytes.Clone(raw.Bytes()[start:consumed()]), At: at,
		})
		if err != nil {
			return
		}
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: "+
			strconv.Itoa(len(hygBackendBody))+"\r\nConnection: close\r\n\r\n"+hygBackendBody); err != nil {
			return
		}
	}
}

func (r *recorder) add(rec recorded) {
	r.mu.Lock()
	r.reqs = append(r.reqs, rec)
	r.mu.Unlock()
}

// backendView is what the backend saw during one case.
type backendView struct {
	reqs  []recorded
	conns int
	addr  string // the recorder's address: the Host the gateway must send
	proto string // "http" or "https": the listener the client used
}

// take waits (bounded) until the recorder is quiet, returns what it saw
// since the last take and forgets it. Quiet means no connection open, and
// none accepted or closed for hygQuiet, counted from the later of the last
// such event and answered (when the client had its answer).
func (r *recorder) take(t *testing.T, answered time.Time) backendView {
	t.Helper()
	deadline := time.Now().Add(hygIOTimeout)
	for {
		r.mu.Lock()
		quiet := r.active == 0 && time.Since(r.last) >= hygQuiet && time.Since(answered) >= hygQuiet
		if quiet {
			v := backendView{reqs: r.reqs, conns: r.conns, addr: r.addr()}
			r.reqs, r.conns = nil, 0
			r.mu.Unlock()
			return v
		}
		active := r.active
		r.mu.Unlock()
		if time.Now().After(deadline) {
			t.Fatalf("the backend still has %d connections open after %s", active, hygIOTimeout)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// hygEnv is an origin and an edge serving testdata/hygiene in front of a
// recorder.
type hygEnv struct {
	o   *origin
	e   *edgeNode
	rec *recorder
	tls *tls.Config // HTTP/1.1 only, trusting the edge's dev CA
}

func newHygieneEnv(t *testing.T) *hygEnv {
	t.Helper()
	env := &hygEnv{rec: startRecorder(t)}
	env.o = startOrigin(t, "")
	cfg := strings.ReplaceAll(readFile(t, "testdata/hygiene/portico.yaml.tmpl"), "BACKEND", env.rec.addr())
	docs := map[string]string{"api.yaml": readFile(t, "testdata/hygiene/api.yaml")}
	if code, body := env.o.apply(t, cfg, docs); code != 200 {
		t.Fatalf("apply testdata/hygiene: %d %s", code, body)
	}
	env.e = startEdge(t, env.o, "")
	eventually(t, 10*time.Second, func() error {
		if r := env.e.do(t, "GET", "api.example.test", "/x", nil, nil); r.StatusCode != 200 {
			return fmt.Errorf("edge not serving yet: %d %s", r.StatusCode, r.Body)
		}
		return nil
	})
	ca, err := os.ReadFile(filepath.Join(env.e.DataDir, "dev-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	env.tls = &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", NextProtos: []string{"http/1.1"}}
	env.rec.take(t, time.Now()) // the readiness requests
	return env
}

// hygListener is one of the edge's HTTP/1 listeners.
type hygListener struct {
	name  string // subtest name
	proto string // X-Forwarded-Proto the backend must get
	dial  func(t *testing.T) net.Conn
}

func (env *hygEnv) listeners() []hygListener {
	return []hygListener{
		{name: "http", proto: "http", dial: func(t *testing.T) net.Conn {
			t.Helper()
			c, err := net.DialTimeout("tcp", env.e.HTTP, hygIOTimeout)
			if err != nil {
				t.Fatal(err)
			}
			return c
		}},
		{name: "https", proto: "https", dial: func(t *testing.T) net.Conn {
			t.Helper()
			d := &tls.Dialer{NetDialer: &net.Dialer{Timeout: hygIOTimeout}, Config: env.tls}
			c, err := d.Dial("tcp", env.e.HTTPS)
			if err != nil {
				t.Fatal(err)
			}
			if p := c.(*tls.Conn).ConnectionState().NegotiatedProtocol; p != "" && p != "http/1.1" {
				t.Fatalf("TLS negotiated %q, want HTTP/1.1", p)
			}
			return c
		}},
	}
}

// hygReply is one final response the client read.
type hygReply struct {
	status  int
	proto   string
	header  http.Header
	body    string
	interim []int // 1xx responses before it
}

func (r hygReply) String() string { return fmt.Sprintf("%d %q", r.status, r.body) }

// exchange writes raw on a new connection (concurrently with reading, so
// that a large body cannot block the test) and reads up to n responses.
// Then it finds out whether the edge closed the connection: by waiting
// for EOF when a close is expected, else by sending the probe.
func exchange(t *testing.T, l hygListener, raw string, n int, wantClosed bool) (replies []hygReply, closed bool) {
	t.Helper()
	c := l.dial(t)
	_ = c.SetDeadline(time.Now().Add(hygIOTimeout))
	var werr error
	wrote := make(chan struct{})
	go func() {
		_, werr = io.WriteString(c, raw)
		close(wrote)
	}()
	defer func() {
		c.Close() // also ends a write the edge stopped reading
		<-wrote
	}()
	br := bufio.NewReader(c)
	read := func() (hygReply, error) {
		var interim []int
		for range 8 {
			res, err := http.ReadResponse(br, nil)
			if err != nil {
				return hygReply{}, err
			}
			if res.StatusCode < 200 && res.StatusCode != http.StatusSwitchingProtocols {
				interim = append(interim, res.StatusCode)
				continue
			}
			b, err := io.ReadAll(res.Body)
			if err != nil {
				return hygReply{}, fmt.Errorf("reading the body of a %d response: %w", res.StatusCode, err)
			}
			return hygReply{status: res.StatusCode, proto: res.Proto, header: res.Header, body: string(b), interim: interim}, nil
		}
		return hygReply{}, fmt.Errorf("more than 8 interim responses: %v", interim)
	}
	for range n {
		r, err := read()
		if err != nil {
			if errors.Is(err, os.ErrDeadlineExceeded) {
				t.Fatalf("no response within %s (got %v)", hygIOTimeout, replies)
			}
			return replies, true
		}
		replies = append(replies, r)
	}
	if wantClosed {
		_, err := br.ReadByte()
		switch {
		case err == nil:
			t.Fatalf("the edge sent more than %d responses: %v", n, replies)
		case errors.Is(err, os.ErrDeadlineExceeded):
			return replies, false
		}
		return replies, true
	}
	<-wrote
	if werr != nil {
		return replies, true
	}
	if _, err := io.WriteString(c, hygProbe); err != nil {
		return replies, true
	}
	r, err := read()
	if err != nil {
		return replies, true
	}
	if r.status != http.StatusNotImplemented {
		t.Fatalf("the probe got %v: the edge sent more than %d responses", r, n)
	}
	return replies, false
}

// hygWant is what one case must produce on one listener.
type hygWant struct {
	statuses []int
	closed   bool
	// goAnswers: Go's HTTP/1 server refuses the head before the edge's
	// handler runs; its answer is plain text without a request ID.
	goAnswers bool
	backend   func(t *testing.T, b backendView, replies []hygReply)
}

type hygCase struct {
	name string
	raw  string
	want hygWant
}

func runHygieneCases(t *testing.T, env *hygEnv, cases []hygCase) {
	t.Helper()
	for _, tc := range cases {
		for _, l := range env.listeners() {
			want := tc.want
			t.Run(tc.name+"/"+l.name, func(t *testing.T) {
				if leftover := env.rec.take(t, time.Time{}); len(leftover.reqs) > 0 || leftover.conns > 0 {
					t.Fatalf("at %s the backend had seen %d requests on %d connections since the last case:%s",
						time.Now().Format("15:04:05.000"), len(leftover.reqs), leftover.conns, describe(leftover.reqs))
				}
				taken := false
				t.Cleanup(func() {
					// A case that stopped early: what it sent still
					// belongs to it, not to the next case.
					if !taken {
						if v := env.rec.take(t, time.Now()); len(v.reqs) > 0 {
							t.Errorf("the backend saw:%s", describe(v.reqs))
						}
					}
				})
				replies, closed := exchange(t, l, tc.raw, max(len(want.statuses), 1), want.closed)
				answered := time.Now()
				if got := hygStatuses(replies); !slices.Equal(got, want.statuses) {
					t.Errorf("client got %v, want statuses %v", replies, want.statuses)
				}
				if closed != want.closed {
					t.Errorf("connection closed = %v, want %v", closed, want.closed)
				}
				for _, r := range replies {
					checkReply(t, r, want.goAnswers)
				}
				view := env.rec.take(t, answered)
				taken = true
				view.proto = l.proto
				want.backend(t, view, replies)
			})
		}
	}
}

// checkReply checks that an error is Portico's JSON with a request ID, and
// that a success is the backend's answer with one.
func checkReply(t *testing.T, r hygReply, goAnswers bool) {
	t.Helper()
	if goAnswers {
		if r.status < 400 {
			t.Errorf("Go's server was expected to refuse the request; got %v", r)
		}
		return
	}
	if r.header.Get("X-Request-Id") == "" {
		t.Errorf("%d response without X-Request-Id", r.status)
	}
	if r.status < 400 {
		if r.status == 200 && r.body != hygBackendBody {
			t.Errorf("200 with body %q, want the backend's %q", r.body, hygBackendBody)
		}
		return
	}
	if ct := r.header.Get("Content-Type"); ct != "application/json" {
		t.Errorf("%d response has Content-Type %q, want application/json", r.status, ct)
	}
	var e struct {
		Message *string `json:"message"`
	}
	if err := json.Unmarshal([]byte(r.body), &e); err != nil || e.Message == nil || *e.Message == "" {
		t.Errorf("%d response body is not a Portico error {\"message\": ...}: %q", r.status, r.body)
	}
}

func hygStatuses(rs []hygReply) []int {
	var out []int
	for _, r := range rs {
		out = append(out, r.status)
	}
	return out
}

// nothingForwarded: the backend saw no connection at all.
func nothingForwarded(t *testing.T, b backendView, _ []hygReply) {
	t.Helper()
	if len(b.reqs) != 0 || b.conns != 0 {
		t.Errorf("backend saw %d requests on %d connections, want none: %s", len(b.reqs), b.conns, describe(b.reqs))
	}
}

// noCompleteRequest: whatever reached the backend, no request was whole.
func noCompleteRequest(t *testing.T, b backendView, _ []hygReply) {
	t.Helper()
	for _, r := range b.reqs {
		if r.Complete {
			t.Errorf("backend received a complete request: %s", describe([]recorded{r}))
		}
	}
}

func describe(rs []recorded) string {
	var sb strings.Builder
	for _, r := range rs {
		raw := r.Raw
		if len(raw) > 600 {
			raw = append(bytes.Clone(raw[:600]), "..."...)
		}
		fmt.Fprintf(&sb, "\n  at %s complete=%v body=%d bytes raw=%q", r.At.Format("15:04:05.000"), r.Complete, len(r.Body), raw)
	}
	return sb.String()
}

// forwarded: exactly one complete request reached the backend, through
// route (its X-Route), with this method and target, for the domain host,
// with the gateway's Host and forwarding headers and no internal ones.
func forwarded(route, method, target string, more ...func(*testing.T, recorded)) func(*testing.T, backendView, []hygReply) {
	return forwardedFor("api.example.test", route, method, target, more...)
}

var hygSites = map[string]string{"api.example.test": "api", "other.example": "other"}

func forwardedFor(host, route, method, target string, more ...func(*testing.T, recorded)) func(*testing.T, backendView, []hygReply) {
	return func(t *testing.T, b backendView, replies []hygReply) {
		t.Helper()
		if len(b.reqs) != 1 || !b.reqs[0].Complete || b.conns != 1 {
			t.Fatalf("backend saw %d requests on %d connections, want exactly %s %s:%s", len(b.reqs), b.conns, method, target, describe(b.reqs))
		}
		r := b.reqs[0]
		if r.Method != method || r.Target != target {
			t.Errorf("backend saw %s %s, want %s %s", r.Method, r.Target, method, target)
		}
		want := map[string]string{
			"X-Route":           route,
			"X-Site":            hygSites[host],
			"X-Forwarded-For":   "127.0.0.1",
			"X-Forwarded-Host":  host,
			"X-Forwarded-Proto": b.proto,
			"Forwarded":         fmt.Sprintf("for=127.0.0.1;host=%q;proto=%s", host, b.proto),
		}
		if len(replies) > 0 {
			want["X-Request-Id"] = replies[0].header.Get("X-Request-Id")
		}
		for name, v := range want {
			if got := r.Header.Values(name); len(got) != 1 || got[0] != v {
				t.Errorf("backend saw %s = %q, want %q", name, got, v)
			}
		}
		if r.Host != b.addr {
			t.Errorf("backend saw Host %q, want the gateway's %q (the integration's target)", r.Host, b.addr)
		}
		for name := range r.Header {
			l := strings.ToLower(name)
			if strings.HasPrefix(l, "portico-") || strings.HasPrefix(l, "x-portico-") {
				t.Errorf("backend received internal header %s: %q", name, r.Header[name])
			}
		}
		for _, f := range more {
			f(t, r)
		}
	}
}

// header checks one header at the backend; want "" means absent.
func header(name, want string) func(*testing.T, recorded) {
	return func(t *testing.T, r recorded) {
		t.Helper()
		got := r.Header.Values(name)
		if want == "" && len(got) != 0 || want != "" && (len(got) != 1 || got[0] != want) {
			t.Errorf("backend saw %s = %q, want %q", name, got, want)
		}
	}
}

func body(want string) func(*testing.T, recorded) {
	return func(t *testing.T, r recorded) {
		t.Helper()
		if string(r.Body) != want {
			t.Errorf("backend saw body %q, want %q", r.Body, want)
		}
	}
}

// oneFraming: the head the backend got carries one framing, never both
// Content-Length and Transfer-Encoding.
func oneFraming(t *testing.T, r recorded) {
	t.Helper()
	head, _, _ := bytes.Cut(r.Raw, []byte("\r\n\r\n"))
	var cl, te int
	for _, line := range strings.Split(string(head), "\r\n")[1:] {
		name, _, _ := strings.Cut(line, ":")
		switch strings.ToLower(strings.TrimSpace(name)) {
		case "content-length":
			cl++
		case "transfer-encoding":
			te++
		}
	}
	if cl+te > 1 {
		t.Errorf("backend got a head with %d Content-Length and %d Transfer-Encoding fields:\n%s", cl, te, head)
	}
}

// nothingMentions: no byte the backend received holds s.
func nothingMentions(s string) func(*testing.T, backendView, []hygReply) {
	return func(t *testing.T, b backendView, _ []hygReply) {
		t.Helper()
		for _, r := range b.reqs {
			if bytes.Contains(r.Raw, []byte(s)) {
				t.Errorf("backend received %q:%s", s, describe([]recorded{r}))
			}
		}
	}
}

func both(fs ...func(*testing.T, backendView, []hygReply)) func(*testing.T, backendView, []hygReply) {
	return func(t *testing.T, b backendView, r []hygReply) {
		t.Helper()
		for _, f := range fs {
			f(t, b, r)
		}
	}
}

func get(target string, headers ...string) string {
	return "GET " + target + " HTTP/1.1\r\n" + hygHost + strings.Join(headers, "") + "\r\n"
}

// Section C [20-22]: the path routing sees is the path the backend gets.
func TestHygienePaths(t *testing.T) {
	env := newHygieneEnv(t)
	ok := func(target, route, want string) hygCase {
		return hygCase{name: target, raw: get(target), want: hygWant{statuses: []int{200}, backend: forwarded(route, "GET", want)}}
	}
	refused := func(target string, status int) hygCase {
		return hygCase{name: target, raw: get(target), want: hygWant{statuses: []int{status}, backend: nothingForwarded}}
	}
	runHygieneCases(t, env, []hygCase{
		// [20] dot segments and repeated slashes: /admin's own route.
		ok("/admin", "admin", "/admin"),
		ok("/ok/y", "ok", "/ok/y"),
		ok("/ok/../admin", "admin", "/admin"),
		ok("/./admin", "admin", "/admin"),
		ok("//admin", "admin", "/admin"),
		ok("/ok/%2e%2e/admin", "admin", "/admin"),
		ok("/ok/%2E%2E/admin?x=1", "admin", "/admin?x=1"),
		ok("/ok/.%2e/admin", "admin", "/admin"),
		ok("/../../admin", "admin", "/admin"),
		ok("/ok//y", "ok", "/ok/y"),
		// [22] unreserved characters are decoded.
		ok("/%61dmin", "admin", "/admin"),
		ok("/ok/%79", "ok", "/ok/y"),
		// A greedy parameter carries the normalised path to the backend;
		// escapes that are data stay escapes.
		ok("/files/a/./b/../c", "files", "/files/a/c"),
		ok("/files/a//b/%2e/c", "files", "/files/a/b/c"),
		ok("/files/a%3Fb%23c%20d", "files", "/files/a%3Fb%23c%20d"),
		ok("/files/a%3fb", "files", "/files/a%3Fb"),
		// [21] encoded slash and backslash, raw backslash.
		refused("/x%2F..%2Fadmin", 400),
		refused("/ok/..%2Fadmin", 400),
		refused("/admin%5c..", 400),
		refused("/ok/%5C..%5Cadmin", 400),
		refused(`/ok\..\admin`, 400),
		// [22] matrix parameters, NUL, double encoding.
		refused("/admin;x", 400),
		refused("/user/..;x=y/admin", 400),
		refused("/ok/..;/admin", 400),
		refused("/admin%00", 400),
		refused("/admin%00.json", 400),
		refused("/ok/%252e%252e/admin", 400),
		// Routing is case-sensitive: /ADMIN is not /admin.
		refused("/ADMIN", 404),
		refused("/Admin", 404),
		refused("/%41dmin", 404),
		refused("/ok/../ADMIN", 404),
	})
}

// [14] absolute form against Host; unknown hosts.
func TestHygieneHost(t *testing.T) {
	env := newHygieneEnv(t)
	runHygieneCases(t, env, []hygCase{
		{
			name: "absolute form wins over Host",
			raw:  "GET http://other.example/x HTTP/1.1\r\n" + hygHost + "\r\n",
			want: hygWant{statuses: []int{200}, backend: forwardedFor("other.example", "x", "GET", "/x")},
		},
		{
			name: "absolute form is canonicalised",
			raw:  "GET http://OTHER.Example.:80/x?q=1 HTTP/1.1\r\n" + hygHost + "\r\n",
			want: hygWant{statuses: []int{200}, backend: forwardedFor("other.example", "x", "GET", "/x?q=1")},
		},
		{
			name: "absolute form with https scheme",
			raw:  "GET https://api.example.test/admin HTTP/1.1\r\nHost: other.example\r\n\r\n",
			want: hygWant{statuses: []int{200}, backend: forwardedFor("api.example.test", "admin", "GET", "/admin")},
		},
		{
			name: "Host is canonicalised",
			raw:  "GET /x HTTP/1.1\r\nHost: API.Example.TEST.:443\r\n\r\n",
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x")},
		},
		{
			name: "unknown Host",
			raw:  "GET /x HTTP/1.1\r\nHost: unknown.example.test\r\n\r\n",
			want: hygWant{statuses: []int{404}, backend: nothingForwarded},
		},
		{
			name: "unknown absolute-form host with a known Host",
			raw:  "GET http://internal.svc/admin HTTP/1.1\r\n" + hygHost + "\r\n",
			want: hygWant{statuses: []int{404}, backend: nothingForwarded},
		},
		{
			name: "absolute form with user info",
			raw:  "GET http://user@api.example.test/x HTTP/1.1\r\n" + hygHost + "\r\n",
			want: hygWant{statuses: []int{400}, backend: nothingForwarded},
		},
		{
			name: "absolute form with another scheme",
			raw:  "GET ftp://api.example.test/x HTTP/1.1\r\n" + hygHost + "\r\n",
			want: hygWant{statuses: []int{400}, backend: nothingForwarded},
		},
		{
			name: "empty Host",
			raw:  "GET /x HTTP/1.1\r\nHost: \r\n\r\n",
			want: hygWant{statuses: []int{400}, backend: nothingForwarded},
		},
		{
			name: "two Host headers",
			raw:  "GET /x HTTP/1.1\r\n" + hygHost + "Host: other.example\r\n\r\n",
			want: hygWant{statuses: []int{400}, closed: true, goAnswers: true, backend: nothingForwarded},
		},
	})
}

// [9-13] framing on both listeners: edge/listen hands Go's HTTP/1 server
// the decrypted TLS stream through the framing guard too.
func TestHygieneFraming(t *testing.T) {
	env := newHygieneEnv(t)
	post := func(headers, rest string) string {
		return "POST /upload HTTP/1.1\r\n" + hygHost + headers + "\r\n" + rest
	}
	goRefuses := func(status int) hygWant {
		return hygWant{statuses: []int{status}, closed: true, goAnswers: true, backend: nothingForwarded}
	}
	guardRefuses := hygWant{statuses: []int{400}, closed: true, backend: nothingForwarded}
	badChunk := hygWant{statuses: []int{400}, closed: true, backend: noCompleteRequest}
	runHygieneCases(t, env, []hygCase{
		{
			name: "chunked body",
			raw:  post("Transfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("upload", "POST", "/upload", body("hello"), oneFraming)},
		},
		{
			name: "pipelined requests",
			raw:  post("Content-Length: 5\r\n", "hello") + get("/admin"),
			want: hygWant{statuses: []int{200, 200}, backend: func(t *testing.T, b backendView, _ []hygReply) {
				if len(b.reqs) != 2 || b.reqs[0].Target != "/upload" || string(b.reqs[0].Body) != "hello" ||
					b.reqs[1].Target != "/admin" || b.reqs[1].Header.Get("X-Route") != "admin" {
					t.Errorf("backend saw %s", describe(b.reqs))
				}
			}},
		},
		// [9] CL.TE with a pipelined GET /admin behind the chunked body.
		{
			name: "B9 Content-Length and Transfer-Encoding",
			raw:  post("Content-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n") + get("/admin"),
			want: guardRefuses,
		},
		{
			name: "B9 Transfer-Encoding and Content-Length",
			raw:  post("Transfer-Encoding: chunked\r\nContent-Length: 3\r\n", "8\r\nSMUGGLED\r\n0\r\n\r\n") + get("/admin"),
			want: guardRefuses,
		},
		// The same with Expect: 100-continue, which makes the origin send
		// 100 Continue through the edge.
		{
			name: "B9 Content-Length and Transfer-Encoding with Expect",
			raw:  post("Expect: 100-continue\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n") + get("/admin"),
			want: guardRefuses,
		},
		{
			name: "chunked body with Expect",
			raw:  post("Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n", "5\r\nhello\r\n0\r\n\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("upload", "POST", "/upload", body("hello"), oneFraming)},
		},
		// [10] conflicting and obfuscated lengths: Go refuses them.
		{name: "B10 differing Content-Length", raw: post("Content-Length: 5\r\nContent-Length: 6\r\n", "hello!"), want: goRefuses(400)},
		{name: "B10 Content-Length list", raw: post("Content-Length: 5, 5\r\n", "hello"), want: goRefuses(400)},
		{name: "B10 Content-Length +5", raw: post("Content-Length: +5\r\n", "hello"), want: goRefuses(400)},
		{name: "B10 Content-Length -1", raw: post("Content-Length: -1\r\n", "hello"), want: goRefuses(400)},
		{name: "B10 empty Content-Length", raw: post("Content-Length: \r\n", ""), want: goRefuses(400)},
		{name: "B10 TE chunked, identity", raw: post("Transfer-Encoding: chunked, identity\r\n", "0\r\n\r\n"), want: goRefuses(501)},
		{name: "B10 TE ,chunked", raw: post("Transfer-Encoding: ,chunked\r\n", "0\r\n\r\n"), want: goRefuses(501)},
		{name: "B10 TE xchunked", raw: post("Transfer-Encoding: xchunked\r\n", "0\r\n\r\n"), want: goRefuses(501)},
		{name: "B10 TE vertical tab", raw: post("Transfer-Encoding:\x0bchunked\r\n", "0\r\n\r\n"), want: goRefuses(400)},
		{name: "B10 duplicate TE", raw: post("Transfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n", "0\r\n\r\n"), want: goRefuses(501)},
		{
			// Go joins folded lines: only the guard sees the fold.
			name: "B10 folded Transfer-Encoding",
			raw:  post("Transfer-Encoding:\r\n chunked\r\n", "0\r\n\r\n") + get("/admin"),
			want: guardRefuses,
		},
		// [11] header syntax.
		{name: "B11 space before colon", raw: post("Content-Length : 5\r\n", "hello"), want: goRefuses(400)},
		{name: "B11 NUL in a value", raw: get("/x", "X-A: a\x00b\r\n"), want: goRefuses(400)},
		{name: "B11 bare CR in a value", raw: get("/x", "X-A: a\rb\r\n"), want: goRefuses(400)},
		{
			// RFC 9112 2.2 lets a recipient take a bare LF as a line
			// end; Go does, and the origin and backend get CRLF lines
			// with the framing Go read.
			name: "B11 bare LF line ends",
			raw:  "POST /upload HTTP/1.1\n" + hygHost + "X-A: a\nContent-Length: 5\n\nhello",
			want: hygWant{statuses: []int{200}, backend: forwarded("upload", "POST", "/upload", header("X-A", "a"), body("hello"), oneFraming)},
		},
		{name: "B11 header without colon", raw: get("/x", "X-A a\r\n"), want: goRefuses(400)},
		{name: "B11 space in a header name", raw: get("/x", "X A: a\r\n"), want: goRefuses(400)},
		{
			name: "B11 folded header",
			raw:  get("/x", "X-A: a\r\n b\r\n"),
			want: guardRefuses,
		},
		// [12] malformed chunked bodies: 400 (not 502), and no complete
		// request at the backend.
		{name: "B12 chunk size 0x5", raw: post("Transfer-Encoding: chunked\r\n", "0x5\r\nhello\r\n0\r\n\r\n"), want: badChunk},
		{name: "B12 chunk size +5", raw: post("Transfer-Encoding: chunked\r\n", "+5\r\nhello\r\n0\r\n\r\n"), want: badChunk},
		{name: "B12 bare CR in a chunk line", raw: post("Transfer-Encoding: chunked\r\n", "2\r\r;a\r\nhi\r\n0\r\n\r\n"), want: badChunk},
		{name: "B12 chunk longer than its size", raw: post("Transfer-Encoding: chunked\r\n", "2\r\nhello\r\n0\r\n\r\n"), want: badChunk},
		{
			// A valid first chunk large enough to be forwarded, then a bad
			// one: the request is cut before its last chunk.
			name: "B12 bad chunk after forwarded data",
			raw:  post("Transfer-Encoding: chunked\r\n", "8000\r\n"+strings.Repeat("d", 0x8000)+"\r\nzz\r\nhi\r\n0\r\n\r\n"),
			want: badChunk,
		},
		// [13] HTTP/1.0 with Transfer-Encoding: Go ignores the header and
		// would read the body as the next request.
		{
			name: "B13 HTTP/1.0 with Transfer-Encoding",
			raw: "POST /upload HTTP/1.0\r\n" + hygHost + "Connection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"1d\r\nGET /admin HTTP/1.0\r\nX: \r\n\r\n\r\n0\r\n\r\n",
			want: guardRefuses,
		},
		// Versions.
		{name: "HTTP/1.2", raw: "GET /x HTTP/1.2\r\n" + hygHost + "\r\n", want: hygWant{statuses: []int{505}, closed: true, backend: nothingForwarded}},
	})
}

// [15-17, 19] and [23]: only headers the gateway can vouch for reach the
// backend.
func TestHygieneHeaders(t *testing.T) {
	env := newHygieneEnv(t)
	runHygieneCases(t, env, []hygCase{
		{
			name: "B15 Connection names gateway headers",
			raw: get("/x", "Connection: close, X-Forwarded-For, X-Forwarded-Host, X-Forwarded-Proto, Forwarded, X-Request-Id, X-Route, X-Site\r\n",
				"X-Forwarded-For: 10.6.6.6\r\n"),
			want: hygWant{statuses: []int{200}, closed: true, backend: forwarded("x", "GET", "/x", header("Connection", ""))},
		},
		{
			name: "B15 Connection keep-alive names gateway headers",
			raw:  get("/x", "Connection: keep-alive, X-Forwarded-For, X-Route, X-Request-Id\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x", header("Connection", ""))},
		},
		{
			name: "B15 hop-by-hop headers",
			raw: get("/x", "Connection: keep-alive, X-Secret-Hop\r\nX-Secret-Hop: 1\r\nKeep-Alive: timeout=5\r\n",
				"Proxy-Connection: keep-alive\r\nTE: trailers\r\nTrailer: X-T\r\nProxy-Authorization: Basic eDp5\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x",
				header("X-Secret-Hop", ""), header("Keep-Alive", ""), header("Proxy-Connection", ""),
				header("Te", ""), header("Trailer", ""), header("Proxy-Authorization", ""))},
		},
		{
			name: "B16 spoofed forwarding, identity and internal headers",
			raw: get("/x",
				"X-Forwarded-For: 10.6.6.6\r\nX-Forwarded-Host: evil.example\r\nX-Forwarded-Proto: https\r\n",
				"X-Forwarded-Port: 443\r\nX-Forwarded-Prefix: /admin\r\nX-Forwarded-Scheme: https\r\n",
				"Forwarded: for=10.6.6.6;host=evil.example;proto=https\r\n",
				"X-Real-IP: 10.6.6.6\r\nX-Client-IP: 10.6.6.6\r\nTrue-Client-IP: 10.6.6.6\r\n",
				"X-Original-URL: /admin\r\nX-Original-URI: /admin\r\nX-Rewrite-URL: /admin\r\nX-Original-Host: internal\r\nX-Host: internal\r\n",
				"Portico-Edge-Token: forged\r\nPortico-Deployment: forged\r\nPortico-Stage: forged/prod\r\nPortico-Route: 0\r\nPortico-Anything: x\r\n",
				"X-Portico-Consumer: admin\r\nX-Portico-Identity: admin\r\n",
				"X-Request-Id: forged\r\nX-Route: forged\r\nX-Site: forged\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x",
				header("X-Forwarded-Port", ""), header("X-Forwarded-Prefix", ""), header("X-Forwarded-Scheme", ""),
				header("X-Real-Ip", ""), header("X-Client-Ip", ""), header("True-Client-Ip", ""),
				header("X-Original-Url", ""), header("X-Original-Uri", ""), header("X-Rewrite-Url", ""),
				header("X-Original-Host", ""), header("X-Host", ""))},
		},
		{
			name: "B16 spoofed headers repeated",
			raw:  get("/x", "X-Forwarded-For: 10.6.6.6\r\nX-Forwarded-For: 10.7.7.7\r\nX-Forwarded-Host: a\r\nX-Forwarded-Host: b\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x")},
		},
		{
			name: "B17 h2c upgrade",
			raw:  get("/x", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x",
				header("Upgrade", ""), header("Connection", ""), header("Http2-Settings", ""))},
		},
		{
			name: "B17 h2c upgrade without Connection",
			raw:  get("/x", "Upgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x",
				header("Upgrade", ""), header("Http2-Settings", ""))},
		},
		{
			name: "B17 upgrade to something else",
			raw:  get("/x", "Connection: Upgrade\r\nUpgrade: foo/2\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x", header("Upgrade", ""), header("Connection", ""))},
		},
		{name: "B19 underscore header", raw: get("/x", "X_Api_Key: k\r\n"), want: hygWant{statuses: []int{400}, backend: nothingForwarded}},
		{name: "B19 underscore in a known header", raw: get("/x", "X-Forwarded_For: 10.6.6.6\r\n"), want: hygWant{statuses: []int{400}, backend: nothingForwarded}},
		{
			// Every response names its request once.
			name: "X-Request-Id appears once",
			raw:  get("/x"),
			want: hygWant{statuses: []int{200}, backend: both(forwarded("x", "GET", "/x"), func(t *testing.T, _ backendView, replies []hygReply) {
				if got := replies[0].header.Values("X-Request-Id"); len(got) != 1 {
					t.Errorf("the response has X-Request-Id %q, want one value", got)
				}
			})},
		},
		{
			name: "C23 method override headers",
			raw:  get("/x", "X-HTTP-Method-Override: DELETE\r\nX-HTTP-Method: DELETE\r\nX-Method-Override: DELETE\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x",
				header("X-Http-Method-Override", ""), header("X-Http-Method", ""), header("X-Method-Override", ""))},
		},
		{
			name: "C23 method override on POST",
			raw:  "POST /upload HTTP/1.1\r\n" + hygHost + "X-HTTP-Method-Override: GET\r\nContent-Length: 2\r\n\r\nhi",
			want: hygWant{statuses: []int{200}, backend: forwarded("upload", "POST", "/upload", body("hi"), header("X-Http-Method-Override", ""))},
		},
	})
	// The h2c upgrade was answered as HTTP/1.1, never 101.
	for _, l := range env.listeners() {
		replies, _ := exchange(t, l, get("/x", "Connection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n"), 1, false)
		if len(replies) != 1 || replies[0].proto != "HTTP/1.1" || replies[0].header.Get("Upgrade") != "" {
			t.Errorf("%s: h2c upgrade answered %v (%+v)", l.name, replies, replies)
		}
		env.rec.take(t, time.Now())
	}
}

// Foundation point 8: sizes and methods, each with Portico's JSON error.
func TestHygieneSizesAndMethods(t *testing.T) {
	env := newHygieneEnv(t)
	const maxBody = 10 << 20
	bigBody := strings.Repeat("b", maxBody)
	chunked := func(n, size int) string {
		var sb strings.Builder
		chunk := strings.Repeat("c", size)
		for range n {
			fmt.Fprintf(&sb, "%x\r\n%s\r\n", size, chunk)
		}
		sb.WriteString("0\r\n\r\n")
		return sb.String()
	}
	runHygieneCases(t, env, []hygCase{
		{
			// Between the edge's 32 KiB and Go's 64 KiB: the edge's JSON.
			name: "header fields over 32 KiB",
			raw:  get("/x", "X-A: "+strings.Repeat("a", 40<<10)+"\r\n"),
			want: hygWant{statuses: []int{431}, closed: true, backend: nothingForwarded},
		},
		{
			name: "header fields just under 32 KiB",
			raw:  get("/x", "X-A: "+strings.Repeat("a", 31<<10)+"\r\n"),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x", header("X-A", strings.Repeat("a", 31<<10)))},
		},
		{
			name: "over 100 header fields",
			raw:  get("/x", strings.Repeat("X-A: 1\r\n", 100)),
			want: hygWant{statuses: []int{431}, closed: true, backend: nothingForwarded},
		},
		{
			// Beyond http.Server.MaxHeaderBytes (64 KiB) plus Go's 4 KiB
			// slack, Go answers with its own plain-text 431 before the
			// edge sees the request: no JSON, no request ID.
			name: "header fields over Go's 64 KiB",
			raw:  get("/x", "X-A: "+strings.Repeat("a", 100<<10)+"\r\n"),
			want: hygWant{statuses: []int{431}, closed: true, goAnswers: true, backend: nothingForwarded},
		},
		{
			name: "URI over 8 KiB",
			raw:  get("/ok/" + strings.Repeat("a", 8<<10)),
			want: hygWant{statuses: []int{414}, backend: nothingForwarded},
		},
		{
			name: "query makes the URI over 8 KiB",
			raw:  get("/x?q=" + strings.Repeat("a", 8<<10)),
			want: hygWant{statuses: []int{414}, backend: nothingForwarded},
		},
		{
			name: "URI just under 8 KiB",
			raw:  get("/x?q=" + strings.Repeat("a", 8<<10-10)),
			want: hygWant{statuses: []int{200}, backend: forwarded("x", "GET", "/x?q="+strings.Repeat("a", 8<<10-10))},
		},
		{
			// Refused before a byte of the body is read; the client
			// sends none.
			name: "Content-Length over 10 MiB",
			raw:  "POST /upload HTTP/1.1\r\n" + hygHost + "Content-Length: " + strconv.Itoa(maxBody+1) + "\r\n\r\n",
			want: hygWant{statuses: []int{413}, closed: true, backend: nothingForwarded},
		},
		{
			name: "Content-Length of exactly 10 MiB",
			raw:  "POST /upload HTTP/1.1\r\n" + hygHost + "Content-Length: " + strconv.Itoa(maxBody) + "\r\n\r\n" + bigBody,
			want: hygWant{statuses: []int{200}, backend: forwarded("upload", "POST", "/upload", func(t *testing.T, r recorded) {
				if string(r.Body) != bigBody {
					t.Errorf("backend got a %d-byte body, want the client's %d bytes", len(r.Body), maxBody)
				}
			})},
		},
		{
			name: "chunked body over 10 MiB",
			raw:  "POST /upload HTTP/1.1\r\n" + hygHost + "Transfer-Encoding: chunked\r\n\r\n" + chunked(11, 1<<20),
			want: hygWant{statuses: []int{413}, closed: true, backend: noCompleteRequest},
		},
		{
			// The origin answers Expect: 100-continue through the edge
			// before the body is cut.
			name: "chunked body over 10 MiB with Expect",
			raw:  "POST /upload HTTP/1.1\r\n" + hygHost + "Expect: 100-continue\r\nTransfer-Encoding: chunked\r\n\r\n" + chunked(11, 1<<20),
			want: hygWant{statuses: []int{413}, closed: true, backend: noCompleteRequest},
		},
		{
			name: "TRACE",
			raw:  "TRACE /x HTTP/1.1\r\n" + hygHost + "Authorization: Bearer secret\r\n\r\n",
			want: hygWant{statuses: []int{501}, backend: nothingForwarded},
		},
		{
			name: "CONNECT",
			raw:  "CONNECT api.example.test:443 HTTP/1.1\r\n" + hygHost + "\r\n",
			want: hygWant{statuses: []int{501}, backend: nothingForwarded},
		},
		{
			name: "extension method",
			raw:  "PROPFIND /x HTTP/1.1\r\n" + hygHost + "\r\n",
			want: hygWant{statuses: []int{501}, backend: nothingForwarded},
		},
		{
			name: "OPTIONS *",
			raw:  "OPTIONS * HTTP/1.1\r\n" + hygHost + "\r\n",
			want: hygWant{statuses: []int{400}, backend: nothingForwarded},
		},
		{
			name: "method not allowed",
			raw:  "DELETE /x HTTP/1.1\r\n" + hygHost + "\r\n",
			want: hygWant{statuses: []int{405}, backend: nothingForwarded},
		},
	})
	// TRACE never echoes the request back.
	for _, l := range env.listeners() {
		replies, _ := exchange(t, l, "TRACE /x HTTP/1.1\r\n"+hygHost+"Authorization: Bearer secret\r\n\r\n", 1, false)
		if len(replies) != 1 || strings.Contains(replies[0].body, "secret") {
			t.Errorf("%s: TRACE answered %v", l.name, replies)
		}
		env.rec.take(t, time.Now())
	}
}

// The same rules through curl: HTTP/2 over TLS, HTTP/1.1, absolute form
// through a proxy, and curl's own h2c upgrade.
func TestHygieneCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		skipOrFail(t, "curl is not installed (Debian package curl)")
	}
	env := newHygieneEnv(t)
	dir := t.TempDir()
	httpsPort := portOf(env.e.HTTPS)
	https := "https://api.example.test:" + httpsPort
	plain := "http://" + env.e.HTTP
	tlsArgs := []string{"--cacert", filepath.Join(env.e.DataDir, "dev-ca.pem"), "--resolve", "api.example.test:" + httpsPort + ":127.0.0.1"}

	type curlResult struct {
		status  int
		version string
		header  http.Header
		body    string
	}
	// run runs curl; cutUpload: the edge may answer and stop reading
	// before curl has sent the whole body, which curl reports as an error.
	run := func(t *testing.T, cutUpload bool, args ...string) curlResult {
		t.Helper()
		hdrFile, bodyFile := filepath.Join(dir, "headers"), filepath.Join(dir, "body")
		args = append([]string{"-sS", "--max-time", "20", "-D", hdrFile, "-o", bodyFile, "-w", "%{http_code} %{http_version}"}, args...)
		out, err := exec.Command(curl, args...).Output()
		var res curlResult
		if _, serr := fmt.Sscanf(string(out), "%d %s", &res.status, &res.version); serr != nil || err != nil && !cutUpload {
			t.Fatalf("curl %q: %v: %s", args, err, out)
		}
		res.body = readFile(t, bodyFile)
		// The last header block (curl writes interim responses too).
		blocks := strings.Split(strings.TrimSpace(strings.ReplaceAll(readFile(t, hdrFile), "\r\n", "\n")), "\n\n")
		res.header = http.Header{}
		for _, line := range strings.Split(blocks[len(blocks)-1], "\n")[1:] {
			if k, v, ok := strings.Cut(line, ":"); ok {
				res.header.Add(strings.TrimSpace(k), strings.TrimSpace(v))
			}
		}
		return res
	}
	toReply := func(r curlResult) hygReply {
		return hygReply{status: r.status, header: r.header, body: r.body}
	}
	type curlCase struct {
		name      string
		args      []string
		cutUpload bool
		status    int
		version   string // "" for any
		proto     string // the listener, for X-Forwarded-Proto
		backend   func(*testing.T, backendView, []hygReply)
	}
	bigFile := filepath.Join(dir, "big")
	if err := os.WriteFile(bigFile, bytes.Repeat([]byte("b"), 10<<20+1), 0o600); err != nil {
		t.Fatal(err)
	}
	h2 := append([]string{"--http2"}, tlsArgs...)
	h1 := append([]string{"--http1.1"}, tlsArgs...)
	cases := []curlCase{
		{name: "h2 dot segments", args: append(h2, "--path-as-is", https+"/ok/../admin"), status: 200, version: "2", proto: "https", backend: forwarded("admin", "GET", "/admin")},
		{name: "h2 encoded dot segments", args: append(h2, "--path-as-is", https+"/ok/%2e%2e/%61dmin?x=1"), status: 200, version: "2", proto: "https", backend: forwarded("admin", "GET", "/admin?x=1")},
		{name: "h1 dot segments", args: append(h1, "--path-as-is", https+"/./ok/y/../..//admin"), status: 200, version: "1.1", proto: "https", backend: forwarded("admin", "GET", "/admin")},
		{name: "plain dot segments", args: []string{"--path-as-is", "-H", "Host: api.example.test", plain + "/ok/%2E%2E/admin"}, status: 200, version: "1.1", proto: "http", backend: forwarded("admin", "GET", "/admin")},
		{name: "h2 encoded slash", args: append(h2, https+"/ok/..%2Fadmin"), status: 400, version: "2", backend: nothingForwarded},
		{name: "h2 encoded backslash", args: append(h2, https+"/ok/..%5Cadmin"), status: 400, version: "2", backend: nothingForwarded},
		{name: "h2 matrix parameter", args: append(h2, "--path-as-is", https+"/user/..;x=y/admin"), status: 400, version: "2", backend: nothingForwarded},
		{name: "h2 encoded NUL", args: append(h2, https+"/admin%00"), status: 400, version: "2", backend: nothingForwarded},
		{name: "h2 case", args: append(h2, https+"/ADMIN"), status: 404, version: "2", backend: nothingForwarded},
		{name: "h2 underscore header", args: append(h2, "-H", "X_Api_Key: k", https+"/x"), status: 400, version: "2", backend: nothingForwarded},
		{name: "h2 TRACE", args: append(h2, "-X", "TRACE", https+"/x"), status: 501, version: "2", backend: nothingForwarded},
		{name: "h2 header fields over 32 KiB", args: append(h2, "-H", "X-A: "+strings.Repeat("a", 40<<10), https+"/x"), status: 431, version: "2", backend: nothingForwarded},
		{name: "h2 URI over 8 KiB", args: append(h2, https+"/x?q="+strings.Repeat("a", 8<<10)), status: 414, version: "2", backend: nothingForwarded},
		{name: "h2 body over 10 MiB", args: append(h2, "--data-binary", "@"+bigFile, https+"/upload"), cutUpload: true, status: 413, version: "2", backend: noCompleteRequest},
		{name: "h1 body over 10 MiB", args: append(h1, "--data-binary", "@"+bigFile, https+"/upload"), cutUpload: true, status: 413, version: "1.1", backend: nothingForwarded},
		// Without Expect: 100-continue; the raw cases above cover it.
		{name: "h1 chunked body over 10 MiB", args: append(h1, "-H", "Transfer-Encoding: chunked", "-H", "Expect:", "--data-binary", "@"+bigFile, https+"/upload"), cutUpload: true, status: 413, version: "1.1", backend: noCompleteRequest},
		{
			name: "h2 spoofed headers", status: 200, version: "2", proto: "https",
			args: append(h2, "-H", "X-Forwarded-For: 10.6.6.6", "-H", "X-Forwarded-Host: evil.example", "-H", "X-Real-IP: 10.6.6.6",
				"-H", "Forwarded: for=10.6.6.6", "-H", "Portico-Route: 0", "-H", "X-Portico-Consumer: admin",
				"-H", "X-HTTP-Method-Override: DELETE", https+"/x"),
			backend: forwarded("x", "GET", "/x", header("X-Real-Ip", ""), header("X-Http-Method-Override", "")),
		},
		{
			// curl sends the absolute form to a proxy: the edge's plain
			// listener, with a Host header that disagrees.
			name: "absolute form through a proxy", status: 200, version: "1.1", proto: "http",
			args:    []string{"--proxy", plain, "-H", "Host: api.example.test", "http://other.example/x"},
			backend: forwardedFor("other.example", "x", "GET", "/x", header("Proxy-Connection", "")),
		},
		{
			name: "absolute form to an unknown host through a proxy", status: 404, version: "1.1",
			args:    []string{"--proxy", plain, "-H", "Host: api.example.test", "http://internal.svc/admin"},
			backend: nothingForwarded,
		},
		{
			// curl asks to upgrade to h2c; the edge answers in HTTP/1.1.
			name: "h2c upgrade", status: 200, version: "1.1", proto: "http",
			args: []string{"--http2", "-H", "Host: api.example.test", plain + "/x"},
			backend: forwarded("x", "GET", "/x",
				header("Upgrade", ""), header("Connection", ""), header("Http2-Settings", "")),
		},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if leftover := env.rec.take(t, time.Time{}); len(leftover.reqs) > 0 || leftover.conns > 0 {
				t.Fatalf("the backend saw %d requests before this case", len(leftover.reqs))
			}
			res := run(t, c.cutUpload, c.args...)
			answered := time.Now()
			if res.status != c.status || c.version != "" && res.version != c.version {
				t.Errorf("curl got %d over HTTP/%s, want %d over HTTP/%s: %q", res.status, res.version, c.status, c.version, res.body)
			}
			checkReply(t, toReply(res), false)
			view := env.rec.take(t, answered)
			view.proto = c.proto
			c.backend(t, view, []hygReply{toReply(res)})
		})
	}
	// Prior-knowledge h2c on the plain listener is not HTTP/2: curl gets
	// no HTTP/2 response, and nothing reaches the backend.
	t.Run("h2c prior knowledge", func(t *testing.T) {
		out, err := exec.Command(curl, "-sS", "--max-time", "20", "--http2-prior-knowledge", "-o", "/dev/null", "-w", "%{http_version}",
			"-H", "Host: api.example.test", plain+"/x").CombinedOutput()
		if err == nil && strings.HasPrefix(string(out), "2") {
			t.Errorf("the plain listener spoke HTTP/2 with prior knowledge: %s", out)
		}
		nothingForwarded(t, env.rec.take(t, time.Now()), nil)
	})
}
