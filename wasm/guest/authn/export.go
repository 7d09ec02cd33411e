//go:build wasip1

package authn

import "os"

//go:wasmexport authn
func export() { Run(os.Stdin, os.Stdout) }
