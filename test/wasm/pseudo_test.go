package wasmtest

import (
	"testing"

	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// tenantWAT is an authorizer that allows every request and rewrites it:
// ":path" gets the prefix "/tenant-a" and ":method" becomes PATCH. The new
// path depends on the request's own path, as a tenant prefix does.
const tenantWAT = `(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $replace (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 16) ":path")
  (data (i32.const 32) ":method")
  (data (i32.const 48) "PATCH")
  (data (i32.const 64) "/tenant-a")
  ;; Values the host hands over land in [65536, 131072); the new path is
  ;; built at 131072.
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 131072))
      (then (global.set $heap (i32.const 65536))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (local $src i32) (local $n i32) (local $i i32)
    (if (call $get (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 8) (i32.const 12))
      (then unreachable))
    (local.set $src (i32.load (i32.const 8)))
    (local.set $n (i32.load (i32.const 12)))
    (if (i32.gt_u (local.get $n) (i32.const 60000)) (then unreachable))
    (local.set $i (i32.const 0))
    (block $done (loop $prefix
      (br_if $done (i32.ge_u (local.get $i) (i32.const 9)))
      (i32.store8 (i32.add (i32.const 131072) (local.get $i)) (i32.load8_u (i32.add (i32.const 64) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $prefix)))
    (local.set $i (i32.const 0))
    (block $done (loop $path
      (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
      (i32.store8 (i32.add (i32.const 131081) (local.get $i)) (i32.load8_u (i32.add (local.get $src) (local.get $i))))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br $path)))
    (if (call $replace (i32.const 0) (i32.const 16) (i32.const 5) (i32.const 131072) (i32.add (local.get $n) (i32.const 9)))
      (then unreachable))
    (if (call $replace (i32.const 0) (i32.const 32) (i32.const 7) (i32.const 48) (i32.const 5))
      (then unreachable))
    (i32.const 0)))`

// An authorizer that changes ":path" and ":method" has the backend receive
// the changed request, every time: with the decision cache on, a decision
// that rewrote the request is not cached (the rewrite depends on more than
// the identity), so requests of the same identity to other paths are
// rewritten from their own path, not served a stale or dropped rewrite.
func TestAuthorizerRewritesPseudoHeaders(t *testing.T) {
	mod := wasmbuild.WATText(t, "tenant-rewrite", tenantWAT)
	for _, c := range []struct {
		name  string
		extra map[string]any
	}{
		{"uncached", nil},
		{"cacheable", map[string]any{"identitySources": []string{"header.Authorization"}, "cacheTTL": "60s", "cacheMaxEntries": 100}},
	} {
		t.Run(c.name, func(t *testing.T) {
			e := newEnv(t)
			cfg := map[string]any{"module": e.src.Add(mod)}
			for k, v := range c.extra {
				cfg[k] = v
			}
			ed := e.edge(spec(wasm.TypeAuthorizer, cfg))
			auth := map[string]string{"Authorization": "Bearer s3cr3t"}
			for i, path := range []string{"/pets?x=1", "/orders/7", "/pets?x=1", "/a%2Fb?q=%20"} {
				before := e.host.Stats().Calls
				if r := e.do("GET", ed.URL+path, auth, ""); r.status != 200 {
					t.Fatalf("request %d (%s): %d %q", i, path, r.status, r.body)
				}
				last := e.backend.Last()
				if want := "/tenant-a" + path; last.Method != "PATCH" || last.Path != want {
					t.Fatalf("request %d (GET %s): the backend got %s %s, want PATCH %s", i, path, last.Method, last.Path, want)
				}
				if e.host.Stats().Calls == before {
					t.Fatalf("request %d (%s): answered without running the plugin", i, path)
				}
			}
		})
	}
}
