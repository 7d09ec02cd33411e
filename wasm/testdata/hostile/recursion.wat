;; Recursion without loops: f(n) calls f(n-1) twice, so f(60) makes 2^60 calls at a depth of
;; only 60. A sandbox that checks its deadline at loop headers only never gets to check it.
(module
  (memory (export "memory") 1)
  (func $f (param $n i32)
    (if (i32.eqz (local.get $n)) (then (return)))
    (call $f (i32.sub (local.get $n) (i32.const 1)))
    (call $f (i32.sub (local.get $n) (i32.const 1))))
  (func (export "validate")
    (call $f (i32.const 60))))
