package proxywasm

import (
	"context"
	"net/http"
	"syscall"
	"testing"
)

// BenchmarkStreamC runs the C authorizer's whole stream (create, request
// headers, done, delete) on one instance, with the header map the stream
// provides, as the embedder does.
func BenchmarkStreamC(b *testing.B) {
	ctx := context.Background()
	p := newCAuthorizer(b)
	r, _ := http.NewRequest("GET", "http://example.test/", nil)
	r.Header.Set("Authorization", "Bearer s3cr3t")
	info := &StreamInfo{Request: r}
	b.ReportAllocs()
	var ru0, ru1 syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru0)
	n := 0
	defer func() {
		_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru1)
		cpu := (ru1.Utime.Nano() + ru1.Stime.Nano()) - (ru0.Utime.Nano() + ru0.Stime.Nano())
		b.ReportMetric(float64(cpu)/float64(max(n, 1)), "cpu-ns/op")
	}()
	for b.Loop() {
		n++
		s, err := p.NewStream(ctx, info)
		if err != nil {
			b.Fatal(err)
		}
		if o := s.RequestHeaders(s.RequestHeaderMap(r, "http"), true); o != Continue {
			b.Fatal(o, s.Err())
		}
		s.Close()
	}
}
