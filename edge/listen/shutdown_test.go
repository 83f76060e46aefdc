package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

func TestGracefulShutdown(t *testing.T) {
	var active atomic.Int64
	release := make(chan struct{})
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			active.Add(1)
			<-release
			time.Sleep(50 * time.Millisecond)
		}
		w.Write([]byte("done " + r.Proto))
	})
	s, pki := startServer(t, Config{HTTPAddr: "127.0.0.1:0"}, h)
	addr := s.TLSAddr().String()

	type result struct {
		body string
		err  error
	}
	get := func(c *http.Client) chan result {
		ch := make(chan result, 1)
		go func() {
			resp, err := c.Get(s.tlsURL() + "/slow")
			if err != nil {
				ch <- result{err: err}
				return
			}
			b, err := io.ReadAll(resp.Body)
			resp.Body.Close()
			ch <- result{string(b), err}
		}()
		return ch
	}
	h1 := get(h1Client(pki))
	h3 := get(h3Client(pki))

	// An HTTP/2 client written by hand, to see the GOAWAY frame itself.
	raw := dialRawH2(t, s, pki)
	hb := encodeHeaders(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/slow")
	if err := raw.write(func() error {
		return raw.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: hb, EndStream: true, EndHeaders: true})
	}); err != nil {
		t.Fatal(err)
	}
	if !waitFor(5*time.Second, func() bool { return active.Load() == 3 }) {
		t.Fatalf("slow requests running: %d, want 3", active.Load())
	}

	shut := make(chan error, 1)
	start := time.Now()
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()

	// New connections are refused at once, on both TCP listeners.
	if !waitFor(2*time.Second, func() bool {
		c, err := net.DialTimeout("tcp", addr, time.Second)
		if err == nil {
			c.Close()
			return false
		}
		return true
	}) {
		t.Fatal("TLS listener still accepts connections during shutdown")
	}
	if c, err := net.DialTimeout("tcp", s.HTTPAddr().String(), time.Second); err == nil {
		c.Close()
		t.Fatal("plain-HTTP listener still accepts connections during shutdown")
	}
	if !waitFor(2*time.Second, func() bool { return raw.goAway.Load() != nil }) {
		t.Fatal("HTTP/2 client got no GOAWAY")
	}
	if ga := raw.goAway.Load(); ga.ErrCode != http2.ErrCodeNo || ga.LastStreamID != 1 {
		t.Fatalf("GOAWAY %v last stream %d, want NO_ERROR with last stream 1", ga.ErrCode, ga.LastStreamID)
	}
	if s.HTTP3Up() {
		t.Fatal("Alt-Svc still advertised during shutdown")
	}

	close(release)
	for name, ch := range map[string]chan result{"HTTP/1.1": h1, "HTTP/3": h3} {
		r := <-ch
		if r.err != nil {
			t.Fatalf("%s in-flight request failed during shutdown: %v", name, r.err)
		}
		if r.body[:4] != "done" {
			t.Fatalf("%s in-flight request body %q", name, r.body)
		}
	}
	if !waitFor(5*time.Second, func() bool { return raw.respSeen.Load() == 1 }) {
		t.Fatal("HTTP/2 in-flight request got no response after GOAWAY")
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, closed := raw.endedByServer(2 * time.Second); !closed {
		t.Fatal("HTTP/2 connection left open after shutdown")
	}
	t.Logf("shutdown took %v", time.Since(start))
}

func TestShutdownCutsAfterDrainTimeout(t *testing.T) {
	started := make(chan struct{}, 1)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started <- struct{}{}
		select {
		case <-time.After(30 * time.Second):
		case <-r.Context().Done():
		}
	})
	s, pki := startServer(t, Config{}, h)
	errc := make(chan error, 1)
	go func() {
		resp, err := h2Client(pki).Get(s.tlsURL() + "/")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		errc <- err
	}()
	<-started
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	t0 := time.Now()
	err := s.Shutdown(ctx)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown past its deadline returned %v, want DeadlineExceeded", err)
	}
	if d := time.Since(t0); d > 5*time.Second {
		t.Fatalf("Shutdown took %v with a 300ms drain", d)
	}
	if err := <-errc; err == nil {
		t.Fatal("request outliving the drain timeout completed normally")
	}
}

func TestServeReturnsOnContextDone(t *testing.T) {
	pki := newTestPKI(t)
	s, err := New(Config{TLSAddr: "127.0.0.1:0", Certificates: pki.source(), DrainTimeout: time.Second, Logger: testLogger(t)}, echo())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx) }()
	if !waitFor(2*time.Second, func() bool { return s.TLSAddr() != nil && s.HTTP3Up() }) {
		t.Fatal("server did not come up")
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve after cancel: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Serve did not return after its context was cancelled")
	}
	if _, err := tls.Dial("tcp", s.TLSAddr().String(), pki.clientTLS()); err == nil {
		t.Fatal("still accepting after Serve returned")
	}
}
