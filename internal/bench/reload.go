package bench

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
)

// ReloadResult is the authors' loop: a module file replaced under a running `up`, until the new
// module decides requests, against restarting `up` to the same effect.
type ReloadResult struct {
	// Reload is the time from the module file's replacement to the first request the new module
	// decided (ms); Serving is `up`'s own figure for the same reload: from the change it saw
	// to the new modules serving (ms).
	Reload, Serving Series
	// Restart is the baseline: Ctrl-C, the file replaced, `up` again, until the first request the
	// new module decided (ms).
	Restart Series
	// Modules in the profile.
	Modules int
}

// reloadProfile is the demo's modules with magic-validate replaced by "dev", a module the
// profile names by path, as an author's profile names the module being written. Controllers
// off: the restart baseline does not pay for stopping them.
const reloadProfile = `apiVersion: wasmkube.dev/v1alpha1
kind: Profile
name: reload
port: 0
controllers: {enabled: false}
authentication:
  modules:
  - module: builtin:magic-authn
authorization:
  modules:
  - module: builtin:magic-authz
admission:
  modules:
  - module: builtin:magic-mutate
    mutating: true
    rules: [{operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}]
  - name: dev
    module: dev.wasm
    rules: [{operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}]
  - module: builtin:workload-policy
    settings: {requiredLabels: [team]}
    rules: [{operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [pods]}]
`

// reloadModules are what dev.wasm becomes in turn: magic-validate rejects the probe, and
// workload-policy (which checks workloads only) admits it.
var reloadModules = [2]string{"examples/magic-validate/magic-validate.wasm", "examples/workload-policy/workload-policy.wasm"}

// servingLine is `up`'s line for a reload: "↻ reloaded: N modules serving, S s after …".
var servingLine = regexp.MustCompile(`↻ reloaded: \d+ modules serving, ([0-9.]+)s after`)

func runReload(ctx context.Context, cfg Config, rep *Report) error {
	h, err := newHome(filepath.Join(cfg.WorkDir, "reload"), binPath(cfg))
	if err != nil {
		return err
	}
	rep.Reload, err = measureReload(ctx, cfg.Root, h, cfg.Rounds)
	return err
}

// reloadRun is one `up` of the reload profile and what the measurements share.
type reloadRun struct {
	root, profile, dev string
	h                  home
	up                 *upCluster
	cs                 *kubernetes.Clientset
	// denies says whether dev.wasm is magic-validate now.
	denies bool
}

func measureReload(ctx context.Context, root string, h home, rounds int) (*ReloadResult, error) {
	dir := filepath.Join(h.root, "profile")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, err
	}
	r := &reloadRun{root: root, h: h, profile: filepath.Join(dir, "reload.yaml"), dev: filepath.Join(dir, "dev.wasm")}
	if err := os.WriteFile(r.profile, []byte(reloadProfile), 0o600); err != nil {
		return nil, err
	}
	if err := r.replace(true); err != nil {
		return nil, err
	}
	if err := r.start(ctx); err != nil {
		return nil, err
	}
	defer func() {
		if r.up != nil {
			_, _ = r.up.stop()
		}
	}()
	res := &ReloadResult{Modules: 5}
	// One reload each way first: both modules are in the compilation cache before measuring.
	for range 2 {
		if _, _, err := r.reload(ctx); err != nil {
			return nil, err
		}
	}
	for range rounds {
		took, serving, err := r.reload(ctx)
		if err != nil {
			return nil, err
		}
		res.Reload.AddDuration(took, time.Millisecond)
		res.Serving.Add(serving)
		restart, err := r.restart(ctx)
		if err != nil {
			return nil, err
		}
		res.Restart.AddDuration(restart, time.Millisecond)
	}
	return res, nil
}

// replace puts magic-validate (deny) or workload-policy in dev.wasm as a build would: written
// beside it, then renamed over it.
func (r *reloadRun) replace(deny bool) error {
	src := reloadModules[1]
	if deny {
		src = reloadModules[0]
	}
	bin, err := os.ReadFile(filepath.Join(r.root, src))
	if err != nil {
		return err
	}
	if err := os.WriteFile(r.dev+".tmp", bin, 0o600); err != nil {
		return err
	}
	r.denies = deny
	return os.Rename(r.dev+".tmp", r.dev)
}

func (r *reloadRun) start(ctx context.Context) error {
	up, _, err := r.h.startUp(ctx, r.profile, "reload")
	if err != nil {
		return err
	}
	r.up = up
	r.cs, err = clientFor(up.kubeconfig())
	return err
}

// reload replaces dev.wasm and returns the time until the new module decides, and `up`'s own
// figure (ms).
func (r *reloadRun) reload(ctx context.Context) (time.Duration, float64, error) {
	began := time.Now()
	if err := r.replace(!r.denies); err != nil {
		return 0, 0, err
	}
	if err := r.waitDecision(ctx); err != nil {
		return 0, 0, err
	}
	took := time.Since(began)
	serving, err := r.servingMs()
	return took, serving, err
}

// servingMs reads `up`'s line for the reload (ms).
func (r *reloadRun) servingMs() (float64, error) {
	deadline := time.After(10 * time.Second)
	for {
		select {
		case line, ok := <-r.up.lines:
			if !ok {
				return 0, fmt.Errorf("up exited:\n%s", r.up.output())
			}
			if strings.Contains(line, "✗ reload") {
				return 0, fmt.Errorf("reload failed:\n%s", r.up.output())
			}
			if m := servingLine.FindStringSubmatch(line); m != nil {
				s, err := strconv.ParseFloat(m[1], 64)
				return s * 1000, err
			}
		case <-deadline:
			return 0, fmt.Errorf("up did not report the reload:\n%s", r.up.output())
		}
	}
}

// restart stops `up`, replaces dev.wasm, starts `up` again and returns the time until the new
// module decides.
func (r *reloadRun) restart(ctx context.Context) (time.Duration, error) {
	began := time.Now()
	if _, err := r.up.stop(); err != nil {
		return 0, err
	}
	r.up = nil
	if err := r.replace(!r.denies); err != nil {
		return 0, err
	}
	if err := r.start(ctx); err != nil {
		return 0, err
	}
	if err := r.waitDecision(ctx); err != nil {
		return 0, err
	}
	return time.Since(began), nil
}

// waitDecision probes with a dry-run create of a ConfigMap that magic-validate rejects until the
// answer is that of the module now in dev.wasm (30 s at most).
func (r *reloadRun) waitDecision(ctx context.Context) error {
	probe := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "probe"}, Data: map[string]string{forbiddenKey: "x"}}
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := r.cs.CoreV1().ConfigMaps("default").Create(ctx, probe, metav1.CreateOptions{DryRun: []string{metav1.DryRunAll}})
		denied := err != nil && strings.Contains(err.Error(), `"dev" denied`)
		if err != nil && !denied {
			return fmt.Errorf("probe: %w", err)
		}
		if denied == r.denies {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("the module in dev.wasm did not decide within 30 s (denies: %t):\n%s", r.denies, r.up.output())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
