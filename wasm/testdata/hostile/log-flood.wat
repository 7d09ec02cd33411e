;; A waPC guest that logs a megabyte-long line through __console_log, forever.
(module
  (import "wapc" "__console_log" (func $console_log (param i32 i32)))
  (import "wapc" "__guest_request" (func $guest_request (param i32 i32)))
  (memory (export "memory") 17)
  (func (export "__guest_call") (param i32 i32) (result i32)
    (memory.fill (i32.const 0) (i32.const 65) (i32.const 1048576))
    (loop $l
      (call $console_log (i32.const 0) (i32.const 1048576))
      (br $l))
    (i32.const 1)))
