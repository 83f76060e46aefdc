;; A plugin that declares 60000 pages (3.75 GiB) of memory: refused at load.
(module
  (memory (export "memory") 60000)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
)
