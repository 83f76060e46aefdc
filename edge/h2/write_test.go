package h2

import (
	"bytes"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// fakeConn is a net.Conn whose writes are recorded (each Write's size
// too), that fails writes after failAfter octets (never, when 0), and
// whose writes block while blocked is set. Reads block until Close.
type fakeConn struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	sizes     []int
	failAfter int
	blocked   bool
	closed    chan struct{}
	once      sync.Once
}

func newFakeConn() *fakeConn { return &fakeConn{closed: make(chan struct{})} }

func (c *fakeConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	blocked := c.blocked
	c.mu.Unlock()
	if blocked {
		<-c.closed
		return 0, net.ErrClosed
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failAfter > 0 && c.buf.Len()+len(p) > c.failAfter {
		return 0, errors.New("peer gone")
	}
	c.sizes = append(c.sizes, len(p))
	return c.buf.Write(p)
}

func (c *fakeConn) Read([]byte) (int, error) { <-c.closed; return 0, net.ErrClosed }
func (c *fakeConn) Close() error             { c.once.Do(func() { close(c.closed) }); return nil }
func (c *fakeConn) LocalAddr() net.Addr      { return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 443} }
func (c *fakeConn) RemoteAddr() net.Addr {
	return &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 50000}
}
func (c *fakeConn) SetDeadline(time.Time) error      { return nil }
func (c *fakeConn) SetReadDeadline(time.Time) error  { return nil }
func (c *fakeConn) SetWriteDeadline(time.Time) error { return nil }

// writerConn is a conn with its writer running over a fakeConn, and no
// frame loop.
func writerConn(t *testing.T, fc *fakeConn) *conn {
	t.Helper()
	s := NewServer(Config{Logger: testLogger(t)}, http.NotFoundHandler())
	c := s.newConn(fc)
	// These tests look at their own frames only: not at the SETTINGS
	// newConn queued.
	c.wbuf, c.writerPending = c.wbuf[:0], false
	<-c.wake
	go c.writeLoop()
	t.Cleanup(func() {
		c.mu.Lock()
		c.closed = true
		c.wakeWriterLocked()
		c.mu.Unlock()
		fc.Close()
		<-c.writerDone
	})
	return c
}

// queue appends frames as one locked step, as a handler does.
func (c *conn) queueForTest(f func(b []byte) []byte) {
	c.mu.Lock()
	c.wbuf = f(c.buf())
	c.wakeWriterLocked()
	c.mu.Unlock()
}

func (c *conn) drainForTest(t *testing.T) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		idle := !c.writerPending
		c.mu.Unlock()
		if idle {
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("the writer did not drain the queue")
		}
		time.Sleep(time.Millisecond)
	}
}

// Many small frames leave in order, in far fewer writes.
func TestWriterKeepsOrderAndBatches(t *testing.T) {
	fc := newFakeConn()
	c := writerConn(t, fc)
	var want []byte
	for i := range 20000 {
		p := []byte{byte(i), byte(i >> 8), byte(i >> 16)}
		want = appendData(want, 1, p, false)
		c.queueForTest(func(b []byte) []byte { return appendData(b, 1, p, false) })
	}
	c.drainForTest(t)
	fc.mu.Lock()
	defer fc.mu.Unlock()
	if !bytes.Equal(fc.buf.Bytes(), want) {
		t.Fatalf("bytes out of order or lost: got %d, want %d", fc.buf.Len(), len(want))
	}
	if len(fc.sizes) >= 20000/4 {
		t.Fatalf("%d writes for 20000 frames: nothing was batched", len(fc.sizes))
	}
	t.Logf("20000 frames left in %d writes", len(fc.sizes))
}

// After the connection fails, handlers' writes report it instead of
// queueing.
func TestWriterReportsFailure(t *testing.T) {
	var werr error
	done := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		defer close(done)
		chunk := make([]byte, 16<<10)
		for range 1000 {
			if _, werr = w.Write(chunk); werr != nil {
				return
			}
		}
	})
	ts := startServer(t, Config{}, h)
	c := ts.dialRaw(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	c.raw(frame(frameWindowUpdate, 0, 0, u32(1<<30)...))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	time.Sleep(50 * time.Millisecond)
	c.conn.Close()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("handler still writing 10s after the client went away")
	}
	if werr == nil {
		t.Fatal("16 MiB written to a closed connection without an error")
	}
}

// The writer's failure marks the connection: queued and later writes fail.
func TestWriterFailureEndsConnection(t *testing.T) {
	fc := newFakeConn()
	fc.failAfter = 100
	c := writerConn(t, fc)
	c.queueForTest(func(b []byte) []byte { return appendData(b, 1, make([]byte, 200), false) })
	deadline := time.Now().Add(5 * time.Second)
	for {
		c.mu.Lock()
		err, closed := c.werr, c.closed
		c.mu.Unlock()
		if err != nil {
			if err.Error() != "peer gone" || !closed {
				t.Fatalf("werr %v, closed %t", err, closed)
			}
			return
		}
		if time.Now().After(deadline) {
			t.Fatal("write failure not noticed")
		}
		time.Sleep(time.Millisecond)
	}
}

// A stream's response and the RST_STREAM(NO_ERROR) after it leave in
// separate writes (so separate TLS records), however they were queued:
// curl 7.88 drops a response that arrives in one record with its stream's
// reset. What comes before and after still leaves batched.
func TestResetLeavesInItsOwnWrite(t *testing.T) {
	fc := newFakeConn()
	fc.mu.Lock()
	fc.blocked = false
	fc.mu.Unlock()
	c := writerConn(t, fc)
	headers := frame(frameHeaders, flagEndHeaders, 1, 0x88)
	data := frame(frameData, flagEndStream, 1, bytes.Repeat([]byte("d"), 100)...)
	next := frame(frameData, 0, 3, []byte("next")...)
	// Hold the writer so that everything is queued before it runs.
	c.mu.Lock()
	c.writerPending = true
	c.wbuf = append(c.buf(), headers...)
	c.wbuf = append(c.wbuf, data...)
	c.appendRSTLocked(1, ErrCodeNo)
	c.wbuf = append(c.wbuf, next...)
	c.writerPending = false
	c.wakeWriterLocked()
	c.mu.Unlock()
	c.drainForTest(t)
	fc.mu.Lock()
	defer fc.mu.Unlock()
	cut := len(headers) + len(data)
	if want := []int{cut, fc.buf.Len() - cut}; !slices.Equal(fc.sizes, want) {
		t.Fatalf("write sizes %v, want %v: the reset starts a write of its own, the rest is batched", fc.sizes, want)
	}
	if !bytes.Equal(fc.buf.Bytes()[cut:cut+9], appendFrameHeader(nil, 4, frameRSTStream, 0, 1)) {
		t.Fatalf("the second write does not start with the RST_STREAM")
	}
}

// recordingTLSConn records what each Write to the TLS connection carried:
// each Write becomes TLS records of its own.
type recordingTLSConn struct {
	*tls.Conn
	mu     sync.Mutex
	writes [][]byte
}

func (c *recordingTLSConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.writes = append(c.writes, append([]byte(nil), p...))
	c.mu.Unlock()
	return c.Conn.Write(p)
}

func (c *recordingTLSConn) NetConn() net.Conn { return c.Conn }

// End to end over TLS: a handler that answers without reading the body
// gets its response and the RST_STREAM(NO_ERROR) that follows into
// separate TLS writes, and the client receives the whole response.
func TestResponseAndResetInSeparateRecords(t *testing.T) {
	p := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	s := NewServer(Config{Logger: testLogger(t)}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "no thanks")
	}))
	rec := make(chan *recordingTLSConn, 1)
	go func() {
		nc, err := ln.Accept()
		if err != nil {
			return
		}
		tc := tls.Server(nc, &tls.Config{Certificates: []tls.Certificate{p.leaf}, NextProtos: []string{"h2"}})
		if tc.Handshake() != nil {
			return
		}
		rc := &recordingTLSConn{Conn: tc}
		rec <- rc
		s.ServeConn(rc)
	}()
	conn, err := tls.Dial("tcp", ln.Addr().String(), p.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	c := &rawConn{t: t, conn: conn, frames: make(chan http2.Frame, 1000), closed: make(chan struct{}), settings: make(chan struct{})}
	c.enc = newEncoder(&c.ebuf)
	conn.Write([]byte(http2.ClientPreface))
	c.fr = newClientFramer(conn)
	c.fr.WriteSettings()
	go c.read()
	<-c.settings
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")...))
	c.raw(frame(frameData, 0, 1, []byte("part of a body")...))
	var body []byte
	for {
		f := c.next(5*time.Second, nil)
		if f == nil {
			t.Fatal("no RST_STREAM")
		}
		if d, ok := f.(*dataFrame); ok {
			body = append(body, d.Data()...)
		}
		if r, ok := f.(*http2.RSTStreamFrame); ok {
			if r.ErrCode != http2.ErrCodeNo {
				t.Fatalf("RST_STREAM %v, want NO_ERROR", r.ErrCode)
			}
			break
		}
	}
	if string(body) != "no thanks" {
		t.Fatalf("response body %q", body)
	}
	rc := <-rec
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for i, w := range rc.writes {
		// Find the RST_STREAM frame's write: it must start with it.
		for off := 0; off+frameHeaderLen <= len(w); {
			fh := parseFrameHeader(w[off:])
			if fh.Type == frameRSTStream && fh.StreamID == 1 {
				if off != 0 {
					t.Fatalf("write %d carries the RST_STREAM at offset %d, after %d octets of other frames", i, off, off)
				}
				if i == 0 || !strings.Contains(string(rc.writes[i-1]), "no thanks") {
					t.Fatalf("the response is not in the write before the RST_STREAM")
				}
				return
			}
			off += frameHeaderLen + int(fh.Length)
		}
	}
	t.Fatal("no write carried the RST_STREAM")
}

// A client that never reads cannot hold the connection, nor a handler
// blocked on the full queue: WriteTimeout cuts the connection.
func TestStalledClientCut(t *testing.T) {
	writeErr := make(chan error, 1)
	ts := startServer(t, Config{WriteTimeout: 500 * time.Millisecond}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		chunk := make([]byte, 16<<10)
		for range 4096 { // 64 MiB: far more than the socket buffers and the queue hold
			if _, err := w.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- io.ErrShortWrite
	}))
	conn, err := tls.Dial("tcp", ts.addr, ts.pki.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	fr := newClientFramer(conn)
	conn.Write([]byte(http2.ClientPreface))
	fr.WriteSettings(http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 30})
	fr.WriteWindowUpdate(0, 1<<30)
	var buf bytes.Buffer
	enc := newEncoder(&buf)
	for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}} {
		enc.WriteField(hf(kv[0], kv[1]))
	}
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: buf.Bytes(), EndStream: true, EndHeaders: true})
	// Never read.
	select {
	case err := <-writeErr:
		if err == io.ErrShortWrite {
			t.Fatal("64 MiB accepted for a client that does not read")
		}
	case <-time.After(10 * time.Second):
		t.Fatal("a handler writing to a client that does not read was not stopped")
	}
}

// Replies the client makes the server queue without reading them (PING
// and SETTINGS acknowledgements behind a write that does not complete)
// are capped: past controlSlack the connection ends with
// ENHANCE_YOUR_CALM, whatever the control-frame budget has left.
func TestUnreadRepliesCapped(t *testing.T) {
	fc := newFakeConn()
	fc.blocked = true // the socket accepts nothing
	c := writerConn(t, fc)
	ping := make([]byte, 8)
	for i := range 100000 {
		c.ctrlTokens = controlBurst // the budget is not what stops it
		err := c.processPing(frameHeader{Type: framePing, Length: 8}, ping)
		if err == nil {
			continue
		}
		var ce connError
		if !errors.As(err, &ce) || ce.Code != ErrCodeEnhanceYourCalm {
			t.Fatalf("after %d PINGs: %v, want ENHANCE_YOUR_CALM", i, err)
		}
		c.mu.Lock()
		queued := len(c.wbuf)
		goAway := queued >= 17 && parseFrameHeader(c.wbuf[queued-17:]).Type == frameGoAway &&
			ErrCode(binary.BigEndian.Uint32(c.wbuf[queued-4:])) == ErrCodeEnhanceYourCalm
		finishing := c.finishing.Load()
		c.mu.Unlock()
		if queued > controlSlack+64 {
			t.Fatalf("%d octets queued before the cap", queued)
		}
		if !goAway || !finishing || c.srv.Abusive() != 1 {
			// Never counted as abusive without being ended.
			t.Fatalf("cut without GOAWAY(ENHANCE_YOUR_CALM) queued last (%t), finishing %t, Abusive() %d", goAway, finishing, c.srv.Abusive())
		}
		t.Logf("cut after %d unread PING acknowledgements (%d octets queued)", i, queued)
		return
	}
	t.Fatal("100000 unread PING acknowledgements queued")
}
