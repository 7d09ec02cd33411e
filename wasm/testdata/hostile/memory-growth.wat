;; Grows memory a page at a time and writes to every new page, forever.
(module
  (memory (export "memory") 1)
  (func (export "validate") (local $p i32)
    (loop $l
      (local.set $p (memory.grow (i32.const 1)))
      (if (i32.ge_s (local.get $p) (i32.const 0))
        (then (i32.store (i32.mul (local.get $p) (i32.const 65536)) (i32.const 1))))
      (br $l))))
