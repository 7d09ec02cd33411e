package bench

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

// home is an isolated user environment for wasmkube: its own HOME and XDG dirs under root, so
// that nothing the bench starts touches the user's clusters, caches or kubeconfig.
type home struct {
	root string
	bin  string // the wasmkube binary
}

func newHome(root, bin string) (home, error) {
	if err := os.MkdirAll(root, 0o700); err != nil {
		return home{}, fmt.Errorf("bench home: %w", err)
	}
	return home{root: root, bin: bin}, nil
}

func (h home) env() []string {
	return append(os.Environ(),
		"HOME="+filepath.Join(h.root, "home"),
		"XDG_DATA_HOME="+filepath.Join(h.root, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(h.root, "config"),
		"XDG_CACHE_HOME="+filepath.Join(h.root, "cache"),
		"KUBECONFIG="+filepath.Join(h.root, "home", ".kube", "config"),
		"WASMKUBE_PROFILE=",
	)
}

// dataDir is where `up` keeps the profile's data (its kubeconfig, PKI and etcd).
func (h home) dataDir(profile string) string {
	return filepath.Join(h.root, "data", "wasmkube", profile)
}

func (h home) kubeconfig(profile string) string {
	return filepath.Join(h.dataDir(profile), "kubeconfig")
}

// child is a process the bench started: its output is kept (for errors) and scanned by line.
type child struct {
	name  string
	cmd   *exec.Cmd
	began time.Time
	mu    sync.Mutex
	out   bytes.Buffer
	lines chan string
	done  chan struct{}
	err   error
}

// startChild starts bin with args and env; its stdout lines arrive on lines, stderr is kept.
func startChild(name, bin string, env []string, args ...string) (*child, error) {
	c := &child{name: name, cmd: exec.Command(bin, args...), lines: make(chan string, 1024), done: make(chan struct{})}
	c.cmd.Env = env
	c.cmd.Stderr = lockedWriter{c}
	stdout, err := c.cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	c.began = time.Now()
	if err := c.cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	go c.scan(stdout)
	return c, nil
}

func (c *child) scan(stdout interface{ Read([]byte) (int, error) }) {
	sc := bufio.NewScanner(stdout)
	for sc.Scan() {
		c.mu.Lock()
		c.out.WriteString(sc.Text() + "\n")
		c.mu.Unlock()
		select {
		case c.lines <- sc.Text():
		default: // nobody reads: keep the output, drop the line
		}
	}
	c.err = c.cmd.Wait()
	close(c.lines)
	close(c.done)
}

type lockedWriter struct{ c *child }

func (w lockedWriter) Write(b []byte) (int, error) {
	w.c.mu.Lock()
	defer w.c.mu.Unlock()
	return w.c.out.Write(b)
}

func (c *child) output() string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.String()
}

// waitLine waits for a stdout line starting with prefix and returns the time since the start.
func (c *child) waitLine(prefix string, timeout time.Duration) (time.Duration, error) {
	deadline := time.After(timeout)
	for {
		select {
		case line, ok := <-c.lines:
			if !ok {
				return 0, fmt.Errorf("%s exited before printing %q:\n%s", c.name, prefix, c.output())
			}
			if strings.HasPrefix(line, prefix) {
				return time.Since(c.began), nil
			}
		case <-deadline:
			return 0, fmt.Errorf("%s did not print %q within %s:\n%s", c.name, prefix, timeout, c.output())
		}
	}
}

// stop sends SIGINT, waits for the exit and returns how long that took; after 30 s the process
// is killed and an error returned.
func (c *child) stop() (time.Duration, error) {
	began := time.Now()
	if err := c.cmd.Process.Signal(syscall.SIGINT); err != nil && !errors.Is(err, os.ErrProcessDone) {
		return 0, fmt.Errorf("interrupt %s: %w", c.name, err)
	}
	select {
	case <-c.done:
	case <-time.After(30 * time.Second):
		c.kill()
		return 0, fmt.Errorf("%s did not stop within 30s of SIGINT:\n%s", c.name, c.output())
	}
	if c.err != nil {
		return 0, fmt.Errorf("%s: %w:\n%s", c.name, c.err, c.output())
	}
	return time.Since(began), nil
}

// kill ends the process (by its PID) and waits for it; for cleanups after a failure.
func (c *child) kill() {
	_ = c.cmd.Process.Kill()
	<-c.done
}

// rssMB is the resident memory of a process in MB (VmRSS from /proc).
func rssMB(pid int) (float64, error) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(data), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, err := strconv.ParseFloat(f[1], 64)
			return kb / 1024, err
		}
	}
	return 0, fmt.Errorf("no VmRSS for pid %d", pid)
}

// upCluster is a running `wasmkube up` child.
type upCluster struct {
	*child
	home    home
	profile string // the profile's name (its data dir)
}

// readyLine is what `up` prints once the cluster is ready.
const readyLine = "Press Ctrl-C"

// startUp runs `wasmkube up --profile ref --port 0` and waits for its ready line; it returns the
// cluster and the time from exec to that line.
func (h home) startUp(ctx context.Context, ref, name string) (*upCluster, time.Duration, error) {
	c, err := startChild("wasmkube up --profile "+ref, h.bin, h.env(), "up", "--profile", ref, "--port", "0")
	if err != nil {
		return nil, 0, err
	}
	ready, err := c.waitLine(readyLine, 3*time.Minute)
	if err != nil {
		c.kill()
		return nil, 0, err
	}
	return &upCluster{child: c, home: h, profile: name}, ready, ctx.Err()
}

func (u *upCluster) kubeconfig() string { return u.home.kubeconfig(u.profile) }

// runOutput runs bin to completion and returns its stdout.
func runOutput(ctx context.Context, bin string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("%s %s: %w\n%s", filepath.Base(bin), strings.Join(args, " "), err, errOut.String())
	}
	return out.String(), nil
}
