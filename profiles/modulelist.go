package profiles

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"k8s.io/apimachinery/pkg/runtime"
	"k8s.io/apimachinery/pkg/runtime/serializer"
	"k8s.io/apimachinery/pkg/util/sets"
	"k8s.io/apimachinery/pkg/util/validation/field"
	apiserverapi "k8s.io/apiserver/pkg/apis/apiserver"
	apiserverinstall "k8s.io/apiserver/pkg/apis/apiserver/install"
)

// The original proof of concept configured its modules with files of its own, named by the flags
// --authentication-wasm-config-file and --authorization-wasm-config-file and by the WASM plugin's
// entry in an AdmissionConfiguration. They hold one list, in the same format for the three
// hooks (docs/profiles.md, "The original flags"):
//
//	modules:
//	- name: my-module        # optional; default: the module file's base name
//	  module: /path/to/file.wasm
//	  settings: {}
//	  debug: false
//	  mutating: false        # admission only
//	  type: wasi             # admission only
//	  rules: [...]           # admission only
//
// The profile's per-module fields (timeout, memoryLimit, isolation, poolSize, failurePolicy,
// selectors, matchConditions) are accepted too.

// Hook names one of the three extension points a module list configures.
type Hook string

// The hooks of a module list.
const (
	HookAuthentication Hook = "authentication"
	HookAuthorization  Hook = "authorization"
	HookAdmission      Hook = "admission"
)

// LoadModuleList reads the original proof of concept's module configuration file for hook.
// Relative module paths and granted directories are made absolute against the file's directory.
func LoadModuleList(path string, hook Hook) (*Admission, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read %s module configuration: %w", hook, err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		abs = path
	}
	return ParseModuleList(data, abs, filepath.Dir(abs), hook)
}

// ParseModuleList decodes a module list for hook strictly (unknown fields, wrong types and
// fields of another hook are errors naming the line) and makes relative module paths absolute
// against baseDir. The result is in the admission form, the widest; authentication and
// authorization lists leave the admission fields empty, and an authorization list keeps its
// failurePolicy (NoOpinion|Deny) in FailurePolicy.
func ParseModuleList(data []byte, source, baseDir string, hook Hook) (*Admission, error) {
	what := string(hook) + " module configuration"
	lines, err := newLineIndex(data)
	if err != nil {
		return nil, fmt.Errorf("%s %s: not valid YAML: %w", what, source, err)
	}
	list := &Admission{}
	validate := func() field.ErrorList { return validateModuleList(list, hook) }
	if err := decodeStrict(data, what, source, lines, list, validate); err != nil {
		return nil, err
	}
	for i := range list.Modules {
		m := &list.Modules[i].Module
		if !strings.HasPrefix(m.Module, BuiltinPrefix) && !filepath.IsAbs(m.Module) {
			m.Module = filepath.Join(baseDir, m.Module)
		}
		if m.Grants != nil {
			for j, d := range m.Grants.ReadOnlyDirs {
				if !filepath.IsAbs(d.HostPath) {
					m.Grants.ReadOnlyDirs[j].HostPath = filepath.Join(baseDir, d.HostPath)
				}
			}
		}
	}
	return list, nil
}

func validateModuleList(list *Admission, hook Hook) field.ErrorList {
	if hook == HookAdmission {
		return validateAdmission(list, nil)
	}
	var errs field.ErrorList
	names := sets.New[string]()
	for i := range list.Modules {
		m := &list.Modules[i]
		p := field.NewPath("modules").Index(i)
		errs = append(errs, validateModule(&m.Module, p, names, false)...)
		admissionOnly := map[string]bool{
			"mutating": m.Mutating != nil, "type": m.Type != "", "executionMode": m.ExecutionMode != "", "entrypoint": m.Entrypoint != "",
			"rules": len(m.Rules) > 0, "namespaceSelector": m.NamespaceSelector != nil,
			"objectSelector": m.ObjectSelector != nil, "matchConditions": len(m.MatchConditions) > 0,
			"failurePolicy": hook == HookAuthentication && m.FailurePolicy != "",
			"mode":          m.Mode != "", "message": m.Message != "",
		}
		for _, f := range sets.List(sets.KeySet(admissionOnly)) {
			if admissionOnly[f] {
				errs = append(errs, field.Forbidden(p.Child(f), fmt.Sprintf("not a field of %s modules; remove it", hook)))
			}
		}
		if hook == HookAuthorization && !authzFailurePolicies.Has(m.FailurePolicy) {
			errs = append(errs, field.NotSupported(p.Child("failurePolicy"), m.FailurePolicy, []string{"NoOpinion", "Deny"}))
		}
	}
	return errs
}

// LoadAdmissionConfigModules reads the module list of the WASM plugin's entry in an
// apiserver.config.k8s.io AdmissionConfiguration file (the original's
// --admission-control-config-file), given inline (configuration:) or by path: (relative to the
// AdmissionConfiguration file). found is false when the file has no WASM entry.
func LoadAdmissionConfigModules(file, plugin string) (_ *Admission, found bool, err error) {
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, false, fmt.Errorf("read admission configuration: %w", err)
	}
	abs, err := filepath.Abs(file)
	if err != nil {
		abs = file
	}
	scheme := runtime.NewScheme()
	apiserverinstall.Install(scheme)
	obj, err := runtime.Decode(serializer.NewCodecFactory(scheme, serializer.EnableStrict).UniversalDecoder(), data)
	if err != nil {
		return nil, false, fmt.Errorf("admission configuration %s: %w", abs, err)
	}
	cfg, ok := obj.(*apiserverapi.AdmissionConfiguration)
	if !ok {
		return nil, false, fmt.Errorf("admission configuration %s: a %T, not an AdmissionConfiguration", abs, obj)
	}
	for _, pc := range cfg.Plugins {
		if pc.Name != plugin {
			continue
		}
		switch {
		case pc.Configuration != nil:
			list, err := ParseModuleList(pc.Configuration.Raw, abs+" (plugin "+plugin+", configuration)", filepath.Dir(abs), HookAdmission)
			return list, true, err
		case pc.Path != "":
			path := pc.Path
			if !filepath.IsAbs(path) {
				path = filepath.Join(filepath.Dir(abs), path)
			}
			list, err := LoadModuleList(path, HookAdmission)
			return list, true, err
		}
		return nil, true, fmt.Errorf("admission configuration %s: plugin %s has neither path nor configuration", abs, plugin)
	}
	return nil, false, nil
}
