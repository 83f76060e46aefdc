;; The smallest proxy-wasm plugin: it accepts any configuration and lets
;; every request through. portico ctl's tests upload, attach and deploy it.
;; allow.wasm is built from it with `wat2wasm allow.wat` (TestCtlTestdataModules
;; checks the two agree).
(module
  (memory (export "memory") 1)
  (global $heap (mut i32) (i32.const 1024))
  (func (export "proxy_abi_version_0_2_1"))
  ;; A bump allocator that starts over when the page is used up: the host
  ;; copies each value in before the plugin reads it, and this plugin reads
  ;; nothing.
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 65536))
      (then (global.set $heap (i32.const 1024))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 1))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32) (i32.const 0))
)
