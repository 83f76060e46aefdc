package forward

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
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

// BenchmarkForwardGet1KiB forwards a GET with typical API client headers
// and copies a 1 KiB response. Allocations include the loopback origin's
// (net/http server) in the same process.
func BenchmarkForwardGet1KiB(b *testing.B) {
	f, err := New(Options{Origin: benchOrigin(b), Token: "ptc_edge_x"})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ex, r := benchExchange()
	client := http.Header{
		"User-Agent":      {"bench/1.0"},
		"Accept":          {"application/json"},
		"Accept-Encoding": {"gzip"},
		"Authorization":   {"Bearer abc"},
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		resetRequest(r, client)
		w.reset()
		f.Forward(w, ex)
		if w.status != 200 || w.n != 1024 {
			b.Fatalf("status %d, %d bytes", w.status, w.n)
		}
	}
}

// BenchmarkForwardPost1KiB forwards a POST with a 1 KiB body.
func BenchmarkForwardPost1KiB(b *testing.B) {
	f, err := New(Options{Origin: benchOrigin(b), Token: "ptc_edge_x"})
	if err != nil {
		b.Fatal(err)
	}
	defer f.Close()
	ex, r := benchExchange()
	r.Method = http.MethodPost
	payload := strings.Repeat("y", 1024)
	client := http.Header{"Content-Type": {"application/json"}, "User-Agent": {"bench/1.0"}}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		resetRequest(r, client)
		rd := strings.NewReader(payload)
		r.Body, r.ContentLength = io.NopCloser(rd), int64(len(payload))
		w.reset()
		f.Forward(w, ex)
		if w.status != 200 || w.n != 1024 {
			b.Fatalf("status %d, %d bytes", w.status, w.n)
		}
	}
}
