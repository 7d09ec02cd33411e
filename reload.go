package wasmkube

import (
	"context"
	"errors"
	"fmt"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/wasmkube/wasmkube/profiles"
)

// ReloadResult says what a reload did.
type ReloadResult struct {
	// Modules is how many modules serve now.
	Modules int
	// Took is how long loading and swapping took.
	Took time.Duration
	// NeedsRestart names the profile's changes a running cluster cannot take (listen address or
	// port, etcd, data dir, kube-apiserver or kube-controller-manager flags, the authorizer
	// chain). They take effect at the next start; the modules were reloaded nonetheless.
	NeedsRestart []string
}

// reloadState is what a cluster keeps to reload: the modules and the plan the running
// components were started with.
type reloadState struct {
	mods *clusterModules
	opts Options
	// plan is the plan before the listener opened (Port as configured), as PlanFor makes it.
	plan *Plan
}

// Reload loads the modules p configures and makes them the cluster's modules, with no restart:
// the new modules are compiled, their settings validated and their instances pre-warmed while
// the old ones serve; then they replace the old ones at once. A request that began on the old
// modules finishes on them, and the old modules close after their last call.
//
// # Notes
//
//   - On an error (a module that does not load, a profile asking what its modules cannot do)
//     nothing changes: the old modules keep serving.
//   - p is the cluster's profile as edited: its changes to what does not reload are in
//     NeedsRestart and otherwise ignored.
//   - Reloads are serialized; the compiled modules are cached, so reloading unchanged modules
//     costs a pre-warm only.
func (c *Cluster) Reload(ctx context.Context, p *profiles.Loaded) (ReloadResult, error) {
	start := time.Now()
	if c.reload == nil {
		return ReloadResult{}, errors.New("this cluster was not started by Up")
	}
	plan, err := PlanFor(p, c.reload.opts)
	if err != nil {
		return ReloadResult{}, fmt.Errorf("reload profile %s: %w", p.Source, err)
	}
	n, err := c.reload.mods.load(ctx, p, plan.Modules)
	if err != nil {
		return ReloadResult{}, fmt.Errorf("reload profile %s: %w; the modules loaded before keep serving", p.Source, err)
	}
	return ReloadResult{Modules: n, Took: time.Since(start), NeedsRestart: restartChanges(c.reload.plan, plan)}, nil
}

// restartChanges describes how plan differs from running in what only a restart changes.
func restartChanges(running, plan *Plan) []string {
	var out []string
	if running.Layout.DataDir != plan.Layout.DataDir {
		out = append(out, fmt.Sprintf("data dir %s → %s", running.Layout.DataDir, plan.Layout.DataDir))
	}
	if running.EtcdFsync != plan.EtcdFsync {
		out = append(out, fmt.Sprintf("etcd fsync %t → %t", running.EtcdFsync, plan.EtcdFsync))
	}
	out = append(out, flagChanges("kube-apiserver", running.APIServerArgs, plan.APIServerArgs)...)
	out = append(out, flagChanges("kube-controller-manager", running.ControllerManagerArgs, plan.ControllerManagerArgs)...)
	out = append(out, flagChanges("kube-scheduler", running.SchedulerArgs, plan.SchedulerArgs)...)
	if a, b := running.Nodes.String(), plan.Nodes.String(); a != b {
		out = append(out, fmt.Sprintf("simulated nodes %s → %s", a, b))
	}
	if a, b := running.Modules.AuthorizationChain, plan.Modules.AuthorizationChain; !slices.Equal(a, b) {
		out = append(out, fmt.Sprintf("authorizer chain %s → %s", strings.Join(a, ","), strings.Join(b, ",")))
	}
	return out
}

// flagChanges lists the flags removed from and added to a component's.
func flagChanges(component string, running, plan []string) []string {
	var out []string
	for _, a := range running {
		if !slices.Contains(plan, a) {
			out = append(out, fmt.Sprintf("%s flag %s removed", component, a))
		}
	}
	for _, a := range plan {
		if !slices.Contains(running, a) {
			out = append(out, fmt.Sprintf("%s flag %s added", component, a))
		}
	}
	return out
}

// ReloadReport is one reload by Watch: why, when the change was seen, and what came of it.
type ReloadReport struct {
	// Cause says what started it: "FILE changed" or "asked".
	Cause string
	// Detected is when the change was seen (or the reload asked for).
	Detected time.Time
	Result   ReloadResult
	// Err is why the reload failed; the old modules keep serving.
	Err error
}

// WatchDebounce is how long Watch waits after a file event for more before it reloads: an
// editor or a compiler writes a file in several steps.
const WatchDebounce = 100 * time.Millisecond

// Watcher reloads a cluster when its profile or a module file the profile names changes, and
// each time asked (see Run).
//
// # Notes
//
//   - It watches the directories of the files (editors replace a file by renaming another over
//     it) and re-reads the list of files after every reload: a module added to the profile is
//     watched from then on.
//   - A profile that does not parse is a failed reload like any other: the old modules serve.
type Watcher struct {
	t       reloadTarget
	load    func() (*profiles.Loaded, error)
	fs      *fsnotify.Watcher
	watched map[string]bool
}

// NewWatcher watches the files of the profile load reads (again at each reload; for a built-in
// profile there is no file to watch, but asking still reloads). Changes made once it returns
// are seen; Run acts on them. Close it when done.
func (c *Cluster) NewWatcher(load func() (*profiles.Loaded, error)) (*Watcher, error) {
	if c.reload == nil {
		return nil, errors.New("this cluster was not started by Up")
	}
	return newWatcher(c, load)
}

// reloadTarget is what a Watcher reloads: a Cluster or a Bridge.
type reloadTarget interface {
	Reload(ctx context.Context, p *profiles.Loaded) (ReloadResult, error)
	// modulePlan is where p's modules go (for the files to watch).
	modulePlan(p *profiles.Loaded) profiles.ModulePlan
	Done() <-chan struct{}
}

func (c *Cluster) modulePlan(p *profiles.Loaded) profiles.ModulePlan {
	if plan, err := PlanFor(p, c.reload.opts); err == nil {
		return plan.Modules
	}
	return c.reload.plan.Modules
}

func newWatcher(t reloadTarget, load func() (*profiles.Loaded, error)) (*Watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch the profile: %w", err)
	}
	w := &Watcher{t: t, load: load, fs: fw}
	if p, err := load(); err == nil {
		w.rewatch(p)
	}
	return w, nil
}

// Close stops watching.
func (w *Watcher) Close() error { return w.fs.Close() }

// rewatch watches the directories of p's files and no others.
func (w *Watcher) rewatch(p *profiles.Loaded) {
	files := watchedFiles(p, w.t.modulePlan(p))
	dirs := map[string]bool{}
	for f := range files {
		dirs[filepath.Dir(f)] = true
	}
	for _, d := range w.fs.WatchList() {
		if !dirs[d] {
			_ = w.fs.Remove(d)
		}
	}
	for d := range dirs {
		_ = w.fs.Add(d) // a missing directory is watched again after the next reload
	}
	w.watched = files
}

// Run reloads on each change (after WatchDebounce without another) and on each receive from
// reload, telling report of each, until ctx ends or the cluster stops.
func (w *Watcher) Run(ctx context.Context, reload <-chan struct{}, report func(ReloadReport)) error {
	var (
		debounce <-chan time.Time
		pending  string
		seen     time.Time
	)
	do := func(cause string, detected time.Time) {
		r := ReloadReport{Cause: cause, Detected: detected}
		p, err := w.load()
		if err == nil {
			r.Result, err = w.t.Reload(ctx, p)
			w.rewatch(p)
		}
		r.Err = err
		report(r)
	}
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-w.t.Done():
			return nil
		case <-reload:
			do("asked", time.Now())
		case ev, ok := <-w.fs.Events:
			if !ok {
				return nil
			}
			if !w.watched[filepath.Clean(ev.Name)] || ev.Op == fsnotify.Chmod {
				continue
			}
			if debounce == nil {
				seen = time.Now()
			}
			pending = ev.Name + " changed"
			debounce = time.After(WatchDebounce)
		case <-debounce:
			debounce = nil
			do(pending, seen)
		case err, ok := <-w.fs.Errors:
			if !ok {
				return nil
			}
			report(ReloadReport{Cause: "watching files", Detected: time.Now(), Err: err})
		}
	}
}

// watchedFiles are the files whose change reloads a cluster: the profile's file, the module
// files its entries name, and the original proof of concept's config files and their modules.
func watchedFiles(p *profiles.Loaded, w profiles.ModulePlan) map[string]bool {
	files := map[string]bool{}
	add := func(path string) {
		if path != "" && !strings.HasPrefix(path, profiles.BuiltinPrefix) && !profiles.IsRemoteModule(path) {
			if abs, err := filepath.Abs(path); err == nil {
				files[abs] = true
			}
		}
	}
	if !p.IsBuiltin() {
		add(p.Source)
	}
	for _, f := range []string{w.AuthenticationConfigFile, w.AuthorizationConfigFile, w.AdmissionConfigFile} {
		add(f)
	}
	c, err := collectModules(p, w)
	if err != nil {
		return files
	}
	for _, e := range c.authn {
		add(p.ResolvePath(e.m.Module))
	}
	for _, e := range c.authz {
		add(p.ResolvePath(e.m.Module.Module))
	}
	for _, e := range c.admission {
		add(p.ResolvePath(e.m.Module.Module))
	}
	return files
}
