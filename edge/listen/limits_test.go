package listen

import (
	"bufio"
	"crypto/tls"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"
)

func TestConnectionLimits(t *testing.T) {
	s, pki := startServer(t, Config{MaxConns: 8, MaxConnsPerIP: 4, HTTPAddr: "127.0.0.1:0"}, echo())
	for _, addr := range []string{s.TLSAddr().String(), s.HTTPAddr().String()} {
		var held []net.Conn
		for range 4 {
			c, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			held = append(held, c)
		}
		// Fifth from the same address: accepted and closed at once.
		// (The reset may even beat the dial's return.)
		if c, err := net.Dial("tcp", addr); err == nil {
			c.SetReadDeadline(time.Now().Add(3 * time.Second))
			if _, err := c.Read(make([]byte, 1)); err == nil || isTimeout(err) {
				t.Fatalf("%s: connection over the per-IP limit was not closed (%v)", addr, err)
			}
			c.Close()
		}
		// Another loopback address still gets in (per-IP, not global).
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		other, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		other.SetReadDeadline(time.Now().Add(200 * time.Millisecond))
		if _, err := other.Read(make([]byte, 1)); !isTimeout(err) {
			t.Fatalf("%s: connection from another address was closed (%v)", addr, err)
		}
		other.Close()
		for _, c := range held {
			c.Close()
		}
	}
	// Slots come back when connections close.
	if !waitFor(3*time.Second, func() bool { st := s.Stats(); return st.OpenTLSConns == 0 && st.OpenPlainConns == 0 }) {
		t.Fatalf("slots not released: %+v", s.Stats())
	}
	resp, err := h1Client(pki).Get(s.tlsURL() + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func TestTLSPosture(t *testing.T) {
	s, pki := startServer(t, Config{}, echo())
	addr := s.TLSAddr().String()
	dial := func(c *tls.Config) (*tls.Conn, error) {
		return tls.DialWithDialer(&net.Dialer{Timeout: 3 * time.Second}, "tcp", addr, c)
	}
	for _, v := range []uint16{tls.VersionTLS10, tls.VersionTLS11} {
		c := pki.clientTLS()
		c.MinVersion, c.MaxVersion = v, v
		if conn, err := dial(c); err == nil {
			conn.Close()
			t.Errorf("TLS version %s accepted", tls.VersionName(v))
		}
	}
	for _, cs := range tls.CipherSuites() {
		if !slices.Contains(cs.SupportedVersions, tls.VersionTLS12) {
			continue // TLS 1.3 suites are not configurable
		}
		ours := slices.Contains(CipherSuites, cs.ID)
		if ours && strings.Contains(cs.Name, "_RSA_") {
			continue // the test certificate is ECDSA: RSA suites cannot complete
		}
		c := pki.clientTLS()
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{cs.ID}
		conn, err := dial(c)
		if err == nil {
			conn.Close()
		}
		if (err == nil) != ours {
			t.Errorf("TLS 1.2 suite %s: accepted=%t, want %t", cs.Name, err == nil, ours)
		}
	}
	for _, cs := range tls.InsecureCipherSuites() {
		c := pki.clientTLS()
		c.MaxVersion = tls.VersionTLS12
		c.CipherSuites = []uint16{cs.ID}
		if conn, err := dial(c); err == nil {
			conn.Close()
			t.Errorf("insecure suite %s accepted", cs.Name)
		}
	}
	// TLS 1.3 works and negotiates h2.
	conn, err := dial(pki.clientTLS("h2", "http/1.1"))
	if err != nil {
		t.Fatal(err)
	}
	st := conn.ConnectionState()
	conn.Close()
	if st.Version != tls.VersionTLS13 || st.NegotiatedProtocol != "h2" {
		t.Fatalf("default client got %s / %q", tls.VersionName(st.Version), st.NegotiatedProtocol)
	}
}

func TestNoH2CUpgrade(t *testing.T) {
	s, _ := startServer(t, Config{HTTPAddr: "127.0.0.1:0"}, echo())
	c, err := net.Dial("tcp", s.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade, HTTP2-Settings\r\nUpgrade: h2c\r\nHTTP2-Settings: AAMAAABkAARAAAAAAAIAAAAA\r\n\r\n")
	c.SetReadDeadline(time.Now().Add(3 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusSwitchingProtocols {
		t.Fatal("plain listener honoured Upgrade: h2c")
	}
	// The prior-knowledge form (h2c preface on plain TCP) is not HTTP/2 either.
	c2, err := net.Dial("tcp", s.HTTPAddr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c2.Close()
	io.WriteString(c2, "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n")
	c2.SetReadDeadline(time.Now().Add(3 * time.Second))
	b := make([]byte, 12)
	n, _ := io.ReadFull(c2, b)
	if n >= 9 && b[3] == 0x4 {
		t.Fatal("plain listener answered an h2c preface with a SETTINGS frame")
	}
}

func TestTransientAcceptErrors(t *testing.T) {
	for _, e := range []error{syscall.EMFILE, &net.OpError{Op: "accept", Err: os.NewSyscallError("accept4", syscall.EMFILE)}, syscall.ECONNABORTED} {
		if !transientAcceptError(e) {
			t.Errorf("%v treated as fatal: the server would stop under fd exhaustion", e)
		}
	}
	if transientAcceptError(net.ErrClosed) {
		t.Error("net.ErrClosed treated as transient: Shutdown would never end the accept loop")
	}
}
