//go:build wasip1

package wasi

import (
	"errors"
	"io"
	"os"
	"unsafe"
)

//go:wasmimport host call
func call(bd unsafe.Pointer, bdLen uint32, ns unsafe.Pointer, nsLen uint32, op unsafe.Pointer, opLen uint32, ptr unsafe.Pointer, n uint32) uint32

func ptr(s []byte) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}

// hostCall calls the host; its answer (or error text) is what stdin holds next.
func hostCall(namespace, operation string, payload []byte) ([]byte, error) {
	bd, ns, op := []byte("kubewarden"), []byte(namespace), []byte(operation)
	rc := call(ptr(bd), uint32(len(bd)), ptr(ns), uint32(len(ns)), ptr(op), uint32(len(op)), ptr(payload), uint32(len(payload)))
	answer, err := io.ReadAll(os.Stdin)
	if err != nil {
		return nil, err
	}
	if rc != 0 {
		return nil, errors.New(string(answer))
	}
	return answer, nil
}
