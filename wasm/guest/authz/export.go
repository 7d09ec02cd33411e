//go:build wasip1

package authz

import "os"

//lint:ignore U1000 the host calls it: go:wasmexport exports it, which staticcheck does not count as a use
//go:wasmexport authz
func export() { Run(os.Stdin, os.Stdout) }
