;; Grows a table by a million entries per iteration, forever. Before tables were bounded this
;; took the host to 9.7 GB and a fatal out-of-memory error under a 64 MiB memory limit.
(module
  (memory (export "memory") 1)
  (table $t 0 funcref)
  (func (export "validate")
    (loop $l
      (drop (table.grow $t (ref.null func) (i32.const 1000000)))
      (br $l))))
