;; A valid WebAssembly module that is not a proxy-wasm plugin (no ABI
;; version marker): uploads of it are refused. Build: `wat2wasm notproxy.wat`.
(module
  (memory (export "memory") 1)
  (func (export "add") (param i32 i32) (result i32) (i32.add (local.get 0) (local.get 1)))
)
