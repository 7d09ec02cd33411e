;; Invalid as written: sets global 0 but declares no global. Before the rewrite checked its
;; indices, index 0 named the global the host inserted as its fuel counter, so the module became
;; valid and reset the counter on every iteration: no deadline check ever fired.
;; wat2wasm-flags: --no-check
(module
  (memory (export "memory") 1)
  (func (export "validate")
    (loop $l
      (global.set 0 (i32.const 1000))
      (br $l))))
