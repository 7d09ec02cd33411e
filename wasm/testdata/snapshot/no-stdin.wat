;; A WASI command that never reads stdin: it answers "hi" and returns from _start. There is no
;; point to snapshot, so its calls must take fresh instances (resident_test.go).
;; Rebuild: wat2wasm no-stdin.wat -o no-stdin.wasm
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1 16)
  (data (i32.const 64) "hi")
  (func (export "_start")
    (i32.store (i32.const 16) (i32.const 64))
    (i32.store (i32.const 20) (i32.const 2))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))))
