package wasmtest

import (
	"context"
	"encoding/binary"
	"errors"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/harness"
	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

func hostileSpec(digest string, extra map[string]any) config.PolicySpec {
	cfg := map[string]any{"module": digest, "instances": 2, "limits": map[string]any{"callbackTimeout": "50ms"}}
	for k, v := range extra {
		cfg[k] = v
	}
	return spec(wasm.TypeAuthorizer, cfg)
}

// withEnv runs fn with a fresh environment and checks that, once everything
// is closed, no goroutine is left behind.
func withEnv(t *testing.T, fn func(e *env)) {
	base := runtime.NumGoroutine()
	func() {
		e := newEnv(t)
		defer func() {
			e.client.CloseIdleConnections()
			e.backend.Close()
			_ = e.host.Close(context.Background())
		}()
		fn(e)
		// fn closed its edges: every plugin, and so every instance, must
		// be gone with them.
		if n, s := e.host.Plugins(), e.host.Stats(); n != 0 || s.Instances != 0 {
			t.Errorf("after the test: %d plugins and %d instances still running", n, s.Instances)
		}
	}()
	settle(t, base)
}

func TestInfiniteLoop(t *testing.T) {
	mod := wasmbuild.WAT(t, "test/wasm/hostile/loop.wat")
	for _, policy := range []string{"closed", "open"} {
		t.Run(policy, func(t *testing.T) {
			withEnv(t, func(e *env) {
				ed, err := harness.NewEdge(context.Background(), harness.EdgeConfig{Host: e.host, Backend: e.backend.URL,
					Specs: []config.PolicySpec{hostileSpec(e.src.Add(mod), map[string]any{"failurePolicy": policy})}})
				if err != nil {
					t.Fatal(err)
				}
				defer ed.Close()
				if r := e.do("GET", ed.URL+"/", nil, ""); r.status != 200 {
					t.Fatalf("warm-up: %d", r.status)
				}
				var wg sync.WaitGroup
				var looped resp
				var took time.Duration
				wg.Add(1)
				go func() {
					defer wg.Done()
					start := time.Now()
					looped = e.do("GET", ed.URL+"/", map[string]string{"X-Loop": "1"}, "")
					took = time.Since(start)
				}()
				// The Go runtime can still stop the world while a guest
				// spins (compiled code cannot be preempted; the
				// instrumentation makes it leave for Go often enough).
				time.Sleep(10 * time.Millisecond)
				gcStart := time.Now()
				runtime.GC()
				t.Logf("a full GC while a guest spins took %s", time.Since(gcStart))
				// Other requests keep being served while one instance spins.
				for i := 0; i < 20; i++ {
					if r := e.do("GET", ed.URL+"/", nil, ""); r.status != 200 {
						t.Fatalf("request %d during the loop: %d %q", i, r.status, r.body)
					}
				}
				wg.Wait()
				want := 500
				if policy == "open" {
					want = 200
				}
				if looped.status != want {
					t.Fatalf("looping request: %d %q, want %d", looped.status, looped.body, want)
				}
				t.Logf("the looping request got its answer after %s (deadline 50 ms)", took)
				// A sanity bound, not a speed claim: the deadline is 50 ms.
				if took > 3*time.Second {
					t.Fatalf("looping request took %s", took)
				}
				s := e.host.Stats()
				if s.Timeouts != 1 || s.Instances < 1 || s.Instances > 2 {
					t.Fatalf("stats after the loop: %+v", s)
				}
				if r := e.do("GET", ed.URL+"/", nil, ""); r.status != 200 {
					t.Fatalf("after the loop: %d", r.status)
				}
			})
		})
	}
}

func TestTraps(t *testing.T) {
	mod := wasmbuild.WAT(t, "test/wasm/hostile/traps.wat")
	for _, kind := range []string{"unreachable", "out-of-bounds", "divide-by-zero", "stack-overflow"} {
		t.Run(kind, func(t *testing.T) {
			withEnv(t, func(e *env) {
				// A long deadline: growing the stack to wazero's limit takes
				// longer than the usual 50 ms.
				ed := e.edge(hostileSpec(e.src.Add(mod), map[string]any{"config": kind[:1], "limits": map[string]any{"callbackTimeout": "5s"}}))
				for i := 0; i < 3; i++ {
					r := e.do("GET", ed.URL+"/", map[string]string{"X-Trap": "1"}, "")
					if r.status != 500 || !strings.Contains(r.body, `"message"`) {
						t.Fatalf("trap %d: %d %q", i, r.status, r.body)
					}
					// The replacement (after back-off) or the other instance
					// serves the next request.
					deadline := time.Now().Add(5 * time.Second)
					for {
						r = e.do("GET", ed.URL+"/", nil, "")
						if r.status == 200 {
							break
						}
						if r.status != 503 || time.Now().After(deadline) {
							t.Fatalf("after trap %d: %d %q", i, r.status, r.body)
						}
						time.Sleep(20 * time.Millisecond)
					}
				}
				// Deep recursion ends at wazero's stack limit, or at the
				// deadline when growing the stack that far is slower (it is
				// under the race detector on a busy machine): either way
				// the instance is gone.
				s := e.host.Stats()
				failed := s.Traps
				if kind == "stack-overflow" {
					failed += s.Timeouts
				}
				if failed != 3 || s.Instances > 2 {
					t.Fatalf("stats: %+v", s)
				}
				ed.Close()
			})
		})
	}
}

func TestMemoryGrowCapped(t *testing.T) {
	withEnv(t, func(e *env) {
		mod := wasmbuild.WAT(t, "test/wasm/hostile/grow.wat")
		ed := e.edge(hostileSpec(e.src.Add(mod), map[string]any{"limits": map[string]any{"memoryPages": 64, "callbackTimeout": "1s"}}))
		for i := 0; i < 3; i++ {
			if r := e.do("GET", ed.URL+"/", map[string]string{"X-Grow": "1"}, ""); r.status != 200 {
				t.Fatalf("grow: %d %q (the module traps when it got past 64 pages)", r.status, r.body)
			}
		}
		ed.Close()
	})
}

func admit(t *testing.T, e *env, mod []byte, extra map[string]any) error {
	t.Helper()
	return e.host.Validate(context.Background(), hostileSpec(e.src.Add(mod), extra))
}

func TestHugeDeclaredMemoryRejected(t *testing.T) {
	withEnv(t, func(e *env) {
		err := admit(t, e, wasmbuild.WAT(t, "test/wasm/hostile/hugemem.wat"), nil)
		if err == nil || !strings.Contains(err.Error(), "memory") {
			t.Fatalf("module declaring 60000 pages: %v", err)
		}
		t.Log(err)
	})
}

func TestBadPointers(t *testing.T) {
	withEnv(t, func(e *env) {
		mod := wasmbuild.WAT(t, "test/wasm/hostile/badptr.wat")
		ed := e.edge(hostileSpec(e.src.Add(mod), map[string]any{"limits": map[string]any{"callbackTimeout": "1s"}}))
		for i := 0; i < 3; i++ {
			if r := e.do("GET", ed.URL+"/", map[string]string{"X-Bad": "1"}, ""); r.status != 200 {
				t.Fatalf("bad pointers: %d %q (the module traps when an answer is wrong)", r.status, r.body)
			}
		}
		if s := e.host.Stats(); s.Traps != 0 || s.Timeouts != 0 {
			t.Fatalf("stats: %+v", s)
		}
		ed.Close()
	})
}

const watAlloc = `(func (export "malloc") (param i32) (result i32) (i32.const 1024))`

func TestMissingExportsRejected(t *testing.T) {
	cases := map[string]struct{ wat, want string }{
		"no abi marker":     {`(module (memory (export "memory") 1) ` + watAlloc + ` (func (export "proxy_on_context_create") (param i32 i32)))`, "proxy_abi_version"},
		"old abi":           {`(module (memory (export "memory") 1) ` + watAlloc + ` (func (export "proxy_abi_version_0_1_0")) (func (export "proxy_on_context_create") (param i32 i32)))`, "0_1_0"},
		"no memory":         {`(module ` + watAlloc + ` (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))`, "memory"},
		"no context create": {`(module (memory (export "memory") 1) ` + watAlloc + ` (func (export "proxy_abi_version_0_2_1")))`, "proxy_on_context_create"},
		"no allocator":      {`(module (memory (export "memory") 1) (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))`, "malloc"},
		"foreign import":    {`(module (import "sneaky" "fs_open" (func)) (memory (export "memory") 1) ` + watAlloc + ` (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))`, "sneaky.fs_open"},
		"configure refuses": {`(module (memory (export "memory") 1) ` + watAlloc + ` (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)) (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0)))`, "refused its configuration"},
		"start traps":       {`(module (memory (export "memory") 1) ` + watAlloc + ` (func (export "_initialize") unreachable) (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))`, "_initialize"},
		"start loops":       {`(module (memory (export "memory") 1) ` + watAlloc + ` (func (export "proxy_abi_version_0_2_0")) (func (export "proxy_on_context_create") (param i32 i32)) (func (export "proxy_on_vm_start") (param i32 i32) (result i32) (loop $l (br $l)) (i32.const 1)))`, "deadline"},
	}
	withEnv(t, func(e *env) {
		for _, name := range wasmbuild.Sorted(cases) {
			c := cases[name]
			err := admit(t, e, wasmbuild.WATText(t, strings.ReplaceAll(name, " ", "-"), c.wat), map[string]any{"limits": map[string]any{"callbackTimeout": "50ms"}})
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%s: error %v, want one mentioning %q", name, err, c.want)
				continue
			}
			t.Logf("%s: %v", name, err)
		}
		if n := e.host.Plugins(); n != 0 {
			t.Fatalf("%d plugins left running after failed admissions", n)
		}
	})
}

// bigModule returns a valid module of about n bytes: a minimal plugin plus a
// custom section of padding.
func bigModule(t *testing.T, n int) []byte {
	base := wasmbuild.WATText(t, "big-base", `(module (memory (export "memory") 1) `+watAlloc+` (func (export "proxy_abi_version_0_2_1")) (func (export "proxy_on_context_create") (param i32 i32)))`)
	name := "padding"
	payload := n - len(base)
	sec := []byte{0}
	size := binary.AppendUvarint(nil, uint64(1+len(name)+payload))
	sec = append(sec, size...)
	sec = append(sec, byte(len(name)))
	sec = append(sec, name...)
	out := append(append([]byte(nil), base...), sec...)
	return append(out, make([]byte, payload)...)
}

func TestOversizedModuleRejected(t *testing.T) {
	withEnv(t, func(e *env) {
		err := admit(t, e, bigModule(t, 50<<20), nil)
		if err == nil || !strings.Contains(err.Error(), "too large") {
			t.Fatalf("50 MB module: %v", err)
		}
		t.Log(err)
	})
}

func TestModuleDigestChecked(t *testing.T) {
	withEnv(t, func(e *env) {
		good := wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c")
		digest := e.src.Add(good)
		e.src.Put(digest, append([]byte(nil), wasmbuild.WAT(t, "test/wasm/hostile/loop.wat")...))
		err := e.host.Validate(context.Background(), spec(wasm.TypeAuthorizer, map[string]any{"module": digest, "config": "a=b"}))
		if err == nil || !strings.Contains(err.Error(), "digest") {
			t.Fatalf("module with the wrong digest: %v", err)
		}
	})
}

func TestConfigErrors(t *testing.T) {
	withEnv(t, func(e *env) {
		d := e.src.Add(wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c"))
		for _, c := range []struct {
			cfg  map[string]any
			want string
		}{
			{map[string]any{"module": "abc"}, "sha256"},
			{map[string]any{"module": d, "failurePolicy": "maybe"}, "failurePolicy"},
			{map[string]any{"module": d, "config": "a=b", "cacheTTL": "10s"}, "identitySources"},
			{map[string]any{"module": d, "config": "a=b", "identitySources": []string{"cookie.x"}}, "identity source"},
			{map[string]any{"module": d, "config": "a=b", "limits": map[string]any{"callbackTimeout": "1h"}}, "callbackTimeout"},
			{map[string]any{"module": d, "config": "a=b", "upstreams": map[string]any{"x": map[string]string{"url": "ftp://h"}}}, "upstreams.x.url"},
			{map[string]any{"module": d, "config": "a=b", "colour": "blue"}, "colour"},
		} {
			err := e.host.Validate(context.Background(), spec(wasm.TypeAuthorizer, c.cfg))
			if err == nil || !strings.Contains(err.Error(), c.want) {
				t.Errorf("%v: error %v, want one mentioning %q", c.cfg, err, c.want)
			}
		}
	})
}

// TestReuseAcrossSnapshots checks that a second build of the same policy
// (a new snapshot) shares the running plugin, and that closing every policy
// stops it.
func TestReuseAcrossSnapshots(t *testing.T) {
	withEnv(t, func(e *env) {
		d := e.src.Add(wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c"))
		s := spec(wasm.TypeAuthorizer, map[string]any{"module": d, "config": "a=b", "instances": 1})
		reg, err := plugins.NewRegistry(e.host.Authorizer(), e.host.Transform())
		if err != nil {
			t.Fatal(err)
		}
		terminal := plugins.HandlerFunc(nil)
		build := func() []plugins.Policy {
			_, ps, err := reg.Build(context.Background(), []plugins.Attached{{Spec: s}}, terminal)
			if err != nil {
				t.Fatal(err)
			}
			return ps
		}
		old := build()
		if e.host.Plugins() != 1 {
			t.Fatalf("plugins %d", e.host.Plugins())
		}
		next := build()
		plugins.CloseAll(old)
		if e.host.Plugins() != 1 {
			t.Fatalf("plugin not kept across the swap: %d", e.host.Plugins())
		}
		plugins.CloseAll(next)
		if e.host.Plugins() != 0 {
			t.Fatalf("plugin kept after its last policy closed: %d", e.host.Plugins())
		}
		// Failed builds leave nothing behind either.
		bad := spec(wasm.TypeAuthorizer, map[string]any{"module": d, "config": "garbage"})
		if _, _, err := reg.Build(context.Background(), []plugins.Attached{{Spec: s}, {Spec: bad}}, terminal); err == nil {
			t.Fatal("bad config admitted")
		} else if !errors.Is(err, err) || e.host.Plugins() != 0 {
			t.Fatalf("after a failed build: %d plugins (%v)", e.host.Plugins(), err)
		}
	})
}
