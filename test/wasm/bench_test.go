package wasmtest

import (
	"context"
	"net/http"
	"net/netip"
	"syscall"
	"testing"
	"time"

	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/harness"
)

// nopWriter is a ResponseWriter that keeps nothing.
type nopWriter struct {
	h      http.Header
	status int
}

func (w *nopWriter) Header() http.Header         { return w.h }
func (w *nopWriter) WriteHeader(s int)           { w.status = s }
func (w *nopWriter) Write(b []byte) (int, error) { return len(b), nil }

// BenchmarkAuthorizer measures what the bearer-token authorizer adds to one
// request, in each language: the policy's whole path (instance, context,
// on_request_headers, header read and write, done and delete) around a
// terminal handler that does nothing. "none" is the bare chain.
// ns/op is the added CPU time (and latency) per request on one goroutine.
func BenchmarkAuthorizer(b *testing.B) {
	b.Run("none", func(b *testing.B) { benchChain(b, nil) })
	for _, a := range authorizers {
		b.Run(a.name, func(b *testing.B) { benchChain(b, a.build(b)) })
	}
}

func benchChain(b *testing.B, mod []byte) {
	terminal := plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) { w.WriteHeader(200) })
	chain, _ := authorizerChain(b, mod, terminal)
	r, _ := http.NewRequest("GET", "http://api.example.test/pets?limit=10", nil)
	r.RemoteAddr = "127.0.0.1:40000"
	r.Header.Set("Authorization", "Bearer s3cr3t")
	r.Header.Set("User-Agent", "bench")
	r.Header.Set("Accept", "application/json")
	w := &nopWriter{h: make(http.Header)}
	ex := &plugins.Exchange{Request: r, RequestID: "1", Client: netip.MustParseAddr("127.0.0.1"), Host: "api.example.test", Path: "/pets"}
	run := func() {
		r.Header.Del("X-Portico-User")
		ex.Identity = plugins.Identity{}
		w.status = 0
		chain.ServeExchange(w, ex)
		if w.status != 200 {
			b.Fatalf("status %d", w.status)
		}
	}
	for i := 0; i < 1000; i++ {
		run()
	}
	b.ReportAllocs()
	b.ResetTimer()
	cpu0 := cpuTime()
	for i := 0; i < b.N; i++ {
		run()
	}
	// The machines are shared: wall time per op includes time the process
	// was not running. CPU time used by the process is the fairer figure.
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(b.N), "cpu-ns/op")
}

// authorizerChain builds a policy chain with mod attached as the bearer-token
// authorizer (config "s3cr3t=alice", one instance) in front of terminal, on
// a host of its own; with mod nil, the bare chain. Everything is closed when
// tb ends.
func authorizerChain(tb testing.TB, mod []byte, terminal plugins.Handler) (plugins.Handler, *wasm.Host) {
	tb.Helper()
	ctx := context.Background()
	src := &harness.MemSource{}
	host, err := wasm.NewHost(ctx, wasm.HostConfig{DataDir: tb.TempDir(), Source: src})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { _ = host.Close(ctx) })
	reg, _ := plugins.NewRegistry(host.Authorizer())
	var attached []plugins.Attached
	if mod != nil {
		attached = append(attached, plugins.Attached{Spec: spec(wasm.TypeAuthorizer, map[string]any{
			"module": src.Add(mod), "config": "s3cr3t=alice", "instances": 1,
			// Shared machines can stall a process for longer than the
			// default deadline; a benchmark must not fail for that.
			"limits": map[string]any{"callbackTimeout": "2s"},
		})})
	}
	chain, ps, err := reg.Build(ctx, attached, terminal)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { plugins.CloseAll(ps) })
	return chain, host
}

// cpuTime is the user and system CPU time this process has used.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	_ = syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
