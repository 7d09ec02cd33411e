package profiles

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
)

func TestValidProfiles(t *testing.T) {
	files, _ := filepath.Glob("testdata/valid/*.yaml")
	if len(files) == 0 {
		t.Fatal("no valid testdata")
	}
	for _, f := range files {
		t.Run(filepath.Base(f), func(t *testing.T) {
			if _, err := LoadFile(f); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestFullProfileDecodes(t *testing.T) {
	p, err := LoadFile("testdata/valid/full.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.EffectivePort() != 0 || p.ControllersEnabled() || p.Etcd.External.Prefix != "/full" {
		t.Errorf("port %d controllers %v etcd %+v", p.EffectivePort(), p.ControllersEnabled(), p.Etcd.External)
	}
	if got := p.Authentication.Modules[0].Name; got != "magic-authn" {
		t.Errorf("defaulted module name = %q, want magic-authn", got)
	}
	if ttl := p.Authorization.CacheTTL; ttl == nil || ttl.Duration.Seconds() != 5 {
		t.Errorf("authorization.cacheTTL decoded as %v, want 5s", ttl)
	}
	m := p.Admission.Modules[0]
	if !m.IsMutating() || m.Rules[0].Resources[0] != "configmaps" || m.Timeout.Duration.Seconds() != 2 || *m.PoolSize != 4 {
		t.Errorf("admission module decoded as %+v", m)
	}
	g := p.Admission.Modules[1].Grants
	if len(g.ContextAwareResources) != 2 || g.ContextAwareResources[0] != (ContextAwareResource{APIVersion: "networking.k8s.io/v1", Kind: "Ingress"}) || g.HostCapabilities[1] != "net/*" {
		t.Errorf("a Kubewarden policy's grants decoded as %+v", g)
	}
	if want := filepath.Join(filepath.Dir(p.Source), "data"); p.ResolvePath(p.DataDir) != want {
		t.Errorf("dataDir resolves to %s, want %s", p.ResolvePath(p.DataDir), want)
	}
}

func TestSmallestProfileDefaults(t *testing.T) {
	p, err := LoadFile("testdata/valid/smallest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if p.EffectiveAddress() != "127.0.0.1" || p.EffectivePort() != 6443 || !p.ControllersEnabled() || p.ContextName() != "wasmkube-smallest" {
		t.Errorf("defaults: %s %d %v %s", p.EffectiveAddress(), p.EffectivePort(), p.ControllersEnabled(), p.ContextName())
	}
	if p.EtcdFsync() {
		t.Error("etcd.fsync defaults to true, want false")
	}
}

// TestEtcdFsync: etcd.fsync turns the embedded etcd's syncing on.
func TestEtcdFsync(t *testing.T) {
	p, err := Parse([]byte("apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: durable\netcd:\n  fsync: true\n"), "durable.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if !p.EtcdFsync() {
		t.Error("etcd.fsync: true decoded as false")
	}
}

func TestInvalidProfiles(t *testing.T) {
	// Each error must name the file, and where it can, the line and the field.
	cases := map[string][]string{
		"unknown-field.yaml":      {"unknown-field.yaml:5", `unknown field "apiserver.extraArg"`},
		"wrong-type.yaml":         {"wrong-type.yaml:4", `field "port"`, "want an integer"},
		"wrong-type-in-list.yaml": {"wrong-type-in-list.yaml:9", `field "admission.modules[1].poolSize"`, "got string, want an integer"},
		"wrong-kind.yaml":         {"wrong-kind.yaml:2", `kind "Cluster"`},
		"wrong-version.yaml":      {"wrong-version.yaml:1", `"wasmkube.dev/v1alpha1"`},
		"bad-values.yaml":         {"bad-values.yaml:3: name", "bad-values.yaml:4: address", "bad-values.yaml:5: port"},
		"duplicate-field.yaml":    {"duplicate-field.yaml", "line 5", `"port" already defined`},
		"owned-flag.yaml":         {"owned-flag.yaml:5", "apiserver.extraArgs[0]", "profile field port"},
		"bad-nodes.yaml": {
			"bad-nodes.yaml:5: scheduler.extraArgs[0]: Forbidden: --leader-elect: wasmkube runs one kube-scheduler without leader election",
			"scheduler.extraArgs[1]: Forbidden: --write-config-to", "scheduler.extraArgs[2]: Forbidden: --v: logging is the process's",
			"scheduler.extraArgs[3]: Forbidden: --leader-elect-lease-duration",
			"bad-nodes.yaml:8: nodes.cpu: Invalid value: \"lots\"", `nodes.memory: Invalid value: "-1Gi"`,
			"bad-nodes.yaml:10: nodes.pods: Invalid value: 251", "must be 1-250",
			"bad-nodes.yaml:3: name", "too long for node names", "-node-999 has 66 characters",
		},

		"bad-modules.yaml": {
			"authorization.chain", "add WASM", "authorization.cacheTTL",
			"authorization.modules[0].failurePolicy", `"Maybe"`,
			"admission.modules[0].timeout", "admission.modules[0].isolation", "admission.modules[0].rules[0].operations[0]",
			`admission.modules[1].name: Duplicate value: "a"`,
		},
		"external-etcd-empty.yaml": {"etcd.external.servers: Required value"},
		"external-etcd-fsync.yaml": {"external-etcd-fsync.yaml:5: etcd.fsync: Forbidden", "embedded etcd only"},
		"bad-admission.yaml": {
			"bad-admission.yaml:7: admission.modules[0].mode", `"audit"`,
			"admission.modules[0].grants.readOnlyDirs[0].hostPath: Required value",
			"admission.modules[0].grants.readOnlyDirs[0].guestPath", "absolute path",
		},
		"not-yaml.yaml": {"not-yaml.yaml", "not valid YAML"},
		"bad-sources.yaml": {
			"bad-sources.yaml:6: admission.modules[0].module", "use https://",
			"admission.modules[1].sha256: Required value", "needs its digest pinned",
			`bad-sources.yaml:10: admission.modules[2].sha256: Invalid value: "abc"`,
			"admission.modules[3].module", "write the scheme in lower case",
		},
		"bad-grants.yaml": {
			"bad-grants.yaml:8: authentication.modules[0].grants.contextAwareResources: Forbidden: applies to admission modules of type: kubewarden only",
			"admission.modules[0].grants.hostCapabilities: Forbidden: applies to admission modules of type: kubewarden only",
			`admission.modules[1].grants.contextAwareResources[0].apiVersion: Invalid value: "networking.k8s.io"`,
			"admission.modules[1].grants.contextAwareResources[1].kind: Required value",
			`admission.modules[1].grants.contextAwareResources[3]: Duplicate value: "v1 Service"`,
			`admission.modules[1].grants.hostCapabilities[0]: Invalid value: "dns/lookup"`,
			`admission.modules[1].grants.hostCapabilities[1]: Invalid value: "kubernetes"`,
		},
	}
	files, _ := filepath.Glob("testdata/invalid/*.yaml")
	if len(files) != len(cases) {
		t.Fatalf("%d invalid testdata files, %d cases: keep them in step", len(files), len(cases))
	}
	for _, f := range files {
		name := filepath.Base(f)
		t.Run(name, func(t *testing.T) {
			want, ok := cases[name]
			if !ok {
				t.Fatalf("no expectation for %s", name)
			}
			_, err := LoadFile(f)
			if err == nil {
				t.Fatal("loaded without error")
			}
			for _, w := range want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error lacks %q:\n%v", w, err)
				}
			}
		})
	}
}

func TestResolveOrder(t *testing.T) {
	userDir := t.TempDir()
	f := NewFinder(userDir)

	p, err := f.Resolve("demo")
	if err != nil || p.Source != "builtin:demo" {
		t.Fatalf("builtin demo: %v %v", p, err)
	}
	user := "apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: demo\nport: 7443\n"
	if err := os.WriteFile(filepath.Join(userDir, "demo.yaml"), []byte(user), 0o600); err != nil {
		t.Fatal(err)
	}
	p, err = f.Resolve("demo")
	if err != nil || p.Source != filepath.Join(userDir, "demo.yaml") || p.EffectivePort() != 7443 {
		t.Fatalf("user profile should shadow the builtin: %+v %v", p, err)
	}
	p, err = f.Resolve("testdata/valid/smallest.yaml")
	if err != nil || p.Name != "smallest" {
		t.Fatalf("by path: %v %v", p, err)
	}
	_, err = f.Resolve("nope")
	if !errors.Is(err, ErrNotFound) || !strings.Contains(err.Error(), "demo, minimal") {
		t.Fatalf("missing profile: %v", err)
	}
	entries := f.List()
	var shadowed bool
	for _, e := range entries {
		if e.Name == "demo" && e.Source == "builtin:demo" {
			shadowed = e.Shadowed
		}
	}
	if !shadowed {
		t.Errorf("List did not mark builtin demo as shadowed: %+v", entries)
	}
}

func TestBuiltinProfilesLoad(t *testing.T) {
	names := BuiltinNames()
	if len(names) < 2 {
		t.Fatalf("builtin profiles: %v", names)
	}
	for _, n := range names {
		if _, err := NewFinder("").Resolve(n); err != nil {
			t.Errorf("builtin %s: %v", n, err)
		}
	}
}

// TestShippedProfilesLoad loads every profile file in the repository outside testdata.
func TestShippedProfilesLoad(t *testing.T) {
	count := 0
	err := filepath.WalkDir("..", func(path string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == ".git") {
			return filepath.SkipDir
		}
		if d.IsDir() || !(strings.HasSuffix(path, ".yaml") || strings.HasSuffix(path, ".yml")) {
			return nil
		}
		data, err := os.ReadFile(path)
		if err != nil {
			return err
		}
		if !strings.Contains(string(data), "kind: Profile") {
			return nil
		}
		count++
		if _, err := Parse(data, path); err != nil {
			t.Errorf("%s: %v", path, err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if count < 2 {
		t.Fatalf("found %d profile files, want at least the built-in ones", count)
	}
}

var yamlBlockRE = regexp.MustCompile("(?s)```yaml\n(.*?)```")

// TestDocsExamplesLoad parses every profile and test suite example in the docs, so the docs
// cannot drift.
func TestDocsExamplesLoad(t *testing.T) {
	docs, _ := filepath.Glob("../docs/*.md")
	readmes, _ := filepath.Glob("../examples/*/README.md")
	docs = append(append(docs, "../README.md"), readmes...)
	count := 0
	for _, doc := range docs {
		data, err := os.ReadFile(doc)
		if err != nil {
			t.Fatal(err)
		}
		for i, m := range yamlBlockRE.FindAllStringSubmatch(string(data), -1) {
			source := fmt.Sprintf("%s example %d", doc, i+1)
			var err error
			switch {
			case strings.Contains(m[1], "kind: Profile"):
				_, err = Parse([]byte(m[1]), source)
			case strings.Contains(m[1], "kind: "+TestSuiteKind):
				_, err = ParseTestSuite([]byte(m[1]), source)
			case strings.HasPrefix(m[1], "modules:"): // the original's module list
				_, err = ParseModuleList([]byte(m[1]), source, "/", HookAdmission)
			default:
				continue
			}
			count++
			if err != nil {
				t.Error(err)
			}
		}
	}
	if count == 0 {
		t.Fatal("no profile examples found in docs/*.md")
	}
}

// TestDeprecations: the old admission type wasi loads and is named as deprecated; envelope and
// the default are not.
func TestDeprecations(t *testing.T) {
	doc := func(typ string) []byte {
		return []byte("apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: d\nadmission:\n  modules:\n  - module: builtin:magic-validate\n    rules: [{operations: [CREATE], apiGroups: [\"\"], apiVersions: [v1], resources: [configmaps]}]\n" + typ)
	}
	p, err := Parse(doc("    type: wasi\n"), "d.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if d := p.Deprecations(); len(d) != 1 || !strings.Contains(d[0], "admission.modules[0].type") || !strings.Contains(d[0], "envelope") {
		t.Errorf("deprecations %q", d)
	}
	for _, typ := range []string{"    type: envelope\n", ""} {
		p, err := Parse(doc(typ), "d.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if d := p.Deprecations(); len(d) != 0 {
			t.Errorf("%q: deprecations %q", typ, d)
		}
	}
}

func TestDefaultModuleNameOfRemoteModules(t *testing.T) {
	for ref, want := range map[string]string{
		"registry://ghcr.io/kubewarden/policies/pod-privileged:v0.2.2":   "pod-privileged",
		"oci://localhost:5000/p/magic@sha256:" + strings.Repeat("a", 64): "magic",
		"registry://localhost:5000/magic":                                "magic",
		"https://example.com:8443/mods/magic-validate.wasm?x=1":          "magic-validate",
		"builtin:magic-authn":                                            "magic-authn",
		"dir/m.wasm":                                                     "m",
	} {
		if got := DefaultModuleName(ref); got != want {
			t.Errorf("DefaultModuleName(%q) = %q, want %q", ref, got, want)
		}
	}
}

func TestSchedulerFollowsNodes(t *testing.T) {
	cases := []struct {
		doc   string
		sched bool
		nodes int32
	}{
		{"", false, 0},
		{"nodes: {count: 2}\n", true, 2},
		{"nodes: {count: 2}\nscheduler: {enabled: false}\n", false, 2},
		{"scheduler: {enabled: true}\n", true, 0},
		{"nodes: {count: 0}\n", false, 0},
	}
	if _, err := Parse([]byte("apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: sim\nnodes: {count: 1001}\n"), "sim.yaml"); err == nil ||
		!strings.Contains(err.Error(), "sim.yaml:4: nodes.count: Invalid value: 1001") || !strings.Contains(err.Error(), "must be 0-1000") {
		t.Errorf("1001 nodes: %v, want the bound named", err)
	}
	for _, c := range cases {
		p, err := Parse([]byte("apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: sim\n"+c.doc), "sim.yaml")
		if err != nil {
			t.Fatal(err)
		}
		if p.SchedulerEnabled() != c.sched || p.NodeCount() != c.nodes {
			t.Errorf("%q: scheduler %v, nodes %d; want %v, %d", c.doc, p.SchedulerEnabled(), p.NodeCount(), c.sched, c.nodes)
		}
		if p.Nodes != nil && (p.Nodes.EffectiveCPU() != "4" || p.Nodes.EffectiveMemory() != "16Gi" || p.Nodes.EffectivePods() != 110) {
			t.Errorf("%q: node capacity defaults %s %s %d", c.doc, p.Nodes.EffectiveCPU(), p.Nodes.EffectiveMemory(), p.Nodes.EffectivePods())
		}
	}
}
