package apiserver

import (
	"context"
	"fmt"
	"io"
	"os"

	"github.com/spf13/pflag"
	"k8s.io/component-base/configz"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app"
	"k8s.io/kubernetes/cmd/kube-controller-manager/app/options"
)

// ControllerManager is a running kube-controller-manager.
type ControllerManager struct{ component }

// StartControllerManager builds kube-controller-manager from the plan's flags as its own command
// does and runs it until Stop. It expects the kube-apiserver to be ready (the plan's kubeconfig
// points at it).
func StartControllerManager(ctx context.Context, plan *Plan) (*ControllerManager, error) {
	StampKubernetesVersion()
	// kube-controller-manager would create its flex-volume plugin dir world-readable (0755).
	// (and an older wasmkube let it), so it is made, or made private, first.
	if err := os.MkdirAll(plan.Layout.FlexVolumeDir(), 0o700); err != nil {
		return nil, fmt.Errorf("kube-controller-manager: %w", err)
	}
	if err := os.Chmod(plan.Layout.FlexVolumeDir(), 0o700); err != nil {
		return nil, fmt.Errorf("kube-controller-manager: %w", err)
	}
	s, err := options.NewKubeControllerManagerOptions()
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager options: %w", err)
	}
	fs := pflag.NewFlagSet("kube-controller-manager", pflag.ContinueOnError)
	fs.SetOutput(io.Discard)
	for _, f := range s.Flags(app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases()).FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(plan.ControllerManagerArgs); err != nil {
		return nil, fmt.Errorf("kube-controller-manager flags: %w; check controllers.extraArgs in the profile", err)
	}
	// The feature gates and logging were set up by the kube-apiserver in this process; they are
	// shared (process-global), so they are not set again here.
	c, err := s.Config(ctx, app.KnownControllers(), app.ControllersDisabledByDefault(), app.ControllerAliases())
	if err != nil {
		return nil, fmt.Errorf("kube-controller-manager config: %w; check controllers.extraArgs in the profile", err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	cm := &ControllerManager{}
	cm.start(cancel, func() error {
		// Run registers its configuration under a process-global name; release it so a later
		// cluster in the same process can register again.
		defer configz.Delete(app.ConfigzName)
		return app.Run(runCtx, c.Complete())
	})
	return cm, nil
}
