;; Mutual recursion through a table: $a calls $b twice with call_indirect, $b calls $a back.
;; Neither has a loop, and no direct call names the other.
(module
  (memory (export "memory") 1)
  (type $t (func (param i32)))
  (table 2 funcref)
  (elem (i32.const 0) $a $b)
  (func $a (type $t) (param $n i32)
    (if (i32.eqz (local.get $n)) (then (return)))
    (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 1))
    (call_indirect (type $t) (i32.sub (local.get $n) (i32.const 1)) (i32.const 1)))
  (func $b (type $t) (param $n i32)
    (call_indirect (type $t) (local.get $n) (i32.const 0)))
  (func (export "validate")
    (call $a (i32.const 60))))
