package datadir

import (
	"encoding/json"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func mode(t *testing.T, path string) os.FileMode {
	t.Helper()
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	return fi.Mode().Perm()
}

func mustPrepare(t *testing.T, dir string, want State) *Marker {
	t.Helper()
	got, err := Prepare(dir, "v1.2.3")
	if err != nil {
		t.Fatalf("prepare %s: %v", dir, err)
	}
	if got != want {
		t.Fatalf("prepare %s: state %d, want %d", dir, got, want)
	}
	m, err := ReadMarker(dir)
	if err != nil {
		t.Fatalf("marker: %v", err)
	}
	if m.Kind != MarkerKind || m.FormatVersion != FormatVersion || m.CreatedBy != "v1.2.3" || m.Created.IsZero() {
		t.Errorf("marker %+v", m)
	}
	if p := mode(t, filepath.Join(dir, MarkerName)); p != 0o600 {
		t.Errorf("marker mode %v, want 0600", p)
	}
	if p := mode(t, dir); p != 0o700 {
		t.Errorf("data dir mode %v, want 0700", p)
	}
	return m
}

func TestPrepareCreates(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "data")
	if m := mustPrepare(t, dir, Created); m.Adopted {
		t.Error("a new data dir is marked adopted")
	}
	mustPrepare(t, dir, Marked)

	empty := t.TempDir()
	if err := os.Chmod(empty, 0o755); err != nil {
		t.Fatal(err)
	}
	mustPrepare(t, empty, Created)
}

// TestPrepareAdoptsOlderLayout: a data dir written by a wasmkube before the marker (its layout,
// a temporary file of an interrupted write) starts and gets the marker; nothing else changes.
func TestPrepareAdoptsOlderLayout(t *testing.T) {
	dir := t.TempDir()
	for _, d := range []string{"pki", "etcd/member", "logs"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o700); err != nil {
			t.Fatal(err)
		}
	}
	for _, f := range []string{"kubeconfig", "wasmkube.lock", "pki/ca.crt", ".kubeconfig.tmp-123"} {
		if err := os.WriteFile(filepath.Join(dir, f), []byte(f), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if m := mustPrepare(t, dir, Adopted); !m.Adopted {
		t.Error("marker of an adopted dir lacks adopted: true")
	}
	if b, err := os.ReadFile(filepath.Join(dir, "pki/ca.crt")); err != nil || string(b) != "pki/ca.crt" {
		t.Errorf("adoption changed pki/ca.crt: %q %v", b, err)
	}
	mustPrepare(t, dir, Marked)
}

func TestPrepareRefusesForeignDir(t *testing.T) {
	dir := t.TempDir()
	for _, f := range []string{"profile.yaml", "notes.txt", "kubeconfig"} {
		if err := os.WriteFile(filepath.Join(dir, f), nil, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, err := Prepare(dir, "v1")
	if err == nil {
		t.Fatal("a directory with other files was taken as a data dir")
	}
	for _, want := range []string{dir, "not created by wasmkube", MarkerName, "notes.txt, profile.yaml", "--data-dir"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
	if _, err := os.Stat(filepath.Join(dir, MarkerName)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("marker written into a foreign dir: %v", err)
	}

	file := filepath.Join(dir, "notes.txt")
	if _, err := Prepare(file, "v1"); err == nil || !strings.Contains(err.Error(), "not a directory") {
		t.Errorf("a file as data dir: %v", err)
	}
}

func writeMarkerJSON(t *testing.T, dir string, m any) {
	t.Helper()
	b, err := json.Marshal(m)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, MarkerName), b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestPrepareRefusesUnknownFormat: a marker of a newer format, of format 0, or unreadable stops
// the start with what to do, and leaves the directory as it was.
func TestPrepareRefusesUnknownFormat(t *testing.T) {
	cases := []struct {
		name   string
		marker any
		want   []string
	}{
		{"newer", Marker{Kind: MarkerKind, FormatVersion: FormatVersion + 1, CreatedBy: "v9.0.0"},
			[]string{"wasmkube v9.0.0", "data format 2", "reads format 1", "run wasmkube v9.0.0 or newer", "--data-dir"}},
		{"zero", Marker{Kind: MarkerKind, CreatedBy: "x"}, []string{"format 0", "formatVersion"}},
		{"other kind", map[string]any{"kind": "something", "formatVersion": 1}, []string{"unreadable", `kind "something"`, "remove the marker"}},
		{"not json", "{", []string{"unreadable", "remove the marker"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := t.TempDir()
			if s, ok := c.marker.(string); ok {
				if err := os.WriteFile(filepath.Join(dir, MarkerName), []byte(s), 0o600); err != nil {
					t.Fatal(err)
				}
			} else {
				writeMarkerJSON(t, dir, c.marker)
			}
			before, _ := os.ReadFile(filepath.Join(dir, MarkerName))
			_, err := Prepare(dir, "v1")
			if err == nil {
				t.Fatal("started on an unknown format")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q: %v", w, err)
				}
			}
			if after, _ := os.ReadFile(filepath.Join(dir, MarkerName)); string(after) != string(before) {
				t.Errorf("marker rewritten: %s", after)
			}
		})
	}
}

func TestCheckRemovable(t *testing.T) {
	root := t.TempDir()
	home := filepath.Join(root, "home", "me")
	profileDir := filepath.Join(root, "profiles", "p")
	data := filepath.Join(profileDir, "data")
	unmarked := filepath.Join(root, "unmarked")
	for _, d := range []string{home, data, unmarked} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	// Every refused directory but "unmarked" has a marker: the refusal has another reason.
	for _, d := range []string{home, filepath.Dir(home), profileDir, filepath.Dir(profileDir), data} {
		writeMarkerJSON(t, d, Marker{Kind: MarkerKind, FormatVersion: 1})
	}
	link := filepath.Join(root, "link-to-home")
	if err := os.Symlink(home, link); err != nil {
		t.Fatal(err)
	}
	t.Setenv("HOME", home)
	profileFile := filepath.Join(profileDir, "p.yaml")

	cases := []struct {
		dir  string
		want string // "" = removable
	}{
		{"/", "root directory"},
		{home, "home directory"},
		{filepath.Dir(home), "home directory"},
		{link, "home directory"},
		{profileDir, "holds the profile file " + profileFile},
		{filepath.Dir(profileDir), "holds the profile file"},
		{unmarked, "has no " + MarkerName},
		{data, ""},
	}
	for _, c := range cases {
		err := CheckRemovable(c.dir, profileFile)
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v, want removable", c.dir, err)
		case c.want != "" && (err == nil || !strings.Contains(err.Error(), c.want) || !strings.Contains(err.Error(), "refusing to delete")):
			t.Errorf("%s: %v, want a refusal saying %q", c.dir, err, c.want)
		}
	}
	// A built-in profile has no file: only the other rules apply.
	if err := CheckRemovable(profileDir, ""); err != nil {
		t.Errorf("built-in profile: %v", err)
	}
}
