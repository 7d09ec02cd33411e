// Package wasmkubetest runs a real wasmkube cluster for Go tests: an embedded etcd and an
// unmodified kube-apiserver in the test process, with the modules a test asks for, and nothing
// to download or install. It is to wasmkube what net/http/httptest is to net/http.
//
//	func TestMain(m *testing.M) { os.Exit(wasmkubetest.Main(m)) }
//
//	func TestMyPolicy(t *testing.T) {
//		env := wasmkubetest.Start(t, wasmkubetest.Admission(profiles.AdmissionModule{
//			Module: profiles.Module{Name: "my-policy", Module: "my-policy.wasm"},
//			Rules:  []admissionregistrationv1.RuleWithOperations{…},
//		}))
//		_, err := env.Client.CoreV1().ConfigMaps(env.Namespace).Create(…)
//		…
//	}
//
// # Notes
//
//   - One cluster per test binary: the first Start starts it (about 2 s once the compiled
//     modules are cached), later ones share it; Main stops it after the tests and removes its
//     data. Kubernetes keeps process-global state, so one cluster per process is also all that
//     works; it is held in this package, the one piece of package-level state in wasmkube.
//   - Each Start gets a namespace of its own, with its default ServiceAccount (Pods need it; a
//     profile without controllers would not make it), deleted when the test ends (without
//     controllers it stays Terminating, its objects kept, until the cluster stops).
//   - Modules are set per test through the cluster's hot reload (wasmkube.Cluster.Reload): a
//     test that asks for modules holds them, and tests asking for others wait, until it ends;
//     then the cluster's own modules come back. Tests that ask for none do not wait: run in
//     parallel (t.Parallel) with one that set modules, they see its modules.
//   - The first Start's profile decides what only a restart changes (flags, controllers);
//     later Starts that name another profile get its modules only (logged).
//   - Relative module paths are relative to the profile file's directory, and for a built-in
//     profile (the default, minimal) to the test's working directory: its package directory.
package wasmkubetest

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
)

// Env is one test's view of the shared cluster.
type Env struct {
	// Config is a client configuration for the admin (group system:masters), the test's copy.
	Config *rest.Config
	// Client is a clientset of Config.
	Client kubernetes.Interface
	// KubeconfigPath is the admin kubeconfig (for kubectl or other tools).
	KubeconfigPath string
	// Namespace was created for this test and is deleted when it ends.
	Namespace string
	// Cluster is the shared cluster.
	Cluster *wasmkube.Cluster
}

// ConfigFor returns a client configuration that authenticates with the bearer token alone (for
// authentication modules), trusting the cluster's CA.
func (e *Env) ConfigFor(token string) *rest.Config {
	cfg := rest.AnonymousClientConfig(e.Config)
	cfg.BearerToken = token
	return cfg
}

// Option adjusts Start.
type Option func(*options)

type options struct {
	profile string
	edits   []func(*profiles.Profile)
}

// Profile names the profile (a name or a path to a profile file); default "minimal". The first
// Start of a test binary starts the cluster with it.
func Profile(ref string) Option { return func(o *options) { o.profile = ref } }

// Edit changes the profile's modules for this test (the edit gets a copy of the profile).
func Edit(edit func(p *profiles.Profile)) Option {
	return func(o *options) { o.edits = append(o.edits, edit) }
}

// Admission adds admission modules, after the profile's, for this test.
func Admission(modules ...profiles.AdmissionModule) Option {
	return Edit(func(p *profiles.Profile) {
		a := profiles.Admission{}
		if p.Admission != nil {
			a = *p.Admission
		}
		a.Modules = append(append([]profiles.AdmissionModule(nil), a.Modules...), modules...)
		p.Admission = &a
	})
}

// harness is the test binary's cluster.
type harness struct {
	mu      sync.Mutex
	cluster *wasmkube.Cluster
	base    *profiles.Loaded // the profile the cluster started with
	dir     string
	err     error // why the cluster did not start; every Start fails with it
	// modules is held (a token in it taken) by a test that set modules of its own, until it ends.
	modules chan struct{}
}

// modulesWait bounds how long a test waits for another to give the modules back.
const modulesWait = 2 * time.Minute

// shared is the one cluster of the test binary (see the package notes).
var shared = harness{modules: make(chan struct{}, 1)}

// Start returns the shared cluster, started on first use, with a namespace of the test's own
// and the modules the options ask for; it fails the test when the cluster cannot start or the
// modules do not load.
func Start(t testing.TB, opts ...Option) *Env {
	t.Helper()
	o := options{profile: "minimal"}
	for _, opt := range opts {
		opt(&o)
	}
	p, err := wasmkube.ResolveProfile(o.profile)
	if err != nil {
		t.Fatalf("wasmkubetest: %v", err)
	}
	c, err := shared.start(p)
	if err != nil {
		t.Fatalf("wasmkubetest: %v", err)
	}
	env := &Env{Config: rest.CopyConfig(c.RESTConfig), KubeconfigPath: c.KubeconfigPath, Cluster: c}
	env.Client = kubernetes.NewForConfigOrDie(env.Config)
	// The namespace first: the test's modules must not judge the harness's own requests (and
	// cleanups run last-registered first, so the modules are restored before it is deleted).
	env.Namespace = createNamespace(t, env.Client)
	if len(o.edits) > 0 || p.Source != shared.base.Source {
		setModules(t, c, p, o.edits)
	}
	return env
}

// start starts the cluster with p unless it runs.
func (h *harness) start(p *profiles.Loaded) (*wasmkube.Cluster, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.cluster != nil || h.err != nil {
		return h.cluster, h.err
	}
	dir, err := os.MkdirTemp("", "wasmkubetest-")
	if err != nil {
		h.err = err
		return nil, err
	}
	ctx, cancel := context.WithTimeout(context.Background(), wasmkube.DefaultReadyTimeout)
	defer cancel()
	c, err := wasmkube.Up(ctx, p, wasmkube.Options{
		DataDir: filepath.Join(dir, "data"), Port: ptr.To[int32](0), BuiltinModules: examples.FS(),
	})
	if err != nil {
		_ = os.RemoveAll(dir)
		h.err = fmt.Errorf("start the cluster (profile %s): %w", p.Source, err)
		return nil, h.err
	}
	h.cluster, h.base, h.dir = c, p, dir
	return c, nil
}

// setModules makes the modules of p, edited, the cluster's for the test, and the cluster's own
// again when it ends.
func setModules(t testing.TB, c *wasmkube.Cluster, p *profiles.Loaded, edits []func(*profiles.Profile)) {
	t.Helper()
	select {
	case shared.modules <- struct{}{}:
	case <-time.After(modulesWait):
		t.Fatalf("wasmkubetest: another test has held the cluster's modules for %s: tests that set modules run one at a time, and a subtest cannot set modules when its parent test did", modulesWait)
	}
	release := func() { <-shared.modules }
	edited := *p.Profile
	for _, edit := range edits {
		edit(&edited)
	}
	if errs := profiles.Validate(&edited); len(errs) > 0 {
		release()
		t.Fatalf("wasmkubetest: the test's profile (%s, edited) is invalid: %v", p.Source, errs.ToAggregate())
	}
	ctx := context.Background()
	res, err := c.Reload(ctx, &profiles.Loaded{Profile: &edited, Source: p.Source, Raw: p.Raw})
	if err != nil {
		release()
		t.Fatalf("wasmkubetest: set the test's modules: %v", err)
	}
	if len(res.NeedsRestart) > 0 {
		t.Logf("wasmkubetest: the cluster started with profile %s; only the modules of %s apply (%s)",
			shared.base.Source, p.Source, strings.Join(res.NeedsRestart, "; "))
	}
	t.Cleanup(func() {
		defer release()
		if _, err := c.Reload(ctx, shared.base); err != nil {
			t.Errorf("wasmkubetest: restore the cluster's modules: %v", err)
		}
	})
}

// namespaceName is a test's name as a namespace name, with a random suffix.
var notDNS = regexp.MustCompile(`[^a-z0-9-]+`)

func createNamespace(t testing.TB, client kubernetes.Interface) string {
	t.Helper()
	prefix := strings.Trim(notDNS.ReplaceAllString(strings.ToLower(t.Name()), "-"), "-")
	if len(prefix) > 40 {
		prefix = strings.TrimRight(prefix[:40], "-")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ns, err := client.CoreV1().Namespaces().Create(ctx, &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("wasmkubetest: create the test's namespace: %v", err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		if err := client.CoreV1().Namespaces().Delete(ctx, ns.Name, metav1.DeleteOptions{}); err != nil {
			t.Errorf("wasmkubetest: delete namespace %s: %v", ns.Name, err)
		}
	})
	// Pods need the namespace's default ServiceAccount, which only the controllers make (a
	// profile without them, as minimal, would refuse every Pod).
	sa := &corev1.ServiceAccount{ObjectMeta: metav1.ObjectMeta{Name: "default"}}
	if _, err := client.CoreV1().ServiceAccounts(ns.Name).Create(ctx, sa, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
		t.Fatalf("wasmkubetest: create the default ServiceAccount of %s: %v", ns.Name, err)
	}
	return ns.Name
}

// Main runs the tests, then stops the cluster (if a test started it) and removes its data; call
// it from TestMain: os.Exit(wasmkubetest.Main(m)). Without it the cluster runs until the test
// binary exits and its data stays in the temporary directory.
func Main(m *testing.M) int {
	code := m.Run()
	shared.mu.Lock()
	defer shared.mu.Unlock()
	if shared.cluster == nil {
		return code
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := shared.cluster.Stop(ctx); err != nil {
		fmt.Fprintf(os.Stderr, "wasmkubetest: stop the cluster: %v\n", err)
		if code == 0 {
			code = 1
		}
	}
	_ = os.RemoveAll(shared.dir)
	shared.cluster = nil
	return code
}
