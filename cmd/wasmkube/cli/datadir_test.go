package cli

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/wasmkube/wasmkube/datadir"
)

func writeFile(t *testing.T, path, content string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
}

// TestResetDeletesOnlyWhatWasmkubeCreated: `reset --yes` and `up` on directories wasmkube did
// not create: the folder holding the profile (dataDir: ..), one without the marker, and $HOME
// (all inside the test's temporary directory).
// Each is refused with why and what to do, and nothing is written or deleted there.
func TestResetDeletesOnlyWhatWasmkubeCreated(t *testing.T) {
	e := newEnv(t)
	project := filepath.Join(e.root, "project")
	profile := filepath.Join(project, "profiles", "p.yaml")
	writeFile(t, filepath.Join(project, "keep.txt"), "mine")
	for _, dataDir := range []string{"..", "."} {
		writeFile(t, profile, "apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: p\nport: 0\ndataDir: "+dataDir+"\n")
		code, _, stderr := e.run("reset", "--yes", "--profile", profile)
		if code == 0 || !strings.Contains(stderr, "refusing to delete") || !strings.Contains(stderr, "holds the profile file "+profile) {
			t.Errorf("reset --yes with dataDir %s: exit %d, stderr %q", dataDir, code, stderr)
		}
		code, _, stderr = e.run("up", "--profile", profile)
		if code == 0 || !strings.Contains(stderr, "not created by wasmkube") {
			t.Errorf("up with dataDir %s: exit %d, stderr %q; want a refusal", dataDir, code, stderr)
		}
	}
	foreign := filepath.Join(e.root, "foreign")
	writeFile(t, filepath.Join(foreign, "notes.txt"), "mine")
	home := filepath.Join(e.root, "home")
	writeFile(t, filepath.Join(home, datadir.MarkerName), `{"kind":"wasmkube-data","formatVersion":1}`)
	// Only directories inside the test's own temporary directory: were the check ever broken, the
	// command must not be able to delete anything else. (/ is refused in datadir's unit test,
	// which never deletes.)
	for _, c := range []struct{ dir, want string }{
		{foreign, "has no " + datadir.MarkerName},
		{home, "your home directory"},
	} {
		code, _, stderr := e.run("reset", "--yes", "--profile", "minimal", "--data-dir", c.dir)
		if code == 0 || !strings.Contains(stderr, "refusing to delete "+c.dir) || !strings.Contains(stderr, c.want) {
			t.Errorf("reset --yes --data-dir %s: exit %d, stderr %q; want %q", c.dir, code, stderr, c.want)
		}
	}
	for _, f := range []string{filepath.Join(project, "keep.txt"), profile, filepath.Join(foreign, "notes.txt")} {
		if _, err := os.Stat(f); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	for _, d := range []string{project, foreign, filepath.Dir(profile)} {
		for _, name := range []string{datadir.MarkerName, "wasmkube.lock", "pki"} {
			if _, err := os.Stat(filepath.Join(d, name)); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%s written into %s, which wasmkube did not create", name, d)
			}
		}
	}

	// Without --yes nothing is deleted and nothing written, whatever the directory.
	if code, out, stderr := e.run("reset", "--profile", "minimal", "--data-dir", foreign); code != 0 || !strings.Contains(out, "data kept in "+foreign) {
		t.Errorf("reset without --yes: %d %q %q", code, out, stderr)
	}
}

// TestUpRefusesUnknownDataFormat: a data dir written by a newer wasmkube (a marker of a format
// this one does not read) is not started on, and the message says what to do.
func TestUpRefusesUnknownDataFormat(t *testing.T) {
	e := newEnv(t)
	dir := filepath.Join(e.root, "newer")
	marker := `{"kind":"wasmkube-data","formatVersion":99,"createdBy":"v9.9.9"}`
	writeFile(t, filepath.Join(dir, datadir.MarkerName), marker)
	code, _, stderr := e.run("up", "--profile", "minimal", "--port", "0", "--data-dir", dir)
	if code == 0 {
		t.Fatal("up started on a data dir of an unknown format")
	}
	for _, want := range []string{dir, "wasmkube v9.9.9", "data format 99", "run wasmkube v9.9.9 or newer", "--data-dir"} {
		if !strings.Contains(stderr, want) {
			t.Errorf("stderr lacks %q: %s", want, stderr)
		}
	}
	entries, _ := os.ReadDir(dir)
	if len(entries) != 1 {
		t.Errorf("up wrote into the refused data dir: %v", entries)
	}
}
