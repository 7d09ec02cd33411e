;; A WASI command for the snapshot tests (resident_test.go). It reads stdin to the end, retrying
;; a read interrupted by EINTR as libc and Go's runtime do, counts its calls in a global and in
;; memory, and answers with both counters (as digits) and its input. A fresh start answers
;; "11" + input: so must every call started from a snapshot. Its input's first byte picks a
;; fault: L loops forever, G grows the memory by two pages, T traps, X exits with code 3, R
;; returns from _start after answering instead of exiting (as a Rust main does).
;; Rebuild: wat2wasm counter.wat -o counter.wasm
(module
  (import "wasi_snapshot_preview1" "fd_read" (func $fd_read (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (import "wasi_snapshot_preview1" "proc_exit" (func $proc_exit (param i32)))
  (memory (export "memory") 1 16)
  (global $calls (mut i32) (i32.const 0))
  ;; Memory: 0 the read iovec, 8 nread, 16 the write iovec, 24 nwritten, 100 the memory
  ;; counter, 1022 the two digits, 1024 the input (at most 4096 bytes).

  ;; read reads stdin to the end into 1024… and returns its length.
  (func $read (result i32)
    (local $len i32) (local $errno i32)
    (loop $more
      (i32.store (i32.const 0) (i32.add (i32.const 1024) (local.get $len)))
      (i32.store (i32.const 4) (i32.sub (i32.const 4096) (local.get $len)))
      (local.set $errno (call $fd_read (i32.const 0) (i32.const 0) (i32.const 1) (i32.const 8)))
      (br_if $more (i32.eq (local.get $errno) (i32.const 27)))
      (if (local.get $errno) (then (call $proc_exit (i32.const 70))))
      (if (i32.load (i32.const 8))
        (then
          (local.set $len (i32.add (local.get $len) (i32.load (i32.const 8))))
          (br $more))))
    (local.get $len))

  (func $fault (param $c i32)
    (if (i32.eq (local.get $c) (i32.const 76)) (then (loop $forever (br $forever))))
    (if (i32.eq (local.get $c) (i32.const 71)) (then (drop (memory.grow (i32.const 2)))))
    (if (i32.eq (local.get $c) (i32.const 84)) (then unreachable))
    (if (i32.eq (local.get $c) (i32.const 88)) (then (call $proc_exit (i32.const 3)))))

  (func (export "_start")
    (local $n i32)
    (local.set $n (call $read))
    (global.set $calls (i32.add (global.get $calls) (i32.const 1)))
    (i32.store8 (i32.const 100) (i32.add (i32.load8_u (i32.const 100)) (i32.const 1)))
    (if (local.get $n) (then (call $fault (i32.load8_u (i32.const 1024)))))
    (i32.store8 (i32.const 1022) (i32.add (global.get $calls) (i32.const 48)))
    (i32.store8 (i32.const 1023) (i32.add (i32.load8_u (i32.const 100)) (i32.const 48)))
    (i32.store (i32.const 16) (i32.const 1022))
    (i32.store (i32.const 20) (i32.add (local.get $n) (i32.const 2)))
    (drop (call $fd_write (i32.const 1) (i32.const 16) (i32.const 1) (i32.const 24)))
    (if (i32.ne (i32.load8_u (i32.const 1024)) (i32.const 82))
      (then (call $proc_exit (i32.const 0))))))
