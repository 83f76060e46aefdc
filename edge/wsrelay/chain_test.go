package wsrelay_test

import (
	"bufio"
	"context"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/portico-edge/portico/edge/wsrelay"
)

// testTimeout bounds every wait in these tests.
const testTimeout = 20 * time.Second

// readLimit is the coder/websocket read limit for test peers: above the
// relay's 1 MiB so that the relay, not the peer, is what enforces it.
const readLimit = 4 << 20

// hop is an HTTP server that relays upgrades with wsrelay to next, the way
// the edge and the origin do, and answers any other request itself.
type hop struct {
	name    string
	srv     *httptest.Server
	metrics *wsrelay.Metrics
	cancel  context.CancelFunc
	results chan error  // what each Serve returned
	seen    chan string // paths of plain requests this hop answered
}

func newHop(t *testing.T, name, next string, lim wsrelay.Limits) *hop {
	t.Helper()
	return newHopWith(t, name, next, lim, nil)
}

// newHopWith lets a test configure the http.Server; when configure is not
// nil the server is started with TLS.
func newHopWith(t *testing.T, name, next string, lim wsrelay.Limits, configure func(*http.Server)) *hop {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	h := &hop{
		name:    name,
		metrics: new(wsrelay.Metrics),
		cancel:  cancel,
		results: make(chan error, 64),
		seen:    make(chan string, 64),
	}
	rl := &wsrelay.Relay{Limits: lim, Metrics: h.metrics}
	h.srv = httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") == "" {
			h.seen <- r.URL.Path
			w.Header().Set("Content-Type", "text/plain")
			fmt.Fprintf(w, "%s saw %s", name, r.URL.Path)
			return
		}
		// What the edge's terminal handler does: an outbound request with the
		// client's path and headers, plus its own.
		out := &http.Request{
			Method: http.MethodGet,
			URL:    &url.URL{Path: r.URL.Path, RawQuery: r.URL.RawQuery},
			Host:   next,
			Header: wsrelay.ForwardHeader(r.Header),
		}
		out.Header.Set("X-Via", name)
		w.Header().Set("X-Request-Id", name+"-id")
		up := wsrelay.Upstream{
			Dial: func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", next)
			},
			Request: out,
		}
		h.results <- rl.Serve(ctx, w, r, up)
	}))
	if configure != nil {
		configure(h.srv.Config)
		h.srv.StartTLS()
	} else {
		h.srv.Start()
	}
	t.Cleanup(h.srv.Close)
	t.Cleanup(cancel) // runs first: drains open relays so that Close does not wait on them
	t.Cleanup(func() {
		// Every relay must have finished once its peers are gone: no leak.
		deadline := time.Now().Add(testTimeout)
		for h.metrics.Active.Load() != 0 {
			if time.Now().After(deadline) {
				t.Errorf("%s: %d relays still active after the test", name, h.metrics.Active.Load())
				return
			}
			time.Sleep(10 * time.Millisecond)
		}
	})
	return h
}

func (h *hop) addr() string { return h.srv.Listener.Addr().String() }

// result waits for the next Serve result of this hop.
func (h *hop) result(t *testing.T) error {
	t.Helper()
	select {
	case err := <-h.results:
		return err
	case <-time.After(testTimeout):
		t.Fatalf("%s: Serve did not return", h.name)
		return nil
	}
}

// backend is the WebSocket application at the end of the chain.
type backend struct {
	srv     *httptest.Server
	mu      sync.Mutex
	paths   []string
	headers []http.Header
	closes  chan websocket.StatusCode // close status each WebSocket ended with
	flooded chan int64                // bytes the /flood handler managed to write
}

func newBackend(t *testing.T) *backend {
	t.Helper()
	b := &backend{closes: make(chan websocket.StatusCode, 16), flooded: make(chan int64, 1)}
	b.srv = httptest.NewServer(http.HandlerFunc(b.serve))
	t.Cleanup(b.srv.Close)
	return b
}

func (b *backend) addr() string { return b.srv.Listener.Addr().String() }

func (b *backend) sawPaths() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.paths...)
}

func (b *backend) lastHeader() http.Header {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.headers[len(b.headers)-1]
}

func (b *backend) closeStatus(t *testing.T) websocket.StatusCode {
	t.Helper()
	select {
	case c := <-b.closes:
		return c
	case <-time.After(testTimeout):
		t.Fatal("the backend's WebSocket did not end")
		return 0
	}
}

func (b *backend) serve(w http.ResponseWriter, r *http.Request) {
	b.mu.Lock()
	b.paths = append(b.paths, r.URL.Path)
	b.headers = append(b.headers, r.Header.Clone())
	b.mu.Unlock()
	switch r.URL.Path {
	case "/refuse403":
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		io.WriteString(w, `{"message":"backend says no"}`)
		return
	case "/refuse426":
		w.Header().Set("Sec-WebSocket-Version", "13")
		w.WriteHeader(http.StatusUpgradeRequired)
		io.WriteString(w, "upgrade elsewhere")
		return
	case "/plain200":
		io.WriteString(w, "not a websocket")
		return
	case "/hugerefusal":
		w.WriteHeader(http.StatusForbidden)
		w.Write(make([]byte, 100<<10))
		return
	case "/badaccept", "/badext", "/maskedserver":
		b.serveRaw(w, r)
		return
	}
	c, err := websocket.Accept(w, r, &websocket.AcceptOptions{
		InsecureSkipVerify: true, // hosts differ along the chain; Origin checks are a policy's job
		Subprotocols:       []string{"chat"},
		CompressionMode:    websocket.CompressionContextTakeover, // the relay must strip it
	})
	if err != nil {
		return
	}
	c.SetReadLimit(readLimit)
	ctx := r.Context()
	var end error
	switch r.URL.Path {
	case "/goaway": // echo one message, then leave
		typ, p, err := c.Read(ctx)
		if err == nil {
			err = c.Write(ctx, typ, p)
		}
		if err == nil {
			err = c.Close(websocket.StatusGoingAway, "backend going away")
		}
		b.closes <- websocket.StatusGoingAway
		_ = err
		return
	case "/big": // send a message of the size the client asks for
		_, p, err := c.Read(ctx)
		if err != nil {
			end = err
			break
		}
		n := binary.BigEndian.Uint64(p)
		_ = c.Write(ctx, websocket.MessageBinary, make([]byte, n))
		_, _, end = c.Read(ctx)
	case "/ping": // ping the client, then echo
		go func() {
			for i := 0; i < 3; i++ {
				if err := c.Ping(ctx); err != nil {
					return
				}
			}
			_ = c.Write(ctx, websocket.MessageText, []byte("pinged 3"))
		}()
		end = echo(ctx, c)
	case "/flood": // send numbered 64 KiB messages until told how many
		_, p, err := c.Read(ctx)
		if err != nil {
			end = err
			break
		}
		n := int(binary.BigEndian.Uint64(p))
		var written int64
		msg := make([]byte, 64<<10)
		for i := 0; i < n; i++ {
			binary.BigEndian.PutUint64(msg, uint64(i))
			if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
				break
			}
			written += int64(len(msg))
			select {
			case b.flooded <- written:
			default:
				select { // keep only the latest count
				case <-b.flooded:
				default:
				}
				b.flooded <- written
			}
		}
		_, _, end = c.Read(ctx)
	default:
		end = echo(ctx, c)
	}
	b.closes <- websocket.CloseStatus(end)
}

// echo returns every message as it came, until the WebSocket ends.
func echo(ctx context.Context, c *websocket.Conn) error {
	for {
		typ, rd, err := c.Reader(ctx)
		if err != nil {
			return err
		}
		wr, err := c.Writer(ctx, typ)
		if err != nil {
			return err
		}
		if _, err := io.Copy(wr, rd); err != nil {
			return err
		}
		if err := wr.Close(); err != nil {
			return err
		}
	}
}

// serveRaw answers an upgrade by hand, to play a broken upstream.
func (b *backend) serveRaw(w http.ResponseWriter, r *http.Request) {
	conn, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		return
	}
	defer conn.Close()
	accept := acceptFor(r.Header.Get("Sec-WebSocket-Key"))
	ext := ""
	switch r.URL.Path {
	case "/badaccept":
		accept = acceptFor("AAAAAAAAAAAAAAAAAAAAAA==")
	case "/badext":
		ext = "Sec-WebSocket-Extensions: permessage-deflate\r\n"
	}
	fmt.Fprintf(brw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n%s\r\n", accept, ext)
	if r.URL.Path == "/maskedserver" {
		// A server must never mask: the relay must fail the connection.
		brw.Write(maskedFrame(true, 0, 0x1, []byte("masked")))
	}
	brw.Flush()
	// Wait for the relay to hang up, bounded.
	conn.SetReadDeadline(time.Now().Add(testTimeout))
	io.Copy(io.Discard, brw)
}

// chain is client → A → B → backend, the path of an edge-optimised request.
type chain struct {
	a, b    *hop
	backend *backend
}

func newChain(t *testing.T, limA, limB wsrelay.Limits) *chain {
	t.Helper()
	be := newBackend(t)
	b := newHop(t, "B", be.addr(), limB)
	a := newHop(t, "A", b.addr(), limA)
	return &chain{a: a, b: b, backend: be}
}

func (c *chain) url(path string) string { return "ws://" + c.a.addr() + path }

func dial(t *testing.T, ctx context.Context, u string, opts *websocket.DialOptions) *websocket.Conn {
	t.Helper()
	c, resp, err := websocket.Dial(ctx, u, opts)
	if err != nil {
		status := 0
		if resp != nil {
			status = resp.StatusCode
		}
		t.Fatalf("dial %s: %v (status %d)", u, err, status)
	}
	c.SetReadLimit(readLimit)
	return c
}

func testContext(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	t.Cleanup(cancel)
	return ctx
}

func randomBytes(n int) []byte {
	b := make([]byte, n)
	rand.Read(b)
	return b
}

func TestEchoSizes(t *testing.T) {
	ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
	ctx := testContext(t)
	c := dial(t, ctx, ch.url("/echo?room=1"), &websocket.DialOptions{
		Subprotocols:    []string{"chat", "superchat"},
		CompressionMode: websocket.CompressionContextTakeover, // offered; the relay must strip it
	})
	if c.Subprotocol() != "chat" {
		t.Fatalf("subprotocol %q, want chat", c.Subprotocol())
	}
	h := ch.backend.lastHeader()
	if h.Get("Sec-WebSocket-Extensions") != "" {
		t.Fatalf("the extension offer reached the backend: %q", h.Get("Sec-WebSocket-Extensions"))
	}
	if got := h.Values("X-Via"); len(got) != 1 || got[0] != "B" {
		t.Fatalf("X-Via at the backend = %q, want the last hop's header only", got)
	}
	for _, size := range []int{5, 1 << 10, 64 << 10, 1 << 20} {
		for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
			var msg []byte
			if typ == websocket.MessageText {
				msg = []byte(strings.Repeat("é", size/2) + strings.Repeat("x", size%2))
			} else {
				msg = randomBytes(size)
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				t.Fatalf("write %d-byte %v: %v", size, typ, err)
			}
			gotTyp, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read echo of %d-byte %v: %v", size, typ, err)
			}
			if gotTyp != typ || string(got) != string(msg) {
				t.Fatalf("%d-byte %v: echo differs (type %v, %d bytes)", size, typ, gotTyp, len(got))
			}
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, "done"); err != nil {
		t.Fatalf("close: %v", err)
	}
	if got := ch.backend.closeStatus(t); got != websocket.StatusNormalClosure {
		t.Fatalf("backend saw close %v, want 1000", got)
	}
	for _, h := range []*hop{ch.a, ch.b} {
		if err := h.result(t); err != nil {
			t.Fatalf("%s: Serve after a clean close: %v", h.name, err)
		}
	}
	if ch.a.metrics.Relayed.Load() != 1 || ch.a.metrics.BytesToUpstream.Load() < 2<<20 {
		t.Fatalf("metrics: relayed %d, to upstream %d bytes", ch.a.metrics.Relayed.Load(), ch.a.metrics.BytesToUpstream.Load())
	}
}

func TestFragmentedMessages(t *testing.T) {
	ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
	ctx := testContext(t)
	c := dial(t, ctx, ch.url("/echo"), nil)
	// coder/websocket sends each Write as one frame and Close as the final one.
	want := ""
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 20; i++ {
		part := strings.Repeat(string(rune('a'+i)), 1000*i)
		want += part
		if _, err := w.Write([]byte(part)); err != nil {
			t.Fatal(err)
		}
	}
	if err := w.Close(); err != nil {
		t.Fatal(err)
	}
	_, got, err := c.Read(ctx)
	if err != nil || string(got) != want {
		t.Fatalf("fragmented echo: %d bytes, err %v; want %d bytes", len(got), err, len(want))
	}
	c.Close(websocket.StatusNormalClosure, "")

	// A raw client interleaves a ping between fragments, which is legal.
	rc := rawDial(t, ch.a.addr(), "/echo")
	rc.write(t, maskedFrame(false, 0, 0x1, []byte("hel")))
	rc.write(t, maskedFrame(true, 0, 0x9, []byte("ping!")))
	rc.write(t, maskedFrame(false, 0, 0x0, []byte("lo ")))
	rc.write(t, maskedFrame(true, 0, 0x0, []byte("world")))
	// The echo streams, so the pong may come before, inside or after the
	// echoed message's fragments.
	var msg []byte
	pong, done := false, false
	for i := 0; i < 20 && !(pong && done); i++ {
		f := rc.read(t)
		switch f.op {
		case 0xA:
			if string(f.payload) != "ping!" {
				t.Fatalf("pong %q", f.payload)
			}
			pong = true
		case 0x1, 0x0:
			msg = append(msg, f.payload...)
			done = f.fin
		default:
			t.Fatalf("unexpected frame %+v", f)
		}
	}
	if !pong || string(msg) != "hello world" {
		t.Fatalf("pong %v, echo %q; want the pong and \"hello world\"", pong, msg)
	}
	rc.write(t, maskedFrame(true, 0, 0x8, closePayload(1000, "")))
	if f := rc.read(t); f.op != 0x8 || f.code() != 1000 {
		t.Fatalf("got %+v, want the close reply", f)
	}
	rc.expectEOF(t)
}

func TestPingPong(t *testing.T) {
	ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
	ctx := testContext(t)
	c := dial(t, ctx, ch.url("/ping"), nil)
	// Reading answers the backend's pings and delivers the pongs to Ping.
	msgs := make(chan string, 4)
	go func() {
		for {
			_, p, err := c.Read(ctx)
			if err != nil {
				close(msgs)
				return
			}
			msgs <- string(p)
		}
	}()
	for i := 0; i < 3; i++ {
		if err := c.Ping(ctx); err != nil {
			t.Fatalf("client ping %d: %v", i, err)
		}
	}
	select {
	case m := <-msgs:
		if m != "pinged 3" {
			t.Fatalf("backend says %q", m)
		}
	case <-ctx.Done():
		t.Fatal("the backend's pings never got their pongs")
	}
	c.Close(websocket.StatusNormalClosure, "")
}

func TestCloseCodesPropagate(t *testing.T) {
	t.Run("client 4001", func(t *testing.T) {
		ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
		ctx := testContext(t)
		c := dial(t, ctx, ch.url("/echo"), nil)
		if err := c.Close(4001, "custom"); err != nil {
			t.Fatal(err)
		}
		if got := ch.backend.closeStatus(t); got != 4001 {
			t.Fatalf("backend saw %v, want 4001", got)
		}
	})
	t.Run("backend 1001", func(t *testing.T) {
		ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
		ctx := testContext(t)
		c := dial(t, ctx, ch.url("/goaway"), nil)
		if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
			t.Fatal(err)
		}
		if _, p, err := c.Read(ctx); err != nil || string(p) != "hi" {
			t.Fatalf("echo %q, %v", p, err)
		}
		_, _, err := c.Read(ctx)
		var ce websocket.CloseError
		if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "backend going away" {
			t.Fatalf("client read %v, want close 1001 from the backend", err)
		}
		for _, h := range []*hop{ch.a, ch.b} {
			if err := h.result(t); err != nil {
				t.Fatalf("%s: %v", h.name, err)
			}
		}
	})
}

func TestMessageTooBig(t *testing.T) {
	t.Run("exactly the limit passes", func(t *testing.T) {
		lim := wsrelay.Limits{MaxMessageBytes: 100 << 10}
		ch := newChain(t, lim, lim)
		ctx := testContext(t)
		c := dial(t, ctx, ch.url("/echo"), nil)
		msg := randomBytes(100 << 10)
		if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
			t.Fatal(err)
		}
		if _, p, err := c.Read(ctx); err != nil || len(p) != len(msg) {
			t.Fatalf("echo of a message at the limit: %d bytes, %v", len(p), err)
		}
		c.Close(websocket.StatusNormalClosure, "")
	})
	for _, tc := range []struct {
		name      string
		fragments []int
	}{
		{"one frame of 1 MiB + 1", []int{1<<20 + 1}},
		{"fragments adding to 1 MiB + 1", []int{400 << 10, 400 << 10, 224<<10 + 1}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
			ctx := testContext(t)
			c := dial(t, ctx, ch.url("/echo"), nil)
			w, err := c.Writer(ctx, websocket.MessageBinary)
			if err != nil {
				t.Fatal(err)
			}
			for _, n := range tc.fragments {
				if _, err := w.Write(randomBytes(n)); err != nil {
					break // the relay may close before the last fragment is out
				}
			}
			w.Close()
			_, _, err = c.Read(ctx)
			if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
				t.Fatalf("client read %v, want close 1009", err)
			}
			if got := ch.backend.closeStatus(t); got != websocket.StatusMessageTooBig {
				t.Fatalf("backend saw %v, want 1009", got)
			}
			if err := ch.a.result(t); !errors.Is(err, wsrelay.ErrMessageTooBig) {
				t.Fatalf("A: %v, want ErrMessageTooBig", err)
			}
			if ch.a.metrics.TooBig.Load() != 1 {
				t.Fatalf("A counted %d 1009 closes", ch.a.metrics.TooBig.Load())
			}
		})
	}
	t.Run("from the backend", func(t *testing.T) {
		ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
		ctx := testContext(t)
		c := dial(t, ctx, ch.url("/big"), nil)
		if err := c.Write(ctx, websocket.MessageBinary, binary.BigEndian.AppendUint64(nil, 1<<20+1)); err != nil {
			t.Fatal(err)
		}
		_, _, err := c.Read(ctx)
		if got := websocket.CloseStatus(err); got != websocket.StatusMessageTooBig {
			t.Fatalf("client read %v, want close 1009", err)
		}
		if got := ch.backend.closeStatus(t); got != websocket.StatusMessageTooBig {
			t.Fatalf("backend saw %v, want 1009", got)
		}
		if err := ch.b.result(t); !errors.Is(err, wsrelay.ErrMessageTooBig) || !strings.Contains(err.Error(), "upstream") {
			t.Fatalf("B: %v, want ErrMessageTooBig from the upstream", err)
		}
	})
}

func TestIdleTimeout(t *testing.T) {
	ch := newChain(t, wsrelay.Limits{IdleTimeout: time.Second}, wsrelay.Limits{})
	ctx := testContext(t)
	c := dial(t, ctx, ch.url("/echo"), nil)
	// Traffic keeps it open past the timeout...
	for i := 0; i < 15; i++ {
		if err := c.Write(ctx, websocket.MessageText, []byte("tick")); err != nil {
			t.Fatal(err)
		}
		if _, _, err := c.Read(ctx); err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
	// ...and silence closes it both ways.
	_, _, err := c.Read(ctx)
	var ce websocket.CloseError
	if !errors.As(err, &ce) || ce.Code != websocket.StatusGoingAway || ce.Reason != "idle timeout" {
		t.Fatalf("client read %v, want close 1001 idle timeout", err)
	}
	if got := ch.backend.closeStatus(t); got != websocket.StatusGoingAway {
		t.Fatalf("backend saw %v, want 1001", got)
	}
	if err := ch.a.result(t); !errors.Is(err, wsrelay.ErrIdleTimeout) {
		t.Fatalf("A: %v, want ErrIdleTimeout", err)
	}
	if err := ch.b.result(t); err != nil {
		t.Fatalf("B relayed a peer's close and should end cleanly: %v", err)
	}
}

func TestDrainOnContextEnd(t *testing.T) {
	ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
	ctx := testContext(t)
	c := dial(t, ctx, ch.url("/echo"), nil)
	if err := c.Write(ctx, websocket.MessageText, []byte("hi")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); err != nil {
		t.Fatal(err)
	}
	ch.a.cancel()
	_, _, err := c.Read(ctx)
	if got := websocket.CloseStatus(err); got != websocket.StatusGoingAway {
		t.Fatalf("client read %v, want close 1001", err)
	}
	if got := ch.backend.closeStatus(t); got != websocket.StatusGoingAway {
		t.Fatalf("backend saw %v, want 1001", got)
	}
	if err := ch.a.result(t); !errors.Is(err, wsrelay.ErrDrained) || !errors.Is(err, context.Canceled) {
		t.Fatalf("A: %v, want ErrDrained", err)
	}
}

// TestRefusedUpgradeStaysHTTP is checklist D25: after a refused upgrade the
// client's connection must still be HTTP, parsed and routed by A, never a
// tunnel to the upstream.
func TestRefusedUpgradeStaysHTTP(t *testing.T) {
	for _, tc := range []struct {
		path      string
		status    int
		body      string
		pipelined bool
	}{
		{"/refuse403", 403, `{"message":"backend says no"}`, false},
		{"/refuse426", 426, "upgrade elsewhere", false},
		{"/plain200", 200, "not a websocket", false},
		{"/refuse403", 403, `{"message":"backend says no"}`, true},
	} {
		t.Run(fmt.Sprintf("%d pipelined=%v", tc.status, tc.pipelined), func(t *testing.T) {
			ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
			conn, err := net.Dial("tcp", ch.a.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(testTimeout))
			br := bufio.NewReader(conn)
			upgrade := "GET " + tc.path + " HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"
			second := "GET /second HTTP/1.1\r\nHost: a.test\r\n\r\n"
			if tc.pipelined {
				io.WriteString(conn, upgrade+second)
			} else {
				io.WriteString(conn, upgrade)
			}
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || string(body) != tc.body {
				t.Fatalf("refusal relayed as %d %q, want %d %q", resp.StatusCode, body, tc.status, tc.body)
			}
			if tc.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Fatalf("426 without Sec-WebSocket-Version: %v", resp.Header)
			}
			if resp.Header.Get("Upgrade") != "" || resp.Header.Get("X-Request-Id") != "A-id" {
				t.Fatalf("refusal headers: %v", resp.Header)
			}
			if !tc.pipelined {
				io.WriteString(conn, second)
			}
			resp, err = http.ReadResponse(br, nil)
			if err != nil {
				t.Fatalf("second request on the socket: %v", err)
			}
			body, _ = io.ReadAll(resp.Body)
			if string(body) != "A saw /second" {
				t.Fatalf("second request answered %d %q, want A's own handler", resp.StatusCode, body)
			}
			select {
			case p := <-ch.a.seen:
				if p != "/second" {
					t.Fatalf("A's handler saw %q", p)
				}
			default:
				t.Fatal("A's handler did not see the second request")
			}
			if paths := ch.backend.sawPaths(); len(paths) != 1 || paths[0] != tc.path {
				t.Fatalf("backend saw %q: something was tunnelled", paths)
			}
			if len(ch.b.seen) != 0 {
				t.Fatalf("B answered a plain request: something was tunnelled")
			}
			if err := ch.a.result(t); !errors.Is(err, wsrelay.ErrRefused) {
				t.Fatalf("A: %v, want ErrRefused", err)
			}
		})
	}
}

func TestBadClientHandshake(t *testing.T) {
	ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
	base := "Host: a.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
	key := "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n"
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"no key", "GET /echo HTTP/1.1\r\n" + base + "Sec-WebSocket-Version: 13\r\n\r\n", 400},
		{"short key", "GET /echo HTTP/1.1\r\n" + base + "Sec-WebSocket-Key: c2hvcnQ=\r\nSec-WebSocket-Version: 13\r\n\r\n", 400},
		{"version 8", "GET /echo HTTP/1.1\r\n" + base + key + "Sec-WebSocket-Version: 8\r\n\r\n", 426},
		{"POST", "POST /echo HTTP/1.1\r\n" + base + key + "Sec-WebSocket-Version: 13\r\nContent-Length: 0\r\n\r\n", 400},
		{"body", "GET /echo HTTP/1.1\r\n" + base + key + "Sec-WebSocket-Version: 13\r\nContent-Length: 2\r\n\r\nhi", 400},
		{"no Connection upgrade", "GET /echo HTTP/1.1\r\nHost: a.test\r\nUpgrade: websocket\r\n" + key + "Sec-WebSocket-Version: 13\r\n\r\n", 400},
		{"HTTP/1.0", "GET /echo HTTP/1.0\r\n" + base + key + "Sec-WebSocket-Version: 13\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			conn, err := net.Dial("tcp", ch.a.addr())
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			conn.SetDeadline(time.Now().Add(testTimeout))
			io.WriteString(conn, tc.req)
			resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			if resp.StatusCode != tc.status || !strings.HasPrefix(string(body), `{"message":`) {
				t.Fatalf("got %d %s, want %d with a JSON error", resp.StatusCode, body, tc.status)
			}
			if tc.status == 426 && resp.Header.Get("Sec-WebSocket-Version") != "13" {
				t.Fatal("426 without Sec-WebSocket-Version: 13")
			}
			if err := ch.a.result(t); !errors.Is(err, wsrelay.ErrBadHandshake) {
				t.Fatalf("A: %v", err)
			}
		})
	}
	if paths := ch.backend.sawPaths(); len(paths) != 0 {
		t.Fatalf("bad handshakes reached the backend: %q", paths)
	}
}

func TestBrokenUpstreamHandshake(t *testing.T) {
	for _, path := range []string{"/badaccept", "/badext", "/hugerefusal"} {
		t.Run(path, func(t *testing.T) {
			ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
			ctx := testContext(t)
			_, resp, err := websocket.Dial(ctx, ch.url(path), nil)
			if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
				t.Fatalf("dial through a broken upstream: resp %v, err %v; want 502", resp, err)
			}
			if err := ch.b.result(t); !errors.Is(err, wsrelay.ErrUpstream) {
				t.Fatalf("B: %v, want ErrUpstream", err)
			}
			if err := ch.a.result(t); !errors.Is(err, wsrelay.ErrRefused) {
				t.Fatalf("A: %v, want ErrRefused (B's 502 relayed)", err)
			}
		})
	}
	t.Run("unreachable", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		dead := l.Addr().String()
		l.Close()
		a := newHop(t, "A", dead, wsrelay.Limits{})
		_, resp, err := websocket.Dial(testContext(t), "ws://"+a.addr()+"/x", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusBadGateway {
			t.Fatalf("resp %v, err %v; want 502", resp, err)
		}
	})
	t.Run("silent upstream times out", func(t *testing.T) {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer l.Close()
		go func() { // accepts and never answers
			for {
				c, err := l.Accept()
				if err != nil {
					return
				}
				defer c.Close()
			}
		}()
		a := newHop(t, "A", l.Addr().String(), wsrelay.Limits{HandshakeTimeout: 200 * time.Millisecond})
		_, resp, err := websocket.Dial(testContext(t), "ws://"+a.addr()+"/x", nil)
		if err == nil || resp == nil || resp.StatusCode != http.StatusGatewayTimeout {
			t.Fatalf("resp %v, err %v; want 504", resp, err)
		}
	})
}

func TestProtocolViolations(t *testing.T) {
	for _, tc := range []struct {
		name  string
		frame []byte
		code  uint16
	}{
		{"unmasked client frame", unmaskedFrame(true, 0, 0x1, []byte("hi")), 1002},
		{"rsv1 without extension", maskedFrame(true, 0x40, 0x1, []byte("hi")), 1002},
		{"ping over 125 bytes", maskedFrame(true, 0, 0x9, make([]byte, 126)), 1002},
		{"fragmented ping", maskedFrame(false, 0, 0x9, []byte("p")), 1002},
		{"continuation first", maskedFrame(true, 0, 0x0, []byte("x")), 1002},
		{"opcode 3", maskedFrame(true, 0, 0x3, []byte("x")), 1002},
		{"close code 1005", maskedFrame(true, 0, 0x8, closePayload(1005, "")), 1002},
		{"close reason not UTF-8", maskedFrame(true, 0, 0x8, closePayload(1000, "\xff")), 1007},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
			rc := rawDial(t, ch.a.addr(), "/echo")
			rc.write(t, tc.frame)
			f := rc.read(t)
			if f.op != 0x8 || f.code() != tc.code {
				t.Fatalf("got %+v (code %d), want close %d", f, f.code(), tc.code)
			}
			rc.expectEOF(t)
			if got := ch.backend.closeStatus(t); got != websocket.StatusCode(tc.code) {
				t.Fatalf("backend saw %v, want %d", got, tc.code)
			}
			if err := ch.a.result(t); !errors.Is(err, wsrelay.ErrProtocol) {
				t.Fatalf("A: %v, want ErrProtocol", err)
			}
		})
	}
	t.Run("masked server frame", func(t *testing.T) {
		ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
		ctx := testContext(t)
		c := dial(t, ctx, ch.url("/maskedserver"), nil)
		_, _, err := c.Read(ctx)
		if got := websocket.CloseStatus(err); got != websocket.StatusProtocolError {
			t.Fatalf("client read %v, want close 1002", err)
		}
		if err := ch.b.result(t); !errors.Is(err, wsrelay.ErrProtocol) {
			t.Fatalf("B: %v, want ErrProtocol", err)
		}
	})
}

// TestSlowConsumer: a client that stops reading must not make the relays
// buffer: the backend's writes stall once the fixed buffers and the kernel's
// socket buffers are full, and everything arrives once the client reads.
func TestSlowConsumer(t *testing.T) {
	ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
	ctx := testContext(t)
	c := dial(t, ctx, ch.url("/flood"), nil)
	const messages = 2048 // 128 MiB in 64 KiB messages
	if err := c.Write(ctx, websocket.MessageBinary, binary.BigEndian.AppendUint64(nil, messages)); err != nil {
		t.Fatal(err)
	}
	// Wait until the backend has stopped making progress (bounded).
	var last int64 = -1
	stalled := 0
	for i := 0; i < 400 && stalled < 5; i++ {
		time.Sleep(50 * time.Millisecond)
		var now int64
		select {
		case now = <-ch.backend.flooded:
			ch.backend.flooded <- now
		default:
			now = last
		}
		if now == last {
			stalled++
		} else {
			stalled, last = 0, now
		}
	}
	// Loopback socket buffers can hold several MiB each way on each hop;
	// the relays themselves hold at most a few fixed buffers.
	const bound = 64 << 20
	if stalled < 5 || last >= bound {
		t.Fatalf("backend wrote %d bytes to a client that reads nothing (stalled=%v): the relays are buffering", last, stalled >= 5)
	}
	t.Logf("backend stalled after %d bytes in flight", last)
	for i := 0; i < messages; i++ {
		_, p, err := c.Read(ctx)
		if err != nil {
			t.Fatalf("message %d: %v", i, err)
		}
		if len(p) != 64<<10 || binary.BigEndian.Uint64(p) != uint64(i) {
			t.Fatalf("message %d: %d bytes, number %d", i, len(p), binary.BigEndian.Uint64(p))
		}
	}
	c.Close(websocket.StatusNormalClosure, "")
}

// --- a minimal raw WebSocket client, to send what real clients never do ---

type rawConn struct {
	conn net.Conn
	br   *bufio.Reader
}

type rawFrame struct {
	fin     bool
	op      byte
	payload []byte
}

func (f rawFrame) code() uint16 {
	if f.op != 0x8 || len(f.payload) < 2 {
		return 0
	}
	return binary.BigEndian.Uint16(f.payload)
}

func acceptFor(key string) string {
	// Duplicates the RFC computation on purpose: the test must not trust the
	// package's own.
	h := sha1Sum(key + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11")
	return h
}

func rawDial(t *testing.T, addr, path string) *rawConn {
	t.Helper()
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	conn.SetDeadline(time.Now().Add(testTimeout))
	key := "dGhlIHNhbXBsZSBub25jZQ=="
	fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n", path, addr, key)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != acceptFor(key) {
		t.Fatalf("raw handshake: %d %v", resp.StatusCode, resp.Header)
	}
	return &rawConn{conn: conn, br: br}
}

func (c *rawConn) write(t *testing.T, b []byte) {
	t.Helper()
	if _, err := c.conn.Write(b); err != nil {
		t.Fatal(err)
	}
}

func (c *rawConn) read(t *testing.T) rawFrame {
	t.Helper()
	var h [2]byte
	if _, err := io.ReadFull(c.br, h[:]); err != nil {
		t.Fatalf("reading a frame: %v", err)
	}
	if h[1]&0x80 != 0 {
		t.Fatal("the relay sent a masked frame to the client")
	}
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		var b [2]byte
		io.ReadFull(c.br, b[:])
		n = uint64(binary.BigEndian.Uint16(b[:]))
	case 127:
		var b [8]byte
		io.ReadFull(c.br, b[:])
		n = binary.BigEndian.Uint64(b[:])
	}
	p := make([]byte, n)
	if _, err := io.ReadFull(c.br, p); err != nil {
		t.Fatalf("reading a payload: %v", err)
	}
	return rawFrame{fin: h[0]&0x80 != 0, op: h[0] & 0xf, payload: p}
}

func (c *rawConn) expectEOF(t *testing.T) {
	t.Helper()
	n, err := io.Copy(io.Discard, c.br)
	if err != nil || n != 0 {
		t.Fatalf("after the close: %d more bytes, %v; want EOF", n, err)
	}
}

func frame(fin bool, rsv, op byte, payload []byte, mask bool) []byte {
	b0 := op | rsv
	if fin {
		b0 |= 0x80
	}
	var mbit byte
	if mask {
		mbit = 0x80
	}
	out := []byte{b0}
	switch n := len(payload); {
	case n < 126:
		out = append(out, mbit|byte(n))
	case n <= 0xffff:
		out = append(out, mbit|126)
		out = binary.BigEndian.AppendUint16(out, uint16(n))
	default:
		out = append(out, mbit|127)
		out = binary.BigEndian.AppendUint64(out, uint64(n))
	}
	if !mask {
		return append(out, payload...)
	}
	key := randomBytes(4)
	out = append(out, key...)
	for i, c := range payload {
		out = append(out, c^key[i&3])
	}
	return out
}

func maskedFrame(fin bool, rsv, op byte, p []byte) []byte   { return frame(fin, rsv, op, p, true) }
func unmaskedFrame(fin bool, rsv, op byte, p []byte) []byte { return frame(fin, rsv, op, p, false) }

func closePayload(code uint16, reason string) []byte {
	return append(binary.BigEndian.AppendUint16(nil, code), reason...)
}

func sha1Sum(s string) string {
	h := sha1.Sum([]byte(s))
	return base64.StdEncoding.EncodeToString(h[:])
}

// TestServerDeadlinesDoNotReachTheRelay: http.Server's read and write
// timeouts are set on the connection before the handler runs; after the
// hijack they must not cut the WebSocket. A is served over TLS, as an edge is.
func TestServerDeadlinesDoNotReachTheRelay(t *testing.T) {
	be := newBackend(t)
	b := newHop(t, "B", be.addr(), wsrelay.Limits{})
	a := newHopWith(t, "A", b.addr(), wsrelay.Limits{}, func(s *http.Server) {
		// Long enough for a TLS handshake on a loaded machine, short
		// enough to pass well within the test.
		s.ReadTimeout = time.Second
		s.WriteTimeout = time.Second
		s.ReadHeaderTimeout = time.Second
	})
	ctx := testContext(t)
	c := dial(t, ctx, "wss://"+a.addr()+"/echo", &websocket.DialOptions{HTTPClient: a.srv.Client()})
	for i := 0; i < 2; i++ {
		time.Sleep(1200 * time.Millisecond) // past both server timeouts
		if err := c.Write(ctx, websocket.MessageText, []byte("still here")); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		if _, p, err := c.Read(ctx); err != nil || string(p) != "still here" {
			t.Fatalf("read %d: %q, %v", i, p, err)
		}
	}
	if err := c.Close(websocket.StatusNormalClosure, ""); err != nil {
		t.Fatal(err)
	}
	if err := a.result(t); err != nil {
		t.Fatalf("A: %v", err)
	}
}
