;; Declares a table of 100 million entries: the host would allocate 800 MB to instantiate it.
(module
  (memory (export "memory") 1)
  (table 100000000 funcref)
  (func (export "validate")))
