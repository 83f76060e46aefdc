package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"

	"github.com/portico-edge/portico/test/requiretool"
)

// Graceful shutdown: GOAWAY(NO_ERROR) with the last stream id, the
// streams in flight finish, then the connection closes; new streams
// above the last id are ignored.
func TestGracefulShutdown(t *testing.T) {
	release := make(chan struct{})
	var started atomic.Int64
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		if r.URL.Path == "/slow" {
			<-release
		}
		io.WriteString(w, "done")
	}))
	c := ts.dialRaw(t)
	idle := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/slow")...))
	waitUntil(t, func() bool { return started.Load() == 1 })
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	waitUntil(t, func() bool { return c.goAway.Load() != nil })
	if ga := c.goAway.Load(); ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v last stream %d, want NO_ERROR and 1", ga.ErrCode, ga.LastStreamID)
	}
	// The idle connection closes at once.
	if ga, closed := idle.waitEnd(5 * time.Second); !closed || ga == nil {
		t.Fatalf("idle connection: GOAWAY %v, closed %t", ga, closed)
	}
	// A stream opened after the GOAWAY is ignored.
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.get("/late")...))
	time.Sleep(50 * time.Millisecond)
	if started.Load() != 1 {
		t.Fatal("a stream above the GOAWAY's last stream id was served")
	}
	close(release)
	if n, end := c.dataOn(1, 5*time.Second); n != 4 || !end {
		t.Fatalf("in-flight response: %d octets, end %t", n, end)
	}
	if _, closed := c.waitEnd(5 * time.Second); !closed {
		t.Fatal("connection open after its last stream finished")
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	// New connections are refused.
	conn, err := tls.Dial("tcp", ts.addr, ts.pki.clientTLS())
	if err == nil {
		conn.SetReadDeadline(time.Now().Add(2 * time.Second))
		_, rerr := conn.Read(make([]byte, 1))
		conn.Close()
		if rerr == nil {
			t.Fatal("a connection after Shutdown was served")
		}
	}
}

// Shutdown past its deadline cuts what still runs and says so.
func TestShutdownDeadline(t *testing.T) {
	started := make(chan struct{})
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started)
		<-r.Context().Done()
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v, want DeadlineExceeded", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Shutdown took %v", d)
	}
	if _, closed := c.waitEnd(5 * time.Second); !closed {
		t.Fatal("connection still open after the drain deadline")
	}
}

// A connection without streams for IdleTimeout gets GOAWAY and is closed;
// one with a stream in flight is not.
func TestIdleTimeout(t *testing.T) {
	release := make(chan struct{})
	ts := startServer(t, Config{IdleTimeout: 300 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			<-release
		}
	}))
	busy := ts.dialRaw(t)
	busy.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, busy.get("/slow")...))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	ga, closed := c.waitEnd(5 * time.Second)
	if !closed || ga == nil || ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
		t.Fatalf("idle connection: GOAWAY %v, closed %t", ga, closed)
	}
	if _, closed := busy.waitEnd(500 * time.Millisecond); closed {
		t.Fatal("a connection with a stream in flight was closed as idle")
	}
	close(release)
	if _, closed := busy.waitEnd(5 * time.Second); !closed {
		t.Fatal("connection not closed once idle")
	}
}

// Config.ReadTimeout and WriteTimeout bound each stream from its
// handler's start: a body that does not come fails with
// os.ErrDeadlineExceeded, a response not written in time is reset.
func TestStreamTimeouts(t *testing.T) {
	readErr := make(chan error, 1)
	ts := startServer(t, Config{ReadTimeout: 200 * time.Millisecond, WriteTimeout: 300 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/read":
			_, err := io.ReadAll(r.Body)
			readErr <- err
		case "/slow":
			select {
			case <-r.Context().Done():
			case <-time.After(5 * time.Second):
			}
			io.WriteString(w, "late")
		}
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/read")...))
	select {
	case err := <-readErr:
		if !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Errorf("body past ReadTimeout: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ReadTimeout not applied")
	}
	t0 := time.Now()
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.get("/slow")...))
	code, goAway, ok := c.rstOrGoAway(3, 5*time.Second)
	if !ok || goAway || code != http2.ErrCodeInternal {
		t.Fatalf("response past WriteTimeout: %v (GOAWAY %t, seen %t), want RST_STREAM INTERNAL_ERROR", code, goAway, ok)
	}
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("reset after %v with a 300ms WriteTimeout", d)
	}
}

// A client that connects and sends no preface is cut after
// PrefaceTimeout; one that sends a broken preface at once.
func TestPrefaceTimeout(t *testing.T) {
	ts := startServer(t, Config{PrefaceTimeout: 300 * time.Millisecond}, http.NotFoundHandler())
	for _, send := range []string{"", "PRI * HTTP/2.0\r\n\r\n", "GET / HTTP/1.1\r\nHost: x\r\n\r\n"} {
		conn, err := tls.Dial("tcp", ts.addr, ts.pki.clientTLS())
		if err != nil {
			t.Fatal(err)
		}
		io.WriteString(conn, send)
		// The client's own deadline, far beyond the server's: reaching
		// it means the server never closed.
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err = io.Copy(io.Discard, conn)
		conn.Close()
		if errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("after %q: connection still open when the client's 5s deadline passed", send)
		}
	}
}

// The Date header is formatted once a second.
func TestDateCache(t *testing.T) {
	var d dateCache
	for i := 0; i < 3; i++ {
		before := time.Now().Truncate(time.Second)
		got := d.get()
		after := time.Now()
		when, err := time.Parse(http.TimeFormat, got)
		if err != nil {
			t.Fatalf("Date %q: %v", got, err)
		}
		// The clock's second at the call, in http.TimeFormat (GMT).
		if when.Before(before) || when.After(after) || got != when.UTC().Format(http.TimeFormat) {
			t.Fatalf("Date %q for a call between %v and %v", got, before.UTC(), after.UTC())
		}
		// Cached: the value for this second is the one stored.
		if v := d.v.Load(); v == nil || v.s != got || v.sec != when.Unix() {
			t.Fatalf("cache holds %+v after Date %q", v, got)
		}
		if again := d.get(); again != got && d.v.Load().sec == when.Unix() {
			t.Fatalf("a second call within second %d: %q, then %q", when.Unix(), got, again)
		}
		// An entry from another second is replaced, not served.
		d.v.Store(&dateValue{sec: 1, s: "stale"})
		if d.get() == "stale" {
			t.Fatal("a stale cached Date was served")
		}
	}
}

// curl (Debian's 7.88) over HTTP/2: a plain GET, a POST whose body the
// handler does not read (the response must survive the RST_STREAM that
// follows it), and many requests on one connection.
func TestCurl(t *testing.T) {
	curl := requiretool.Path(t, "curl", "Debian package curl")
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/reject":
			w.WriteHeader(http.StatusRequestEntityTooLarge)
			io.WriteString(w, "too big")
			return
		case "/count":
			n, _ := io.Copy(io.Discard, r.Body)
			fmt.Fprintf(w, "%d", n)
			return
		}
		io.WriteString(w, "hello "+r.Proto)
	}))
	_, port, _ := strings.Cut(ts.addr, ":")
	base := "https://localhost:" + port
	run := func(args ...string) string {
		t.Helper()
		cmd := exec.Command(curl, append([]string{"-sS", "--http2", "-k", "--resolve", "localhost:" + port + ":127.0.0.1", "--max-time", "20"}, args...)...)
		out, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("curl %.200v: %v\n%.2000s", args, err, out)
		}
		return string(out)
	}
	if out := run(base + "/"); out != "hello HTTP/2.0" {
		t.Fatalf("GET: %q", out)
	}
	bodyFile := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(bodyFile, []byte(strings.Repeat("x", 1<<20)), 0o644); err != nil {
		t.Fatal(err)
	}
	out := run("-X", "POST", "--data-binary", "@"+bodyFile, "-w", " %{http_code}", base+"/reject")
	if out != "too big 413" {
		t.Fatalf("POST with an unread body: %q", out)
	}
	// curl waits for "100 Continue" up to its timeout (here beyond
	// --max-time) before it sends the body.
	out = run("-X", "PUT", "--data-binary", "@"+bodyFile, "-H", "Expect: 100-continue", "--expect100-timeout", "60", base+"/count")
	if out != "1048576" {
		t.Fatalf("PUT with Expect: 100-continue: %q", out)
	}
	var urls []string
	for range 50 {
		urls = append(urls, base+"/")
	}
	out = run(urls...)
	if strings.Count(out, "hello HTTP/2.0") != 50 {
		t.Fatalf("50 requests on one connection: %q", out)
	}
}

// h2load: many connections and streams, all answered.
func TestH2Load(t *testing.T) {
	h2load := requiretool.Path(t, "h2load", "Debian package nghttp2-client")
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.Write(make([]byte, 1024))
	}))
	_, port, _ := strings.Cut(ts.addr, ":")
	cmd := exec.Command(h2load, "-n", "20000", "-c", "8", "-m", "32", "https://127.0.0.1:"+port+"/")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("h2load: %v\n%s", err, out)
	}
	m := regexp.MustCompile(`requests: (\d+) total, \d+ started, \d+ done, (\d+) succeeded, (\d+) failed, (\d+) errored`).FindStringSubmatch(string(out))
	if m == nil {
		t.Fatalf("no summary from h2load:\n%s", out)
	}
	if m[1] != "20000" || m[2] != "20000" || m[3] != "0" || m[4] != "0" {
		t.Fatalf("h2load: %s total, %s succeeded, %s failed, %s errored\n%s", m[1], m[2], m[3], m[4], out)
	}
	n, _ := strconv.Atoi(m[2])
	t.Logf("h2load: %d requests succeeded", n)
}

// A GOAWAY for an error queued outside the frame loop (a budget spent
// where a handler or the writer noticed it) ends the connection even
// while streams are in flight: the expired read deadline that stops the
// frame loop is not cleared when a stream closes or a handler returns
// after it, and no frame after it is processed.
func TestGoAwayFromOutsideTheFrameLoopEndsTheConnection(t *testing.T) {
	release := make(chan struct{})
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
	}))
	defer close(release)
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/hold")...))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.get("/quick")...))
	if c.next(5*time.Second, func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamID == 3 }) == nil {
		t.Fatal("no response on stream 3")
	}
	sc := ts.connOf(t, c)
	sc.mu.Lock()
	sc.sendGoAwayLocked(ErrCodeEnhanceYourCalm, "")
	sc.updateIdleLocked() // as closing a stream or a returning handler does
	sc.mu.Unlock()
	c.raw(frame(framePing, 0, 0, []byte("stillon?")...))
	if f := c.next(time.Second, func(f http2.Frame) bool { p, ok := f.(*http2.PingFrame); return ok && p.IsAck() }); f != nil {
		t.Fatal("a PING was answered after GOAWAY(ENHANCE_YOUR_CALM): the frame loop still runs")
	}
	if ga, closed := c.waitEnd(5 * time.Second); !closed || ga == nil || ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Fatalf("GOAWAY %v, closed %t", ga, closed)
	}
}

// After a GOAWAY the connection reads and discards for a second before
// it closes, so that the client reads the GOAWAY instead of a reset, even
// when a handler returns meanwhile (it must not cut the linger short).
func TestLingerAfterGoAway(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-r.Context().Done()
		time.Sleep(100 * time.Millisecond) // returns after the teardown
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	c.ping(t)
	c.raw(frame(framePing, 0, 1, make([]byte, 8)...)) // PING on a stream: a connection error
	waitUntil(t, func() bool { return c.goAway.Load() != nil })
	// The client keeps the connection open and says nothing: the server
	// closes once the linger is over, not before.
	if _, closed := c.waitEnd(500 * time.Millisecond); closed {
		t.Fatal("the connection closed less than 500ms after the GOAWAY: no linger")
	}
	if _, closed := c.waitEnd(5 * time.Second); !closed {
		t.Fatal("the connection still open 5s after the GOAWAY")
	}
}

// TestGoAwayLastStreamNeverGrows guards RFC 9113 §6.8: a GOAWAY for an
// error after a graceful one keeps the first GOAWAY's last stream id,
// although the client has opened (ignored) streams above it since.
func TestGoAwayLastStreamNeverGrows(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { holdIfAsked(r) }))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/", "x-hold", "1")...))
	c.ping(t)
	go ts.Shutdown(context.Background())
	waitUntil(t, func() bool { return c.goAway.Load() != nil })
	if first := c.goAway.Load(); first.ErrCode != http2.ErrCodeNo || first.LastStreamID != 1 {
		t.Fatalf("first GOAWAY %v, last stream %d; want NO_ERROR, 1", first.ErrCode, first.LastStreamID)
	}
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 9, c.get("/")...)) // above the GOAWAY: ignored
	c.raw(frame(framePing, 0, 1, make([]byte, 8)...))                          // PING on a stream: a connection error
	waitUntil(t, func() bool { return c.goAway.Load().ErrCode != http2.ErrCodeNo })
	if second := c.goAway.Load(); second.ErrCode != http2.ErrCodeProtocol || second.LastStreamID != 1 {
		t.Errorf("second GOAWAY %v, last stream %d; want PROTOCOL_ERROR, 1", second.ErrCode, second.LastStreamID)
	}
}

// TestLingerAfterGracefulGoAway guards the linger after a graceful
// GOAWAY: once the last stream has finished, the connection still reads
// and discards for a second before it closes, so that the client's frames
// in flight (here a request above the GOAWAY's last stream id) do not
// make the close a reset that could drop the last response unread.
func TestLingerAfterGracefulGoAway(t *testing.T) {
	release := make(chan struct{})
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "last")
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	c.ping(t)
	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(context.Background()) }()
	waitUntil(t, func() bool { return c.goAway.Load() != nil })
	close(release)
	if n, end := c.dataOn(1, 5*time.Second); n != 4 || !end {
		t.Fatalf("in-flight response: %d octets, end %t", n, end)
	}
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.get("/")...))
	// The server lingers; it closes once the linger is over, not before.
	if _, closed := c.waitEnd(500 * time.Millisecond); closed {
		t.Fatal("the connection closed less than 500ms after its last stream finished: no linger")
	}
	if _, closed := c.waitEnd(5 * time.Second); !closed {
		t.Fatal("the connection still open 5s after its last stream finished")
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
}

// TestGoAwayBeforeServe guards a Shutdown that reaches a connection
// registered with the server before its frame loop has started: the
// GOAWAY follows the server's SETTINGS in the queue (serve used to
// replace the queue with them).
func TestGoAwayBeforeServe(t *testing.T) {
	s := NewServer(Config{Logger: testLogger(t)}, http.NotFoundHandler())
	c := s.newConn(newFakeConn())
	c.goAway()
	c.mu.Lock()
	q := append([]byte(nil), c.wbuf...)
	c.mu.Unlock()
	var types []byte
	for len(q) >= frameHeaderLen {
		n := int(q[0])<<16 | int(q[1])<<8 | int(q[2])
		types = append(types, q[3])
		q = q[min(len(q), frameHeaderLen+n):]
	}
	if len(types) < 2 || types[0] != frameSettings || types[len(types)-1] != frameGoAway {
		t.Fatalf("queued frame types %v: want SETTINGS first and GOAWAY last", types)
	}
}
