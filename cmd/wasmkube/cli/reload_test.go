package cli

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUpReload: `up` of a profile file reloads its modules when the file changes and on
// `wasmkube reload` (SIGHUP), prints each outcome, and keeps serving when an edit is broken;
// `wasmkube reload` prints the outcome and fails with a broken profile or no running cluster.
func TestUpReload(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.root, "dev.yaml")
	profile := func(modules string) {
		t.Helper()
		doc := "apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: dev\nport: 0\ncontrollers: {enabled: false}\n" + modules
		if err := os.WriteFile(path+".tmp", []byte(doc), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := os.Rename(path+".tmp", path); err != nil {
			t.Fatal(err)
		}
	}
	profile("")
	if code, _, stderr := e.run("reload", "--profile", path); code != 1 || !strings.Contains(stderr, "profile dev is not running") {
		t.Errorf("reload with no cluster: %d %s", code, stderr)
	}
	up := e.startUp("--profile", path)
	up.waitReady(t)
	if !strings.Contains(up.text(), "reload: on any change to "+path) {
		t.Errorf("up does not say that it watches the profile:\n%s", up.text())
	}

	profile(`admission:
  modules:
  - module: builtin:magic-validate
    rules: [{operations: [CREATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}]
`)
	up.waitLine(t, "↻ reloaded: 1 modules serving")

	code, out, stderr := e.run("reload", "--profile", path)
	if code != 0 || !strings.Contains(out, "↻ reloaded: 1 modules serving") || !strings.Contains(out, "after asked") {
		t.Errorf("wasmkube reload: %d %q %s", code, out, stderr)
	}
	up.waitLine(t, "after asked")

	// A broken edit: said by up; the module loaded before serves on.
	profile("admission:\n  modules:\n  - module: builtin:magic-validate\n    rulez: []\n")
	up.waitLine(t, "✗ reload after "+path+" changed failed; the modules loaded before keep serving:")
	up.waitLine(t, path+`:9: unknown field "admission.modules[0].rulez"`)
	code, _, stderr = e.run("reload", "--profile", path)
	if code != 1 || !strings.Contains(stderr, `rulez`) {
		t.Errorf("wasmkube reload of a broken profile: %d %s", code, stderr)
	}
	// The profile does not parse: kubectl gets the kubeconfig by path.
	kc := filepath.Join(e.root, "data", "wasmkube", "dev", "kubeconfig")
	code, out, stderr = e.run("kubectl", "--kubeconfig", kc, "create", "configmap", "c", "--from-literal=not-allowed-value=x")
	if code == 0 || !strings.Contains(stderr, `module "magic-validate" denied`) {
		t.Errorf("magic-validate should still deny after a broken edit: %d %s %s", code, out, stderr)
	}

	// A change that needs a restart is said, and the modules reload.
	profile("etcd: {fsync: true}\n")
	up.waitLine(t, "↻ reloaded: 0 modules serving")
	up.waitLine(t, "etcd fsync false → true")
	if code, out, stderr := e.run("kubectl", "--profile", path, "create", "configmap", "d", "--from-literal=not-allowed-value=x"); code != 0 {
		t.Errorf("with magic-validate removed the create must pass: %d %s %s", code, out, stderr)
	}
	// A follower of the decisions does not hold the shutdown up: its stream ends.
	lines := e.followDecisions(t, "--profile", path)
	waitDecision(t, lines, "TIME", "MODULE")
	if code := up.interrupt(t); code != 0 {
		t.Errorf("up exited %d:\n%s", code, up.text())
	}
	select {
	case <-drained(lines):
	case <-time.After(10 * time.Second):
		t.Error("decisions -f still runs 10 s after the cluster stopped")
	}
}

// drained is closed once lines is.
func drained(lines <-chan followedLine) <-chan struct{} {
	done := make(chan struct{})
	go func() {
		for range lines {
		}
		close(done)
	}()
	return done
}
