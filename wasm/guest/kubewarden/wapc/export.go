//go:build wasip1

package wapc

import (
	"errors"
	"unsafe"
)

//go:wasmimport wapc __guest_request
func guestRequest(op, payload unsafe.Pointer)

//go:wasmimport wapc __guest_response
func guestResponse(ptr unsafe.Pointer, n uint32)

//go:wasmimport wapc __guest_error
func guestError(ptr unsafe.Pointer, n uint32)

//go:wasmimport wapc __host_call
func wapcHostCall(bd unsafe.Pointer, bdLen uint32, ns unsafe.Pointer, nsLen uint32, op unsafe.Pointer, opLen uint32, ptr unsafe.Pointer, n uint32) uint32

//go:wasmimport wapc __host_response_len
func hostResponseLen() uint32

//go:wasmimport wapc __host_response
func hostResponse(ptr unsafe.Pointer)

//go:wasmimport wapc __host_error_len
func hostErrorLen() uint32

//go:wasmimport wapc __host_error
func hostError(ptr unsafe.Pointer)

//lint:ignore U1000 the host calls it: go:wasmexport exports it, which staticcheck does not count as a use
//go:wasmexport __guest_call
func guestCall(opLen, payloadLen uint32) uint32 {
	op, payload := make([]byte, opLen+1), make([]byte, payloadLen+1) // +1: never a nil pointer
	guestRequest(unsafe.Pointer(&op[0]), unsafe.Pointer(&payload[0]))
	if serve == nil {
		msg := []byte("the module registered no policy (call wapc.Register in init)")
		guestError(unsafe.Pointer(&msg[0]), uint32(len(msg)))
		return 0
	}
	out, err := serve(string(op[:opLen]), payload[:payloadLen])
	if err != nil {
		msg := []byte(err.Error() + " ")
		guestError(unsafe.Pointer(&msg[0]), uint32(len(msg)-1))
		return 0
	}
	out = append(out, 0)
	guestResponse(unsafe.Pointer(&out[0]), uint32(len(out)-1))
	return 1
}

func ptr(s []byte) unsafe.Pointer {
	if len(s) == 0 {
		return nil
	}
	return unsafe.Pointer(&s[0])
}

func hostCall(namespace, operation string, payload []byte) ([]byte, error) {
	bd, ns, op := []byte("kubewarden"), []byte(namespace), []byte(operation)
	if wapcHostCall(ptr(bd), uint32(len(bd)), ptr(ns), uint32(len(ns)), ptr(op), uint32(len(op)), ptr(payload), uint32(len(payload))) != 1 {
		msg := make([]byte, hostErrorLen()+1)
		hostError(unsafe.Pointer(&msg[0]))
		return nil, errors.New(string(msg[:len(msg)-1]))
	}
	resp := make([]byte, hostResponseLen()+1)
	hostResponse(unsafe.Pointer(&resp[0]))
	return resp[:len(resp)-1], nil
}
