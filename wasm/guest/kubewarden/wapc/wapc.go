// Package wapc serves a kubewarden.Policy as a waPC guest: call Register in init, build with
// GOOS=wasip1 GOARCH=wasm -buildmode=c-shared. The package exports __guest_call and imports the
// wapc host functions, as Kubewarden's policy-server and wasmkube provide them.
package wapc

import "github.com/wasmkube/wasmkube/wasm/guest/kubewarden"

// serve is the registered policy; a guest serves one policy, registered once in init.
var serve func(op string, payload []byte) ([]byte, error)

// Register makes p the policy this module serves.
func Register[S any](p kubewarden.Policy[S]) { serve = p.Serve }

// Host reaches the host's capabilities (kubernetes, tracing, …) through __host_call.
var Host = kubewarden.Host{Call: hostCall}
