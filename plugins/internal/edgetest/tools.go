package edgetest

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-edge/portico/plugins"
)

// Clock is a settable clock for tests.
type Clock struct {
	mu sync.Mutex
	t  time.Time
}

// NewClock returns a clock stopped at t.
func NewClock(t time.Time) *Clock { return &Clock{t: t} }

// Now returns the clock's time.
func (c *Clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

// Advance moves the clock forward.
func (c *Clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// Set moves the clock to t.
func (c *Clock) Set(t time.Time) {
	c.mu.Lock()
	c.t = t
	c.mu.Unlock()
}

// Redis is a redis-server the test started.
type Redis struct {
	Addr string
	cmd  *exec.Cmd
	once sync.Once
}

// StartRedis starts Debian's redis-server on a free 127.0.0.1 port with
// persistence off, and stops it when the test ends. Without redis-server
// the test is skipped, unless PORTICO_CI is set, where it fails.
func StartRedis(t testing.TB) *Redis {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		if os.Getenv("PORTICO_CI") != "" {
			t.Fatalf("redis-server is not installed (apt-get install redis-server); PORTICO_CI is set, so this is a failure")
		}
		t.Skip("redis-server is not installed (apt-get install redis-server); skipping")
	}
	port := freePort(t)
	dir := t.TempDir()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port),
		"--save", "", "--appendonly", "no", "--dir", dir, "--protected-mode", "yes")
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r := &Redis{Addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd}
	t.Cleanup(r.Stop)
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(out)
		closed := false
		for sc.Scan() {
			if !closed && strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				closed = true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		r.Stop()
		t.Fatalf("redis-server did not become ready within 10s")
	}
	return r
}

// Stop stops the server (once) and waits for it to exit.
func (r *Redis) Stop() {
	r.once.Do(func() {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
	})
}

func freePort(t testing.TB) int {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// Must fails the test on err.
func Must(t testing.TB, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(fmt.Sprint(err))
	}
}

// Discard is a ResponseWriter for benchmarks: it keeps the status and
// drops the body. Reset clears it between iterations without allocating.
type Discard struct {
	H      http.Header
	Status int
}

// NewDiscard returns an empty Discard.
func NewDiscard() *Discard { return &Discard{H: make(http.Header, 8)} }

// Header implements http.ResponseWriter.
func (d *Discard) Header() http.Header { return d.H }

// Write implements http.ResponseWriter.
func (d *Discard) Write(b []byte) (int, error) {
	if d.Status == 0 {
		d.Status = http.StatusOK
	}
	return len(b), nil
}

// WriteHeader implements http.ResponseWriter.
func (d *Discard) WriteHeader(s int) { d.Status = s }

// Reset clears the status and headers.
func (d *Discard) Reset() {
	clear(d.H)
	d.Status = 0
}

// OK is a terminal handler that answers 200 with nothing.
var OK = plugins.HandlerFunc(func(w http.ResponseWriter, _ *plugins.Exchange) { w.WriteHeader(http.StatusOK) })
