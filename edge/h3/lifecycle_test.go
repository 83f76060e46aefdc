package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/quic-go/quic-go"

	"github.com/portico-edge/portico/edge/internal/quicgate"
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

// A request in 0-RTT is served before the handshake completes, with
// r.TLS.HandshakeComplete false (so that edge/listen's early-data guard
// can refuse an unsafe one); later requests see the completed handshake.
//
// The client is raw quic-go, HTTP/3 framed by hand: quic-go's http3
// client reads the connection state while the server's transport
// parameters are applied, a data race of the library's own during a
// 0-RTT dial (quic-go#4303: peerParams is replaced unlocked). The raw
// client opens its 0-RTT stream before the gate lets the server's flight
// through, and asks for the connection state only after the handshake,
// so it stays clear of that race too.
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
	cache := quicgate.NewTicketCache(4)
	tc := &tls.Config{RootCAs: ts.pool, ServerName: "localhost", NextProtos: []string{NextProto}, ClientSessionCache: cache}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()

	// A full handshake leaves a session ticket.
	qc, err := quic.DialAddr(ctx, ts.addr, tc, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	rc := &rawConn{t: t, qc: qc}
	if r := mustResponse(t, rc.request(true, frame(frameHeaders, get("/first")))); r.status != 200 {
		t.Fatalf("status %d after a full handshake", r.status)
	}
	if s := <-got; !s.complete {
		t.Fatalf("a request after a full handshake: %+v", s)
	}
	select {
	case <-cache.Stored:
	case <-ctx.Done():
		t.Fatal("no session ticket")
	}
	qc.CloseWithError(0x100, "")

	// Resumed, with the request in 0-RTT and the client's Finished held
	// back until the answer is in.
	sa, err := net.ResolveUDPAddr("udp", ts.addr)
	if err != nil {
		t.Fatal(err)
	}
	gate, err := quicgate.New(sa, true)
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	qc, err = quic.DialAddrEarly(ctx, gate.Addr(), tc, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer qc.CloseWithError(0x100, "")
	rc = &rawConn{t: t, qc: qc}
	r, err := readResponse(t, rc.request(true, frame(frameHeaders, get("/early"))))
	if err != nil {
		t.Fatalf("the request sent in 0-RTT: %v", err)
	}
	if r.status != 200 {
		t.Fatalf("0-RTT request: status %d", r.status)
	}
	if s := <-got; s.path != "/early" || s.complete {
		t.Fatalf("0-RTT request: handler saw %+v; want HandshakeComplete false", s)
	}
	gate.Open()
	select {
	case <-qc.HandshakeComplete():
	case <-ctx.Done():
		t.Fatal("the handshake did not complete once the gate opened")
	}
	if !qc.ConnectionState().Used0RTT {
		t.Fatal("the client says 0-RTT was not used")
	}
	// The server reads 1-RTT only once it has the client's Finished.
	if r := mustResponse(t, rc.request(true, frame(frameHeaders, get("/later")))); r.status != 200 {
		t.Fatalf("status %d after the handshake", r.status)
	}
	if s := <-got; s.path != "/later" || !s.complete {
		t.Fatalf("request after the handshake: handler saw %+v", s)
	}
}
