// Package datadir guards a cluster's data directory. A marker file, written when wasmkube first
// uses a directory, says that wasmkube created it, in which layout format and with which
// version. Prepare (run by every start) creates or adopts a directory and refuses one wasmkube did
// not create or whose format it does not know; CheckRemovable (run by `reset --yes`) allows
// deleting only a directory with the marker, never /, the home directory or a directory that
// holds the profile file.
package datadir

import (
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/wasmkube/wasmkube/apiserver/pki"
)

// MarkerName is the marker's file name inside the data directory.
const MarkerName = "wasmkube-data.json"

// MarkerKind is the marker's kind field.
const MarkerKind = "wasmkube-data"

// FormatVersion is the data directory layout this wasmkube writes and reads (pki/, etcd/,
// kubeconfig, logs/ ...). A change that an older wasmkube would misread increments it.
const FormatVersion = 1

// Marker is the content of MarkerName.
type Marker struct {
	Kind          string `json:"kind"`
	FormatVersion int    `json:"formatVersion"`
	// CreatedBy is the version of wasmkube that created the directory, or that adopted it when
	// Adopted is set.
	CreatedBy string    `json:"createdBy"`
	Created   time.Time `json:"created"`
	// Adopted says the directory was written by a wasmkube older than the marker.
	Adopted bool `json:"adopted,omitempty"`
}

// State says what Prepare found.
type State int

// What Prepare found.
const (
	// Marked: the directory had a marker of a known format.
	Marked State = iota
	// Created: the directory was missing or empty; it now has a marker.
	Created
	// Adopted: the directory had no marker but only what older wasmkube versions write there; it
	// now has a marker.
	Adopted
)

// ReloadStatus is the file where `wasmkube up` records its latest reload in a data directory.
const ReloadStatus = "reload.json"

// layoutEntries are the names wasmkube writes in a data directory besides the marker (an older
// wasmkube, before the marker, wrote all but ReloadStatus).
func layoutEntries() []string {
	return []string{"pki", "etcd", "etcd.sock", "kubeconfig", "controller-manager.kubeconfig", "scheduler.kubeconfig", "logs",
		"wasmkube.lock", "wasmkube.pid", "kubectl-cache", "flexvolume", ReloadStatus}
}

// isLayoutEntry reports whether name is something wasmkube writes in a data directory: a layout
// entry or a temporary file left by an interrupted atomic write (".NAME.tmp-N").
func isLayoutEntry(name string) bool {
	return slices.Contains(layoutEntries(), name) || (strings.HasPrefix(name, ".") && strings.Contains(name, ".tmp-"))
}

// Prepare makes dir a data directory of this wasmkube (version names it in a new marker) and
// makes it private (0700).
//
// # Notes
//
//   - A missing or empty directory is created with a marker (Created).
//   - A directory without a marker that holds only what an older wasmkube writes there is
//     adopted: the marker is added and nothing else changes (Adopted).
//   - A directory without a marker that holds anything else, or whose marker is unreadable or of
//     another format, is an error that says what to do; nothing is written.
//   - Call it before anything else writes into dir, and hold the data dir's lock around the
//     start (a concurrent Prepare of the same directory may write the marker twice, harmlessly).
func Prepare(dir, version string) (State, error) {
	fi, err := os.Stat(dir)
	switch {
	case errors.Is(err, fs.ErrNotExist):
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return 0, fmt.Errorf("create data dir: %w", err)
		}
		return Created, writeMarker(dir, version, false)
	case err != nil:
		return 0, fmt.Errorf("data dir: %w", err)
	case !fi.IsDir():
		return 0, fmt.Errorf("data dir %s is not a directory: choose a directory (--data-dir or the profile's dataDir)", dir)
	}
	m, err := ReadMarker(dir)
	if err == nil {
		if err := checkFormat(dir, m); err != nil {
			return 0, err
		}
		return Marked, makePrivate(dir)
	}
	if !errors.Is(err, fs.ErrNotExist) {
		return 0, err
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return 0, fmt.Errorf("data dir: %w", err)
	}
	var foreign []string
	for _, e := range entries {
		if !isLayoutEntry(e.Name()) {
			foreign = append(foreign, e.Name())
		}
	}
	if len(foreign) > 0 {
		return 0, fmt.Errorf("data dir %s was not created by wasmkube: it has no %s and holds %s, which wasmkube never writes there; "+
			"choose a new or empty directory (--data-dir or the profile's dataDir)", dir, MarkerName, listSome(foreign))
	}
	if err := makePrivate(dir); err != nil {
		return 0, err
	}
	if len(entries) == 0 {
		return Created, writeMarker(dir, version, false)
	}
	return Adopted, writeMarker(dir, version, true)
}

// ReadMarker reads dir's marker; an error wrapping fs.ErrNotExist when it has none.
func ReadMarker(dir string) (*Marker, error) {
	path := filepath.Join(dir, MarkerName)
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var m Marker
	if err := json.Unmarshal(b, &m); err != nil || m.Kind != MarkerKind {
		if err == nil {
			err = fmt.Errorf("kind %q, want %q", m.Kind, MarkerKind)
		}
		return nil, fmt.Errorf("data dir marker %s is unreadable (%v): if the directory is a wasmkube data dir, remove the marker and start again (wasmkube adopts it), or choose another --data-dir", path, err)
	}
	return &m, nil
}

func checkFormat(dir string, m *Marker) error {
	switch {
	case m.FormatVersion > FormatVersion:
		return fmt.Errorf("data dir %s was written by wasmkube %s in data format %d; this wasmkube reads format %d: run wasmkube %s or newer on it, or choose another --data-dir (`wasmkube reset --yes` deletes it)",
			dir, m.CreatedBy, m.FormatVersion, FormatVersion, m.CreatedBy)
	case m.FormatVersion < 1:
		return fmt.Errorf("data dir marker %s has format %d, which no wasmkube writes: fix formatVersion, or choose another --data-dir",
			filepath.Join(dir, MarkerName), m.FormatVersion)
	}
	return nil
}

func writeMarker(dir, version string, adopted bool) error {
	b, err := json.MarshalIndent(Marker{
		Kind: MarkerKind, FormatVersion: FormatVersion, CreatedBy: version, Created: time.Now().UTC().Truncate(time.Second), Adopted: adopted,
	}, "", "  ")
	if err != nil {
		return err
	}
	return pki.WriteFileAtomic(filepath.Join(dir, MarkerName), append(b, '\n'))
}

func makePrivate(dir string) error {
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("data dir: %w", err)
	}
	if fi.Mode().Perm()&0o077 == 0 {
		return nil
	}
	if err := os.Chmod(dir, 0o700); err != nil {
		return fmt.Errorf("make data dir %s private: %w", dir, err)
	}
	return nil
}

func listSome(names []string) string {
	const shown = 3
	if len(names) <= shown {
		return strings.Join(names, ", ")
	}
	return fmt.Sprintf("%s and %d more", strings.Join(names[:shown], ", "), len(names)-shown)
}

// CheckRemovable reports why dir must not be deleted by `reset --yes`, or nil. profileFile is
// the profile's file ("" for a built-in profile).
//
// # Notes
//
//   - Refused: /, the home directory and its parents, the directory holding profileFile and its
//     parents, and any directory without a readable marker (wasmkube did not create it, or an
//     older wasmkube did: starting this version once adds the marker).
//   - Paths are compared after resolving symbolic links.
func CheckRemovable(dir, profileFile string) error {
	real, err := realPath(dir)
	if err != nil {
		return fmt.Errorf("data dir %s: %w", dir, err)
	}
	if real == string(filepath.Separator) {
		return fmt.Errorf("refusing to delete %s: it is the root directory; set dataDir in the profile or --data-dir to the cluster's own directory", dir)
	}
	if home, err := os.UserHomeDir(); err == nil {
		if h, err := realPath(home); err == nil && within(h, real) {
			return fmt.Errorf("refusing to delete %s: it is your home directory or holds it; set dataDir in the profile or --data-dir to the cluster's own directory", dir)
		}
	}
	if profileFile != "" {
		if p, err := realPath(filepath.Dir(profileFile)); err == nil && within(p, real) {
			return fmt.Errorf("refusing to delete %s: it holds the profile file %s; set the profile's dataDir to a directory of its own (e.g. dataDir: data)", dir, profileFile)
		}
	}
	if _, err := ReadMarker(dir); err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("refusing to delete %s: it has no %s, so wasmkube did not create it (a data dir of a wasmkube before the marker gets one on its next `wasmkube up`); delete it yourself if you are sure", dir, MarkerName)
		}
		return fmt.Errorf("refusing to delete %s: %w", dir, err)
	}
	return nil
}

// within reports whether path is dir or inside it; both are clean absolute paths.
func within(path, dir string) bool {
	rel, err := filepath.Rel(dir, path)
	return err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator))
}

func realPath(p string) (string, error) {
	abs, err := filepath.Abs(p)
	if err != nil {
		return "", err
	}
	return filepath.EvalSymlinks(abs)
}
