;; Grows a table as far as it may, then fills and copies all of it, forever: every iteration is
;; one bulk instruction over the whole table.
(module
  (memory (export "memory") 1)
  (table $t 0 funcref)
  (func $f)
  (elem declare func $f)
  (func (export "validate")
    (loop $g
      (br_if $g (i32.ge_s (table.grow $t (ref.null func) (i32.const 4096)) (i32.const 0))))
    (loop $l
      (table.fill $t (i32.const 0) (ref.func $f) (table.size $t))
      (table.copy $t $t (i32.const 0) (i32.const 1) (i32.sub (table.size $t) (i32.const 1)))
      (br $l))))
