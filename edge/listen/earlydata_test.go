package listen

import (
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go/http3"
)

// slowFinishRelay forwards UDP between a client and a server, and holds
// back every client datagram sent after the server first answered by
// delay. The client's first flight (Initial plus 0-RTT) goes through at
// once; its handshake Finished arrives late. So a 0-RTT request is
// certainly handled before the handshake completes, as a replayed one
// always is.
type slowFinishRelay struct {
	pc       net.PacketConn
	server   *net.UDPAddr
	delay    time.Duration
	answered atomic.Bool
	client   atomic.Pointer[net.UDPAddr]
	up       *net.UDPConn
}

func newSlowFinishRelay(t *testing.T, server *net.UDPAddr, delay time.Duration) *slowFinishRelay {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	up, err := net.DialUDP("udp", nil, server)
	if err != nil {
		t.Fatal(err)
	}
	r := &slowFinishRelay{pc: pc, server: server, delay: delay, up: up}
	t.Cleanup(func() { pc.Close(); up.Close() })
	go r.fromClients()
	go r.fromServer()
	return r
}

func (r *slowFinishRelay) port() int { return r.pc.LocalAddr().(*net.UDPAddr).Port }

func (r *slowFinishRelay) fromClients() {
	buf := make([]byte, 65536)
	for {
		n, addr, err := r.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		r.client.Store(addr.(*net.UDPAddr))
		b := append([]byte(nil), buf[:n]...)
		if r.answered.Load() {
			time.AfterFunc(r.delay, func() { r.up.Write(b) })
		} else {
			r.up.Write(b)
		}
	}
}

func (r *slowFinishRelay) fromServer() {
	buf := make([]byte, 65536)
	for {
		n, err := r.up.Read(buf)
		if err != nil {
			return
		}
		r.answered.Store(true)
		if c := r.client.Load(); c != nil {
			r.pc.WriteTo(buf[:n], c)
		}
	}
}

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
			tc := pki.clientTLS()
			tc.ClientSessionCache = cache

			// First connection: full handshake, leaves a session ticket.
			tr := NewHTTP3Transport(tc).(*http3.Transport)
			resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Get(s.tlsURL() + "/first")
			if err != nil {
				t.Fatal(err)
			}
			resp.Body.Close()
			select { // the ticket comes after the handshake, on its own
			case <-cache.put:
			case <-time.After(5 * time.Second):
				t.Fatal("no session ticket from the server")
			}
			tr.Close()

			relay := newSlowFinishRelay(t, &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1), Port: s.TLSAddr().Port}, 300*time.Millisecond)
			get0RTT := func(path string) int {
				tr := NewHTTP3Transport(tc).(*http3.Transport)
				defer tr.Close()
				req, _ := http.NewRequest(http3.MethodGet0RTT, "https://localhost:"+strconv.Itoa(relay.port())+path, nil)
				resp, err := (&http.Client{Transport: tr, Timeout: 5 * time.Second}).Do(req)
				if err != nil {
					t.Fatalf("0-RTT GET %s: %v", path, err)
				}
				resp.Body.Close()
				return resp.StatusCode
			}
			okStatus := get0RTT("/early-ok")
			noStatus := get0RTT("/early-no")
			mu.Lock()
			defer mu.Unlock()
			t.Logf("statuses %d %d; handler saw %+v", okStatus, noStatus, log)
			if allow {
				if okStatus != 200 || !slicesContain(log, seen{"/early-ok", true}) {
					t.Errorf("opted-in route: status %d, handler saw %+v; want 200 served as early data", okStatus, log)
				}
				if noStatus != http.StatusTooEarly || slicesContain(log, seen{"/early-no", true}) {
					t.Errorf("route not opted in: status %d, handler saw %+v; want 425 and no early handler call", noStatus, log)
				}
			} else {
				// The server refuses early data: the client resends after
				// the handshake and nothing is early.
				if okStatus != 200 || noStatus != 200 {
					t.Errorf("statuses %d %d with 0-RTT off; want 200 after the handshake", okStatus, noStatus)
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

// ticketSignal is a session cache that says when a ticket was stored.
type ticketSignal struct {
	tls.ClientSessionCache
	put chan struct{}
}

func (c *ticketSignal) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs != nil {
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
