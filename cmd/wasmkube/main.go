// Command wasmkube runs a real Kubernetes API server, with embedded etcd and
// kube-controller-manager, from an on-disk profile. See `wasmkube --help`.
package main

import (
	"os"

	"github.com/wasmkube/wasmkube/cmd/wasmkube/cli"
)

func main() {
	os.Exit(cli.Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
}
