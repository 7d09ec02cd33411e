;; Writes to stderr with as many one-byte pieces (iovecs) as its memory holds, forever: each
;; fd_write makes the host copy millions of pieces.
(module
  (import "wasi_snapshot_preview1" "fd_write" (func $fd_write (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "validate") (local $n i32) (local $i i32)
    (loop $g
      (br_if $g (i32.ge_s (memory.grow (i32.const 1)) (i32.const 0))))
    ;; iovecs {buf 0, len 1} from byte 8 to the end of memory
    (local.set $n (i32.div_u (i32.sub (i32.mul (memory.size) (i32.const 65536)) (i32.const 16)) (i32.const 8)))
    (local.set $i (i32.const 0))
    (loop $fill
      (i64.store offset=8 (i32.shl (local.get $i) (i32.const 3)) (i64.const 0x100000000))
      (local.set $i (i32.add (local.get $i) (i32.const 1)))
      (br_if $fill (i32.lt_u (local.get $i) (local.get $n))))
    (loop $l
      (drop (call $fd_write (i32.const 2) (i32.const 8) (local.get $n) (i32.const 0)))
      (br $l))))
