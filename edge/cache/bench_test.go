package cache

import (
	"bytes"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// discardWriter is a ResponseWriter that keeps nothing, so the benchmarks
// measure the cache and not a recorder.
type discardWriter struct {
	h      http.Header
	status int
	n      int
}

func (d *discardWriter) Header() http.Header         { return d.h }
func (d *discardWriter) WriteHeader(s int)           { d.status = s }
func (d *discardWriter) Write(p []byte) (int, error) { d.n += len(p); return len(p), nil }

func benchHandler(b *testing.B, size int) (plugins.Handler, *plugins.Exchange) {
	b.Helper()
	f, err := NewFactory(Options{MaxBytes: 256 << 20})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(f.Close)
	p, err := f.New(context.Background(), config.PolicySpec{Type: Type, Config: json.RawMessage(`{"ttl":"3600s","maxObjectBytes":1048576}`)},
		plugins.Scope{APIID: "api1", Stage: "prod"})
	if err != nil {
		b.Fatal(err)
	}
	body := bytes.Repeat([]byte("x"), size)
	h := p.Wrap(plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("Etag", `"abc"`)
		_, _ = w.Write(body)
	}))
	req := httptest.NewRequest(http.MethodGet, "http://api.example.com/v1/items/42", nil)
	ex := &plugins.Exchange{
		Request: req, Host: "api.example.com", Path: "/v1/items/42", RoutePath: "/items/42",
		Stage: &config.Stage{APIID: "api1", Name: "prod"},
		Route: &config.Route{Method: "GET", Path: "/items/{id}"},
	}
	w := &discardWriter{h: make(http.Header)}
	h.ServeExchange(w, ex)
	if w.h.Get("X-Cache") != "Miss" || w.n != size {
		b.Fatalf("fill: X-Cache %q, %d bytes", w.h.Get("X-Cache"), w.n)
	}
	return h, ex
}

func benchmarkHit(b *testing.B, size int) {
	h, ex := benchHandler(b, size)
	w := &discardWriter{h: make(http.Header, 8)}
	b.SetBytes(int64(size))
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		w.n = 0
		h.ServeExchange(w, ex)
	}
	if w.h.Get("X-Cache") != "Hit" || w.n != size {
		b.Fatalf("X-Cache %q, %d bytes", w.h.Get("X-Cache"), w.n)
	}
}

func BenchmarkHit1KiB(b *testing.B)   { benchmarkHit(b, 1<<10) }
func BenchmarkHit100KiB(b *testing.B) { benchmarkHit(b, 100<<10) }

// BenchmarkHitParallel shows the store under concurrent readers.
func BenchmarkHitParallel1KiB(b *testing.B) {
	h, ex0 := benchHandler(b, 1<<10)
	b.SetBytes(1 << 10)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ex := *ex0
		w := &discardWriter{h: make(http.Header, 8)}
		for pb.Next() {
			clear(w.h)
			h.ServeExchange(w, &ex)
		}
	})
}
