//go:build wasip1

package authn

import "os"

//lint:ignore U1000 the host calls it: go:wasmexport exports it, which staticcheck does not count as a use
//go:wasmexport authn
func export() { Run(os.Stdin, os.Stdout) }
