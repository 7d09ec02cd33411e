// Package scaffold makes a new module's directory for `wasmkube module new`: main.go on the Go
// SDK for one hook, a go.mod with the SDK's source beside it, a Makefile, a request and settings
// for `module run`, a test suite that passes as written, and a profile that runs the demo
// cluster with the module added. Plan describes the files (no effects, so a dry run can list
// them and tests can check them); Write writes them.
package scaffold

import (
	"bytes"
	"embed"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"strings"
	"text/template"

	"sigs.k8s.io/yaml"
)

//go:embed templates/*.tmpl
var templates embed.FS

// The hooks a new module can serve.
const (
	HookValidate = "validate"
	HookMutate   = "mutate"
	HookAuthn    = "authn"
	HookAuthz    = "authz"
)

// hooks lists the hooks, for errors.
var hooks = []string{HookValidate, HookMutate, HookAuthn, HookAuthz}

// Options describe the module to make.
type Options struct {
	// Name names the module, its directory's default and its Go module: lowercase letters,
	// digits and dashes, starting with a letter, at most 63 characters.
	Name string
	// Hook is validate, mutate, authn or authz.
	Hook string
	// Kubewarden makes a Kubewarden waPC policy (hook validate) instead of a module of the
	// original ABI.
	Kubewarden bool
	// Version is wasmkube's version, recorded in the files.
	Version string
	// SDK is the Go SDK's source (guest.Source()): written to sdk/, without its tests.
	SDK fs.FS
	// DemoProfile is the demo profile's YAML; profile.yaml is it with the module added.
	DemoProfile []byte
}

// File is one file of a new module, its path relative to the module's directory.
type File struct {
	Path string
	Data []byte
}

var nameRE = regexp.MustCompile(`^[a-z][a-z0-9-]{0,62}$`)

// CheckName says why name cannot name a module, or nil.
func CheckName(name string) error {
	if !nameRE.MatchString(name) || strings.HasSuffix(name, "-") || strings.Contains(name, "--") {
		return fmt.Errorf("module name %q: use lowercase letters, digits and single dashes, starting with a letter and not ending with a dash, at most 63 characters (it names the Go module, the .wasm file and the module in metrics and errors)", name)
	}
	return nil
}

// variant is what differs between the kinds of module.
type variant struct {
	main, suite, request string // template names
	settings             string // settings.yaml
	runFlags             string
	description          string
	tryIt                string
	list                 string         // the profile's module list it joins
	entry                map[string]any // its profile entry, without module
}

var configMapRule = []any{map[string]any{"operations": []any{"CREATE", "UPDATE"}, "apiGroups": []any{""}, "apiVersions": []any{"v1"}, "resources": []any{"configmaps"}}}

func variantOf(o Options) variant {
	if o.Kubewarden {
		return variant{main: "main.go.kubewarden", suite: "suite.yaml.kubewarden", request: "request.yaml.admission",
			settings: "required_labels: [team]\n", runFlags: "--hook validate --type kubewarden",
			description: "Kubewarden policy (waPC) that requires labels",
			tryIt:       "\n```sh\nwasmkube kubectl create configmap app   # denied: ConfigMap app lacks labels: team\n```\n",
			list:        "admission", entry: map[string]any{"type": "kubewarden", "settings": map[string]any{"required_labels": []any{"team"}}}}
	}
	switch o.Hook {
	case HookMutate:
		return variant{main: "main.go.mutate", suite: "suite.yaml.mutate", request: "request.yaml.admission",
			settings: "owner: platform\n", runFlags: "--hook validate --mutating",
			description: "mutating admission module that labels ConfigMaps with an owner",
			tryIt:       "\n```sh\nwasmkube kubectl create configmap app && wasmkube kubectl get configmap app --show-labels   # owner=platform\n```\n",
			list:        "admission", entry: map[string]any{"mutating": true, "settings": map[string]any{"owner": "platform"}, "rules": configMapRule}}
	case HookAuthn:
		return variant{main: "main.go.authn", suite: "suite.yaml.authn", request: "request.yaml.authn",
			settings: "tokens: {" + o.Name + "-token: alice}\n", runFlags: "--hook authn",
			description: "authentication module that knows a list of tokens",
			tryIt:       "\n```sh\nwasmkube kubectl --token " + o.Name + "-token auth whoami   # alice\n```\n",
			list:        "authentication", entry: map[string]any{"settings": map[string]any{"tokens": map[string]any{o.Name + "-token": "alice"}}}}
	case HookAuthz:
		return variant{main: "main.go.authz", suite: "suite.yaml.authz", request: "request.yaml.authz",
			settings: "group: readers\nresources: [configmaps]\n", runFlags: "--hook authz",
			description: "authorization module that lets a group read some resources",
			tryIt:       "\n```sh\nwasmkube kubectl auth can-i list configmaps --as alice --as-group readers   # yes\n```\n",
			list:        "authorization", entry: map[string]any{"settings": map[string]any{"group": "readers", "resources": []any{"configmaps"}}}}
	}
	return variant{main: "main.go.validate", suite: "suite.yaml.validate", request: "request.yaml.admission",
		settings: "forbiddenKeys: [password]\n", runFlags: "--hook validate",
		description: "validating admission module that forbids keys in ConfigMaps",
		tryIt:       "\n```sh\nwasmkube kubectl create configmap app --from-literal=password=hunter2   # denied\n```\n",
		list:        "admission", entry: map[string]any{"settings": map[string]any{"forbiddenKeys": []any{"password"}}, "rules": configMapRule}}
}

// Plan returns the files of the module o describes, in the order they are written.
func Plan(o Options) ([]File, error) {
	if err := CheckName(o.Name); err != nil {
		return nil, err
	}
	known := false
	for _, h := range hooks {
		known = known || h == o.Hook
	}
	switch {
	case !known:
		return nil, fmt.Errorf("hook %q: use one of %s", o.Hook, strings.Join(hooks, ", "))
	case o.Kubewarden && o.Hook != HookValidate:
		return nil, fmt.Errorf("a Kubewarden policy validates admission requests: use --hook validate with --kubewarden (hook %q)", o.Hook)
	}
	v := variantOf(o)
	data := map[string]any{"Name": o.Name, "Version": o.Version, "Kubewarden": o.Kubewarden,
		"RunFlags": v.runFlags, "Description": v.description, "TryIt": v.tryIt}
	var files []File
	for _, t := range []struct{ path, tmpl string }{
		{"main.go", v.main}, {"go.mod", "go.mod"}, {"Makefile", "Makefile"}, {"suite.yaml", v.suite},
		{"request.yaml", v.request}, {"README.md", "README.md"},
	} {
		b, err := render(t.tmpl, data)
		if err != nil {
			return nil, err
		}
		files = append(files, File{t.path, b})
	}
	if o.Kubewarden {
		b, err := render("metadata.yml", data)
		if err != nil {
			return nil, err
		}
		files = append(files, File{"metadata.yml", b})
	}
	files = append(files, File{"settings.yaml", []byte(v.settings)})
	profile, err := demoWith(o.DemoProfile, o.Name, v)
	if err != nil {
		return nil, err
	}
	files = append(files, File{"profile.yaml", profile})
	sdk, err := sdkFiles(o.SDK)
	if err != nil {
		return nil, err
	}
	return append(files, sdk...), nil
}

func render(name string, data any) ([]byte, error) {
	t, err := template.ParseFS(templates, "templates/"+name+".tmpl")
	if err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	var b bytes.Buffer
	if err := t.Execute(&b, data); err != nil {
		return nil, fmt.Errorf("template %s: %w", name, err)
	}
	return b.Bytes(), nil
}

// demoWith is the demo profile with the module's entry at the end of its list. The YAML is
// rewritten from its data: the demo's comments do not survive.
func demoWith(demo []byte, name string, v variant) ([]byte, error) {
	var p map[string]any
	if err := yaml.Unmarshal(demo, &p); err != nil || p == nil {
		return nil, fmt.Errorf("the demo profile: %v", err)
	}
	section, _ := p[v.list].(map[string]any)
	if section == nil {
		section = map[string]any{}
	}
	entry := map[string]any{"module": name + ".wasm"}
	for k, val := range v.entry {
		entry[k] = val
	}
	modules, _ := section["modules"].([]any)
	section["modules"] = append(modules, entry)
	p[v.list] = section
	b, err := yaml.Marshal(p)
	if err != nil {
		return nil, err
	}
	head := "# The demo profile with " + name + " added (wasmkube module new): `wasmkube up --profile profile.yaml`\n" +
		"# runs the demo cluster (its data and kubeconfig context) with it. docs/profiles.md in wasmkube has the fields.\n"
	return append([]byte(head), b...), nil
}

// sdkFiles are the SDK's source files under sdk/, without tests.
func sdkFiles(sdk fs.FS) ([]File, error) {
	if sdk == nil {
		return nil, errors.New("the SDK's source was not provided (Options.SDK)")
	}
	var files []File
	err := fs.WalkDir(sdk, ".", func(p string, d fs.DirEntry, err error) error {
		// source.go embeds the SDK's source for wasmkube itself: a module has no use for it.
		if err != nil || d.IsDir() || strings.HasSuffix(p, "_test.go") || p == "source.go" {
			return err
		}
		b, err := fs.ReadFile(sdk, p)
		if err != nil {
			return err
		}
		files = append(files, File{path.Join("sdk", p), b})
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("the SDK's source: %w", err)
	}
	if len(files) == 0 {
		return nil, errors.New("the SDK's source is empty")
	}
	return files, nil
}

// Write writes files under dir, which must not exist or be empty (nothing is overwritten).
// Files are 0644, directories 0755: a module's source is not secret.
func Write(dir string, files []File) error {
	entries, err := os.ReadDir(dir)
	switch {
	case err == nil && len(entries) > 0:
		return fmt.Errorf("%s exists and is not empty: choose another directory (--dir) or name", dir)
	case err != nil && !errors.Is(err, fs.ErrNotExist):
		return err
	}
	for _, f := range files {
		p := filepath.Join(dir, filepath.FromSlash(f.Path))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			return err
		}
		if err := os.WriteFile(p, f.Data, 0o644); err != nil {
			return err
		}
	}
	return nil
}
