//go:build unix

package forward

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// discardWriter is the cheapest ResponseWriter: what a benchmark measures
// is then the forwarder, the transport and the loopback origin.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *discardWriter) Flush()                      {}

func (w *discardWriter) reset() {
	clear(w.h)
	w.status, w.n = 0, 0
}

// benchOrigin serves a 1 KiB body on loopback, the way the origin's data
// plane answers an http_proxy route.
func benchOrigin(b *testing.B) *url.URL {
	b.Helper()
	body := []byte(strings.Repeat("x", 1024))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.Copy(io.Discard, r.Body)
			w.Header()["Content-Type"] = []string{"application/octet-stream"}
			w.Header()["Content-Length"] = []string{"1024"}
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
	}
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	return &url.URL{Scheme: "http", Host: ln.Addr().String()}
}

func benchExchange() (*plugins.Exchange, *http.Request) {
	r, _ := http.NewRequest(http.MethodGet, "https://api.example.test/v1/items?color=red", nil)
	ex := &plugins.Exchange{
		Request:    r,
		RequestID:  "abcdefgh-1",
		Client:     netip.MustParseAddr("192.0.2.10"),
		Host:       "api.example.test",
		Path:       "/v1/items",
		RoutePath:  "/items",
		TLS:        true,
		API:        &config.SnapshotAPI{ID: "api1"},
		Stage:      &config.Stage{Name: "prod"},
		Deployment: &config.Deployment{ID: "dep1"},
		Route:      &config.Route{Method: "GET", Path: "/items"},
	}
	return ex, r
}

// resetRequest puts back what a client sends: Forward modifies the
// request in place, as the edge's own.
func resetRequest(r *http.Request, h http.Header) {
	clear(r.Header)
	for k, v := range h {
		r.Header[k] = v
	}
	r.URL.Path, r.URL.RawPath, r.URL.RawQuery = "/v1/items", "", "color=red"
	r.Host = "api.example.test"
}

// benchForward forwards requests from 16 goroutines at once, so that the
// figure is CPU per request rather than loopback latency (run with -cpu 1
// to put forwarder and origin on one core, as in test/bench/gateway.sh).
// Allocations include the loopback origin's (a net/http server in the same
// process).
func benchForward(b *testing.B, method, payload string) {
	f, err := New(Options{Origin: benchOrigin(b), Token: "ptc_edge_x"})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	client := http.Header{
		"User-Agent":      {"bench/1.0"},
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip"},
		"Authorization":   {"Bearer abc"},
	}
	b.SetParallelism(16)
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	b.RunParallel(func(pb *testing.PB) {
		ex, r := benchExchange()
		r.Method = method
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			resetRequest(r, client)
			if payload != "" {
				r.Body, r.ContentLength = io.NopCloser(strings.NewReader(payload)), int64(len(payload))
			}
			w.reset()
			f.Forward(w, ex)
			if w.status != 200 || w.n != 1024 {
				b.Errorf("status %d, %d bytes", w.status, w.n)
				return
			}
		}
	})
}

// BenchmarkForwardGet1KiB: a GET with typical API client headers, 1 KiB
// back (the lean path).
func BenchmarkForwardGet1KiB(b *testing.B) { benchForward(b, http.MethodGet, "") }

// BenchmarkForwardPost1KiB: a POST with a 1 KiB body (the Transport path).
func BenchmarkForwardPost1KiB(b *testing.B) {
	benchForward(b, http.MethodPost, strings.Repeat("y", 1024))
}

// BenchmarkOriginProtocol compares the ways to reach the origin with 64
// concurrent requests (run it with -cpu 1: client and origin then share
// one core, as edge and origin do in test/bench/gateway.sh): the lean
// HTTP/1.1 path (the default), net/http's Transport over HTTP/1.1 (what
// requests with a body use), and net/http's Transport over one h2c
// connection (the origin would have to enable unencrypted HTTP/2).
func BenchmarkOriginProtocol(b *testing.B) {
	body := []byte(strings.Repeat("x", 1024))
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	srv := &http.Server{
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			w.Header()["Content-Length"] = []string{"1024"}
			_, _ = w.Write(body)
		}),
		ReadHeaderTimeout: 10 * time.Second,
		Protocols:         new(http.Protocols),
	}
	srv.Protocols.SetHTTP1(true)
	srv.Protocols.SetUnencryptedHTTP2(true)
	go srv.Serve(ln)
	b.Cleanup(func() { srv.Close() })
	origin := &url.URL{Scheme: "http", Host: ln.Addr().String()}

	h1 := &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true}
	h2c := &http.Transport{MaxIdleConnsPerHost: 1024, DisableCompression: true, Protocols: new(http.Protocols)}
	h2c.Protocols.SetUnencryptedHTTP2(true)
	for _, c := range []struct {
		name string
		tr   http.RoundTripper
	}{{"lean-h1", nil}, {"transport-h1", h1}, {"transport-h2c", h2c}} {
		b.Run(c.name, func(b *testing.B) {
			f, err := New(Options{Origin: origin, Token: "t", Transport: c.tr})
			if err != nil {
				b.Fatal(err)
			}
			defer f.Close()
			b.SetParallelism(64)
			b.ReportAllocs()
			defer reportCPU(b, cpuTime())
			b.RunParallel(func(pb *testing.PB) {
				ex, r := benchExchange()
				w := &discardWriter{h: http.Header{}}
				for pb.Next() {
					resetRequest(r, http.Header{"Accept": {"application/json"}})
					w.reset()
					f.Forward(w, ex)
					if w.status != 200 || w.n != 1024 {
						b.Errorf("status %d, %d bytes", w.status, w.n)
						return
					}
				}
			})
		})
	}
}

// cpuTime is the CPU time (user and system) this process has used: with
// the loopback server in the same process, CPU per request is what a
// benchmark reports as cpu-ns/op, which a busy machine disturbs much less
// than ns/op.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

func reportCPU(b *testing.B, start time.Duration) {
	b.ReportMetric(float64(cpuTime()-start)/float64(b.N), "cpu-ns/op")
}
