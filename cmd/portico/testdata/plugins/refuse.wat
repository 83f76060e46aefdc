;; A proxy-wasm plugin that refuses every configuration: proxy_on_configure
;; returns false, so the origin refuses any stage that uses it. Build:
;; `wat2wasm refuse.wat`.
(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_configure") (param i32 i32) (result i32) (i32.const 0))
)
