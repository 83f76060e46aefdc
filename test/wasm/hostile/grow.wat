;; A plugin that grows its memory until the host refuses, when the request
;; carries "x-grow". It traps if it ever got more than 64 pages, the limit the
;; test configures: a 200 means the cap held.
(module
  (import "env" "proxy_get_header_map_value" (func $get (param i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 4)
  (data (i32.const 16) "x-grow")
  (global $heap (mut i32) (i32.const 65536))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param $n i32) (result i32) (local $p i32)
    (if (i32.gt_u (i32.add (global.get $heap) (local.get $n)) (i32.const 262144))
      (then (global.set $heap (i32.const 65536))))
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $n)))
    (local.get $p))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param i32 i32 i32) (result i32)
    (if (i32.eqz (call $get (i32.const 0) (i32.const 16) (i32.const 6) (i32.const 32) (i32.const 36)))
      (then
        (loop $more
          (br_if $more (i32.ne (memory.grow (i32.const 8)) (i32.const -1))))
        (if (i32.gt_u (memory.size) (i32.const 64)) (then unreachable))))
    (i32.const 0))
)
