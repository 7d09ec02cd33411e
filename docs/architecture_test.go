// Package docs holds the tests that keep the documentation's claims true.
package docs_test

import (
	"os/exec"
	"strings"
	"testing"
)

// TestImportBoundaries checks the package boundaries docs/architecture.md draws: programs that
// embed the library carry no example modules, apiserver takes plain inputs instead of profiles,
// and the wasm core imports nothing of Kubernetes.
func TestImportBoundaries(t *testing.T) {
	if _, err := exec.LookPath("go"); err != nil {
		t.Skip("the go command is not on PATH")
	}
	cases := []struct {
		pkg, forbidden string
	}{
		{"github.com/wasmkube/wasmkube", "github.com/wasmkube/wasmkube/examples"},
		{"github.com/wasmkube/wasmkube/apiserver", "github.com/wasmkube/wasmkube/profiles"},
		{"github.com/wasmkube/wasmkube/wasm", "k8s.io/"},
	}
	for _, c := range cases {
		out, err := exec.Command("go", "list", "-deps", c.pkg).Output()
		if err != nil {
			t.Fatalf("go list -deps %s: %v", c.pkg, err)
		}
		for _, dep := range strings.Fields(string(out)) {
			if strings.HasPrefix(dep, c.forbidden) {
				t.Errorf("%s imports %s (via go list -deps): the boundary in docs/architecture.md forbids %s", c.pkg, dep, c.forbidden)
			}
		}
	}
}
