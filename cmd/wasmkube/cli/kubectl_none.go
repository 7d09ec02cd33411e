//go:build nokubectl

package cli

import (
	"errors"

	"github.com/wasmkube/wasmkube/apiserver"
)

// runKubectl of a binary built with -tags nokubectl (docs/benchmarks.md, "Binary": the built-in
// kubectl is one of the largest parts) says what to use instead.
func runKubectl(_ streams, layout apiserver.Layout, _ []string) error {
	return errors.New("this wasmkube was built without kubectl (build tag nokubectl): run your own kubectl with --kubeconfig " + layout.Kubeconfig())
}
