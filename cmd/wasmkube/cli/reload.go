package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/gofrs/flock"
	"github.com/spf13/cobra"
	"k8s.io/klog/v2"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/apiserver/pki"
	"github.com/wasmkube/wasmkube/datadir"
)

// reloadStatusFile is where `up` records the outcome of its latest reload, in the data dir;
// `wasmkube reload` waits for it to change.
const reloadStatusFile = datadir.ReloadStatus

// reloadStatus is the content of reloadStatusFile.
type reloadStatus struct {
	// Seq counts the reloads of this `up`, from 1; the PID tells two `up`s apart.
	Seq          int       `json:"seq"`
	PID          int       `json:"pid"`
	Time         time.Time `json:"time"`
	Cause        string    `json:"cause"`
	OK           bool      `json:"ok"`
	Modules      int       `json:"modules"`
	Seconds      float64   `json:"seconds"`
	Error        string    `json:"error,omitempty"`
	NeedsRestart []string  `json:"needsRestart,omitempty"`
}

func readReloadStatus(dataDir string) reloadStatus {
	var st reloadStatus
	if b, err := os.ReadFile(filepath.Join(dataDir, reloadStatusFile)); err == nil {
		_ = json.Unmarshal(b, &st) // an unreadable status is no status
	}
	return st
}

// reloadReporter prints each reload of `up` and records it for `wasmkube reload`.
type reloadReporter struct {
	s       streams
	dataDir string
	seq     int
}

// ready records that this process takes reloads (seq 0): `wasmkube reload` signals no other.
func (r *reloadReporter) ready() {
	r.write(reloadStatus{PID: os.Getpid(), Time: time.Now(), Cause: "ready", OK: true})
}

func (r *reloadReporter) report(rep wasmkube.ReloadReport) {
	r.seq++
	st := reloadStatus{Seq: r.seq, PID: os.Getpid(), Time: time.Now(), Cause: rep.Cause, OK: rep.Err == nil,
		Modules: rep.Result.Modules, Seconds: time.Since(rep.Detected).Seconds(), NeedsRestart: rep.Result.NeedsRestart}
	if rep.Err != nil {
		st.Error = rep.Err.Error()
		klog.ErrorS(rep.Err, "Reload failed; the modules loaded before keep serving", "cause", rep.Cause)
	} else {
		klog.InfoS("Reloaded the modules", "cause", rep.Cause, "modules", st.Modules, "seconds", st.Seconds, "needsRestart", st.NeedsRestart)
	}
	fmt.Fprint(r.s.out, describeReload(st))
	r.write(st)
}

func (r *reloadReporter) write(st reloadStatus) {
	if b, err := json.Marshal(st); err == nil {
		if err := pki.WriteFileAtomic(filepath.Join(r.dataDir, reloadStatusFile), b); err != nil {
			fmt.Fprintf(r.s.err, "warning: record the reload: %v\n", err)
		}
	}
}

// describeReload is what `up` and `wasmkube reload` print of a reload.
func describeReload(st reloadStatus) string {
	var b strings.Builder
	if st.OK {
		fmt.Fprintf(&b, "  ↻ reloaded: %d modules serving, %.2fs after %s\n", st.Modules, st.Seconds, st.Cause)
	} else {
		fmt.Fprintf(&b, "  ✗ reload after %s failed; the modules loaded before keep serving:\n      %s\n", st.Cause, strings.ReplaceAll(st.Error, "\n", "\n      "))
	}
	if len(st.NeedsRestart) > 0 {
		fmt.Fprintf(&b, "  ! these changes need a restart (Ctrl-C, then up again):\n      %s\n", strings.Join(st.NeedsRestart, "\n      "))
	}
	return b.String()
}

type reloadOptions struct {
	profileFlags
	timeout time.Duration
}

func newReloadCommand(s streams) *cobra.Command {
	o := &reloadOptions{}
	cmd := &cobra.Command{
		Use:   "reload",
		Short: "Reload the modules of a running cluster from its profile (as a change to the profile does)",
		Long: `Ask the running ` + "`wasmkube up`" + ` of a profile to reload its modules (it also does on SIGHUP and
whenever the profile or a module file it names changes), wait for the outcome and print it. The new
modules are loaded while the old ones serve; if they do not load, the old ones keep serving and the
exit status is 1.`,
		Example: `  wasmkube reload                      # the demo profile's cluster
  wasmkube reload --profile ./dev.yaml`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error { return o.run(cmd.Context(), s) },
	}
	o.add(cmd)
	cmd.Flags().DurationVar(&o.timeout, "timeout", 30*time.Second, "how long to wait for the outcome")
	return cmd
}

func (o *reloadOptions) run(ctx context.Context, s streams) error {
	p, dataDir, err := o.resolve()
	if err != nil {
		return err
	}
	pid, err := runningPID(dataDir, p.Name, profileRef(p))
	if err != nil {
		return err
	}
	before := readReloadStatus(dataDir)
	if before.PID != pid {
		return fmt.Errorf("the process that runs profile %s (%d) does not take reloads (yet): it is still starting, "+
			"or it is a program that started the cluster with the library without watching it; try again once `up` says Ready", p.Name, pid)
	}
	proc, err := os.FindProcess(pid)
	if err == nil {
		err = proc.Signal(syscall.SIGHUP)
	}
	if err != nil {
		return fmt.Errorf("signal wasmkube up (process %d): %w", pid, err)
	}
	ctx, cancel := context.WithTimeout(ctx, o.timeout)
	defer cancel()
	tick := time.NewTicker(20 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return fmt.Errorf("no answer from wasmkube up (process %d) within %s: see its output", pid, o.timeout)
		case <-tick.C:
		}
		st := readReloadStatus(dataDir)
		if st.PID != pid || st.Seq == before.Seq && st.PID == before.PID {
			continue
		}
		fmt.Fprint(s.out, describeReload(st))
		if !st.OK {
			return exitError{1}
		}
		return nil
	}
}

// runningPID returns the process of the `up` holding the data dir, or says that none runs.
func runningPID(dataDir, name, ref string) (int, error) {
	layout := apiserver.Layout{DataDir: dataDir}
	lk := flock.New(layout.Lock())
	locked, err := lk.TryLock()
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return 0, fmt.Errorf("lock %s: %w", layout.Lock(), err)
	}
	if locked || errors.Is(err, os.ErrNotExist) {
		_ = lk.Unlock()
		return 0, fmt.Errorf("profile %s is not running (data dir %s): start it with `wasmkube up --profile %s`", name, dataDir, ref)
	}
	b, err := os.ReadFile(layout.PIDFile())
	if err != nil {
		return 0, fmt.Errorf("profile %s runs, but its process is unknown: %w", name, err)
	}
	pid, err := strconv.Atoi(strings.TrimSpace(string(b)))
	if err != nil {
		return 0, fmt.Errorf("%s: %w", layout.PIDFile(), err)
	}
	return pid, nil
}
