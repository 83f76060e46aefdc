//go:build unix

package edge

import (
	"bufio"
	"crypto/tls"
	"log/slog"
	"net/http"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// benchRequest is what a typical API client sends.
const benchRequest = "GET /v1/pets/123?limit=10 HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"User-Agent: bench/1.0\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Encoding: gzip, br\r\n" +
	"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2ln\r\n\r\n"

type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) WriteHeader(code int)        { w.status = code }
func (w *discardWriter) Write(p []byte) (int, error) { w.n += len(p); return len(p), nil }

// BenchmarkServeHTTP runs the edge's whole pipeline (hygiene, routing,
// exchange, terminal) for one HTTPS request, with a terminal that answers
// 1 KiB instead of forwarding: what the edge itself costs per request.
func BenchmarkServeHTTP(b *testing.B) {
	body := []byte(strings.Repeat("x", 1024))
	term := plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		w.Header()["Content-Length"] = []string{"1024"}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
	e, err := New(Config{Terminal: term, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		b.Fatal(err)
	}
	api := config.API{ID: "a", Routes: []config.Route{
		{Method: "GET", Path: "/pets"},
		{Method: "GET", Path: "/pets/{id}"},
		{Method: "POST", Path: "/pets"},
	}}
	snap := &config.Snapshot{
		APIs:        []config.SnapshotAPI{{ID: "a", Stages: []config.Stage{{APIID: "a", Name: "prod", DeploymentID: "d"}}}},
		Deployments: []config.Deployment{{ID: "d", APIID: "a", API: api}},
		Domains: []config.Domain{{Name: "api.example.com", EndpointType: config.EndpointEdge,
			Mappings: []config.BasePathMapping{{BasePath: "v1", APIID: "a", Stage: "prod"}}}},
	}
	if err := e.Apply(snap); err != nil {
		b.Fatal(err)
	}
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(benchRequest)))
	if err != nil {
		b.Fatal(err)
	}
	r.RemoteAddr = "192.0.2.10:51000"
	r.TLS = &tls.ConnectionState{}
	host, path, header := r.Host, r.URL.Path, r.Header.Clone()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	defer reportCPU(b, cpuTime())
	for b.Loop() {
		r.Host, r.URL.Path, r.URL.RawPath = host, path, ""
		clear(r.Header)
		for k, v := range header {
			r.Header[k] = v
		}
		clear(w.h)
		w.status, w.n = 0, 0
		e.ServeHTTP(w, r)
		if w.status != http.StatusOK || w.n != 1024 {
			b.Fatalf("status %d, %d bytes", w.status, w.n)
		}
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
