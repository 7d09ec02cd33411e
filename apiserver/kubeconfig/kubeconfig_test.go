package kubeconfig

import (
	"io"
	"os"
	"path/filepath"
	"testing"

	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
)

func creds(name string) Credentials {
	return Credentials{Name: name, Server: "https://127.0.0.1:6443", CAPEM: []byte("ca"), ClientCert: []byte("cert"), ClientKey: []byte("key")}
}

func TestWriteIs0600AndLoads(t *testing.T) {
	path := filepath.Join(t.TempDir(), "sub", "kubeconfig")
	if err := Write(path, Build(creds("wasmkube-demo"))); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, err %v; want 0600", st.Mode().Perm(), err)
	}
	cfg, err := clientcmd.LoadFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if cfg.CurrentContext != "wasmkube-demo" || string(cfg.AuthInfos["wasmkube-demo"].ClientKeyData) != "key" {
		t.Fatalf("loaded %+v", cfg)
	}
}

// TestWriteReplacesAtomically: a rewrite puts a new file in place (rename), so a reader that
// opened the old one reads it whole, an existing 0644 file ends 0600, and no temporary file is
// left beside it.
func TestWriteReplacesAtomically(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "kubeconfig")
	if err := os.WriteFile(path, []byte("old"), 0o644); err != nil {
		t.Fatal(err)
	}
	reader, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer reader.Close()
	if err := Write(path, Build(creds("wasmkube-demo"))); err != nil {
		t.Fatal(err)
	}
	if b, err := io.ReadAll(reader); err != nil || string(b) != "old" {
		t.Errorf("a reader of the old file saw %q (%v): the file was rewritten in place", b, err)
	}
	if st, err := os.Stat(path); err != nil || st.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, err %v; want 0600", st.Mode().Perm(), err)
	}
	if cfg, err := clientcmd.LoadFromFile(path); err != nil || cfg.CurrentContext != "wasmkube-demo" {
		t.Errorf("new file: %v %+v", err, cfg)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("files beside the kubeconfig: %v", entries)
	}
}

// access points clientcmd at the given KUBECONFIG list, as kubectl would see it.
func access(t *testing.T, files ...string) *clientcmd.PathOptions {
	t.Helper()
	list := ""
	for i, f := range files {
		if i > 0 {
			list += string(os.PathListSeparator)
		}
		list += f
	}
	t.Setenv("KUBECONFIG", list)
	return clientcmd.NewDefaultPathOptions()
}

func TestMergeKeepsOtherContextsAndRemoveUndoes(t *testing.T) {
	dir := t.TempDir()
	user := filepath.Join(dir, "config")
	other := clientcmdapi.NewConfig()
	other.Clusters["kind-dev"] = &clientcmdapi.Cluster{Server: "https://10.0.0.1"}
	other.AuthInfos["kind-dev"] = &clientcmdapi.AuthInfo{Token: "t"}
	other.Contexts["kind-dev"] = &clientcmdapi.Context{Cluster: "kind-dev", AuthInfo: "kind-dev"}
	other.CurrentContext = "kind-dev"
	if err := clientcmd.WriteToFile(*other, user); err != nil {
		t.Fatal(err)
	}

	acc := access(t, user)
	written, err := Merge(acc, Build(creds("wasmkube-demo")), "wasmkube-demo")
	if err != nil {
		t.Fatal(err)
	}
	if written != user {
		t.Fatalf("merged into %s, want %s", written, user)
	}
	got, err := clientcmd.LoadFromFile(user)
	if err != nil {
		t.Fatal(err)
	}
	if got.CurrentContext != "wasmkube-demo" || got.Contexts["kind-dev"] == nil || got.AuthInfos["kind-dev"].Token != "t" {
		t.Fatalf("after merge: current %q, contexts %v", got.CurrentContext, got.Contexts)
	}
	if _, err := os.Stat(user + ".lock"); !os.IsNotExist(err) {
		t.Fatalf("lock file left behind: %v", err)
	}

	removed, err := Remove(acc, "wasmkube-demo")
	if err != nil || !removed {
		t.Fatalf("remove: %v %v", removed, err)
	}
	got, _ = clientcmd.LoadFromFile(user)
	if got.Contexts["wasmkube-demo"] != nil || got.Clusters["wasmkube-demo"] != nil || got.AuthInfos["wasmkube-demo"] != nil {
		t.Fatal("entries left after remove")
	}
	if got.CurrentContext != "" || got.Contexts["kind-dev"] == nil {
		t.Fatalf("after remove: current %q, contexts %v", got.CurrentContext, got.Contexts)
	}
	if removed, err := Remove(acc, "wasmkube-demo"); err != nil || removed {
		t.Fatalf("second remove: %v %v, want false, nil", removed, err)
	}
}

func TestMergeIntoMissingFileCreatesIt(t *testing.T) {
	user := filepath.Join(t.TempDir(), "kube", "config")
	written, err := Merge(access(t, user), Build(creds("wasmkube-x")), "wasmkube-x")
	if err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(written)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("created %s: mode %v err %v", written, st.Mode().Perm(), err)
	}
}

func TestMergeWithKubeconfigListWritesFirstFile(t *testing.T) {
	dir := t.TempDir()
	a, b := filepath.Join(dir, "a"), filepath.Join(dir, "b")
	cfgB := clientcmdapi.NewConfig()
	cfgB.Contexts["other"] = &clientcmdapi.Context{Cluster: "c"}
	if err := clientcmd.WriteToFile(*cfgB, b); err != nil {
		t.Fatal(err)
	}
	if err := clientcmd.WriteToFile(*clientcmdapi.NewConfig(), a); err != nil {
		t.Fatal(err)
	}
	if _, err := Merge(access(t, a, b), Build(creds("wasmkube-y")), "wasmkube-y"); err != nil {
		t.Fatal(err)
	}
	gotA, _ := clientcmd.LoadFromFile(a)
	gotB, _ := clientcmd.LoadFromFile(b)
	if gotA.Contexts["wasmkube-y"] == nil || gotB.Contexts["wasmkube-y"] != nil || gotB.Contexts["other"] == nil {
		t.Fatalf("a: %v; b: %v", gotA.Contexts, gotB.Contexts)
	}
}
