package doctest

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// Prelude is sourced by every shell a run starts: `go run ./cmd/wasmkube ARGS` runs the
// wasmkube under test (on PATH) rather than building it again, and `go install ./cmd/wasmkube`
// finds it installed already; every other go command is Go's. pipefail: a command that fails
// inside a pipeline fails the line, rather than hiding behind the pipeline's last command.
const Prelude = `set -o pipefail
go() {
	if [ "$1" = run ] && [ "$2" = ./cmd/wasmkube ]; then shift 2; command wasmkube "$@"
	elif [ "$1" = install ] && [ "$2" = ./cmd/wasmkube ] && [ $# = 2 ]; then :
	else command go "$@"; fi
}
`

// Env is where a page's commands run.
type Env struct {
	// Context ends the run early: its commands and clusters are killed (nil: never).
	Context context.Context
	// Dir is the shell's working directory; Vars its environment (PATH with wasmkube on it).
	Dir  string
	Vars []string
	// Scratch holds the run's own files (command outputs).
	Scratch string
	// CommandTimeout bounds one command; ReadyTimeout a background `wasmkube up` until ready;
	// StopTimeout its clean stop after the interrupt.
	CommandTimeout, ReadyTimeout, StopTimeout time.Duration
	// Log, when set, gets each command and its output as the run goes.
	Log func(format string, args ...any)
}

// Failure is a step that did not do what its page says.
type Failure struct {
	Page string
	Step *Step
	Err  error
	Out  string
}

func (f *Failure) Error() string {
	what := f.Step.Script
	if f.Step.Running != "" {
		what = "(running) " + f.Step.Running
	}
	msg := fmt.Sprintf("%s:%d: %s\n  command: %s", f.Page, f.Step.Line, f.Err, indent(what))
	if f.Out != "" {
		msg += "\n  output:\n    " + strings.ReplaceAll(strings.TrimRight(f.Out, "\n"), "\n", "\n    ")
	}
	return msg
}

func indent(s string) string { return strings.ReplaceAll(s, "\n", "\n  ") }

// RunPage runs a page's steps in a new shell, in order, stopping at the first that fails, then
// interrupts the clusters the page started and checks that they stopped cleanly. It returns
// every failure (at most one step's, and those of the stops).
func RunPage(env Env, p *Page) []error {
	sh, err := startShell(env)
	if err != nil {
		return []error{fmt.Errorf("%s: %w", p.Path, err)}
	}
	defer sh.close()
	var errs []error
	var clusters []*cluster
	for _, st := range p.Steps {
		var c *cluster
		var err error
		if st.Up() {
			c, err = startCluster(env, sh, st, clusters)
			if c != nil {
				clusters = append(clusters, c)
			}
		} else {
			err = runStep(env, sh, st)
		}
		if err != nil {
			errs = append(errs, withPage(p.Path, st, err))
			break
		}
	}
	return append(errs, stopAll(env, p.Path, clusters)...)
}

// stopAll interrupts the clusters at once and waits for each to stop, for StopTimeout at
// most, and less when the run's deadline comes sooner.
func stopAll(env Env, page string, clusters []*cluster) []error {
	timeout := env.StopTimeout
	if env.Context != nil {
		if d, ok := env.Context.Deadline(); ok {
			timeout = max(min(timeout, time.Until(d)), 5*time.Second)
		}
	}
	results := make([]error, len(clusters))
	var wg sync.WaitGroup
	for i, c := range clusters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			results[i] = c.stop(timeout)
		}()
	}
	wg.Wait()
	var errs []error
	for i, err := range results {
		if err != nil {
			errs = append(errs, withPage(page, clusters[i].step, err))
		}
	}
	return errs
}

// withPage makes err a Failure of step st on page (keeping the output a Failure carries).
func withPage(page string, st *Step, err error) error {
	var f *Failure
	if errors.As(err, &f) {
		f.Page, f.Step = page, st
		return f
	}
	return &Failure{Page: page, Step: st, Err: err}
}

// runStep runs one command in the shell and checks its exit status and output.
func runStep(env Env, sh *shell, st *Step) error {
	out, code, err := sh.run(st.Script, env.CommandTimeout)
	if env.Log != nil {
		env.Log("$ %s\n%s(exit %d)", st.Script, out, code)
	}
	if err != nil {
		return &Failure{Err: err, Out: out}
	}
	return check(st, out, code)
}

// check compares a finished command's status and output with what its page shows.
func check(st *Step, out string, code int) error {
	switch {
	case st.Exit == 0 && code != 0:
		return &Failure{Err: fmt.Errorf("exit status %d; the page shows no failure (an output line beginning with \"error\", or \"# (exit N)\")", code), Out: out}
	case st.Exit < 0 && code == 0:
		return &Failure{Err: errors.New("succeeded; the page shows it failing"), Out: out}
	case st.Exit > 0 && code != st.Exit:
		return &Failure{Err: fmt.Errorf("exit status %d; the page shows %d", code, st.Exit), Out: out}
	}
	return matchOutput(st, out)
}

// matchOutput checks out against the step's expected output: its lines, or all of it.
func matchOutput(st *Step, out string) error {
	match := Match
	if st.Exact {
		match = MatchExact
	}
	if err := match(st.Expect, out); err != nil {
		return &Failure{Err: fmt.Errorf("output (page line %d): %w", st.ExpectFrom, err), Out: out}
	}
	return nil
}

// done is the context's Done channel, or nil (never) without a context.
func (env Env) done() <-chan struct{} {
	if env.Context == nil {
		return nil
	}
	return env.Context.Done()
}

// shell is a bash process that runs commands one after another, keeping its state between them.
type shell struct {
	cmd     *exec.Cmd
	stdin   io.WriteCloser
	status  chan string // the status lines the shell prints after each command
	stderr  *syncBuffer
	scratch string
	cancel  <-chan struct{}
	n       int
	closed  bool
}

const statusMark = "__doctest_status__ "

func startShell(env Env) (*shell, error) {
	cmd := exec.Command("bash", "--noprofile", "--norc")
	cmd.Dir, cmd.Env = env.Dir, env.Vars
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	sh := &shell{cmd: cmd, stdin: stdin, status: make(chan string, 1), stderr: &syncBuffer{}, scratch: env.Scratch, cancel: env.done()}
	cmd.Stderr = sh.stderr
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start bash: %w", err)
	}
	go sh.readStatus(stdout)
	if _, err := io.WriteString(stdin, Prelude); err != nil {
		sh.close()
		return nil, fmt.Errorf("bash: %w", err)
	}
	return sh, nil
}

// readStatus forwards the status lines the shell prints; the channel closes when the shell ends.
func (sh *shell) readStatus(stdout io.Reader) {
	defer close(sh.status)
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		if line, ok := strings.CutPrefix(sc.Text(), statusMark); ok {
			sh.status <- line
		}
	}
}

// run runs script in the shell and returns its output (stdout and stderr) and exit status.
func (sh *shell) run(script string, timeout time.Duration) (string, int, error) {
	sh.n++
	outFile := filepath.Join(sh.scratch, fmt.Sprintf("out-%d", sh.n))
	wrapped := fmt.Sprintf("{\n%s\n} >%s 2>&1 </dev/null\necho \"%s$?\"\n", script, shellQuote(outFile), statusMark)
	if _, err := io.WriteString(sh.stdin, wrapped); err != nil {
		return "", 0, fmt.Errorf("the shell has ended: %w; its errors: %s", err, sh.stderr.String())
	}
	timer := time.NewTimer(timeout)
	defer timer.Stop()
	select {
	case line, ok := <-sh.status:
		out, _ := os.ReadFile(outFile)
		if !ok {
			return string(out), 0, fmt.Errorf("the shell ended (a syntax error, or exit?); its errors: %s", sh.stderr.String())
		}
		code, err := strconv.Atoi(line)
		return string(out), code, err
	case <-timer.C:
		out, _ := os.ReadFile(outFile)
		sh.close()
		return string(out), 0, fmt.Errorf("still running after %s", timeout)
	case <-sh.cancel:
		out, _ := os.ReadFile(outFile)
		sh.close()
		return string(out), 0, errors.New("the run was ended (its deadline, or an interrupt)")
	}
}

// env returns the shell's current environment and working directory.
func (sh *shell) env(timeout time.Duration) ([]string, string, error) {
	envFile, dirFile := filepath.Join(sh.scratch, "env"), filepath.Join(sh.scratch, "pwd")
	_, code, err := sh.run(fmt.Sprintf("env -0 >%s && pwd >%s", shellQuote(envFile), shellQuote(dirFile)), timeout)
	if err == nil && code != 0 {
		err = fmt.Errorf("env: exit status %d", code)
	}
	if err != nil {
		return nil, "", err
	}
	vars, err := os.ReadFile(envFile)
	if err != nil {
		return nil, "", err
	}
	dir, err := os.ReadFile(dirFile)
	return strings.Split(strings.TrimRight(string(vars), "\x00"), "\x00"), strings.TrimSpace(string(dir)), err
}

func (sh *shell) close() {
	if sh.closed {
		return
	}
	sh.closed = true
	_ = sh.stdin.Close()
	_ = syscall.Kill(-sh.cmd.Process.Pid, syscall.SIGKILL)
	_ = sh.cmd.Wait()
}

func shellQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'" }
