package apiserver

import (
	"context"
	"fmt"
	"io"

	"github.com/spf13/pflag"
	"k8s.io/component-base/configz"
	"k8s.io/kubernetes/cmd/kube-scheduler/app"
	"k8s.io/kubernetes/cmd/kube-scheduler/app/options"
)

// Scheduler is a running kube-scheduler.
type Scheduler struct{ component }

// schedulerConfigzName is the name kube-scheduler's Run registers its configuration under.
const schedulerConfigzName = "componentconfig"

// StartScheduler builds kube-scheduler from the plan's flags as its own command does and runs it
// until Stop. It expects the kube-apiserver to be ready (the plan's scheduler kubeconfig points
// at it).
func StartScheduler(ctx context.Context, plan *Plan) (*Scheduler, error) {
	StampKubernetesVersion()
	o := options.NewOptions()
	fs := pflag.NewFlagSet("kube-scheduler", pflag.ContinueOnError)
	// Deprecated flags (--kube-api-qps) would print a notice on every start.
	fs.SetOutput(io.Discard)
	for _, f := range o.Flags.FlagSets {
		fs.AddFlagSet(f)
	}
	if err := fs.Parse(plan.SchedulerArgs); err != nil {
		return nil, fmt.Errorf("kube-scheduler flags: %w; check scheduler.extraArgs in the profile", err)
	}
	// As for kube-controller-manager, the feature gates and logging are the kube-apiserver's
	// (process-global) and are not set again.
	// Setup starts what runs for the scheduler's life (its cache, metrics recorder, event
	// broadcaster) on the context it is given: the one Stop cancels, as upstream.
	runCtx, cancel := context.WithCancel(ctx)
	cc, sched, err := app.Setup(runCtx, o)
	if err != nil {
		cancel()
		return nil, fmt.Errorf("kube-scheduler config: %w; check scheduler.extraArgs in the profile", err)
	}
	s := &Scheduler{}
	s.start(cancel, func() error {
		// Run registers its configuration under a process-global name; release it so a later
		// cluster in the same process can register again.
		defer configz.Delete(schedulerConfigzName)
		err := app.Run(runCtx, cc, sched)
		// With leader election off, Run returns "finished without leader elect" whenever its
		// context ends: that is a stop, not a failure.
		if runCtx.Err() != nil {
			return nil
		}
		return err
	})
	return s, nil
}
