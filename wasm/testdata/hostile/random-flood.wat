;; Asks WASI for as much randomness as its memory holds, forever.
(module
  (import "wasi_snapshot_preview1" "random_get" (func $random_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "validate") (local $n i32)
    (loop $g
      (br_if $g (i32.ge_s (memory.grow (i32.const 1)) (i32.const 0))))
    (local.set $n (i32.mul (memory.size) (i32.const 65536)))
    (loop $l
      (drop (call $random_get (i32.const 0) (local.get $n)))
      (br $l))))
