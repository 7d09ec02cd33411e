//go:build !wasip1

package wapc

import "errors"

func hostCall(string, string, []byte) ([]byte, error) {
	return nil, errors.New("host calls need a waPC host: build with GOOS=wasip1")
}
