package proxywasm

import (
	"context"
	"log/slog"
	"net/http"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// TestStreamReuseForgetsTheLastRequest: streams are pooled; one that
// follows another on the same instance sees none of the other's headers,
// properties or outcome.
func TestStreamReuseForgetsTheLastRequest(t *testing.T) {
	ctx := context.Background()
	p := newCAuthorizer(t)
	for i := range 20 {
		good := i%2 == 0
		r, _ := http.NewRequest("GET", "http://example.test/pets?limit=10", nil)
		if good {
			r.Header.Set("Authorization", "Bearer s3cr3t")
		}
		s, err := p.NewStream(ctx, &StreamInfo{Request: r})
		if err != nil {
			t.Fatal(err)
		}
		h := s.RequestHeaderMap(r, "http")
		if len(h.Touched) != 0 || len(h.Removed) != 0 || h.PseudoChanged {
			t.Fatalf("request %d: a fresh map carries %q, %q, %v", i, h.Touched, h.Removed, h.PseudoChanged)
		}
		if v, ok := s.Property("portico.principal"); ok {
			t.Fatalf("request %d: a fresh stream has principal %q", i, v)
		}
		o := s.RequestHeaders(h, true)
		v, ok := s.Property("portico.principal")
		switch {
		case good && (o != Continue || v != "alice" || len(h.Touched) != 1 || r.Header.Get("X-Portico-User") != "alice"):
			t.Fatalf("request %d: outcome %v, principal %q, touched %q", i, o, v, h.Touched)
		case !good && (o != Respond || ok || len(h.Touched) != 0 || s.Local().Status != 401 || r.Header.Get("X-Portico-User") != ""):
			t.Fatalf("request %d: outcome %v, principal %q %v, touched %q", i, o, v, ok, h.Touched)
		}
		if p, _ := h.PseudoValue(":path"); p != "/pets?limit=10" {
			t.Fatalf(":path %q", p)
		}
		s.Close()
		if good && v != "alice" {
			t.Fatalf("a principal changed after Close: %q", v)
		}
	}
}

// closePlugin closes p without waiting for streams a failed test left open.
func closePlugin(p *Plugin) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	_ = p.Close(ctx)
}

// deferDone defers proxy_done: on_done returns false, and the next
// stream's on_request_headers calls proxy_done for the previous one, whose
// on_log then runs and logs, at three levels, its request's x-id header,
// the property it set from it, and the lazy property test.lazy ("-" for
// each one missing).
const deferDone = `(module
  (import "env" "proxy_log" (func $log (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_value" (func $hget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_get_property" (func $pget (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $pset (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
  (import "env" "proxy_done" (func $done (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (global $prev (mut i32) (i32.const 0))
  (data (i32.const 16) "x-id")
  (data (i32.const 32) "test.lazy")
  (data (i32.const 48) "test.set")
  (data (i32.const 60) "-")
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func $logret (param $level i32) (param $st i32)
    (if (i32.eqz (local.get $st))
      (then (drop (call $log (local.get $level) (i32.load (i32.const 64)) (i32.load (i32.const 68)))))
      (else (drop (call $log (local.get $level) (i32.const 60) (i32.const 1))))))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (if (i32.eqz (call $hget (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 64) (i32.const 68)))
      (then (drop (call $pset (i32.const 48) (i32.const 8) (i32.load (i32.const 64)) (i32.load (i32.const 68))))))
    (if (global.get $prev) (then
      (drop (call $eff (global.get $prev)))
      (drop (call $done))
      (global.set $prev (i32.const 0))
      (drop (call $eff (local.get $ctx)))))
    (i32.const 0))
  (func (export "proxy_on_done") (param $ctx i32) (result i32)
    (global.set $prev (local.get $ctx))
    (i32.const 0))
  (func (export "proxy_on_log") (param $ctx i32)
    (call $logret (i32.const 2) (call $hget (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 64) (i32.const 68)))
    (call $logret (i32.const 3) (call $pget (i32.const 48) (i32.const 8) (i32.const 64) (i32.const 68)))
    (call $logret (i32.const 4) (call $pget (i32.const 32) (i32.const 9) (i32.const 64) (i32.const 68))))
  (func (export "proxy_on_delete") (param i32)))`

// lazyProps stands for an embedder's properties backed by a pooled
// exchange: value changes when the exchange is reused.
type lazyProps struct{ value string }

func (l *lazyProps) Property(path string) (string, bool) {
	if path == "test.lazy" && l.value != "" {
		return l.value, true
	}
	return "", false
}
func (l *lazyProps) Addresses() (netip.AddrPort, netip.AddrPort) {
	return netip.AddrPort{}, netip.AddrPort{}
}
func (l *lazyProps) Detach() LazyProperties { c := *l; return &c }

type logRecorder struct {
	mu    sync.Mutex
	lines []string
}

func (h *logRecorder) Enabled(context.Context, slog.Level) bool { return true }
func (h *logRecorder) Handle(_ context.Context, r slog.Record) error {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.lines = append(h.lines, r.Level.String()+" "+r.Message)
	return nil
}
func (h *logRecorder) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h *logRecorder) WithGroup(string) slog.Handler      { return h }

func (h *logRecorder) take() []string {
	h.mu.Lock()
	defer h.mu.Unlock()
	l := h.lines
	h.lines = nil
	return l
}

// TestDeferredDoneKeepsItsStream: a stream whose plugin defers proxy_done
// outlives Close; it must not be reused meanwhile, and its log callback
// sees its own request, its own properties and the lazy properties as
// they were when it closed, although the embedder reused them.
func TestDeferredDoneKeepsItsStream(t *testing.T) {
	mod := wasmbuild.WATText(t, "defer-done", deferDone)
	e := newEngine(t)
	ctx := context.Background()
	rec := &logRecorder{}
	p, err := NewPlugin(ctx, e, Config{Name: "defer", Module: mod, Instances: 1, Logger: slog.New(rec)})
	if err != nil {
		t.Fatal(err)
	}
	defer closePlugin(p)
	lazy := &lazyProps{} // one, reused like a pooled exchange
	var forwarded sync.WaitGroup
	run := func(id, lazyValue string) {
		t.Helper()
		r, _ := http.NewRequest("GET", "http://example.test/", nil)
		if id != "" {
			r.Header.Set("X-Id", id)
		}
		lazy.value = lazyValue
		s, err := p.NewStream(ctx, &StreamInfo{Request: r, Lazy: lazy})
		if err != nil {
			t.Fatal(err)
		}
		if o := s.RequestHeaders(s.RequestHeaderMap(r, "http"), true); o != Continue {
			t.Fatalf("outcome %v: %v", o, s.Err())
		}
		s.Close()
		lazy.value = "reused"
		// The request goes on to the origin, whose forwarder rewrites its
		// headers while the next request's callback may finish this stream
		// (its on_log reads x-id): the stream must read its own copy, as
		// the request was at Close. Under -race a shared map is also a
		// reported race.
		forwarded.Add(1)
		go func() {
			defer forwarded.Done()
			for range 50 {
				r.Header.Set("X-Id", "forwarded")
				r.URL.Path = "/forwarded"
			}
		}()
	}
	defer forwarded.Wait()
	want := func(lines ...string) {
		t.Helper()
		got := rec.take()
		if len(got) != len(lines) {
			t.Fatalf("log %q, want %q", got, lines)
		}
		for i := range got {
			if got[i] != lines[i] {
				t.Fatalf("log %q, want %q", got, lines)
			}
		}
	}
	run("a", "lazy-a")
	want()
	run("b", "lazy-b")
	want("INFO a", "WARN a", "ERROR lazy-a")
	run("", "")
	want("INFO b", "WARN b", "ERROR lazy-b")
	run("d", "lazy-d")
	want("INFO -", "WARN -", "ERROR -")
	run("e", "lazy-e")
	want("INFO d", "WARN d", "ERROR lazy-d")
}

func TestStreamSet(t *testing.T) {
	var ss streamSet
	var st [5]Stream
	for i := range st {
		st[i].id = uint32(10 + i)
		ss.add(&st[i])
	}
	ss.remove(&st[1])
	ss.remove(&st[1]) // twice: no effect
	ss.remove(&st[4])
	var stale Stream // never added, slot 0
	ss.remove(&stale)
	for i, want := range []bool{true, false, true, true, false} {
		if ss.has(&st[i]) != want {
			t.Fatalf("stream %d: has %v", i, !want)
		}
		if got := ss.byID(uint32(10+i)) == &st[i]; got != want {
			t.Fatalf("stream %d: byID finds it: %v", i, got)
		}
	}
	if len(ss.live) != 3 {
		t.Fatalf("%d live", len(ss.live))
	}
	ss.clear()
	if ss.has(&st[0]) || ss.byID(10) != nil {
		t.Fatal("a cleared set still has a stream")
	}
}

// ":path" is built from the request's URL when first read. The request may
// change once it goes on (a transform's request goes upstream after Yield,
// and the forwarder rewrites its URL); a later read must see the request as
// it was in the plugin.
func TestPathIsTheRequestsAsItWasInThePlugin(t *testing.T) {
	ctx := context.Background()
	p := newCAuthorizer(t)
	r, _ := http.NewRequest("GET", "http://example.test/pets?limit=10", nil)
	r.Header.Set("Authorization", "Bearer s3cr3t")
	s, err := p.NewStream(ctx, &StreamInfo{Request: r})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	h := s.RequestHeaderMap(r, "http")
	if o := s.RequestHeaders(h, true); o != Continue {
		t.Fatalf("outcome %v: %v", o, s.Err())
	}
	s.Yield()
	r.URL.Path, r.URL.RawQuery = "/origin/prefix/pets", "limit=10&edge=1"
	if v, _ := h.PseudoValue(":path"); v != "/pets?limit=10" {
		t.Fatalf(":path after the request went on: %q", v)
	}
}
