package h3

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

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
)

// Close closes every connection at once with H3_NO_ERROR, cancels the
// running handlers' contexts, returns without waiting for them, and a
// listener served afterwards is refused.
func TestClose(t *testing.T) {
	running := make(chan struct{}, 1)
	handlerCtx := make(chan error, 1)
	release := make(chan struct{})
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running <- struct{}{}
		<-r.Context().Done()
		handlerCtx <- r.Context().Err()
		<-release // Close does not wait for this
	})})
	defer close(release)
	rc := ts.dial(t)
	rc.control()
	s := rc.request(true, frame(frameHeaders, get("/")))
	<-running
	closed := make(chan error, 1)
	go func() { closed <- ts.Close() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Fatalf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close waited for a running handler")
	}
	rc.wantConnError(ErrNoError)
	if _, err := readResponse(t, s); err == nil {
		t.Fatal("the request in flight was answered after Close")
	}
	select {
	case err := <-handlerCtx:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("handler's context: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the running handler's context was not cancelled by Close")
	}
	ln, err := quic.ListenAddrEarly("127.0.0.1:0", ConfigureTLSConfig(&tls.Config{}), QUICConfig(&quic.Config{}, 10))
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	if err := ts.ServeListener(ln); !errors.Is(err, ErrServerClosed) {
		t.Fatalf("ServeListener after Close: %v, want ErrServerClosed", err)
	}
}

// delayingRelay forwards UDP between one client and the server, and holds
// back every client datagram sent after the server first answered: the
// client's first flight (Initial and 0-RTT) passes at once, its handshake
// Finished arrives late, so a 0-RTT request is surely served before the
// handshake completes.
type delayingRelay struct {
	pc       net.PacketConn
	up       *net.UDPConn
	delay    time.Duration
	answered atomic.Bool
	client   atomic.Pointer[net.UDPAddr]
}

func newDelayingRelay(t *testing.T, server string, delay time.Duration) *delayingRelay {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sa, _ := net.ResolveUDPAddr("udp", server)
	up, err := net.DialUDP("udp", nil, sa)
	if err != nil {
		t.Fatal(err)
	}
	r := &delayingRelay{pc: pc, up: up, delay: delay}
	t.Cleanup(func() { pc.Close(); up.Close() })
	go func() {
		buf := make([]byte, 65536)
		for {
			n, addr, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			r.client.Store(addr.(*net.UDPAddr))
			b := append([]byte(nil), buf[:n]...)
			if r.answered.Load() {
				time.AfterFunc(r.delay, func() { up.Write(b) })
			} else {
				up.Write(b)
			}
		}
	}()
	go func() {
		buf := make([]byte, 65536)
		for {
			n, err := up.Read(buf)
			if err != nil {
				return
			}
			r.answered.Store(true)
			if c := r.client.Load(); c != nil {
				pc.WriteTo(buf[:n], c)
			}
		}
	}()
	return r
}

// ticketCache says when a session ticket arrived.
type ticketCache struct {
	tls.ClientSessionCache
	put chan struct{}
}

func (c *ticketCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}

// A request in 0-RTT is served before the handshake completes, with
// r.TLS.HandshakeComplete false (so that edge/listen's early-data guard
// can refuse an unsafe one); later requests see the completed handshake.
func TestZeroRTTRequest(t *testing.T) {
	type seen struct {
		path     string
		complete bool
	}
	got := make(chan seen, 4)
	ts := startServerQUIC(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- seen{r.URL.Path, r.TLS.HandshakeComplete}
		io.WriteString(w, "ok")
	})}, &quic.Config{MaxIdleTimeout: 30 * time.Second, Allow0RTT: true}, maxStreams)
	cache := &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), put: make(chan struct{}, 4)}
	tc := &tls.Config{RootCAs: ts.pool, ServerName: "localhost", ClientSessionCache: cache}

	tr := &http3.Transport{TLSClientConfig: tc}
	resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(ts.url("/first"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-got; !s.complete {
		t.Fatalf("a request after a full handshake: %+v", s)
	}
	select {
	case <-cache.put:
	case <-time.After(5 * time.Second):
		t.Fatal("no session ticket")
	}
	tr.Close()

	relay := newDelayingRelay(t, ts.addr, 300*time.Millisecond)
	tr = &http3.Transport{TLSClientConfig: tc}
	defer tr.Close()
	_, port, _ := net.SplitHostPort(relay.pc.LocalAddr().String())
	req, _ := http.NewRequest(http3.MethodGet0RTT, "https://localhost:"+port+"/early", nil)
	resp, err = (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-got; s.path != "/early" || s.complete {
		t.Fatalf("0-RTT request: handler saw %+v; want HandshakeComplete false", s)
	}
	resp, err = (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get("https://localhost:" + port + "/later")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if s := <-got; s.path != "/later" || !s.complete {
		t.Fatalf("request after the handshake: handler saw %+v", s)
	}
}
