package apiserver

import (
	"os"
	"testing"

	"golang.org/x/mod/modfile"
)

func TestEmbeddedKubernetesVersionMatchesGoMod(t *testing.T) {
	data, err := os.ReadFile("../go.mod")
	if err != nil {
		t.Fatal(err)
	}
	f, err := modfile.Parse("go.mod", data, nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range f.Require {
		if r.Mod.Path == "k8s.io/kubernetes" {
			if r.Mod.Version != EmbeddedKubernetesVersion {
				t.Fatalf("go.mod requires k8s.io/kubernetes %s; update EmbeddedKubernetesVersion (%s)", r.Mod.Version, EmbeddedKubernetesVersion)
			}
			return
		}
	}
	t.Fatal("go.mod does not require k8s.io/kubernetes")
}

func TestStampKubernetesVersion(t *testing.T) {
	if got := KubernetesVersion(); got != EmbeddedKubernetesVersion {
		t.Fatalf("KubernetesVersion() = %s, want %s", got, EmbeddedKubernetesVersion)
	}
}
