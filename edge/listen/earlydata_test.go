package listen

import (
	"bytes"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"slices"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/portico-edge/portico/edge/internal/quicgate"
)

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

// get0RTT resumes a session through a fresh quicgate.Gate, with GET path
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
	gate, err := quicgate.New(server, offered)
	if err != nil {
		t.Fatal(err)
	}
	defer gate.Close()
	qc, err := quic.DialAddrEarly(ctx, gate.Addr(), tc, &quic.Config{MaxIdleTimeout: 30 * time.Second})
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
	gate.Open()
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
			cache := quicgate.NewTicketCache(8)
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
			case <-cache.Stored:
			case <-ctx.Done():
				t.Fatal("no session ticket from the server")
			}
			qc.CloseWithError(0, "")
			offered := cache.OffersEarlyData()
			if offered != allow {
				t.Fatalf("the session ticket offers 0-RTT: %v; want %v with Allow0RTT %v", offered, allow, allow)
			}

			okStatus, okEarly := get0RTT(t, server, tc, "/early-ok", offered)
			noStatus, noEarly := get0RTT(t, server, tc, "/early-no", offered)
			mu.Lock()
			defer mu.Unlock()
			t.Logf("statuses %d %d, answered from 0-RTT %v %v; handler saw %+v", okStatus, noStatus, okEarly, noEarly, log)
			if allow {
				if okStatus != 200 || !okEarly || !slices.Contains(log, seen{"/early-ok", true}) {
					t.Errorf("opted-in route: status %d, from 0-RTT %v, handler saw %+v; want 200 served as early data", okStatus, okEarly, log)
				}
				if noStatus != http.StatusTooEarly || !noEarly || slices.Contains(log, seen{"/early-no", true}) {
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
