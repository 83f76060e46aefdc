package listen

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"slices"
	"sync"
	"testing"
	"time"
)

// recordingConn keeps what was written and fails writes after failAfter
// bytes (never, when 0).
type recordingConn struct {
	mu        sync.Mutex
	buf       bytes.Buffer
	writes    int
	failAfter int
}

func (c *recordingConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.failAfter > 0 && c.buf.Len()+len(p) > c.failAfter {
		return 0, errors.New("peer gone")
	}
	c.writes++
	return c.buf.Write(p)
}

func newBatchWriter(conn interface{ Write([]byte) (int, error) }) *batchWriter {
	b := &batchWriter{conn: conn}
	b.cond.L = &b.mu
	return b
}

// Many small writes leave in order and complete, in fewer system writes.
func TestBatchWriterKeepsOrder(t *testing.T) {
	rc := &recordingConn{}
	b := newBatchWriter(rc)
	var want bytes.Buffer
	for i := range 20000 {
		p := []byte{byte(i), byte(i >> 8), byte(i >> 16)}
		want.Write(p)
		if _, err := b.write(p, nil); err != nil {
			t.Fatal(err)
		}
	}
	b.drain()
	if !bytes.Equal(rc.buf.Bytes(), want.Bytes()) {
		t.Fatalf("bytes out of order or lost: got %d, want %d", rc.buf.Len(), want.Len())
	}
	if rc.writes >= 20000 {
		t.Fatalf("%d writes for 20000 queued: nothing was batched", rc.writes)
	}
	t.Logf("20000 writes left in %d", rc.writes)
}

// After the connection fails, writes report the error instead of queueing.
func TestBatchWriterReportsFailure(t *testing.T) {
	b := newBatchWriter(&recordingConn{failAfter: 1000})
	var err error
	for range 100000 {
		if _, err = b.write(make([]byte, 100), nil); err != nil {
			break
		}
	}
	if err == nil {
		b.drain()
		_, err = b.write([]byte("x"), nil)
	}
	if err == nil || err.Error() != "peer gone" {
		t.Fatalf("write after failure: %v", err)
	}
}

// A client that never reads cannot keep Close, or a server write blocked on
// the full queue, waiting: the socket is closed under the writer.
func TestH2ConnCloseWithStalledClient(t *testing.T) {
	pki := newTestPKI(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	go func() {
		c, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			return
		}
		tc := tls.Client(c, pki.clientTLS())
		_ = tc.Handshake()
		time.Sleep(10 * time.Second) // never reads
		tc.Close()
	}()
	raw, err := ln.Accept()
	if err != nil {
		t.Fatal(err)
	}
	sc := tls.Server(raw, &tls.Config{Certificates: []tls.Certificate{pki.leaf}})
	if err := sc.Handshake(); err != nil {
		t.Fatal(err)
	}
	hc := newH2Conn(sc, HTTP2Limits{ResetBurst: 1, ResetRate: 1}, &bufferPool{}, nil)
	writeErr := make(chan error, 1)
	go func() {
		chunk := make([]byte, 16<<10)
		for range 2048 { // 32 MiB: far more than the socket buffers and the queue hold
			if _, err := hc.Write(chunk); err != nil {
				writeErr <- err
				return
			}
		}
		writeErr <- io.ErrShortWrite
	}()
	time.Sleep(200 * time.Millisecond) // let the writes fill everything
	closed := make(chan struct{})
	go func() { hc.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(3 * closeDrainTimeout):
		t.Fatal("Close waited on a client that does not read")
	}
	select {
	case err := <-writeErr:
		if err == io.ErrShortWrite {
			t.Fatal("32 MiB were accepted for a client that does not read")
		}
	case <-time.After(3 * closeDrainTimeout):
		t.Fatal("a write blocked on the full queue never returned after Close")
	}
}

// frame returns an HTTP/2 frame with the given type, stream and payload.
func frame(typ byte, stream uint32, payload []byte) []byte {
	f := []byte{byte(len(payload) >> 16), byte(len(payload) >> 8), byte(len(payload)), typ, 0,
		byte(stream >> 24), byte(stream >> 16), byte(stream >> 8), byte(stream)}
	return append(f, payload...)
}

// queueAll queues the writes without letting the writer run, then runs it
// once on this goroutine: what it sends does not depend on scheduling.
func queueAll(t *testing.T, b *batchWriter, write func() error) {
	t.Helper()
	b.mu.Lock()
	b.running = true // no writer goroutine starts
	b.mu.Unlock()
	if err := write(); err != nil {
		t.Fatal(err)
	}
	b.run()
}

// A stream's response and the RST_STREAM(NO_ERROR) that follows it leave
// in separate writes (separate TLS records), however they were queued:
// curl 7.88 drops a response that arrives in one record with its stream's
// reset. What comes before and after still leaves together.
func TestH2ConnResetLeavesInItsOwnWrite(t *testing.T) {
	const frameData = 0x0
	headers := frame(frameHeaders, 1, []byte("hdrs"))
	data := frame(frameData, 1, bytes.Repeat([]byte("d"), 100))
	rst := frame(frameRSTStream, 1, []byte{0, 0, 0, 0})
	next := frame(frameData, 3, []byte("next"))
	var all []byte
	for _, f := range [][]byte{headers, data, rst, next} {
		all = append(all, f...)
	}
	cut := len(headers) + len(data)
	cases := []struct {
		name   string
		chunks [][]byte
	}{
		{"one write", [][]byte{all}},
		{"one write per frame", [][]byte{headers, data, rst, next}},
		{"the reset's frame header split over two writes", [][]byte{all[:cut+4], all[cut+4:]}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var sizes []int
			rc := &sizeRecorder{recordingConn: &recordingConn{}, sizes: &sizes}
			hc := &h2Conn{lim: HTTP2Limits{ResetBurst: 10, ResetRate: 1}, tokens: 10, last: time.Now()}
			hc.w.conn = rc
			hc.w.cond.L = &hc.w.mu
			queueAll(t, &hc.w, func() error {
				for _, ch := range tc.chunks {
					if _, err := hc.Write(ch); err != nil {
						return err
					}
				}
				return nil
			})
			if !bytes.Equal(rc.buf.Bytes(), all) {
				t.Fatalf("bytes changed: got %d, want %d", rc.buf.Len(), len(all))
			}
			if want := []int{cut, len(all) - cut}; !slices.Equal(sizes, want) {
				t.Fatalf("write sizes %v, want %v: the reset in a write of its own, the rest batched", sizes, want)
			}
		})
	}
}

// sizeRecorder notes the size of every write.
type sizeRecorder struct {
	*recordingConn
	sizes *[]int
}

func (s *sizeRecorder) Write(p []byte) (int, error) {
	*s.sizes = append(*s.sizes, len(p))
	return s.recordingConn.Write(p)
}

// Cuts keep their place in the queue across writes; a cut at the start of
// the queue or behind an earlier cut adds no write.
func TestBatchWriterCuts(t *testing.T) {
	var sizes []int
	rc := &sizeRecorder{recordingConn: &recordingConn{}, sizes: &sizes}
	b := newBatchWriter(rc)
	queueAll(t, b, func() error {
		if _, err := b.write(make([]byte, 10), []int{0, 4}); err != nil { // cuts at 4
			return err
		}
		if _, err := b.write(make([]byte, 10), []int{-2, 3}); err != nil { // at 8 and 13
			return err
		}
		_, err := b.write(make([]byte, 5), []int{-10}) // at 10: behind 13, dropped
		return err
	})
	if want := []int{4, 4, 5, 12}; !slices.Equal(sizes, want) {
		t.Fatalf("write sizes %v, want %v", sizes, want)
	}
}
