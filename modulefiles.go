package wasmkube

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"strings"

	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm/source"
)

// CheckModuleFiles checks, without loading or fetching anything, that the module files and the
// granted directories of p's module entries (and of the original proof of concept's config files
// that opts' flags name) exist: the mistakes `up` meets only after etcd has started, each named
// by its entry. `wasmkube up --dry-run` runs it. Remote modules are not checked.
func CheckModuleFiles(p *profiles.Loaded, opts Options) error {
	flags := profiles.TakeWASMFlags(p.Profile, opts.APIServerArgs)
	c, err := collectModules(p, flags.Modules)
	if err != nil {
		return err
	}
	var errs []error
	check := func(where string, m profiles.Module) {
		errs = append(errs, checkModuleFile(where, opts.BuiltinModules, p.ResolvePath, m)...)
	}
	for _, e := range c.authn {
		check(e.where, e.m)
	}
	for _, e := range c.authz {
		check(e.where, e.m.Module)
	}
	for _, e := range c.admission {
		check(e.where, e.m.Module)
	}
	return errors.Join(errs...)
}

// checkModuleFile checks one entry's module file (or built-in module) and granted directories.
func checkModuleFile(where string, builtin fs.FS, resolve func(string) string, m profiles.Module) []error {
	var errs []error
	switch {
	case source.IsRemote(m.Module):
	case strings.HasPrefix(m.Module, profiles.BuiltinPrefix):
		if _, err := moduleBytes(builtin, resolve, m.Module); err != nil {
			errs = append(errs, fmt.Errorf("%s: %w", where, err))
		}
	default:
		if st, err := os.Stat(resolve(m.Module)); err != nil || st.IsDir() {
			errs = append(errs, fmt.Errorf("%s: module %s is not a file (a relative path is taken from the profile file's directory)", where, resolve(m.Module)))
		}
	}
	if m.Grants == nil {
		return errs
	}
	for i, d := range m.Grants.ReadOnlyDirs {
		if st, err := os.Stat(resolve(d.HostPath)); err != nil || !st.IsDir() {
			errs = append(errs, fmt.Errorf("%s: grants.readOnlyDirs[%d].hostPath: %s is not a directory (a relative path is taken from the profile file's directory)", where, i, resolve(d.HostPath)))
		}
	}
	return errs
}
