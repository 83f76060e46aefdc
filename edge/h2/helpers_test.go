package h2

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// testPKI is a throwaway CA and a leaf for localhost and 127.0.0.1.
type testPKI struct {
	pool *x509.CertPool
	leaf tls.Certificate
}

var (
	pkiOnce sync.Once
	pki     *testPKI
)

func newTestPKI(t testing.TB) *testPKI {
	t.Helper()
	pkiOnce.Do(func() {
		caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		caTmpl := &x509.Certificate{
			SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "h2 test CA"},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
		}
		caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		ca, _ := x509.ParseCertificate(caDER)
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{
			SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "localhost"},
			DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			panic(err)
		}
		pool := x509.NewCertPool()
		pool.AddCert(ca)
		pki = &testPKI{pool: pool, leaf: tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}}
	})
	return pki
}

func (p *testPKI) clientTLS() *tls.Config {
	return &tls.Config{RootCAs: p.pool, ServerName: "localhost", NextProtos: []string{"h2"}}
}

func testLogger(t testing.TB) *slog.Logger {
	if testing.Verbose() {
		return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// testServer is an h2 Server behind a TLS listener on loopback.
type testServer struct {
	*Server
	ln   net.Listener
	addr string
	wg   sync.WaitGroup
	pki  *testPKI
}

func startServer(t testing.TB, cfg Config, h http.Handler) *testServer {
	t.Helper()
	p := newTestPKI(t)
	if cfg.Logger == nil {
		cfg.Logger = testLogger(t)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ts := &testServer{Server: NewServer(cfg, h), ln: ln, addr: ln.Addr().String(), pki: p}
	tconf := &tls.Config{Certificates: []tls.Certificate{p.leaf}, NextProtos: []string{"h2"}}
	ts.wg.Add(1)
	go func() {
		defer ts.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			ts.wg.Add(1)
			go func() {
				defer ts.wg.Done()
				tc := tls.Server(c, tconf)
				if err := tc.Handshake(); err != nil {
					c.Close()
					return
				}
				ts.ServeConn(tc)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		ts.Shutdown(ctx)
		done := make(chan struct{})
		go func() { ts.wg.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Errorf("connections still served 10s after Shutdown")
		}
	})
	return ts
}

func (ts *testServer) url() string { return "https://" + ts.addr }

func (ts *testServer) client() *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: &http2.Transport{TLSClientConfig: ts.pki.clientTLS()}}
}

// rawConn is a client that writes frames by hand.
type rawConn struct {
	t    testing.TB
	conn *tls.Conn
	fr   *http2.Framer
	wmu  sync.Mutex
	enc  *hpack.Encoder
	ebuf bytes.Buffer

	frames   chan http2.Frame // everything the server sends, in order
	closed   chan struct{}
	goAway   atomic.Pointer[http2.GoAwayFrame]
	readErr  error
	settings chan struct{}
}

// dialRaw connects, sends the preface and SETTINGS, and (unless noWait)
// waits for the server's SETTINGS.
func (ts *testServer) dialRaw(t testing.TB, settings ...http2.Setting) *rawConn {
	t.Helper()
	conn, err := tls.Dial("tcp", ts.addr, ts.pki.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	c := &rawConn{t: t, conn: conn, frames: make(chan http2.Frame, 100000), closed: make(chan struct{}), settings: make(chan struct{})}
	c.enc = hpack.NewEncoder(&c.ebuf)
	if _, err := conn.Write([]byte(http2.ClientPreface)); err != nil {
		t.Fatal(err)
	}
	c.fr = newClientFramer(conn)
	if err := c.fr.WriteSettings(settings...); err != nil {
		t.Fatal(err)
	}
	go c.read()
	select {
	case <-c.settings:
	case <-time.After(5 * time.Second):
		t.Fatal("no SETTINGS from the server")
	}
	return c
}

func (c *rawConn) read() {
	defer close(c.closed)
	once := false
	for {
		f, err := c.fr.ReadFrame()
		if err != nil {
			c.readErr = err
			return
		}
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				c.write(func() error { return c.fr.WriteSettingsAck() })
				if !once {
					once = true
					close(c.settings)
				}
			}
		}
		// Framer reuses frames (and invalidates each at the next read):
		// copy what tests look at.
		f = copyFrame(f)
		if ga, ok := f.(*http2.GoAwayFrame); ok {
			c.goAway.Store(ga)
		}
		c.frames <- f
	}
}

// copyFrame detaches a frame from the Framer's buffers.
func copyFrame(f http2.Frame) http2.Frame {
	switch f := f.(type) {
	case *http2.DataFrame:
		return &dataFrame{DataFrame: *f, data: append([]byte(nil), f.Data()...)}
	case *http2.MetaHeadersFrame:
		// The fields are copies already; the HEADERS frame under them
		// is not.
		cp, hf := *f, *f.HeadersFrame
		cp.HeadersFrame = &hf
		return &cp
	case *http2.RSTStreamFrame:
		cp := *f
		return &cp
	case *http2.GoAwayFrame:
		cp := *f
		return &cp
	case *http2.WindowUpdateFrame:
		cp := *f
		return &cp
	case *http2.PingFrame:
		cp := *f
		return &cp
	case *http2.SettingsFrame:
		// Its header only: the settings still point into the Framer's
		// buffer (no test reads them from a rawConn).
		cp := *f
		return &cp
	}
	return f
}

// dataFrame is a DATA frame whose payload outlives the Framer.
type dataFrame struct {
	http2.DataFrame
	data []byte
}

func (d *dataFrame) Data() []byte { return d.data }

func (c *rawConn) write(f func() error) error {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.conn.SetWriteDeadline(time.Now().Add(5 * time.Second))
	return f()
}

// block HPACK-encodes name, value pairs with the connection's encoder.
func (c *rawConn) block(kv ...string) []byte {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	c.ebuf.Reset()
	for i := 0; i+1 < len(kv); i += 2 {
		c.enc.WriteField(hpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	return append([]byte(nil), c.ebuf.Bytes()...)
}

func (c *rawConn) get(path string) []byte {
	return c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", path)
}

func (c *rawConn) headers(id uint32, block []byte, endStream bool) {
	c.t.Helper()
	if err := c.write(func() error {
		return c.fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: endStream, EndHeaders: true})
	}); err != nil {
		c.t.Fatal(err)
	}
}

func (c *rawConn) raw(b []byte) error {
	return c.write(func() error { _, err := c.conn.Write(b); return err })
}

// next returns the next frame matching keep, or fails after d.
func (c *rawConn) next(d time.Duration, keep func(http2.Frame) bool) http2.Frame {
	c.t.Helper()
	deadline := time.After(d)
	for {
		select {
		case f := <-c.frames:
			if keep == nil || keep(f) {
				return f
			}
		case <-deadline:
			return nil
		}
	}
}

// waitEnd waits for the server to end the connection and returns its
// GOAWAY (nil if none) and whether the connection closed.
func (c *rawConn) waitEnd(d time.Duration) (*http2.GoAwayFrame, bool) {
	select {
	case <-c.closed:
		return c.goAway.Load(), true
	case <-time.After(d):
		return c.goAway.Load(), false
	}
}

// rstOn waits for RST_STREAM on stream id, or GOAWAY, and returns its code
// (and whether it was a GOAWAY).
func (c *rawConn) rstOrGoAway(id uint32, d time.Duration) (http2.ErrCode, bool, bool) {
	c.t.Helper()
	f := c.next(d, func(f http2.Frame) bool {
		switch f := f.(type) {
		case *http2.RSTStreamFrame:
			return f.StreamID == id
		case *http2.GoAwayFrame:
			return true
		}
		return false
	})
	switch f := f.(type) {
	case *http2.RSTStreamFrame:
		return f.ErrCode, false, true
	case *http2.GoAwayFrame:
		return f.ErrCode, true, true
	}
	return 0, false, false
}

var errTest = errors.New("test")

func newEncoder(w io.Writer) *hpack.Encoder { return hpack.NewEncoder(w) }

func hf(name, value string) hpack.HeaderField { return hpack.HeaderField{Name: name, Value: value} }

// newClientFramer is a Framer for raw clients: it writes anything, and
// decodes header blocks into MetaHeadersFrames.
func newClientFramer(conn net.Conn) *http2.Framer {
	fr := http2.NewFramer(conn, conn)
	fr.AllowIllegalWrites = true
	fr.ReadMetaHeaders = hpack.NewDecoder(4096, nil)
	fr.MaxHeaderListSize = 1 << 20
	return fr
}

// ping sends a PING and waits for its ACK: every frame sent before it has
// been processed by the server's frame loop. It returns the frames that
// arrived before the ACK.
func (c *rawConn) ping(t testing.TB) []http2.Frame {
	t.Helper()
	var data [8]byte
	binary.BigEndian.PutUint64(data[:], uint64(time.Now().UnixNano()))
	if err := c.raw(frame(framePing, 0, 0, data[:]...)); err != nil {
		t.Fatalf("sending PING: %v", err)
	}
	var before []http2.Frame
	if c.next(5*time.Second, func(f http2.Frame) bool {
		if p, ok := f.(*http2.PingFrame); ok && p.IsAck() && p.Data == data {
			return true
		}
		before = append(before, f)
		return false
	}) == nil {
		t.Fatal("no PING ACK in 5s")
	}
	return before
}

// connOf returns the server's side of a raw client's connection.
func (ts *testServer) connOf(t *testing.T, rc *rawConn) *conn {
	t.Helper()
	addr := rc.conn.LocalAddr().String()
	return ts.connWith(t, func(c *conn) bool { return c.remote == addr })
}

// connWith returns the server's connection that satisfies match (under
// its lock), waiting up to 5s for one to.
func (ts *testServer) connWith(t *testing.T, match func(*conn) bool) *conn {
	t.Helper()
	var found *conn
	waitUntil(t, func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for c := range ts.conns {
			c.mu.Lock()
			ok := match(c)
			c.mu.Unlock()
			if ok {
				found = c
				return true
			}
		}
		return false
	})
	return found
}
