;; An endless loop in the start function: instantiating the module never ends.
(module
  (memory (export "memory") 1)
  (func $start
    (loop $l (br $l)))
  (start $start)
  (func (export "validate")))
