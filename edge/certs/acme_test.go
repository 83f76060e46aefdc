package certs

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/listen"
)

func testLogger() *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// node is a Manager behind a real listen.Server, as an edge runs them.
type node struct {
	m      *Manager
	s      *listen.Server
	served chan error

	mu     sync.Mutex
	events []string // "event identifier"
}

// reserve binds two ports for a node and frees them; Pebble needs the
// numbers before the node starts.
func reservePorts(t *testing.T) (httpPort, tlsPort int) {
	for range 20 {
		a, b := freePort(t), freePort(t)
		// TLS port must be free for UDP too (HTTP/3).
		if u, err := net.ListenPacket("udp", "127.0.0.1:"+strconv.Itoa(b)); err == nil {
			u.Close()
			return a, b
		}
	}
	t.Fatal("no free ports")
	return 0, 0
}

func startNode(t *testing.T, cfg Config, httpPort, tlsPort int) *node {
	t.Helper()
	n := &node{served: make(chan error, 1)}
	cfg.Logger = testLogger()
	cfg.ACME.HTTPPort, cfg.ACME.TLSPort = httpPort, tlsPort
	m, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	m.onEvent = func(ev string, data map[string]any) {
		id, _ := data["identifier"].(string)
		n.mu.Lock()
		n.events = append(n.events, ev+" "+id)
		n.mu.Unlock()
	}
	n.m = m
	site := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello "+r.Host) })
	lc := listen.Config{
		TLSAddr:      "127.0.0.1:" + strconv.Itoa(tlsPort),
		Certificates: m,
		PlainHandler: m.HTTPChallengeHandler(site),
		Logger:       cfg.Logger,
	}
	if !cfg.ACME.DisableHTTP01 {
		lc.HTTPAddr = "127.0.0.1:" + strconv.Itoa(httpPort)
	}
	s, err := listen.New(lc, site)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Listen(); err != nil {
		t.Fatal(err)
	}
	n.s = s
	go func() { n.served <- s.Serve(context.Background()) }()
	t.Cleanup(n.stop)
	return n
}

func (n *node) stop() {
	if n.s == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	n.s.Shutdown(ctx)
	<-n.served
	n.m.Stop()
	n.s = nil
}

func (n *node) count(prefix string) int {
	n.mu.Lock()
	defer n.mu.Unlock()
	c := 0
	for _, e := range n.events {
		if strings.HasPrefix(e, prefix) {
			c++
		}
	}
	return c
}

func domains(names ...string) []config.Domain {
	var ds []config.Domain
	for _, n := range names {
		ds = append(ds, config.Domain{Name: n, EndpointType: config.EndpointEdge})
	}
	return ds
}

// TestACMEWithPebble issues real certificates from Pebble over HTTP-01 and
// TLS-ALPN-01, serves them, restarts without re-issuing, refuses unknown
// names without an order, and keeps serving through a CA outage during
// renewal.
func TestACMEWithPebble(t *testing.T) {
	if testing.Short() {
		t.Skip("builds and runs Pebble")
	}
	httpPort, tlsPort := reservePorts(t)
	peb := startPebble(t, httpPort, tlsPort)
	dataDir := t.TempDir()
	ca := newGate(t, "127.0.0.1:"+strconv.Itoa(peb.acmePort))
	acme := ACMEConfig{Directory: ca.directory(), Email: "ops@portico.test", TrustedRoots: peb.minicaPool}
	addr := "127.0.0.1:" + strconv.Itoa(tlsPort)

	waitServed := func(t *testing.T, name string) string {
		t.Helper()
		var err error
		deadline := time.Now().Add(60 * time.Second)
		for time.Now().Before(deadline) {
			l, e := handshake(addr, name, peb.roots())
			if e == nil {
				return l.SerialNumber.String()
			}
			err = e
			time.Sleep(200 * time.Millisecond)
		}
		t.Fatalf("%s never served a certificate that verifies against Pebble's root: %v\npebble log:\n%s", name, err, peb.logs())
		return ""
	}

	serials := map[string]string{}
	t.Run("HTTP-01", func(t *testing.T) {
		acme := acme
		acme.DisableTLSALPN01 = true // only HTTP-01 can succeed
		n := startNode(t, Config{DataDir: dataDir, ACME: acme}, httpPort, tlsPort)
		if err := n.m.SetDomains(context.Background(), domains("a.portico.test", "b.portico.test")); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"a.portico.test", "b.portico.test"} {
			serials[d] = waitServed(t, d)
			st := n.m.Status(d)
			if !st.Managed || st.LastError != "" || st.Issuer == "" || time.Until(st.NotAfter) < 24*time.Hour {
				t.Errorf("Status(%s) = %+v", d, st)
			}
		}
		// Over HTTP too, through the whole listener.
		c := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{
			TLSClientConfig: tlsClient("a.portico.test", peb.roots()),
			DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
				return (&net.Dialer{}).DialContext(ctx, "tcp", addr)
			},
		}}
		resp, err := c.Get("https://a.portico.test/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello a.portico.test" || !strings.Contains(resp.Header.Get("Strict-Transport-Security"), "max-age=") {
			t.Fatalf("response %q, HSTS %q", b, resp.Header.Get("Strict-Transport-Security"))
		}

		t.Run("unconfigured SNI", func(t *testing.T) {
			orders := peb.orders()
			start := time.Now()
			_, err := handshake(addr, "evil.portico.test", peb.roots())
			if err == nil {
				t.Fatal("handshake for an unconfigured name succeeded")
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("refusal took %v", d)
			}
			time.Sleep(300 * time.Millisecond)
			if o := peb.orders(); o != orders {
				t.Errorf("Pebble saw %d new orders for an unconfigured name", o-orders)
			}
			if c := n.count("cert_obtaining evil.portico.test"); c != 0 {
				t.Errorf("issuance started for an unconfigured name (%d)", c)
			}
		})
		t.Run("on demand for a newly configured name", func(t *testing.T) {
			// The handshake arrives before background issuance can have
			// finished: on-demand issuance makes it wait and succeed.
			if err := n.m.SetDomains(context.Background(), domains("a.portico.test", "b.portico.test", "e.portico.test")); err != nil {
				t.Fatal(err)
			}
			if _, err := handshake(addr, "e.portico.test", peb.roots()); err != nil {
				t.Fatalf("first handshake for a new configured domain: %v", err)
			}
		})
	})

	t.Run("restart without re-issuing", func(t *testing.T) {
		orders := peb.orders()
		n := startNode(t, Config{DataDir: dataDir, ACME: acme}, httpPort, tlsPort)
		if err := n.m.SetDomains(context.Background(), domains("a.portico.test", "b.portico.test")); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"a.portico.test", "b.portico.test"} {
			if s := waitServed(t, d); s != serials[d] {
				t.Errorf("%s: serial %s after restart, was %s: re-issued", d, s, serials[d])
			}
		}
		if c := n.count("cert_obtaining"); c != 0 || peb.orders() != orders {
			t.Errorf("restart started %d issuances, %d orders", c, peb.orders()-orders)
		}
	})

	t.Run("TLS-ALPN-01", func(t *testing.T) {
		acme := acme
		acme.DisableHTTP01 = true // and no plain-HTTP listener at all
		n := startNode(t, Config{DataDir: t.TempDir(), ACME: acme}, httpPort, tlsPort)
		if err := n.m.SetDomains(context.Background(), domains("c.portico.test", "d.portico.test")); err != nil {
			t.Fatal(err)
		}
		for _, d := range []string{"c.portico.test", "d.portico.test"} {
			waitServed(t, d)
		}
	})

	t.Run("CA down during renewal", func(t *testing.T) {
		n := startNode(t, Config{DataDir: dataDir, ACME: acme}, httpPort, tlsPort)
		if err := n.m.SetDomains(context.Background(), domains("a.portico.test")); err != nil {
			t.Fatal(err)
		}
		roots := peb.roots()
		before := waitServed(t, "a.portico.test")
		n.stop()

		ca.down()
		// Restart the node with every certificate inside its renewal
		// window and a fast maintenance tick.
		n = startNode(t, Config{DataDir: dataDir, ACME: acme, RenewalWindowRatio: 1, RenewCheckInterval: 300 * time.Millisecond}, httpPort, tlsPort)
		if err := n.m.SetDomains(context.Background(), domains("a.portico.test")); err != nil {
			t.Fatal(err)
		}
		deadline := time.Now().Add(30 * time.Second)
		for n.count("cert_failed a.portico.test") == 0 && time.Now().Before(deadline) {
			time.Sleep(100 * time.Millisecond)
		}
		if n.count("cert_failed a.portico.test") == 0 {
			t.Fatalf("no renewal attempt failed with the CA down; events %v", n.events)
		}
		// Watch for a while: the old certificate keeps being served and
		// retries back off instead of running every 300ms tick.
		for range 10 {
			l, err := handshake(addr, "a.portico.test", roots)
			if err != nil {
				t.Fatalf("handshake during CA outage: %v", err)
			}
			if l.SerialNumber.String() != before {
				t.Fatalf("served serial changed during outage")
			}
			time.Sleep(300 * time.Millisecond)
		}
		attempts := n.count("cert_obtaining a.portico.test")
		if attempts > 3 {
			t.Errorf("%d renewal attempts in ~3s with a 300ms check interval: no back-off", attempts)
		}
		st := n.m.Status("a.portico.test")
		if st.LastError == "" || st.NotAfter.IsZero() {
			t.Errorf("Status during outage = %+v, want the served certificate and the last error", st)
		}
		t.Logf("renewal attempts during outage: %d; status %+v", attempts, st)

		// The CA comes back: the next retry (certmagic's first back-off
		// step is one minute) renews, and the new certificate is served.
		ca.up()
		deadline = time.Now().Add(100 * time.Second)
		var after string
		for time.Now().Before(deadline) {
			if l, err := handshake(addr, "a.portico.test", peb.roots()); err == nil && l.SerialNumber.String() != before {
				after = l.SerialNumber.String()
				break
			}
			time.Sleep(500 * time.Millisecond)
		}
		if after == "" || after == before {
			t.Fatalf("no renewed certificate served within 100s of the CA's return; status %+v", n.m.Status("a.portico.test"))
		}
		if st := n.m.Status("a.portico.test"); st.LastError != "" {
			t.Errorf("LastError still set after a successful renewal: %q", st.LastError)
		}
	})
}

func tlsClient(name string, roots *x509.CertPool) *tls.Config {
	return &tls.Config{ServerName: name, RootCAs: roots}
}
