//go:build wasip1

package authz

import "os"

//go:wasmexport authz
func export() { Run(os.Stdin, os.Stdout) }
