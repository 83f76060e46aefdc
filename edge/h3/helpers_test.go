package h3

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/http3"
	"github.com/quic-go/quic-go/quicvarint"
)

// testCert is a self-signed P-256 certificate for localhost and 127.0.0.1.
func testCert(t testing.TB) (tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: "localhost"},
		DNSNames:              []string{"localhost"},
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		IsCA:                  true,
		BasicConstraintsValid: true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, pool
}

// logBuffer collects a server's log lines for tests that look at them.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

// testServer is a Server listening on 127.0.0.1 until the test ends.
type testServer struct {
	*Server
	addr string
	pool *x509.CertPool
	logs *logBuffer
	ln   *quic.EarlyListener
}

// maxStreams is the request stream limit of the test listener.
const maxStreams = 100

func startServer(t testing.TB, cfg Config) *testServer {
	return startServerQUIC(t, cfg, &quic.Config{MaxIdleTimeout: 30 * time.Second}, maxStreams)
}

func startServerQUIC(t testing.TB, cfg Config, qconf *quic.Config, streams int64) *testServer {
	t.Helper()
	cert, pool := testCert(t)
	logs := &logBuffer{}
	if cfg.Logger == nil {
		var w io.Writer = logs
		if testing.Verbose() {
			w = io.MultiWriter(logs, os.Stderr)
		}
		cfg.Logger = slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tc := ConfigureTLSConfig(&tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert}})
	ln, err := quic.ListenAddrEarly("127.0.0.1:0", tc, QUICConfig(qconf, streams))
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.ServeListener(ln) }()
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
		ln.Close()
		select {
		case err := <-served:
			if !errors.Is(err, ErrServerClosed) {
				t.Errorf("ServeListener returned %v, want ErrServerClosed", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("ServeListener did not return after Shutdown")
		}
	})
	return &testServer{Server: s, addr: ln.Addr().String(), pool: pool, logs: logs, ln: ln}
}

func (ts *testServer) url(path string) string {
	_, port, _ := net.SplitHostPort(ts.addr)
	return "https://localhost:" + port + path
}

// client is quic-go's HTTP/3 client, trusting the test certificate.
func (ts *testServer) client(t testing.TB) *http.Client {
	tr := &http3.Transport{TLSClientConfig: &tls.Config{RootCAs: ts.pool, ServerName: "localhost"}}
	t.Cleanup(func() { tr.Close() })
	return &http.Client{Transport: tr, Timeout: 10 * time.Second}
}

// rawConn is a QUIC connection whose HTTP/3 frames the test writes by hand.
type rawConn struct {
	t  testing.TB
	qc *quic.Conn
	// the server's control stream, read in the background
	mu       sync.Mutex
	settings []byte // the server's SETTINGS payload
	ctrl     *quic.ReceiveStream
	goAways  []uint64
	ctrlErr  error
}

func (ts *testServer) dial(t testing.TB) *rawConn {
	return ts.dialQUIC(t, &quic.Config{MaxIdleTimeout: 30 * time.Second})
}

func (ts *testServer) dialQUIC(t testing.TB, qconf *quic.Config) *rawConn {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	qc, err := quic.DialAddr(ctx, ts.addr, &tls.Config{RootCAs: ts.pool, ServerName: "localhost", NextProtos: []string{"h3"}}, qconf)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { qc.CloseWithError(0x100, "") })
	rc := &rawConn{t: t, qc: qc}
	go rc.readServerControl()
	return rc
}

// readServerControl reads the server's control stream: SETTINGS, GOAWAY.
func (rc *rawConn) readServerControl() {
	for {
		rs, err := rc.qc.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		r := quicvarint.NewReader(rs)
		typ, err := quicvarint.Read(r)
		if err != nil || typ != streamControl {
			continue
		}
		rc.mu.Lock()
		rc.ctrl = rs
		rc.mu.Unlock()
		go func() {
			for {
				ft, err := quicvarint.Read(r)
				if err != nil {
					rc.mu.Lock()
					rc.ctrlErr = err
					rc.mu.Unlock()
					return
				}
				l, _ := quicvarint.Read(r)
				b := make([]byte, l)
				if _, err := io.ReadFull(r, b); err != nil {
					return
				}
				rc.mu.Lock()
				switch ft {
				case frameSettings:
					rc.settings = b
				case frameGoAway:
					id, _, _ := quicvarint.Parse(b)
					rc.goAways = append(rc.goAways, id)
				}
				rc.mu.Unlock()
			}
		}()
	}
}

// uni opens a unidirectional stream and writes its type and then b.
func (rc *rawConn) uni(typ uint64, b ...[]byte) *quic.SendStream {
	rc.t.Helper()
	s, err := rc.qc.OpenUniStream()
	if err != nil {
		rc.t.Fatal(err)
	}
	out := quicvarint.Append(nil, typ)
	for _, p := range b {
		out = append(out, p...)
	}
	// A write the server cut short by closing the connection is what
	// some tests want; the test then looks at how it was closed.
	if _, err := s.Write(out); err != nil && !rc.closedBy(err) {
		rc.t.Fatal(err)
	}
	return s
}

// closedBy reports whether err, from a stream, is the connection's end
// rather than the stream's. quic-go fails the streams with the close error
// before it cancels the connection's context, so a write the server's
// CONNECTION_CLOSE cut short may return while Context().Err() is still
// nil: the error's type tells.
func (rc *rawConn) closedBy(err error) bool {
	var ae *quic.ApplicationError
	var te *quic.TransportError
	return rc.qc.Context().Err() != nil || errors.As(err, &ae) || errors.As(err, &te)
}

// control opens the client's control stream with an empty SETTINGS frame.
func (rc *rawConn) control() *quic.SendStream {
	return rc.uni(streamControl, frame(frameSettings, nil))
}

// frame is an HTTP/3 frame.
func frame(typ uint64, payload []byte) []byte {
	return append(appendFrameHeader(nil, typ, uint64(len(payload))), payload...)
}

// fields QPACK-encodes name/value pairs (static table and literals).
func fields(kv ...string) []byte {
	var buf bytes.Buffer
	enc := qpack.NewEncoder(&buf)
	for i := 0; i+1 < len(kv); i += 2 {
		if err := enc.WriteField(qpack.HeaderField{Name: kv[i], Value: kv[i+1]}); err != nil {
			panic(err)
		}
	}
	if len(kv) == 0 {
		return []byte{0, 0}
	}
	return buf.Bytes()
}

// get is the field section of a plain GET.
func get(path string, extra ...string) []byte {
	return fields(append([]string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", path}, extra...)...)
}

// request opens a request stream and writes b (frames); with fin, it ends
// the stream.
func (rc *rawConn) request(fin bool, b ...[]byte) *quic.Stream {
	rc.t.Helper()
	s, err := rc.qc.OpenStreamSync(context.Background())
	if err != nil {
		rc.t.Fatal(err)
	}
	var out []byte
	for _, p := range b {
		out = append(out, p...)
	}
	if len(out) > 0 {
		if _, err := s.Write(out); err != nil && !rc.closedBy(err) {
			rc.t.Fatal(err)
		}
	}
	if fin {
		s.Close()
	}
	return s
}

// response is what came back on a request stream.
type response struct {
	interim  []int // 1xx statuses, in order
	interimH []http.Header
	status   int
	header   http.Header
	body     []byte
	trailer  http.Header
	dataSeen int // DATA frames
}

// readResponse reads a response to its end. A reset stream gives its
// error.
func readResponse(t testing.TB, s *quic.Stream) (*response, error) {
	t.Helper()
	_ = s.SetReadDeadline(time.Now().Add(10 * time.Second))
	b, err := io.ReadAll(s)
	if err != nil {
		return nil, err
	}
	resp := &response{}
	dec := qpack.NewDecoder()
	for len(b) > 0 {
		typ, n, err := quicvarint.Parse(b)
		if err != nil {
			t.Fatalf("response: bad frame type: %v", err)
		}
		b = b[n:]
		l, n, err := quicvarint.Parse(b)
		if err != nil || uint64(len(b)-n) < l {
			t.Fatalf("response: truncated frame")
		}
		p := b[n : n+int(l)]
		b = b[n+int(l):]
		switch typ {
		case frameHeaders:
			h := http.Header{}
			status := 0
			next := dec.Decode(p)
			for {
				f, err := next()
				if err == io.EOF {
					break
				}
				if err != nil {
					t.Fatalf("response: QPACK: %v", err)
				}
				if f.Name == ":status" {
					status = atoi(f.Value)
					continue
				}
				if f.Name != strings.ToLower(f.Name) {
					t.Errorf("response field %q is not lower case", f.Name)
				}
				h.Add(f.Name, f.Value)
			}
			switch {
			case status >= 100 && status < 200:
				resp.interim = append(resp.interim, status)
				resp.interimH = append(resp.interimH, h)
			case resp.status == 0:
				if status == 0 {
					t.Fatal("response HEADERS without :status")
				}
				resp.status, resp.header = status, h
			default:
				if status != 0 {
					t.Fatal("trailers carry :status")
				}
				resp.trailer = h
			}
		case frameData:
			if resp.status == 0 || resp.trailer != nil {
				t.Fatal("DATA outside the response body")
			}
			resp.dataSeen++
			resp.body = append(resp.body, p...)
		default:
			t.Fatalf("response carries frame type 0x%x", typ)
		}
	}
	return resp, nil
}

func atoi(s string) int {
	n := 0
	for _, c := range s {
		n = n*10 + int(c-'0')
	}
	return n
}

// mustResponse is readResponse that fails the test on a reset stream.
func mustResponse(t testing.TB, s *quic.Stream) *response {
	t.Helper()
	r, err := readResponse(t, s)
	if err != nil {
		t.Fatalf("reading the response: %v", err)
	}
	return r
}

// wantConnError waits for the server to close the connection with code.
func (rc *rawConn) wantConnError(code ErrCode) {
	rc.t.Helper()
	select {
	case <-rc.qc.Context().Done():
	case <-time.After(5 * time.Second):
		rc.t.Fatalf("connection still open; want it closed with %s", code)
	}
	var ae *quic.ApplicationError
	if err := context.Cause(rc.qc.Context()); !errors.As(err, &ae) || !ae.Remote || ErrCode(ae.ErrorCode) != code {
		rc.t.Fatalf("connection ended with %v; want the server to close it with %s", err, code)
	}
}

// wantConnErrorReason is wantConnError that also wants reason in the
// CONNECTION_CLOSE: the error came from the frame the test meant, so
// everything the test sent before it was accepted.
func (rc *rawConn) wantConnErrorReason(code ErrCode, reason string) {
	rc.t.Helper()
	rc.wantConnError(code)
	var ae *quic.ApplicationError
	if errors.As(context.Cause(rc.qc.Context()), &ae) && !strings.Contains(ae.ErrorMessage, reason) {
		rc.t.Fatalf("connection closed with %s for %q; want it for %q", code, ae.ErrorMessage, reason)
	}
}

// serverConn waits until the server's side of rc satisfies cond (the
// server has read a stream's type, say) and reports whether it did.
func (ts *testServer) serverConn(rc *rawConn, cond func(c *conn) bool) bool {
	// The client's socket is bound to the unspecified address: match
	// the port.
	port := rc.qc.LocalAddr().(*net.UDPAddr).Port
	return waitFor(5*time.Second, func() bool {
		ts.mu.Lock()
		defer ts.mu.Unlock()
		for c := range ts.conns {
			if c.qc.RemoteAddr().(*net.UDPAddr).Port == port && cond(c) {
				return true
			}
		}
		return false
	})
}

// wantOpen checks that the connection still serves requests.
func (rc *rawConn) wantOpen() {
	rc.t.Helper()
	s := rc.request(true, frame(frameHeaders, get("/still-open")))
	r, err := readResponse(rc.t, s)
	if err != nil {
		rc.t.Fatalf("connection no longer serves: %v (cause %v)", err, context.Cause(rc.qc.Context()))
	}
	if r.status != 200 {
		rc.t.Fatalf("status %d, want 200", r.status)
	}
}

// wantStreamError checks that the server reset the stream with code.
func wantStreamError(t testing.TB, s *quic.Stream, code ErrCode) {
	t.Helper()
	_, err := readResponse(t, s)
	var se *quic.StreamError
	if !errors.As(err, &se) || !se.Remote || ErrCode(se.ErrorCode) != code {
		t.Fatalf("stream ended with %v; want a reset with %s", err, code)
	}
}

// okHandler answers "ok".
func okHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
}

// waitFor polls cond for up to d.
func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cond()
}
