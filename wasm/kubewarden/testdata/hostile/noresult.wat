;; A hostile module of OPA's wasm ABI (ABI 1.2): it loads like a policy, but declares
;; opa_heap_ptr_get and opa_eval with no result, where the ABI has one. A host that takes the
;; first result without looking would index past the end and crash; it must refuse the answer.
;; Rebuild: wat2wasm noresult.wat -o noresult.wasm
(module
  (import "env" "memory" (memory 2))
  (global (export "opa_wasm_abi_version") i32 (i32.const 1))
  (global (export "opa_wasm_abi_minor_version") i32 (i32.const 2))
  (data (i32.const 1100) "{\"p/v\":0}\00")
  (data (i32.const 1200) "{}\00")
  (func (export "entrypoints") (result i32) (i32.const 100))
  (func (export "builtins") (result i32) (i32.const 200))
  (func (export "opa_json_dump") (param i32) (result i32) (i32.add (local.get 0) (i32.const 1000)))
  (func (export "opa_value_dump") (param i32) (result i32) (i32.const 1200))
  (func (export "opa_json_parse") (param i32 i32) (result i32) (i32.const 300))
  (func (export "opa_value_parse") (param i32 i32) (result i32) (i32.const 300))
  (func (export "opa_heap_ptr_get"))
  (func (export "opa_heap_ptr_set") (param i32))
  (func (export "opa_malloc") (param i32) (result i32) (i32.const 8192))
  (func (export "opa_eval") (param i32 i32 i32 i32 i32 i32 i32)))
