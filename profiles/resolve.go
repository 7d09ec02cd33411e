package profiles

import (
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

//go:embed builtin/*.yaml
var builtinFS embed.FS

// Finder locates profiles by name or path. The zero value looks nowhere but the built-in
// profiles; NewFinder adds the user's profile directory.
type Finder struct {
	// UserDir holds user profiles as NAME.yaml, normally $XDG_CONFIG_HOME/wasmkube/profiles.
	UserDir string
}

// NewFinder returns a Finder that looks in userDir, then the built-in profiles.
func NewFinder(userDir string) Finder { return Finder{UserDir: userDir} }

// Resolve finds a profile by path or name, in this order:
//  1. ref is the path of an existing file (or contains a path separator, or ends in .yaml/.yml);
//  2. UserDir/NAME.yaml;
//  3. the built-in profile NAME.
func (f Finder) Resolve(ref string) (*Loaded, error) {
	if ref == "" {
		return nil, errors.New("no profile given: pass --profile NAME or a path to a profile file")
	}
	if looksLikePath(ref) {
		return LoadFile(ref)
	}
	if f.UserDir != "" {
		p := filepath.Join(f.UserDir, ref+".yaml")
		if _, err := os.Stat(p); err == nil {
			return LoadFile(p)
		}
	}
	if data, err := builtinFS.ReadFile("builtin/" + ref + ".yaml"); err == nil {
		return Parse(data, BuiltinPrefix+ref)
	}
	var where []string
	if f.UserDir != "" {
		where = append(where, filepath.Join(f.UserDir, ref+".yaml"))
	}
	where = append(where, "the built-in profiles ("+strings.Join(BuiltinNames(), ", ")+")")
	return nil, fmt.Errorf("%w: %q is not a file, and no profile of that name is in %s; `wasmkube profiles list` shows what exists",
		ErrNotFound, ref, strings.Join(where, " or "))
}

func looksLikePath(ref string) bool {
	if strings.ContainsRune(ref, filepath.Separator) || strings.ContainsRune(ref, '/') ||
		strings.HasSuffix(ref, ".yaml") || strings.HasSuffix(ref, ".yml") {
		return true
	}
	st, err := os.Stat(ref)
	return err == nil && st.Mode().IsRegular()
}

// BuiltinNames lists the profiles built into the binary.
func BuiltinNames() []string {
	entries, _ := fs.ReadDir(builtinFS, "builtin")
	names := make([]string, 0, len(entries))
	for _, e := range entries {
		names = append(names, strings.TrimSuffix(e.Name(), ".yaml"))
	}
	sort.Strings(names)
	return names
}

// BuiltinSource returns the YAML of a built-in profile.
func BuiltinSource(name string) ([]byte, bool) {
	data, err := builtinFS.ReadFile("builtin/" + name + ".yaml")
	return data, err == nil
}

// Entry is one profile that List found.
type Entry struct {
	Name   string
	Source string
	// Err is set when the profile does not load.
	Err error
	// Shadowed is true for a built-in profile hidden by a user profile of the same name.
	Shadowed bool
}

// List returns the user profiles then the built-in ones, each loaded to report errors.
func (f Finder) List() []Entry {
	var out []Entry
	user := map[string]bool{}
	if f.UserDir != "" {
		matches, _ := filepath.Glob(filepath.Join(f.UserDir, "*.yaml"))
		sort.Strings(matches)
		for _, m := range matches {
			name := strings.TrimSuffix(filepath.Base(m), ".yaml")
			_, err := LoadFile(m)
			out = append(out, Entry{Name: name, Source: m, Err: err})
			user[name] = true
		}
	}
	for _, name := range BuiltinNames() {
		data, _ := BuiltinSource(name)
		_, err := Parse(data, BuiltinPrefix+name)
		out = append(out, Entry{Name: name, Source: BuiltinPrefix + name, Err: err, Shadowed: user[name]})
	}
	return out
}
