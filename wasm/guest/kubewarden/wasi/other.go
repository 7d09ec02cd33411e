//go:build !wasip1

package wasi

import "errors"

func hostCall(string, string, []byte) ([]byte, error) {
	return nil, errors.New("host calls need a Kubewarden WASI host: build with GOOS=wasip1")
}
