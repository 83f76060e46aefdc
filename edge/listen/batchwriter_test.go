package listen

import (
	"bytes"
	"crypto/tls"
	"errors"
	"io"
	"net"
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
		if _, err := b.write(p); err != nil {
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
		if _, err = b.write(make([]byte, 100)); err != nil {
			break
		}
	}
	if err == nil {
		b.drain()
		_, err = b.write([]byte("x"))
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
	hc := newH2Conn(sc, HTTP2Limits{ResetBurst: 1, ResetRate: 1}, nil)
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
