package profiles

import (
	"os"
	"path/filepath"
	"slices"
	"testing"
)

// TestExtraArgPathsFromProfileDir: a profile file's extraArgs paths are taken from its directory,
// as its module paths are, whatever directory `up` runs in.
func TestExtraArgPathsFromProfileDir(t *testing.T) {
	dir := t.TempDir()
	doc := `apiVersion: wasmkube.dev/v1alpha1
kind: Profile
name: audited
apiserver:
  extraArgs: [audit-policy-file=audit.yaml, --audit-log-path=logs/audit.log, "audit-log-maxage=3", "tls-cipher-suites=x",
    "tls-sni-cert-key=certs/a.crt,certs/a.key:*.a.test,a.test", "tls-sni-cert-key=b.crt,/abs/b.key", "tls-sni-cert-key=broken"]
controllers:
  extraArgs: [cluster-signing-cert-file=/abs/ca.crt]
scheduler:
  extraArgs: [percentage-of-nodes-to-score=50]
`
	path := filepath.Join(dir, "audited.yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	t.Chdir(t.TempDir())
	p, err := LoadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	want := []string{"audit-policy-file=" + filepath.Join(dir, "audit.yaml"), "audit-log-path=" + filepath.Join(dir, "logs/audit.log"), "audit-log-maxage=3", "tls-cipher-suites=x",
		"tls-sni-cert-key=" + filepath.Join(dir, "certs/a.crt") + "," + filepath.Join(dir, "certs/a.key") + ":*.a.test,a.test",
		"tls-sni-cert-key=" + filepath.Join(dir, "b.crt") + ",/abs/b.key", "tls-sni-cert-key=broken"}
	if !slices.Equal(p.APIServer.ExtraArgs, want) {
		t.Errorf("apiserver.extraArgs = %q, want %q", p.APIServer.ExtraArgs, want)
	}
	if p.Controllers.ExtraArgs[0] != "cluster-signing-cert-file=/abs/ca.crt" || p.Scheduler.ExtraArgs[0] != "percentage-of-nodes-to-score=50" {
		t.Errorf("absolute paths and other flags changed: %q %q", p.Controllers.ExtraArgs, p.Scheduler.ExtraArgs)
	}
	for name, want := range map[string]bool{"audit-log-path": true, "cert-dir": true, "etcd-cafile": true, "kubeconfig": true, "encryption-provider-config": true, "kubelet-client-key": true, "v": false, "audit-log-maxage": false} {
		if isPathFlag(name) != want {
			t.Errorf("isPathFlag(%s) = %v", name, !want)
		}
	}
}
