;; A WASI-mode "policy" that accepts everything, except that a request containing '~' makes it
;; close its stdout (a bug a request can trigger) and exit without an answer.
;; Rebuild: wat2wasm closeout.wat -o closeout.wasm
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_close" (func $fd_close (param i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 2 16)
  (data (i32.const 512) "{\"valid\":true,\"accepted\":true}")
  (func (export "_start")
    (local $len i32) (local $errno i32) (local $i i32)
    (loop $more
      (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $len)))
      (i32.store (i32.const 4) (i32.sub (i32.const 60000) (local.get $len)))
      (local.set $errno (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br_if $more (i32.eq (local.get $errno) (i32.const 27)))
      (if (local.get $errno) (then (call $proc_exit (i32.const 70))))
      (if (i32.load (i32.const 8))
        (then (local.set $len (i32.add (local.get $len) (i32.load (i32.const 8)))) (br $more))))
    (block $done
      (loop $scan
        (br_if $done (i32.ge_u (local.get $i) (local.get $len)))
        (if (i32.eq (i32.load8_u (i32.add (i32.const 1024) (local.get $i))) (i32.const 126))
          (then (drop (call $fd_close (i32.const 1))) (call $proc_exit (i32.const 0))))
        (local.set $i (i32.add (local.get $i) (i32.const 1)))
        (br $scan)))
    (i32.store (i32.const 16) (i32.const 512))
    (i32.store (i32.const 20) (i32.const 30))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (call $proc_exit (i32.const 0))))
