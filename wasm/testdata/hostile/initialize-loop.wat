;; An endless loop in _initialize, which the host runs once when it creates an instance.
(module
  (memory (export "memory") 1)
  (func (export "_initialize")
    (loop $l (br $l)))
  (func (export "validate")))
