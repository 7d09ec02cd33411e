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
type ControllerManager struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

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
	cm := &ControllerManager{cancel: cancel, done: make(chan struct{})}
	go func() {
		defer close(cm.done)
		// Run registers its configuration under a process-global name; release it so a later
		// cluster in the same process can register again.
		defer configz.Delete(app.ConfigzName)
		cm.err = app.Run(runCtx, c.Complete())
	}()
	return cm, nil
}

// Done is closed when the controller manager has stopped.
func (cm *ControllerManager) Done() <-chan struct{} { return cm.done }

// Err is the error the controller manager stopped with; valid after Done is closed.
func (cm *ControllerManager) Err() error { return cm.err }

// Stop stops every controller and waits for them.
func (cm *ControllerManager) Stop() error {
	cm.cancel()
	<-cm.done
	return cm.err
}
