;; A WASI command that reads stdin once and exits with code 70 when the read fails, EINTR
;; included: started from a snapshot it could not work, so its calls must take fresh instances
;; (resident_test.go). It answers "ok" and its input.
;; Rebuild: wat2wasm no-retry.wat -o no-retry.wasm
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1 16)
  (data (i32.const 1022) "ok")
  (func (export "_start")
    (i32.store (i32.const 0) (i32.const 1024))
    (i32.store (i32.const 4) (i32.const 4096))
    (if (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8))
      (then (call $proc_exit (i32.const 70))))
    (i32.store (i32.const 16) (i32.const 1022))
    (i32.store (i32.const 20) (i32.add (i32.load (i32.const 8)) (i32.const 2)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (call $proc_exit (i32.const 0))))
