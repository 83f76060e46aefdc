//go:build unix

package integration

import (
	"io"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
)

type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }
func (w *discardWriter) Flush()                      {}

// oneKiBBackend answers every request with 1 KiB.
func oneKiBBackend(b *testing.B) string {
	body := []byte(strings.Repeat("x", 1024))
	return backend(b, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header()["Content-Type"] = []string{"application/octet-stream"}
		w.Header()["Content-Length"] = []string{"1024"}
		_, _ = w.Write(body)
	}))
}

// benchInvoke runs http_proxy calls the way the data plane does, with the
// headers an edge sends, from 16 goroutines at once (CPU per request, not
// loopback latency; run with -cpu 1). Allocations include the loopback backend's
// (a net/http server in the same process).
func benchInvoke(b *testing.B, method, payload string) {
	be := oneKiBBackend(b)
	iv := newInvoker(b)
	route := &config.Route{Method: "ANY", Path: "/items", Integration: config.Integration{
		Type: config.IntegrationHTTPProxy, URI: "http://${stageVariables.backend}/items",
	}}
	call := &Call{Route: route, Variables: map[string]string{"backend": be}, RequestID: "abcdefgh-1"}
	edge := http.Header{
		"User-Agent":        {"bench/1.0"},
		"Accept":            {"application/json"},
		"X-Request-Id":      {"abcdefgh-1"},
		"X-Forwarded-For":   {"192.0.2.10"},
		"X-Forwarded-Host":  {"api.example.test"},
		"X-Forwarded-Proto": {"https"},
		"Forwarded":         {`for=192.0.2.10;host="api.example.test";proto=https`},
	}
	b.SetParallelism(16)
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	b.RunParallel(func(pb *testing.PB) {
		r, _ := http.NewRequest(method, "http://origin/items?color=red", nil)
		w := &discardWriter{h: http.Header{}}
		for pb.Next() {
			clear(r.Header)
			for k, v := range edge {
				r.Header[k] = v
			}
			if payload != "" {
				r.Body, r.ContentLength = io.NopCloser(strings.NewReader(payload)), int64(len(payload))
			}
			clear(w.h)
			w.status, w.n = 0, 0
			iv.Serve(w, r, call)
			if w.status != 200 || w.n != 1024 {
				b.Errorf("status %d, %d bytes", w.status, w.n)
				return
			}
		}
	})
}

func BenchmarkInvokeProxyGet1KiB(b *testing.B) { benchInvoke(b, http.MethodGet, "") }
func BenchmarkInvokeProxyPost1KiB(b *testing.B) {
	benchInvoke(b, http.MethodPost, strings.Repeat("y", 1024))
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
