;; A Kubewarden WASI-mode command that makes host calls forever: each answer is appended to its
;; stdin, which would grow without bound.
(module
  (import "host" "call" (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "kubewarden" "kubernetes" "list_resources_all" "{}")
  (func (export "_start")
    (loop $l
      (drop (call $host_call (i32.const 0) (i32.const 10) (i32.const 10) (i32.const 10)
        (i32.const 20) (i32.const 18) (i32.const 38) (i32.const 2)))
      (br $l))))
