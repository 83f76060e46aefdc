package ratelimit_test

import (
	"context"
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/ratelimit"
)

func BenchmarkMemoryAllow(b *testing.B) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		_, _ = m.Allow(ctx, "bucket", 1e9, 1e6, 1)
	}
}

func BenchmarkMemoryAllowParallel(b *testing.B) {
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	keys := []string{"a", "b", "c", "d", "e", "f", "g", "h"}
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		ctx := context.Background()
		i := 0
		for pb.Next() {
			_, _ = m.Allow(ctx, keys[i%len(keys)], 1e9, 1e6, 1)
			i++
		}
	})
}

func BenchmarkThrottle(b *testing.B) {
	f, err := ratelimit.NewThrottleFactory(ratelimit.ThrottleOptions{Limiter: ratelimit.NewMemory(ratelimit.MemoryOptions{})})
	edgetest.Must(b, err)
	p, err := f.New(b.Context(), config.PolicySpec{Type: "throttle", Config: json.RawMessage(`{"rate":1000000,"burst":1000000}`)}, plugins.Scope{APIID: "a", Stage: "s"})
	edgetest.Must(b, err)
	h := p.Wrap(edgetest.OK)
	ex := &plugins.Exchange{Request: httptest.NewRequest("GET", "/", nil)}
	w := edgetest.NewDiscard()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		h.ServeExchange(w, ex)
	}
}

// BenchmarkRedisAllow is one round trip to a local redis-server.
func BenchmarkRedisAllow(b *testing.B) {
	rd := edgetest.StartRedis(b)
	r, err := ratelimit.NewRedis(ratelimit.RedisOptions{Addr: rd.Addr})
	edgetest.Must(b, err)
	defer r.Close()
	ctx := context.Background()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := r.Allow(ctx, "bucket", 1e6, 1e6, 1); err != nil {
			b.Fatal(err)
		}
	}
}
