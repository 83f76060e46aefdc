package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// gauge counts handler starts and the most handlers running at once.
type gauge struct {
	started, active, maxActive atomic.Int64
}

func (g *gauge) handler(hold time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.started.Add(1)
		n := g.active.Add(1)
		defer g.active.Add(-1)
		for {
			m := g.maxActive.Load()
			if n <= m || g.maxActive.CompareAndSwap(m, n) {
				break
			}
		}
		// The worst case: a handler that keeps working after its client
		// went away (a slow origin call that ignores cancellation).
		time.Sleep(hold)
		w.Write([]byte("ok"))
	})
}

// rawH2 is a client that writes HTTP/2 frames by hand over TLS.
type rawH2 struct {
	t      *testing.T
	conn   *tls.Conn
	fr     *http2.Framer
	wmu    sync.Mutex
	hblock []byte

	settled  chan struct{} // closed once the server's SETTINGS is acknowledged
	goAway   atomic.Pointer[http2.GoAwayFrame]
	closed   chan struct{} // closed when the reader sees the end of the connection
	rstSeen  atomic.Int64
	respSeen atomic.Int64
}

func dialRawH2(t *testing.T, s *Server, pki *testPKI) *rawH2 {
	t.Helper()
	conn, err := tls.Dial("tcp", s.TLSAddr().String(), pki.clientTLS("h2"))
	if err != nil {
		t.Fatal(err)
	}
	if p := conn.ConnectionState().NegotiatedProtocol; p != "h2" {
		t.Fatalf("negotiated %q, want h2", p)
	}
	c := &rawH2{t: t, conn: conn, closed: make(chan struct{}), settled: make(chan struct{})}
	t.Cleanup(func() { conn.Close() })
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	c.fr = http2.NewFramer(conn, conn)
	c.fr.AllowIllegalWrites = true // WINDOW_UPDATE(0) and friends
	c.fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	if err := c.fr.WriteSettings(); err != nil {
		t.Fatal(err)
	}
	c.hblock = encodeHeaders(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/")
	go c.read()
	// Let the SETTINGS exchange finish first: an ACK written in the middle
	// of a header block would itself be a protocol error.
	select {
	case <-c.settled:
	case <-time.After(5 * time.Second):
		t.Fatal("no SETTINGS from the server")
	}
	return c
}

// encodeHeaders HPACK-encodes name, value pairs.
func encodeHeaders(kv ...string) []byte {
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	for i := 0; i+1 < len(kv); i += 2 {
		enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return buf.Bytes()
}

func (c *rawH2) read() {
	defer close(c.closed)
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WriteSettingsAck() })
				select {
				case <-c.settled:
				default:
					close(c.settled)
				}
			}
		case *http2.GoAwayFrame:
			c.goAway.Store(f)
		case *http2.RSTStreamFrame:
			c.rstSeen.Add(1)
		case *http2.MetaHeadersFrame:
			c.respSeen.Add(1)
		case *http2.PingFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WritePing(true, f.Data) })
			}
		}
	}
}

func (c *rawH2) write(f func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return f()
}

// endedByServer waits for the server to end the connection and reports
// how: GOAWAY (with its code) and/or close.
func (c *rawH2) endedByServer(d time.Duration) (goAway *http2.GoAwayFrame, closed bool) {
	select {
	case <-c.closed:
		closed = true
	case <-time.After(d):
	}
	return c.goAway.Load(), closed
}

func TestRapidReset(t *testing.T) {
	var g gauge
	s, pki := startServer(t, Config{}, g.handler(200*time.Millisecond))
	c := dialRawH2(t, s, pki)
	const attempts = 20000
	deadline := time.Now().Add(15 * time.Second)
	sent := 0
	for i := 0; i < attempts && time.Now().Before(deadline); i++ {
		id := uint32(1 + 2*i)
		err := c.write(func() error {
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hblock, EndStream: true, EndHeaders: true}); err != nil {
				return err
			}
			return c.fr.WriteRSTStream(id, http2.ErrCodeCancel)
		})
		if err != nil {
			break // the server hung up: that is the point
		}
		sent++
	}
	ga, closed := c.endedByServer(5 * time.Second)
	t.Logf("sent %d HEADERS+RST of %d; handlers started %d, max concurrent %d; GOAWAY %v; closed %t",
		sent, attempts, g.started.Load(), g.maxActive.Load(), ga, closed)
	if ga == nil || ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("no GOAWAY ENHANCE_YOUR_CALM (got %v)", ga)
	}
	if !closed {
		t.Errorf("connection still open after the reset budget was spent")
	}
	if m := g.maxActive.Load(); m > 100 {
		t.Errorf("max concurrent handlers %d > 100", m)
	}
	// Budget 200 resets, plus the streams the server had already taken in.
	if st := g.started.Load(); st > 400 {
		t.Errorf("handlers started %d: rapid reset not contained", st)
	}
	if s.Stats().H2Abusive < 1 {
		t.Errorf("Stats().H2Abusive = 0")
	}
}

func TestMadeYouReset(t *testing.T) {
	var g gauge
	s, pki := startServer(t, Config{}, g.handler(200*time.Millisecond))
	c := dialRawH2(t, s, pki)
	const attempts = 20000
	deadline := time.Now().Add(15 * time.Second)
	sent := 0
	for i := 0; i < attempts && time.Now().Before(deadline); i++ {
		id := uint32(1 + 2*i)
		err := c.write(func() error {
			// The stream stays open for a body, then a zero window increment
			// (a protocol error) makes the server reset it.
			if err := c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: c.hblock, EndStream: false, EndHeaders: true}); err != nil {
				return err
			}
			return c.fr.WriteWindowUpdate(id, 0)
		})
		if err != nil {
			break
		}
		sent++
	}
	ga, closed := c.endedByServer(5 * time.Second)
	t.Logf("sent %d HEADERS+WINDOW_UPDATE(0); server RSTs seen %d; handlers started %d, max concurrent %d; GOAWAY %v; closed %t",
		sent, c.rstSeen.Load(), g.started.Load(), g.maxActive.Load(), ga, closed)
	if ga == nil || ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("no GOAWAY ENHANCE_YOUR_CALM (got %v)", ga)
	}
	if !closed {
		t.Errorf("connection still open after the reset budget was spent")
	}
	if m := g.maxActive.Load(); m > 100 {
		t.Errorf("max concurrent handlers %d > 100", m)
	}
	if st := g.started.Load(); st > 400 {
		t.Errorf("handlers started %d: MadeYouReset not contained", st)
	}
}

func TestContinuationFlood(t *testing.T) {
	var g gauge
	s, pki := startServer(t, Config{}, g.handler(0))
	c := dialRawH2(t, s, pki)
	// A HEADERS frame without END_HEADERS, then CONTINUATION frames that
	// never end the block, each carrying a little more header.
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.WriteField(hpack.HeaderField{Name: "x-a", Value: "b"})
	frag := buf.Bytes()
	err := c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: c.hblock, EndStream: true, EndHeaders: false})
	})
	if err != nil {
		t.Fatal(err)
	}
	sent := 0
	deadline := time.Now().Add(10 * time.Second)
	for i := 0; i < 100000 && time.Now().Before(deadline); i++ {
		if err := c.write(func() error { return c.fr.WriteContinuation(1, false, frag) }); err != nil {
			break
		}
		sent++
	}
	ga, closed := c.endedByServer(5 * time.Second)
	t.Logf("sent %d CONTINUATION frames; GOAWAY %v; closed %t; handler started %d", sent, ga, closed, g.started.Load())
	if ga == nil && !closed {
		t.Errorf("connection neither got GOAWAY nor was closed")
	}
	if ga != nil && ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("GOAWAY code %v, want ENHANCE_YOUR_CALM", ga.ErrCode)
	}
	if n := g.started.Load(); n != 0 {
		t.Errorf("handler ran %d times for a header block that never ended", n)
	}
}

// TestNormalH2TrafficKeepsConnection: many requests and a few
// cancellations on one connection stay within the budget.
func TestNormalH2TrafficKeepsConnection(t *testing.T) {
	var g gauge
	s, pki := startServer(t, Config{}, g.handler(0))
	c := h2Client(pki)
	for i := range 500 {
		resp, err := c.Get(s.tlsURL() + "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
	for range 50 {
		ctx, cancel := context.WithCancel(context.Background())
		req, _ := http.NewRequestWithContext(ctx, "GET", s.tlsURL()+"/", nil)
		go func() { time.Sleep(time.Millisecond); cancel() }()
		if resp, err := c.Do(req); err == nil {
			resp.Body.Close()
		} else if !errors.Is(err, context.Canceled) {
			t.Fatalf("cancelled request: %v", err)
		}
		cancel()
	}
	resp, err := c.Get(s.tlsURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if n := s.Stats().H2Abusive; n != 0 {
		t.Fatalf("a normal client was treated as abusive (%d)", n)
	}
}
