// Package wasi serves a kubewarden.Policy as a Kubewarden WASI-mode policy: a command whose
// argv[1] is validate or validate-settings, with the payload on stdin and the answer on stdout.
// Call Run from main and build with GOOS=wasip1 GOARCH=wasm.
package wasi

import (
	"io"
	"os"

	"github.com/wasmkube/wasmkube/wasm/guest/kubewarden"
)

// Run answers the call the host started this command for and returns the exit code for os.Exit.
func Run[S any](p kubewarden.Policy[S]) int {
	if len(os.Args) < 2 {
		os.Stderr.WriteString("usage: policy.wasm validate|validate-settings (payload on stdin)\n")
		return 2
	}
	op := map[string]string{"validate": "validate", "validate-settings": "validate_settings"}[os.Args[1]]
	if op == "" {
		os.Stderr.WriteString("unknown command " + os.Args[1] + "; want validate or validate-settings\n")
		return 2
	}
	payload, err := io.ReadAll(os.Stdin)
	if err != nil {
		os.Stderr.WriteString("read stdin: " + err.Error() + "\n")
		return 1
	}
	out, err := p.Serve(op, payload)
	if err != nil {
		os.Stderr.WriteString(err.Error() + "\n")
		return 1
	}
	if _, err := os.Stdout.Write(out); err != nil {
		return 1
	}
	return 0
}

// Host reaches the host's capabilities through host.call; answers arrive on stdin.
var Host = kubewarden.Host{Call: hostCall}
