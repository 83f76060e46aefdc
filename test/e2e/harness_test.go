// Package e2e runs Portico as its users do: real `portico origin` and
// `portico edge` processes on loopback, real backends, real clients (Go's
// and curl). Every wait is bounded.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// binary is the portico binary under test.
var binary string

func TestMain(m *testing.M) {
	code, err := setup(m)
	if err != nil {
		fmt.Fprintln(os.Stderr, "e2e setup:", err)
		os.Exit(1)
	}
	os.Exit(code)
}

func setup(m *testing.M) (int, error) {
	if b := os.Getenv("PORTICO_BIN"); b != "" {
		binary = b
		return m.Run(), nil
	}
	dir, err := os.MkdirTemp("", "portico-e2e-bin")
	if err != nil {
		return 0, err
	}
	defer os.RemoveAll(dir)
	binary = filepath.Join(dir, "portico")
	cmd := exec.Command("go", "build", "-o", binary, "../../cmd/portico")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return 0, fmt.Errorf("build portico: %w", err)
	}
	return m.Run(), nil
}

// proc is a running portico process whose output is captured.
type proc struct {
	t    *testing.T
	cmd  *exec.Cmd
	mu   sync.Mutex
	out  bytes.Buffer
	done chan struct{}
}

func (p *proc) Write(b []byte) (int, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.Write(b)
}

func (p *proc) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.out.String()
}

// waitFor waits until the output matches re and returns the submatches.
func (p *proc) waitFor(re *regexp.Regexp, timeout time.Duration) []string {
	p.t.Helper()
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		if m := re.FindStringSubmatch(p.output()); m != nil {
			return m
		}
		select {
		case <-p.done:
			p.t.Fatalf("process exited before printing %q; output:\n%s", re, p.output())
		case <-time.After(20 * time.Millisecond):
		}
	}
	p.t.Fatalf("timed out waiting for %q; output:\n%s", re, p.output())
	return nil
}

func start(t *testing.T, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, done: make(chan struct{})}
	p.cmd = exec.Command(binary, args...)
	p.cmd.Stdout, p.cmd.Stderr = p, p
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start portico %v: %v", args, err)
	}
	go func() { _ = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop() })
	return p
}

// stop sends SIGTERM and waits (bounded) for a graceful exit.
func (p *proc) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// kill ends the process at once, as a crash would.
func (p *proc) kill() {
	_ = p.cmd.Process.Kill()
	<-p.done
}

type origin struct {
	*proc
	AdminURL, DataURL     string
	AdminToken, EdgeToken string
	DataDir               string
}

var (
	reOriginServing = regexp.MustCompile(`origin serving.* admin=(\S+) data=(\S+)`)
	reAdminToken    = regexp.MustCompile(`admin token[^:]*:\s+(ptc_admin_\S+)`)
	reEdgeToken     = regexp.MustCompile(`edge token[^:]*:\s+(ptc_edge_\S+)`)
	reEdgeServing   = regexp.MustCompile(`edge serving.* https=(\S+) http=(\S*)`)
)

func startOrigin(t *testing.T, dataDir string, extra ...string) *origin {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	args := append([]string{"origin", "--data-dir", dataDir, "--admin-listen", "127.0.0.1:0", "--data-listen", "127.0.0.1:0", "--drain", "2s"}, extra...)
	p := start(t, args...)
	m := p.waitFor(reOriginServing, 20*time.Second)
	data := m[2]
	if !strings.Contains(data, "://") {
		data = "http://" + data
	}
	o := &origin{proc: p, AdminURL: "http://" + m[1], DataURL: data, DataDir: dataDir}
	if m := reAdminToken.FindStringSubmatch(p.output()); m != nil {
		o.AdminToken = m[1]
		o.EdgeToken = reEdgeToken.FindStringSubmatch(p.output())[1]
	}
	return o
}

type edgeNode struct {
	*proc
	HTTPS, HTTP string // host:port
	DataDir     string
	client      *http.Client
}

func startEdge(t *testing.T, o *origin, dataDir string, extra ...string) *edgeNode {
	t.Helper()
	if dataDir == "" {
		dataDir = t.TempDir()
	}
	args := append([]string{"edge", "--origin", o.DataURL, "--token", o.EdgeToken, "--data-dir", dataDir,
		"--https-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--ops-listen", "", "--dev-ca", "--drain", "2s"}, extra...)
	p := start(t, args...)
	m := p.waitFor(reEdgeServing, 20*time.Second)
	e := &edgeNode{proc: p, HTTPS: m[1], HTTP: m[2], DataDir: dataDir}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(dataDir, "dev-ca.pem"))
	if err != nil {
		t.Fatalf("read dev CA: %v", err)
	}
	pool.AppendCertsFromPEM(ca)
	e.client = &http.Client{
		Timeout: 30 * time.Second,
		Transport: &http.Transport{
			TLSClientConfig:     &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"},
			ForceAttemptHTTP2:   true,
			MaxIdleConnsPerHost: 64,
		},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	return e
}

// from returns the edge as seen by a client connecting from another
// loopback address, ip (in 127.0.0.0/8): per-source state on the edge,
// such as failed-authentication counts, is then kept apart from the
// default client's.
func (e *edgeNode) from(ip string) *edgeNode {
	c := *e
	tr := e.client.Transport.(*http.Transport).Clone()
	d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}}
	tr.DialContext = d.DialContext
	c.client = &http.Client{Timeout: e.client.Timeout, Transport: tr, CheckRedirect: e.client.CheckRedirect}
	return &c
}

// url returns an https URL on the edge for host (sent as Host) and path.
func (e *edgeNode) url(path string) string { return "https://" + e.HTTPS + path }

// get sends a request to the edge with the given Host.
func (e *edgeNode) do(t *testing.T, method, host, path string, body io.Reader, hdr http.Header) *response {
	t.Helper()
	req, err := http.NewRequest(method, e.url(path), body)
	if err != nil {
		t.Fatal(err)
	}
	if host != "" {
		req.Host = host
	}
	for k, v := range hdr {
		req.Header[k] = v
	}
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return &response{Response: res, Body: b}
}

type response struct {
	*http.Response
	Body []byte
}

func (r *response) json(t *testing.T, v any) {
	t.Helper()
	if err := json.Unmarshal(r.Body, v); err != nil {
		t.Fatalf("response %d is not JSON (%v): %s", r.StatusCode, err, r.Body)
	}
}

// message returns the "message" of a Portico JSON error body.
func (r *response) message(t *testing.T) string {
	t.Helper()
	var e struct{ Message string }
	r.json(t, &e)
	if e.Message == "" {
		t.Fatalf("error response %d has no message: %s", r.StatusCode, r.Body)
	}
	return e.Message
}

// admin calls the origin's admin API.
func (o *origin) admin(t *testing.T, method, path string, body any, out any) (int, string) {
	t.Helper()
	var rd io.Reader
	ct := ""
	switch b := body.(type) {
	case nil:
	case []byte:
		rd = bytes.NewReader(b)
		ct = "application/yaml"
	default:
		j, _ := json.Marshal(b)
		rd = bytes.NewReader(j)
		ct = "application/json"
	}
	req, _ := http.NewRequest(method, o.AdminURL+path, rd)
	req.Header.Set("Authorization", "Bearer "+o.AdminToken)
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	res, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("admin %s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	if out != nil && res.StatusCode < 300 {
		if err := json.Unmarshal(raw, out); err != nil {
			t.Fatalf("admin %s %s: %v: %s", method, path, err, raw)
		}
	}
	return res.StatusCode, string(raw)
}

// mustAdmin is admin that fails the test on a non-2xx status.
func (o *origin) mustAdmin(t *testing.T, method, path string, body any, out any) {
	t.Helper()
	if code, raw := o.admin(t, method, path, body, out); code >= 300 {
		t.Fatalf("admin %s %s: %d %s", method, path, code, raw)
	}
}

// apply posts a config file and its documents (read from testdata).
func (o *origin) apply(t *testing.T, configYAML string, docs map[string]string) (int, string) {
	t.Helper()
	return o.admin(t, "POST", "/v1/apply", map[string]any{"path": "portico.yaml", "config": configYAML, "documents": docs}, nil)
}

// eventually retries f until it returns nil or the timeout passes.
func eventually(t *testing.T, timeout time.Duration, f func() error) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	var err error
	for time.Now().Before(deadline) {
		if err = f(); err == nil {
			return
		}
		time.Sleep(25 * time.Millisecond)
	}
	t.Fatalf("condition not met within %s: %v", timeout, err)
}

// backend starts an HTTP server on loopback.
func backend(t *testing.T, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go s.Serve(ln)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_ = s.Shutdown(ctx)
	})
	return ln.Addr().String()
}

func readFile(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// lines scans output for lines containing s.
func lines(out, s string) []string {
	var res []string
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		if strings.Contains(sc.Text(), s) {
			res = append(res, sc.Text())
		}
	}
	return res
}

// http1 returns a client of the edge that speaks HTTP/1.1 only.
func (e *edgeNode) http1() *http.Client {
	tr := e.client.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	tr.TLSNextProto = map[string]func(string, *tls.Conn) http.RoundTripper{}
	return &http.Client{Transport: tr, Timeout: 30 * time.Second, CheckRedirect: e.client.CheckRedirect}
}
