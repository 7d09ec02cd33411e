package doctest

import (
	"bytes"
	"errors"
	"fmt"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"
)

// readyLine is what `wasmkube up` prints once the cluster serves.
const readyLine = "Press Ctrl-C to stop"

// cluster is a `wasmkube up` a page started, running in the background as in a second terminal.
type cluster struct {
	step *Step
	key  string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
	err  error // how it ended; read after done is closed
}

// startCluster starts the `wasmkube up` of step st with the shell's environment and working
// directory and waits until it is ready, or has ended when the page shows it failing. A running
// directive for a cluster the page already started does nothing (nil cluster).
func startCluster(env Env, sh *shell, st *Step, running []*cluster) (*cluster, error) {
	script := st.Script
	if st.Running != "" {
		script = st.Running
	}
	first, _, _ := strings.Cut(script, "\n")
	key := normalize(withoutNote(first)) // the note after the command is not part of it
	for _, c := range running {
		if c.key != key {
			continue
		}
		if st.Running != "" {
			return nil, nil
		}
		if st.Exit != 0 {
			return nil, &Failure{Err: errors.New("it runs already; the page shows it failing"), Out: c.out.String()}
		}
		return nil, matchOutput(st, untilReady(c.out.String()))
	}
	vars, dir, err := sh.env(env.CommandTimeout)
	if err != nil {
		return nil, fmt.Errorf("the shell's environment: %w", err)
	}
	c := &cluster{step: st, key: key, out: &syncBuffer{}, done: make(chan struct{})}
	c.cmd = exec.Command("bash", "-c", Prelude+script)
	c.cmd.Dir, c.cmd.Env = dir, vars
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	c.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	c.cmd.WaitDelay = 10 * time.Second // a process that keeps the output open does not hold Wait
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start: %w", err)
	}
	go func() {
		c.err = c.cmd.Wait()
		close(c.done)
	}()
	if err := c.waitReady(env, st); err != nil {
		select {
		case <-c.done:
			return nil, err // ended: nothing to stop
		default:
			return c, err
		}
	}
	return c, nil
}

// waitReady waits for the ready line, the end of the process or the timeout, whichever comes
// first, and checks what the page shows against the output so far.
func (c *cluster) waitReady(env Env, st *Step) error {
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	timeout := time.After(env.ReadyTimeout)
	for !strings.Contains(c.out.String(), readyLine) {
		select {
		case <-c.done:
			return check(st, c.out.String(), exitCode(c.err))
		case <-timeout:
			return &Failure{Err: fmt.Errorf("not ready after %s", env.ReadyTimeout), Out: c.out.String()}
		case <-env.done():
			return &Failure{Err: errors.New("the run was ended (its deadline, or an interrupt)"), Out: c.out.String()}
		case <-tick.C:
		}
	}
	if env.Log != nil {
		env.Log("$ %s &\n%s", c.key, c.out.String())
	}
	if st.Exit != 0 {
		return &Failure{Err: errors.New("the cluster started; the page shows it failing"), Out: c.out.String()}
	}
	return matchOutput(st, untilReady(c.out.String()))
}

// untilReady is up's output up to its ready line, which ends what a page shows of it.
func untilReady(out string) string {
	i := strings.Index(out, readyLine)
	if i < 0 {
		return out
	}
	end := strings.IndexByte(out[i:], '\n')
	if end < 0 {
		return out
	}
	return out[:i+end+1]
}

// stop interrupts the cluster, as Ctrl-C in its terminal does, and checks that it stopped
// cleanly within timeout (it is killed after that).
func (c *cluster) stop(timeout time.Duration) error {
	select {
	case <-c.done:
		if c.step.Exit != 0 {
			return nil // it was meant to fail, and did
		}
		return &Failure{Err: fmt.Errorf("the cluster ended before the page did: %v", c.err), Out: c.out.String()}
	default:
	}
	_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGINT)
	select {
	case <-c.done:
	case <-time.After(timeout):
		_ = syscall.Kill(-c.cmd.Process.Pid, syscall.SIGKILL)
		<-c.done
		return &Failure{Err: fmt.Errorf("still running %s after the interrupt", timeout), Out: c.out.String()}
	}
	if c.err != nil && !stoppedByInterrupt(c.err, c.out.String()) {
		return &Failure{Err: fmt.Errorf("after the interrupt: %v", c.err), Out: c.out.String()}
	}
	return nil
}

// stoppedByInterrupt reports whether a cluster whose process ended with err stopped cleanly
// nonetheless: make, for `make up`, ends itself by the interrupt after wasmkube has stopped.
func stoppedByInterrupt(err error, out string) bool {
	var exit *exec.ExitError
	if !errors.As(err, &exit) {
		return false
	}
	ws, ok := exit.Sys().(syscall.WaitStatus)
	return ok && ws.Signaled() && ws.Signal() == syscall.SIGINT && strings.Contains(out, "✓ stopped")
}

// exitCode is a finished process's exit status.
func exitCode(err error) int {
	var exit *exec.ExitError
	if errors.As(err, &exit) {
		return exit.ExitCode()
	}
	if err != nil {
		return -1
	}
	return 0
}

// syncBuffer is a bytes.Buffer safe for a writer and readers at once.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
