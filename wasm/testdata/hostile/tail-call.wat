;; Uses a tail call (return_call), beyond WebAssembly 2.0: the runtime does not run it, and the
;; metering does not cover it.
;; wat2wasm-flags: --enable-tail-call
(module
  (memory (export "memory") 1)
  (func $f (return_call $f))
  (func (export "validate") (call $f)))
