//go:build !linux

package wasm

import (
	"errors"

	"github.com/tetratelabs/wazero/experimental"
)

// saveCopyOnWrite needs Linux's memfd and /proc/self/pagemap.
func saveCopyOnWrite([]byte, experimental.LinearMemory) (savedMemory, error) {
	return nil, errors.New("copy-on-write snapshots need Linux")
}
