package wasmkube_test

import (
	"io/fs"
	"net/http"
	"path/filepath"
	"strings"
	"testing"

	"k8s.io/client-go/rest"
)

// testSecureDefaults: what a cluster is like with nothing configured (docs/security.md): the
// API server listens on loopback only and refuses anonymous requests; every file and directory
// of the data dir is the user's alone (keys, tokens, kubeconfigs, etcd's data and socket, logs).
func testSecureDefaults(t *testing.T) {
	if !strings.HasPrefix(cluster.Server, "https://127.0.0.1:") {
		t.Errorf("server %s is not on loopback", cluster.Server)
	}
	anonymous, err := rest.HTTPClientFor(rest.AnonymousClientConfig(cluster.RESTConfig))
	if err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{"/version", "/readyz", "/api", "/api/v1/namespaces"} {
		resp, err := anonymous.Get(cluster.Server + path)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("anonymous GET %s: %d, want 401", path, resp.StatusCode)
		}
	}
	err = filepath.WalkDir(cluster.DataDir, func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		info, err := d.Info()
		if err != nil {
			return err
		}
		if info.Mode()&fs.ModeSymlink == 0 && info.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v: group or others may use it", path, info.Mode().Perm())
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
}
