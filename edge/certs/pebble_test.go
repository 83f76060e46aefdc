package certs

import (
	"bytes"
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
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

// goTool builds a Go tool pinned in the test/tools module (go.mod's tool
// directives) and returns the binary's path. The build cache makes repeat
// builds cheap. PORTICO_TOOLS_BIN, if set, names a directory where CI
// already installed the tools.
func goTool(t testing.TB, name, pkg string) string {
	t.Helper()
	if dir := os.Getenv("PORTICO_TOOLS_BIN"); dir != "" {
		if p := filepath.Join(dir, name); fileExists(p) {
			return p
		}
	}
	goBin, err := exec.LookPath("go")
	if err != nil {
		t.Fatalf("go is not on PATH; it builds the pinned test tools (%s)", pkg)
	}
	out := filepath.Join(toolCache(t), name)
	cmd := exec.Command(goBin, "build", "-o", out, pkg)
	cmd.Dir = toolsModule(t)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("building %s in %s: %v\n%s", pkg, cmd.Dir, err, b)
	}
	return out
}

var toolCacheOnce struct {
	sync.Once
	dir string
}

func toolCache(t testing.TB) string {
	toolCacheOnce.Do(func() {
		d, err := os.MkdirTemp("", "portico-tools-")
		if err != nil {
			t.Fatal(err)
		}
		toolCacheOnce.dir = d
	})
	return toolCacheOnce.dir
}

func toolsModule(t testing.TB) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "test", "tools")
}

// moduleDir is where a module of the tools module lives in the module cache.
func moduleDir(t testing.TB, mod string) string {
	cmd := exec.Command("go", "list", "-m", "-f", "{{.Dir}}", mod)
	cmd.Dir = toolsModule(t)
	b, err := cmd.Output()
	if err != nil {
		t.Fatalf("go list -m %s: %v", mod, err)
	}
	return strings.TrimSpace(string(b))
}

func fileExists(p string) bool { _, err := os.Stat(p); return err == nil }

func freePort(t testing.TB) int {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().(*net.TCPAddr).Port
}

// pebble is Let's Encrypt's test CA with its DNS companion, on loopback.
type pebble struct {
	t          testing.TB
	bin, dir   string
	cfgPath    string
	dns        string
	acmePort   int
	mgmtPort   int
	minicaPool *x509.CertPool
	cmd        *exec.Cmd
	exited     chan struct{}
	log        *bytes.Buffer
	logMu      *sync.Mutex
}

// startPebble runs pebble-challtestsrv (DNS: every name is 127.0.0.1) and
// Pebble, whose validation authority checks HTTP-01 on httpPort and
// TLS-ALPN-01 on tlsPort of 127.0.0.1.
func startPebble(t testing.TB, httpPort, tlsPort int) *pebble {
	t.Helper()
	pebbleBin := goTool(t, "pebble", "github.com/letsencrypt/pebble/v2/cmd/pebble")
	chall := goTool(t, "pebble-challtestsrv", "github.com/letsencrypt/pebble/v2/cmd/pebble-challtestsrv")
	modDir := moduleDir(t, "github.com/letsencrypt/pebble/v2")

	dnsPort := freeUDPPort(t)
	dns := exec.Command(chall, "-defaultIPv4", "127.0.0.1", "-defaultIPv6", "",
		"-dnsserver", "127.0.0.1:"+strconv.Itoa(dnsPort), "-http01", "", "-https01", "", "-tlsalpn01", "", "-doh", "",
		"-management", "127.0.0.1:"+strconv.Itoa(freePort(t)))
	if err := dns.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { dns.Process.Kill(); dns.Wait() })

	p := &pebble{t: t, bin: pebbleBin, dir: t.TempDir(), dns: "127.0.0.1:" + strconv.Itoa(dnsPort),
		acmePort: freePort(t), mgmtPort: freePort(t)}
	conf := map[string]any{"pebble": map[string]any{
		"listenAddress":                  "127.0.0.1:" + strconv.Itoa(p.acmePort),
		"managementListenAddress":        "127.0.0.1:" + strconv.Itoa(p.mgmtPort),
		"certificate":                    filepath.Join(modDir, "test/certs/localhost/cert.pem"),
		"privateKey":                     filepath.Join(modDir, "test/certs/localhost/key.pem"),
		"httpPort":                       httpPort,
		"tlsPort":                        tlsPort,
		"ocspResponderURL":               "",
		"externalAccountBindingRequired": false,
		"domainBlocklist":                []string{"blocked-domain.example"},
		"retryAfter":                     map[string]int{"authz": 1, "order": 1},
		"keyAlgorithm":                   "ecdsa",
		"profiles":                       map[string]any{"default": map[string]any{"description": "default", "validityPeriod": 7776000}},
	}}
	b, _ := json.Marshal(conf)
	p.cfgPath = filepath.Join(p.dir, "pebble.json")
	if err := os.WriteFile(p.cfgPath, b, 0o600); err != nil {
		t.Fatal(err)
	}
	pem, err := os.ReadFile(filepath.Join(modDir, "test/certs/pebble.minica.pem"))
	if err != nil {
		t.Fatal(err)
	}
	p.minicaPool = x509.NewCertPool()
	p.minicaPool.AppendCertsFromPEM(pem)
	p.start()
	t.Cleanup(p.stop)
	return p
}

func freeUDPPort(t testing.TB) int {
	c, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.LocalAddr().(*net.UDPAddr).Port
}

func (p *pebble) start() {
	p.t.Helper()
	p.log, p.logMu = new(bytes.Buffer), new(sync.Mutex)
	p.cmd = exec.Command(p.bin, "-config", p.cfgPath, "-dnsserver", p.dns)
	// No artificial validation delay; Pebble's default 5% badNonce
	// rejections stay on, so certmagic's retry is exercised.
	p.cmd.Env = append(os.Environ(), "PEBBLE_VA_NOSLEEP=1")
	w := &lockedWriter{mu: p.logMu, w: p.log}
	p.cmd.Stdout, p.cmd.Stderr = w, w
	if err := p.cmd.Start(); err != nil {
		p.t.Fatal(err)
	}
	p.exited = make(chan struct{})
	go func() { p.cmd.Wait(); close(p.exited) }()
	deadline := time.Now().Add(15 * time.Second)
	for {
		resp, err := p.client().Get(p.directory())
		if err == nil {
			resp.Body.Close()
			return
		}
		if time.Now().After(deadline) {
			p.t.Fatalf("pebble did not come up: %v\n%s", err, p.logs())
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func (p *pebble) stop() {
	if p.cmd == nil {
		return
	}
	p.cmd.Process.Kill()
	<-p.exited
	p.cmd = nil
}

func (p *pebble) logs() string {
	p.logMu.Lock()
	defer p.logMu.Unlock()
	return p.log.String()
}

// orders counts new-order requests Pebble logged.
func (p *pebble) orders() int {
	return strings.Count(p.logs(), "POST /order-plz")
}

func (p *pebble) client() *http.Client {
	return &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.minicaPool}}}
}

func (p *pebble) directory() string { return "https://127.0.0.1:" + strconv.Itoa(p.acmePort) + "/dir" }

// roots is the pool of Pebble's issuing roots (new at every Pebble start).
func (p *pebble) roots() *x509.CertPool {
	p.t.Helper()
	pool := x509.NewCertPool()
	for i := 0; ; i++ {
		resp, err := p.client().Get(fmt.Sprintf("https://127.0.0.1:%d/roots/%d", p.mgmtPort, i))
		if err != nil {
			p.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			if i == 0 {
				p.t.Fatalf("pebble roots: %d %s", resp.StatusCode, b)
			}
			return pool
		}
		pool.AppendCertsFromPEM(b)
		if i > 3 {
			return pool
		}
	}
}

type lockedWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(b []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(b)
}

// handshake connects to addr with SNI name and verifies the chain against
// roots; it returns the leaf.
func handshake(addr, name string, roots *x509.CertPool) (*x509.Certificate, error) {
	d := &net.Dialer{Timeout: 5 * time.Second}
	c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{ServerName: name, RootCAs: roots, NextProtos: []string{"h2", "http/1.1"}})
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0], nil
}

// gate is a TCP relay in front of Pebble's ACME port that can refuse
// connections, as a CA outage looks to a client, while Pebble keeps its
// accounts and orders (restarting Pebble would reset the CA instead).
type gate struct {
	t      testing.TB
	addr   string
	target string
	mu     sync.Mutex
	ln     net.Listener
	conns  map[net.Conn]struct{}
}

func newGate(t testing.TB, target string) *gate {
	g := &gate{t: t, addr: "127.0.0.1:" + strconv.Itoa(freePort(t)), target: target, conns: map[net.Conn]struct{}{}}
	g.up()
	t.Cleanup(g.down)
	return g
}

func (g *gate) up() {
	g.mu.Lock()
	defer g.mu.Unlock()
	ln, err := net.Listen("tcp", g.addr)
	if err != nil {
		g.t.Fatal(err)
	}
	g.ln = ln
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", g.target)
			if err != nil {
				c.Close()
				continue
			}
			g.mu.Lock()
			g.conns[c], g.conns[up] = struct{}{}, struct{}{}
			g.mu.Unlock()
			go func() { io.Copy(up, c); up.Close() }()
			go func() { io.Copy(c, up); c.Close() }()
		}
	}()
}

// down refuses new connections and cuts the open ones.
func (g *gate) down() {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.ln != nil {
		g.ln.Close()
		g.ln = nil
	}
	for c := range g.conns {
		c.Close()
	}
	clear(g.conns)
}

func (g *gate) directory() string { return "https://" + g.addr + "/dir" }
