;; A waPC guest that hands the host its whole memory as a host-call payload, forever.
(module
  (import "wapc" "__host_call" (func $host_call (param i32 i32 i32 i32 i32 i32 i32 i32) (result i32)))
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (import "wapc" "__guest_response" (func $guest_response (param i32 i32)))
  (memory (export "memory") 1)
  (data (i32.const 0) "kubewarden" "tracing" "log")
  (func (export "__guest_call") (param i32 i32) (result i32) (local $n i32)
    (loop $g
      (br_if $g (i32.ge_s (memory.grow (i32.const 1)) (i32.const 0))))
    (local.set $n (i32.mul (memory.size) (i32.const 65536)))
    (loop $l
      (drop (call $host_call (i32.const 0) (i32.const 10) (i32.const 10) (i32.const 7)
        (i32.const 17) (i32.const 3) (i32.const 0) (local.get $n)))
      (br $l))
    (i32.const 1)))
