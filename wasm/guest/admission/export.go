//go:build wasip1

package admission

import "os"

//go:wasmexport validate
func export() { Run(os.Stdin, os.Stdout) }
