;; A WASI command whose _initialize loops forever when it gets arguments: its spare instance (made
;; without arguments) is ready at once, but an instance made for a call with arguments never is.
(module
  (import "wasi_snapshot_preview1" "args_sizes_get" (func $args_sizes_get (param i32 i32) (result i32)))
  (memory (export "memory") 1)
  (func (export "_initialize")
    (drop (call $args_sizes_get (i32.const 0) (i32.const 4)))
    (if (i32.gt_u (i32.load (i32.const 0)) (i32.const 1))
      (then (loop $l (br $l)))))
  (func (export "_start")))
