package proxywasm

import (
	"context"
	"net/http"
	"sync"
	"testing"

	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// reachPrev: each stream's on_request_headers makes the previous stream
// its effective context, reads that stream's x-id request header, and
// records on itself the status of proxy_set_effective_context as the
// property test.eff (an ASCII digit).
const reachPrev = `(module
  (import "env" "proxy_get_header_map_value" (func $hget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $pset (param i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_set_effective_context" (func $eff (param i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 4096))
  (global $prev (mut i32) (i32.const 0))
  (data (i32.const 16) "x-id")
  (data (i32.const 48) "test.eff")
  (func (export "malloc") (param $n i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param i32 i32) (result i32)
    (local $st i32)
    (if (global.get $prev) (then
      (local.set $st (call $eff (global.get $prev)))
      (if (i32.eqz (local.get $st))
        (then (drop (call $hget (i32.const 0) (i32.const 16) (i32.const 4) (i32.const 64) (i32.const 68)))))
      (drop (call $eff (local.get $ctx)))
      (i32.store8 (i32.const 80) (i32.add (i32.const 48) (local.get $st)))
      (drop (call $pset (i32.const 48) (i32.const 8) (i32.const 80) (i32.const 1)))))
    (global.set $prev (local.get $ctx))
    (i32.const 0))
  (func (export "proxy_on_delete") (param i32)))`

// TestUpstreamStreamIsUnreachable: while a stream's request is at the
// upstream (Stream.Upstream), the forwarder rewrites its headers, so no
// other context may make it its effective context (NotFound); reading the
// map then would be a concurrent map access, which ends the process (under
// -race, a reported race). A paused stream (Yield) stays reachable.
func TestUpstreamStreamIsUnreachable(t *testing.T) {
	mod := wasmbuild.WATText(t, "reach-prev", reachPrev)
	ctx := context.Background()
	p, err := NewPlugin(ctx, newEngine(t), Config{Name: "reach", Module: mod, Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer closePlugin(p)
	open := func() (*Stream, *http.Request) {
		t.Helper()
		r, _ := http.NewRequest("GET", "http://example.test/", nil)
		r.Header.Set("X-Id", "1")
		s, err := p.NewStream(ctx, &StreamInfo{Request: r})
		if err != nil {
			t.Fatal(err)
		}
		if o := s.RequestHeaders(s.RequestHeaderMap(r, "http"), true); o != Continue {
			t.Fatalf("outcome %v: %v", o, s.Err())
		}
		return s, r
	}
	for _, tc := range []struct {
		name     string
		upstream bool
		want     string // test.eff: "0" StatusOK, "1" StatusNotFound
	}{
		{"paused", false, "0"},
		{"upstream", true, "1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			a, ar := open()
			var forwarder sync.WaitGroup
			if tc.upstream {
				a.Upstream()
				// The forwarder rewrites a's headers while b's callback runs.
				forwarder.Add(1)
				go func() {
					defer forwarder.Done()
					for range 200 {
						ar.Header.Set("X-Forwarded-For", "127.0.0.1")
						ar.Header.Del("X-Forwarded-For")
					}
				}()
			} else {
				a.Yield()
			}
			b, _ := open()
			got, _ := b.Property("test.eff")
			forwarder.Wait()
			b.Close()
			if tc.upstream {
				resp := &HeaderMap{Header: http.Header{}, Pseudo: []Pair{{":status", "200"}}}
				if o := a.ResponseHeaders(resp, 200, true); o != Continue {
					t.Fatalf("response outcome %v: %v", o, a.Err())
				}
			}
			a.Close()
			if got != tc.want {
				t.Fatalf("proxy_set_effective_context on a %s stream: status %q, want %q", tc.name, got, tc.want)
			}
		})
	}
}
