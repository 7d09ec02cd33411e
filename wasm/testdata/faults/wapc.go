package main

import (
	"runtime"
	"unsafe"

	"github.com/wasmkube/wasmkube/wasm/guest"
)

// A waPC face, written against the raw imports: settings {"mode": ...} pick what validate does;
// mode invalid-settings fails validate_settings.

//go:wasmimport wapc __guest_request
func guestRequest(op, payload unsafe.Pointer)

//go:wasmimport wapc __guest_response
func guestResponse(ptr unsafe.Pointer, n uint32)

//go:wasmimport wapc __guest_error
func guestError(ptr unsafe.Pointer, n uint32)

func answer(s string, ok bool) uint32 {
	b := []byte(s + " ")
	if !ok {
		guestError(unsafe.Pointer(&b[0]), uint32(len(s)))
		return 0
	}
	guestResponse(unsafe.Pointer(&b[0]), uint32(len(s)))
	return 1
}

//go:wasmexport __guest_call
func guestCall(opLen, payloadLen uint32) uint32 {
	op, payload := make([]byte, opLen+1), make([]byte, payloadLen+1)
	guestRequest(unsafe.Pointer(&op[0]), unsafe.Pointer(&payload[0]))
	in := guest.JSON(payload[:payloadLen])
	switch string(op[:opLen]) {
	case "protocol_version":
		if in := string(payload[:payloadLen]); in != "" {
			return answer("protocol_version takes no payload", false)
		}
		return answer(`"v1"`, true)
	case "validate_settings":
		if in.Get("mode").String() == "invalid-settings" {
			return answer(`{"valid":false,"message":"mode says the settings are invalid"}`, true)
		}
		return answer(`{"valid":true}`, true)
	case "validate":
	default:
		return answer("unknown operation", false)
	}
	switch in.Get("settings", "mode").String() {
	case "trap":
		runtime.Breakpoint()
	case "loop":
		for {
			calls++
		}
	case "garbage":
		return answer("this is not json", true)
	case "error":
		return answer("the policy says no", false)
	case "reject":
		return answer(`{"accepted":false,"message":"rejected by faults","code":418,"warnings":["careful"],"audit_annotations":{"seen":"yes"}}`, true)
	}
	return answer(`{"accepted":true}`, true)
}
