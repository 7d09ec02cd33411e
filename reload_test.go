package wasmkube_test

import (
	"context"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/profiles"
)

// testHotReload: the shared cluster's profile, written to a file and watched, is edited while
// the cluster serves. Removing magic-validate takes effect within a second of the write, with no
// restart; an edit that breaks a module keeps the modules loaded before; a change to the port
// is reported as needing a restart. The cluster gets its own modules back at the end.
func testHotReload(t *testing.T) {
	ctx := context.Background()
	path := filepath.Join(t.TempDir(), "profile.yaml")
	write := func(p *profiles.Profile) time.Time {
		t.Helper()
		b, err := yaml.Marshal(p)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path+".tmp", b, 0o600); err != nil {
			t.Fatal(err)
		}
		written := time.Now()
		if err := os.Rename(path+".tmp", path); err != nil { // as editors save
			t.Fatal(err)
		}
		return written
	}
	edited := *profile.Profile
	write(&edited)
	reports := make(chan wasmkube.ReloadReport, 8)
	watchCtx, stopWatching := context.WithCancel(ctx)
	watching := make(chan struct{})
	w, err := cluster.NewWatcher(func() (*profiles.Loaded, error) { return profiles.LoadFile(path) })
	if err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(watching)
		defer w.Close()
		_ = w.Run(watchCtx, nil, func(r wasmkube.ReloadReport) { reports <- r })
	}()
	t.Cleanup(func() {
		stopWatching()
		<-watching
		if _, err := cluster.Reload(ctx, profile); err != nil {
			t.Errorf("restore the cluster's modules: %v", err)
		}
	})
	cfg := rest.AnonymousClientConfig(cluster.RESTConfig)
	cfg.BearerToken = "magic-token"
	cms := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("default")
	forbidden := func(name string) error {
		_, err := cms.Create(ctx, configMap(name, nil, map[string]string{"not-allowed-value": "x"}), metav1.CreateOptions{})
		if err == nil {
			_ = cms.Delete(ctx, name, metav1.DeleteOptions{})
		}
		return err
	}
	if err := forbidden("reload-0"); err == nil || !strings.Contains(err.Error(), "magic-validate") {
		t.Fatalf("before the edit: %v, want magic-validate's denial", err)
	}

	// Remove magic-validate.
	edited.Admission = &profiles.Admission{Modules: slices.DeleteFunc(slices.Clone(profile.Admission.Modules),
		func(m profiles.AdmissionModule) bool {
			return m.Name == "magic-validate" || m.Module.Module == "builtin:magic-validate"
		})}
	written := write(&edited)
	var effect time.Duration
	for i := 0; ; i++ {
		if err := forbidden("reload-1"); err == nil {
			effect = time.Since(written)
			break
		} else if !strings.Contains(err.Error(), "magic-validate") {
			t.Fatalf("while reloading: %v", err)
		}
		if time.Since(written) > 30*time.Second {
			t.Fatal("magic-validate still denies 30 s after it was removed from the profile")
		}
		time.Sleep(10 * time.Millisecond)
	}
	r := <-reports
	t.Logf("removed magic-validate: %s; the reload took %s; the first allowed create %s after the write",
		r.Cause, r.Result.Took.Round(time.Millisecond), effect.Round(time.Millisecond))
	if r.Err != nil || !strings.Contains(r.Cause, path) {
		t.Fatalf("report %+v", r)
	}
	if effect > time.Second {
		t.Errorf("the removal took effect %s after the write, want <= 1 s", effect)
	}
	if len(r.Result.NeedsRestart) != 0 {
		t.Errorf("nothing needs a restart, got %q", r.Result.NeedsRestart)
	}

	// A broken edit: magic-validate back, and a module that is not WebAssembly. The modules loaded
	// before keep serving: the create stays allowed.
	broken := filepath.Join(t.TempDir(), "broken.wasm")
	if err := os.WriteFile(broken, []byte("not a module"), 0o600); err != nil {
		t.Fatal(err)
	}
	edited.Admission = &profiles.Admission{Modules: append(slices.Clone(profile.Admission.Modules),
		profiles.AdmissionModule{Module: profiles.Module{Name: "broken", Module: broken}, Rules: profile.Admission.Modules[0].Rules})}
	write(&edited)
	r = <-reports
	if r.Err == nil || !strings.Contains(r.Err.Error(), "admission.modules") || !strings.Contains(r.Err.Error(), "(broken)") ||
		!strings.Contains(r.Err.Error(), "keep serving") {
		t.Fatalf("broken edit: %+v, want an error naming the entry and saying the old modules serve", r)
	}
	t.Logf("broken edit: %v", r.Err)
	if err := forbidden("reload-2"); err != nil {
		t.Errorf("after a broken edit the modules loaded before must serve (no magic-validate): %v", err)
	}

	// A kube-apiserver flag needs a restart: said, and the modules are reloaded nonetheless.
	edited.Admission = profile.Admission
	edited.APIServer.ExtraArgs = append(slices.Clone(edited.APIServer.ExtraArgs), "event-ttl=2h")
	write(&edited)
	r = <-reports
	if r.Err != nil || !slices.ContainsFunc(r.Result.NeedsRestart, func(s string) bool { return strings.Contains(s, "--event-ttl=2h added") }) {
		t.Fatalf("flag edit: %+v, want the flag named as needing a restart", r)
	}
	if err := forbidden("reload-3"); err == nil || !apierrors.IsBadRequest(err) {
		t.Errorf("magic-validate is back in the profile: %v, want its denial", err)
	}
}
