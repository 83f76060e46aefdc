package h3

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
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

// handshakeGate forwards UDP between one client and the server, and lets
// the test decide when the server's handshake may complete. A QUIC
// server's handshake completes when the client's Finished arrives, in a
// Handshake packet; the gate holds back every client datagram carrying a
// Handshake or 1-RTT packet until open is called, in order. What a server
// answers before that it answered from 0-RTT, whatever the scheduling.
//
// The gate also holds the server's datagrams until the client has sent a
// 0-RTT packet: a client that read the server's flight first would send
// its request in 1-RTT instead, which the gate would then hold back for
// good. The raw client here sends nothing but its request in 0-RTT.
type handshakeGate struct {
	pc     net.PacketConn
	up     *net.UDPConn
	client atomic.Pointer[net.UDPAddr]

	mu         sync.Mutex
	sawEarly   bool     // a 0-RTT packet went by: the server's datagrams pass
	fromServer [][]byte // held until sawEarly
	opened     bool     // open was called: everything passes
	fromClient [][]byte // held until opened
}

func newHandshakeGate(t *testing.T, server string) *handshakeGate {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	sa, err := net.ResolveUDPAddr("udp", server)
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, sa)
	if err != nil {
		t.Fatal(err)
	}
	g := &handshakeGate{pc: pc, up: up}
	t.Cleanup(func() { pc.Close(); up.Close() })
	go g.clientToServer()
	go g.serverToClient()
	return g
}

func (g *handshakeGate) addr() string { return g.pc.LocalAddr().String() }

// open lets the client's held datagrams through, then everything.
func (g *handshakeGate) open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.fromClient {
		_, _ = g.up.Write(b)
	}
	g.fromClient, g.opened = nil, true
}

func (g *handshakeGate) clientToServer() {
	buf := make([]byte, 65536)
	for {
		n, addr, err := g.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		g.client.Store(addr.(*net.UDPAddr))
		b := append([]byte(nil), buf[:n]...)
		early, late := classifyClientDatagram(b)
		g.mu.Lock()
		if late && !g.opened {
			g.fromClient = append(g.fromClient, b)
		} else {
			_, _ = g.up.Write(b)
		}
		if early && !g.sawEarly {
			g.sawEarly = true
			for _, sb := range g.fromServer {
				_, _ = g.pc.WriteTo(sb, addr)
			}
			g.fromServer = nil
		}
		g.mu.Unlock()
	}
}

func (g *handshakeGate) serverToClient() {
	buf := make([]byte, 65536)
	for {
		n, err := g.up.Read(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:n]...)
		g.mu.Lock()
		if g.sawEarly {
			_, _ = g.pc.WriteTo(b, g.client.Load())
		} else {
			g.fromServer = append(g.fromServer, b)
		}
		g.mu.Unlock()
	}
}

// classifyClientDatagram reports whether a client's datagram carries a
// 0-RTT packet (early), and whether it carries a packet a client sends
// only once it has the server's handshake flight: Handshake or 1-RTT
// (late). It walks the coalesced packets' long headers (RFC 9000 §17.2,
// QUIC v2's types from RFC 9369 §3.2); a datagram it cannot parse counts
// as late, so that the gate errs towards holding back.
func classifyClientDatagram(b []byte) (early, late bool) {
	for len(b) > 0 {
		if b[0]&0x80 == 0 {
			return early, true // short header: 1-RTT, always last
		}
		if len(b) < 6 {
			return early, true
		}
		typ := b[0] >> 4 & 3
		var initial, zeroRTT, handshake bool
		switch binary.BigEndian.Uint32(b[1:5]) {
		case 1:
			initial, zeroRTT, handshake = typ == 0, typ == 1, typ == 2
		case 0x6b3343cf:
			initial, zeroRTT, handshake = typ == 1, typ == 2, typ == 3
		default:
			return early, true
		}
		early = early || zeroRTT
		late = late || handshake
		p := 5
		for range 2 { // destination and source connection IDs
			if p >= len(b) {
				return early, true
			}
			p += 1 + int(b[p])
		}
		if p > len(b) {
			return early, true
		}
		if initial {
			l, n, err := quicvarint.Parse(b[p:])
			if err != nil || l > uint64(len(b)-p-n) {
				return early, true
			}
			p += n + int(l)
		}
		l, n, err := quicvarint.Parse(b[p:])
		if err != nil || l > uint64(len(b)-p-n) {
			return early, true
		}
		b = b[p+n+int(l):]
	}
	return early, late
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
	cache := &ticketCache{ClientSessionCache: tls.NewLRUClientSessionCache(4), put: make(chan struct{}, 4)}
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
	case <-cache.put:
	case <-ctx.Done():
		t.Fatal("no session ticket")
	}
	qc.CloseWithError(0x100, "")

	// Resumed, with the request in 0-RTT and the client's Finished held
	// back until the answer is in.
	gate := newHandshakeGate(t, ts.addr)
	qc, err = quic.DialAddrEarly(ctx, gate.addr(), tc, &quic.Config{MaxIdleTimeout: 30 * time.Second})
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
	gate.open()
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
