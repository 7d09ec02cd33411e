//go:build !linux

package wasm

import "errors"

// saveCopyOnWrite needs Linux's memfd and /proc/self/pagemap.
func saveCopyOnWrite([]byte) (savedMemory, error) {
	return nil, errors.New("copy-on-write snapshots need Linux")
}
