;; Grows memory as far as it may, then fills and copies all of it, forever: every iteration is
;; one bulk instruction over the whole memory.
(module
  (memory (export "memory") 1)
  (func (export "validate") (local $n i32)
    (loop $g
      (br_if $g (i32.ge_s (memory.grow (i32.const 1)) (i32.const 0))))
    (local.set $n (i32.mul (memory.size) (i32.const 65536)))
    (loop $l
      (memory.fill (i32.const 0) (i32.const 7) (local.get $n))
      (memory.copy (i32.const 0) (i32.const 1) (i32.sub (local.get $n) (i32.const 1)))
      (br $l))))
