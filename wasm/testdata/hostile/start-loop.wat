;; An endless loop in the start function: instantiating the module never ends. The loop counts
;; in memory, so that the memory must stay in place while the start function runs.
(module
  (memory (export "memory") 1)
  (func $start
    (loop $l
      (i32.store (i32.const 0) (i32.add (i32.load (i32.const 0)) (i32.const 1)))
      (br $l)))
  (start $start)
  (func (export "validate")))
