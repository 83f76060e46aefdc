package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

// handshakeGate forwards UDP between one client and the server, and lets
// the test decide when the server's handshake may complete. A QUIC
// server's handshake completes when the client's Finished arrives, in a
// Handshake packet; the gate holds back every client datagram carrying a
// Handshake or 1-RTT packet until open is called, in order. What a server
// answers before that it answered from 0-RTT, as it would a replayed
// request, whatever the scheduling.
//
// With early true, the gate also holds the server's datagrams until the
// client has sent a 0-RTT packet: a client that read the server's flight
// first would send its request in 1-RTT instead, which the gate would then
// hold back for good. The raw client here sends nothing but its request
// in 0-RTT. A client whose session ticket offers no 0-RTT sends no 0-RTT
// packet: early false.
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

func newHandshakeGate(t *testing.T, server *net.UDPAddr, early bool) *handshakeGate {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, server)
	if err != nil {
		t.Fatal(err)
	}
	g := &handshakeGate{pc: pc, up: up, sawEarly: !early}
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

// h3Get sends GET path on a new request stream of qc, HTTP/3 framed by
// hand, and returns the response's status. A stream the connection reset
// gives its error (quic.Err0RTTRejected when the server refused 0-RTT).
func h3Get(ctx context.Context, qc *quic.Conn, path string) (int, error) {
	var fields bytes.Buffer
	enc := qpack.NewEncoder(&fields)
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", path}} {
		if err := enc.WriteField(qpack.HeaderField{Name: f[0], Value: f[1]}); err != nil {
			return 0, err
		}
	}
	req := quicvarint.Append(nil, 0x01) // HEADERS
	req = quicvarint.Append(req, uint64(fields.Len()))
	req = append(req, fields.Bytes()...)
	s, err := qc.OpenStreamSync(ctx)
	if err != nil {
		return 0, err
	}
	if _, err := s.Write(req); err != nil {
		return 0, err
	}
	s.Close()
	if dl, ok := ctx.Deadline(); ok {
		_ = s.SetReadDeadline(dl)
	}
	b, err := io.ReadAll(s)
	if err != nil {
		return 0, err
	}
	for len(b) > 0 {
		typ, n, err := quicvarint.Parse(b)
		if err != nil {
			return 0, fmt.Errorf("response: bad frame type: %w", err)
		}
		b = b[n:]
		l, n, err := quicvarint.Parse(b)
		if err != nil || l > uint64(len(b)-n) {
			return 0, errors.New("response: truncated frame")
		}
		payload := b[n : n+int(l)]
		b = b[n+int(l):]
		if typ != 0x01 {
			continue
		}
		next := qpack.NewDecoder().Decode(payload)
		for {
			f, err := next()
			if err != nil {
				return 0, fmt.Errorf("response HEADERS without :status (%v)", err)
			}
			if f.Name == ":status" {
				return strconv.Atoi(f.Value)
			}
		}
	}
	return 0, errors.New("response without HEADERS")
}

// get0RTT resumes a session through a fresh handshakeGate, with GET path
// in 0-RTT when the session ticket offers it (offered). A server that
// takes the 0-RTT request answers it while the gate holds the client's
// Finished back; one that refuses 0-RTT gets the request again after the
// handshake, as a client must send it; without 0-RTT on offer the request
// is sent once the handshake is done. It returns the status and whether
// the answer came from 0-RTT.
//
// The client is raw quic-go: quic-go's http3 client reads the connection
// state while the server's transport parameters are applied, a data race
// of the library's own during a 0-RTT dial (quic-go#4303: peerParams is
// replaced unlocked). The raw client opens its 0-RTT stream before the
// gate lets the server's flight through, and asks for the connection
// state only after the handshake, so it stays clear of that race too.
func get0RTT(t *testing.T, server *net.UDPAddr, tc *tls.Config, path string, offered bool) (status int, early bool) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	gate := newHandshakeGate(t, server, offered)
	qc, err := quic.DialAddrEarly(ctx, gate.addr(), tc, &quic.Config{MaxIdleTimeout: 30 * time.Second})
	if err != nil {
		t.Fatalf("0-RTT dial for %s: %v", path, err)
	}
	defer qc.CloseWithError(0, "")
	if offered {
		status, err = h3Get(ctx, qc, path)
		early = err == nil
		if err != nil && !errors.Is(err, quic.Err0RTTRejected) {
			t.Fatalf("GET %s in 0-RTT: %v", path, err)
		}
	}
	select {
	case <-qc.HandshakeComplete():
	case <-ctx.Done():
		t.Fatalf("GET %s: the client's handshake did not complete: %v", path, context.Cause(qc.Context()))
	}
	if used := qc.ConnectionState().Used0RTT; used != early {
		t.Fatalf("GET %s: answered in 0-RTT %v, but the client says 0-RTT used %v", path, early, used)
	}
	gate.open()
	if !early {
		if qc, err = qc.NextConnection(ctx); err != nil {
			t.Fatalf("GET %s after the handshake: %v", path, err)
		}
		if status, err = h3Get(ctx, qc, path); err != nil {
			t.Fatalf("GET %s after the handshake: %v", path, err)
		}
	}
	return status, early
}

// A safe 0-RTT request on a route that opted in is served before the
// handshake completes, and seen by the handler as early data; one on a
// route that did not gets 425 Too Early from the guard, and the handler
// never sees it early. With Allow0RTT off the server's session tickets
// offer no 0-RTT, the request goes after the handshake, and nothing is
// early.
func TestZeroRTT(t *testing.T) {
	type seen struct {
		path  string
		early bool
	}
	var mu sync.Mutex
	var log []seen
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		log = append(log, seen{r.URL.Path, EarlyData(r)})
		mu.Unlock()
		io.WriteString(w, "ok")
	})
	accept := func(r *http.Request) bool { return r.URL.Path == "/early-ok" }

	for _, allow := range []bool{true, false} {
		t.Run("Allow0RTT="+strconv.FormatBool(allow), func(t *testing.T) {
			mu.Lock()
			log = nil
			mu.Unlock()
			s, pki := startServer(t, Config{Allow0RTT: allow, AcceptEarlyData: accept}, h)
			cache := &ticketSignal{ClientSessionCache: tls.NewLRUClientSessionCache(8), put: make(chan struct{}, 8)}
			tc := pki.clientTLS("h3")
			tc.ClientSessionCache = cache
			server := &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.TLSAddr().Port}

			// First connection: full handshake, leaves a session ticket.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			qc, err := quic.DialAddr(ctx, server.String(), tc, &quic.Config{MaxIdleTimeout: 30 * time.Second})
			if err != nil {
				t.Fatal(err)
			}
			if status, err := h3Get(ctx, qc, "/first"); err != nil || status != 200 {
				t.Fatalf("GET /first: status %d, %v", status, err)
			}
			select { // the ticket comes after the handshake, on its own
			case <-cache.put:
			case <-ctx.Done():
				t.Fatal("no session ticket from the server")
			}
			qc.CloseWithError(0, "")
			offered := cache.early.Load()
			if offered != allow {
				t.Fatalf("the session ticket offers 0-RTT: %v; want %v with Allow0RTT %v", offered, allow, allow)
			}

			okStatus, okEarly := get0RTT(t, server, tc, "/early-ok", offered)
			noStatus, noEarly := get0RTT(t, server, tc, "/early-no", offered)
			mu.Lock()
			defer mu.Unlock()
			t.Logf("statuses %d %d, answered from 0-RTT %v %v; handler saw %+v", okStatus, noStatus, okEarly, noEarly, log)
			if allow {
				if okStatus != 200 || !okEarly || !slicesContain(log, seen{"/early-ok", true}) {
					t.Errorf("opted-in route: status %d, from 0-RTT %v, handler saw %+v; want 200 served as early data", okStatus, okEarly, log)
				}
				if noStatus != http.StatusTooEarly || !noEarly || slicesContain(log, seen{"/early-no", true}) {
					t.Errorf("route not opted in: status %d, from 0-RTT %v, handler saw %+v; want 425 from 0-RTT and no early handler call", noStatus, noEarly, log)
				}
			} else {
				if okStatus != 200 || noStatus != 200 || okEarly || noEarly {
					t.Errorf("statuses %d %d, from 0-RTT %v %v with 0-RTT off; want 200 after the handshake", okStatus, noStatus, okEarly, noEarly)
				}
				for _, e := range log {
					if e.early {
						t.Errorf("request %s handled as early data with Allow0RTT off", e.path)
					}
				}
			}
		})
	}
}

// ticketSignal is a session cache that says when a ticket was stored,
// and whether the last one offers 0-RTT.
type ticketSignal struct {
	tls.ClientSessionCache
	put   chan struct{}
	early atomic.Bool
}

func (c *ticketSignal) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
		if _, st, err := cs.ResumptionState(); err == nil && st != nil {
			c.early.Store(st.EarlyData)
		}
		select {
		case c.put <- struct{}{}:
		default:
		}
	}
}

func slicesContain[T comparable](s []T, v T) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// TestEarlyDataGuardMethods: unsafe methods never pass as early data,
// whatever the route says.
func TestEarlyDataGuardMethods(t *testing.T) {
	var called int
	g := earlyDataGuard(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called++ }), func(*http.Request) bool { return true })
	for _, m := range []string{"POST", "PUT", "PATCH", "DELETE", "GET", "HEAD", "OPTIONS"} {
		r := httptest.NewRequest(m, "https://x/", nil)
		r.ProtoMajor = 3
		r.TLS = &tls.ConnectionState{HandshakeComplete: false}
		w := httptest.NewRecorder()
		called = 0
		g.ServeHTTP(w, r)
		safe := m == "GET" || m == "HEAD" || m == "OPTIONS"
		if safe != (called == 1) || !safe && w.Code != http.StatusTooEarly {
			t.Errorf("%s as early data: called %d, status %d", m, called, w.Code)
		}
		r.TLS.HandshakeComplete = true
		called = 0
		g.ServeHTTP(httptest.NewRecorder(), r)
		if called != 1 {
			t.Errorf("%s after the handshake was not served", m)
		}
	}
}
