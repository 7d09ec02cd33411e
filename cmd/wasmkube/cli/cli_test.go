package cli

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"k8s.io/client-go/tools/clientcmd"
)

// The test binary doubles as the wasmkube binary: with this variable set, TestMain runs the CLI.
const runCLIEnv = "WASMKUBE_TEST_RUN_CLI"

func TestMain(m *testing.M) {
	if os.Getenv(runCLIEnv) == "1" {
		os.Exit(Run(os.Args[1:], os.Stdin, os.Stdout, os.Stderr))
	}
	os.Exit(m.Run())
}

// env is an isolated user environment: its own HOME, XDG dirs and KUBECONFIG.
type env struct {
	t    testing.TB
	root string
	vars []string
}

func newEnv(t testing.TB) *env {
	root := t.TempDir()
	e := &env{t: t, root: root}
	e.vars = append(os.Environ(),
		runCLIEnv+"=1",
		"HOME="+filepath.Join(root, "home"),
		"XDG_DATA_HOME="+filepath.Join(root, "data"),
		"XDG_CONFIG_HOME="+filepath.Join(root, "config"),
		"XDG_CACHE_HOME="+filepath.Join(root, "cache"),
		"KUBECONFIG="+filepath.Join(root, "home", ".kube", "config"),
		ProfileEnv+"=",
	)
	return e
}

func (e *env) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, os.Args[0], args...)
	cmd.Env = e.vars
	return cmd
}

// run runs wasmkube to completion and returns its exit code, stdout and stderr.
func (e *env) run(args ...string) (int, string, string) {
	e.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := e.command(ctx, args...)
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	err := cmd.Run()
	var exit *exec.ExitError
	switch {
	case err == nil:
		return 0, out.String(), errOut.String()
	case errors.As(err, &exit):
		return exit.ExitCode(), out.String(), errOut.String()
	}
	e.t.Fatalf("run %v: %v", args, err)
	return -1, "", ""
}

// upProcess is a running `wasmkube up`.
type upProcess struct {
	cmd    *exec.Cmd
	mu     sync.Mutex
	output bytes.Buffer
	lines  chan string
}

func (e *env) startUp(args ...string) *upProcess {
	e.t.Helper()
	return e.start(append([]string{"up"}, args...)...)
}

// start starts wasmkube with args (a command that runs until stopped: up, serve).
func (e *env) start(args ...string) *upProcess {
	e.t.Helper()
	cmd := e.command(context.Background(), args...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		e.t.Fatal(err)
	}
	p := &upProcess{cmd: cmd, lines: make(chan string, 100)}
	cmd.Stderr = &lockedWriter{p: p}
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			p.mu.Lock()
			p.output.WriteString(sc.Text() + "\n")
			p.mu.Unlock()
			p.lines <- sc.Text()
		}
		close(p.lines)
	}()
	e.t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return p
}

type lockedWriter struct{ p *upProcess }

func (w *lockedWriter) Write(b []byte) (int, error) {
	w.p.mu.Lock()
	defer w.p.mu.Unlock()
	return w.p.output.Write(b)
}

func (p *upProcess) text() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.output.String()
}

// waitReady waits for the line that says the cluster is ready.
func (p *upProcess) waitReady(t testing.TB) {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("wasmkube up exited before ready:\n%s", p.text())
			}
			if strings.HasPrefix(line, "Press Ctrl-C") {
				return
			}
		case <-timeout:
			t.Fatalf("wasmkube up not ready after 2m:\n%s", p.text())
		}
	}
}

// interrupt sends SIGINT and returns the exit code.
func (p *upProcess) interrupt(t testing.TB) int {
	t.Helper()
	return p.signal(t, syscall.SIGINT)
}

// signal sends sig and returns the exit code.
func (p *upProcess) signal(t testing.TB, sig os.Signal) int {
	t.Helper()
	if err := p.cmd.Process.Signal(sig); err != nil {
		t.Fatal(err)
	}
	return p.waitExit(t)
}

// waitLine waits for an output line that contains s.
func (p *upProcess) waitLine(t testing.TB, s string) {
	t.Helper()
	timeout := time.After(2 * time.Minute)
	for {
		select {
		case line, ok := <-p.lines:
			if !ok {
				t.Fatalf("wasmkube up exited before printing %q:\n%s", s, p.text())
			}
			if strings.Contains(line, s) {
				return
			}
		case <-timeout:
			t.Fatalf("wasmkube up did not print %q within 2m:\n%s", s, p.text())
		}
	}
}

// waitExit waits until the process has exited and returns its exit code (-1: killed by a
// signal).
func (p *upProcess) waitExit(t testing.TB) int {
	t.Helper()
	done := make(chan error, 1)
	go func() {
		for range p.lines {
		}
		done <- p.cmd.Wait()
	}()
	select {
	case err := <-done:
		var exit *exec.ExitError
		if errors.As(err, &exit) {
			return exit.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(StopTimeout + 10*time.Second):
		t.Fatalf("wasmkube up did not exit:\n%s", p.text())
		return -1
	}
}

func TestUpKubectlInterruptRestart(t *testing.T) {
	e := newEnv(t)
	up := e.startUp("--profile", "demo", "--port", "0", "--merge-kubeconfig")
	up.waitReady(t)
	for _, want := range []string{"✓ pki ready", "✓ etcd ready", "✓ modules ready (", "5 loaded", "✓ kube-apiserver ready", "✓ controllers started",
		"✓ scheduler started", "✓ nodes ready", "3 simulated (kwok)", "context wasmkube-demo"} {
		if !strings.Contains(up.text(), want) {
			t.Errorf("up output lacks %q:\n%s", want, up.text())
		}
	}

	code, out, stderr := e.run("kubectl", "get", "ns", "default", "-o", "name")
	if code != 0 || strings.TrimSpace(out) != "namespace/default" {
		t.Fatalf("built-in kubectl get ns: %d %q %s", code, out, stderr)
	}
	code, out, stderr = e.run("kubectl", "--profile", "demo", "create", "configmap", "kept", "--from-literal=k=v")
	if code != 0 {
		t.Fatalf("kubectl create configmap: %d %s %s", code, out, stderr)
	}
	// kubectl's hints name the command that works.
	if code, _, stderr = e.run("kubectl", "get", "configmap", "configmap/kept"); code == 0 || !strings.Contains(stderr, "'wasmkube kubectl get resource/<resource_name>'") {
		t.Errorf("kubectl's hint: %d %s", code, stderr)
	}
	code, out, _ = e.run("kubectl", "version")
	if code != 0 || !strings.Contains(out, "Server Version: v1.37.2") || !strings.Contains(out, "Client Version: v1.37.2") {
		t.Errorf("kubectl version: %d %s", code, out)
	}
	// The original walkthrough (README), answered by the demo's modules: with the built-in
	// kubectl and, when one is installed, the installed kubectl.
	code, kcPath, _ := e.run("kubeconfig", "--path")
	kcPath = strings.TrimSpace(kcPath)
	if code != 0 || !strings.HasSuffix(kcPath, filepath.Join("wasmkube", "demo", "kubeconfig")) {
		t.Fatalf("kubeconfig --path: %d %q", code, kcPath)
	}
	kubectls := map[string]func(args ...string) (int, string, string){
		"built-in": func(args ...string) (int, string, string) { return e.run(append([]string{"kubectl"}, args...)...) },
	}
	if kubectl, err := exec.LookPath("kubectl"); err == nil {
		kubectls["installed"] = func(args ...string) (int, string, string) {
			cmd := exec.Command(kubectl, append([]string{"--kubeconfig", kcPath, "--cache-dir", filepath.Join(e.root, "kcache")}, args...)...)
			var stdout, stderr strings.Builder
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			_ = cmd.Run()
			return cmd.ProcessState.ExitCode(), stdout.String(), stderr.String()
		}
	} else {
		t.Log("no kubectl installed; the built-in one was used")
	}
	for which, kubectl := range kubectls {
		magicWalkthrough(t, which, kubectl)
	}
	t.Run("DecisionsFollow", func(t *testing.T) { testDecisionsFollow(t, e) })
	t.Run("Workloads", func(t *testing.T) { testWorkloads(t, e) })
	code, _, stderr = e.run("kubectl", "get", "nosuchkind")
	if code == 0 || !strings.Contains(stderr, "nosuchkind") {
		t.Errorf("kubectl error: exit %d, stderr %q; want non-zero and the message", code, stderr)
	}

	if installed, ok := kubectls["installed"]; ok {
		if code, out, stderr := installed("get", "configmap", "kept", "-o", "jsonpath={.data.k}"); code != 0 || out != "v" {
			t.Errorf("installed kubectl: %d %s %s", code, out, stderr)
		}
	}

	merged, err := clientcmd.LoadFromFile(filepath.Join(e.root, "home", ".kube", "config"))
	if err != nil || merged.CurrentContext != "wasmkube-demo" || merged.Contexts["wasmkube-demo"] == nil {
		t.Errorf("--merge-kubeconfig: %v %+v", err, merged)
	}

	code, _, stderr = e.run("up", "--profile", "demo", "--port", "0")
	if code == 0 || !strings.Contains(stderr, "already running") {
		t.Errorf("second up: exit %d, stderr %q; want non-zero and 'already running'", code, stderr)
	}
	code, _, stderr = e.run("reset", "--yes")
	if code == 0 || !strings.Contains(stderr, "is running") {
		t.Errorf("reset while running: exit %d, stderr %q", code, stderr)
	}

	if code := up.interrupt(t); code != 0 {
		t.Fatalf("exit code after SIGINT = %d, want 0:\n%s", code, up.text())
	}
	if !strings.Contains(up.text(), "✓ stopped") {
		t.Errorf("no stop line:\n%s", up.text())
	}

	up = e.startUp("--profile", "demo", "--port", "0")
	up.waitReady(t)
	code, out, stderr = e.run("kubectl", "get", "configmap", "kept", "-o", "jsonpath={.data.k}")
	if code != 0 || out != "v" {
		t.Fatalf("after restart the ConfigMap is gone: %d %q %s", code, out, stderr)
	}
	if !strings.Contains(up.text(), "pki ready") || !strings.Contains(up.text(), "reused") {
		t.Errorf("restart did not reuse the PKI:\n%s", up.text())
	}
	// The simulated nodes and the workloads on them survive the restart.
	code, out, _ = e.run("kubectl", "get", "nodes", "-l", "type=kwok", "--no-headers")
	if code != 0 || strings.Count(out, " Ready ") != 3 {
		t.Errorf("after restart the nodes are not Ready: %d\n%s", code, out)
	}
	code, out, _ = e.run("kubectl", "get", "pods", "-l", "app=wl-agent", "-o", "jsonpath={.items[*].status.phase}")
	if code != 0 || out != "Running Running Running" {
		t.Errorf("after restart the DaemonSet's pods: %d %q, want Running ×3", code, out)
	}
	if code := up.signal(t, syscall.SIGTERM); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d, want 0", code)
	}

	code, out, stderr = e.run("reset", "--yes")
	if code != 0 || !strings.Contains(out, "removed context wasmkube-demo") || !strings.Contains(out, "deleted") {
		t.Fatalf("reset: %d %s %s", code, out, stderr)
	}
	merged, _ = clientcmd.LoadFromFile(filepath.Join(e.root, "home", ".kube", "config"))
	if merged.Contexts["wasmkube-demo"] != nil {
		t.Error("reset left the context in the kubeconfig")
	}
	if _, err := os.Stat(filepath.Join(e.root, "data", "wasmkube", "demo")); !os.IsNotExist(err) {
		t.Errorf("reset --yes left the data dir: %v", err)
	}
	// The compiled modules outlive the data dir, and reset says where; --cache deletes them.
	cache := filepath.Join(e.root, "cache", "wasmkube", "modules")
	if !strings.Contains(out, "compiled modules kept in "+cache) {
		t.Errorf("reset --yes does not name the module cache %s:\n%s", cache, out)
	}
	code, out, stderr = e.run("reset", "--cache")
	if _, err := os.Stat(cache); code != 0 || !os.IsNotExist(err) || !strings.Contains(out, "deleted "+cache) {
		t.Errorf("reset --cache: %d %q %q; the cache: %v", code, out, stderr, err)
	}
	// Outside the data dir, only the merged kubeconfig was written.
	var written []string
	_ = filepath.WalkDir(filepath.Join(e.root, "home"), func(path string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			written = append(written, strings.TrimPrefix(path, e.root))
		}
		return nil
	})
	if len(written) != 1 || written[0] != "/home/.kube/config" {
		t.Errorf("files written under $HOME: %v; want only the merged kubeconfig", written)
	}
}

// magicWalkthrough runs the README's walkthrough of the demo profile with one kubectl.
func magicWalkthrough(t *testing.T, which string, kubectl func(args ...string) (int, string, string)) {
	t.Helper()
	walkthrough(t, which, `admission WASM module "magic-validate" denied the request: `, kubectl)
}

// walkthrough runs the magic walkthrough; denial starts the message of magic-validate's denial
// (the in-process server's, or kube-apiserver's for a webhook).
func walkthrough(t *testing.T, which, denial string, kubectl func(args ...string) (int, string, string)) {
	t.Helper()
	name := "t-" + strings.ReplaceAll(which, "-", "")
	steps := []struct {
		args     []string
		ok       bool
		want     string
		wantElse string // in stderr when the command fails
	}{
		{args: []string{"auth", "whoami"}, ok: true, want: "magic-group"},
		{args: []string{"get", "configmaps"}, ok: true},
		{args: []string{"get", "pods"}, wantElse: `User "magic-user" cannot list resource "pods"`},
		{args: []string{"create", "configmap", name, "--from-literal=not-allowed-value=abc"},
			wantElse: denial + `value 'not-allowed-value' not allowed in configmap`},
		{args: []string{"create", "configmap", name}, ok: true, want: "configmap/" + name + " created"},
		{args: []string{"get", "configmap", name, "-o", "jsonpath={.data.magic-value}"}, ok: true, want: "foobar"},
	}
	for _, s := range steps {
		args := append([]string{"--token", "magic-token"}, s.args...)
		code, out, stderr := kubectl(args...)
		switch {
		case s.ok && (code != 0 || !strings.Contains(out, s.want)):
			t.Errorf("%s kubectl %s: exit %d, want 0 and %q in:\n%s%s", which, strings.Join(args, " "), code, s.want, out, stderr)
		case !s.ok && (code == 0 || !strings.Contains(stderr, s.wantElse)):
			t.Errorf("%s kubectl %s: exit %d, want non-zero and %q in:\n%s", which, strings.Join(args, " "), code, s.wantElse, stderr)
		}
	}
}

func TestUpErrors(t *testing.T) {
	e := newEnv(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	busy := ln.Addr().(*net.TCPAddr).Port

	cases := []struct {
		name string
		args []string
		want []string
	}{
		{"bad profile", []string{"up", "--profile", "testdata/typo.yaml"}, []string{"typo.yaml:4", `unknown field "controlers"`}},
		{"missing profile", []string{"up", "--profile", "nosuch"}, []string{`"nosuch"`, "profiles list"}},
		{"busy port", []string{"up", "--profile", "minimal", "--port", fmt.Sprint(busy)}, []string{fmt.Sprintf("port %d", busy), "already in use", "--port"}},
		{"unreachable external etcd", []string{"up", "--profile", "testdata/external-etcd.yaml"}, []string{"http://127.0.0.1:1", "etcd.external.servers"}},
		{"owned flag", []string{"up", "--apiserver-arg", "secure-port=1"}, []string{"--port"}},
		{"kubeconfig before up", []string{"kubeconfig", "--profile", "minimal"}, []string{"no kubeconfig yet", "wasmkube up --profile minimal"}},
		{"module without the export", []string{"up", "--profile", "testdata/bad-module.yaml"}, []string{"profile bad-module: authentication.modules[0] (magic-validate)", "missing function 'authn'"}},
		{"module file missing", []string{"up", "--profile", "testdata/missing-module.yaml"}, []string{"profile missing-module: admission.modules[0] (nosuch)", "nosuch.wasm"}},
		{"original config file missing", []string{"up", "--profile", "minimal", "--apiserver-arg", "authentication-wasm-config-file=testdata/nosuch.yaml"}, []string{"--authentication-wasm-config-file", "nosuch.yaml"}},
		// --dry-run finds the files a start would miss.
		{"dry run: module file missing", []string{"up", "--profile", "testdata/missing-module.yaml", "--dry-run"}, []string{"profile missing-module: admission.modules[0] (nosuch): module ", "testdata/nosuch.wasm is not a file"}},
		{"dry run: granted directory missing", []string{"up", "--profile", "testdata/missing-dir.yaml", "--dry-run"}, []string{"profile missing-dir: admission.modules[0] (magic-validate): grants.readOnlyDirs[0].hostPath: ", "testdata/nosuch-dir is not a directory"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			code, _, stderr := e.run(c.args...)
			if code == 0 {
				t.Fatalf("exit 0, want non-zero; stderr %q", stderr)
			}
			for _, w := range c.want {
				if !strings.Contains(stderr, w) {
					t.Errorf("stderr lacks %q:\n%s", w, stderr)
				}
			}
			if strings.Contains(stderr, "grpc") || strings.Count(strings.TrimSpace(stderr), "\n") > 3 {
				t.Errorf("more than the error on stderr (raw logs?):\n%s", stderr)
			}
		})
	}
	// A failed start leaves no lock behind and does not corrupt the data dir.
	if _, err := os.Stat(filepath.Join(e.root, "data", "wasmkube", "minimal", "wasmkube.pid")); !os.IsNotExist(err) {
		t.Errorf("pid file left after a failed start: %v", err)
	}
}

func TestDryRunPrintsPlan(t *testing.T) {
	e := newEnv(t)
	code, out, stderr := e.run("up", "--profile", "demo", "--dry-run", "--apiserver-arg", "v=3")
	if code != 0 {
		t.Fatalf("dry run: %d %s", code, stderr)
	}
	sock := "unix://" + filepath.Join(e.root, "data", "wasmkube", "demo", "etcd.sock")
	for _, want := range []string{"--bind-address=127.0.0.1", "--secure-port=6443", "--v=3", "--leader-elect=false", "--etcd-servers=" + sock, "etcd:\n- " + sock, "etcdFsync: false"} {
		if !strings.Contains(out, want) {
			t.Errorf("plan lacks %q:\n%s", want, out)
		}
	}
	if _, err := os.Stat(filepath.Join(e.root, "data", "wasmkube", "demo")); !os.IsNotExist(err) {
		t.Errorf("--dry-run created the data dir: %v", err)
	}
}

func TestProfilesAndVersion(t *testing.T) {
	e := newEnv(t)
	userDir := filepath.Join(e.root, "config", "wasmkube", "profiles")
	if err := os.MkdirAll(userDir, 0o700); err != nil {
		t.Fatal(err)
	}
	broken := "apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: broken\nport: 70000\nnodes: {count: -1}\n"
	if err := os.WriteFile(filepath.Join(userDir, "broken.yaml"), []byte(broken), 0o600); err != nil {
		t.Fatal(err)
	}
	code, out, _ := e.run("profiles", "list")
	// One line per profile in the table; the reasons of an invalid one follow it, line by line.
	table, details, _ := strings.Cut(out, "\n\n")
	if code != 0 || len(strings.Split(table, "\n")) != 5 || !strings.Contains(table, "invalid (below)") ||
		!strings.Contains(details, "broken.yaml is invalid:\n  ") || strings.Count(details, "\n  ") < 2 {
		t.Errorf("profiles list: %d\n%s", code, out)
	}
	for _, name := range []string{"broken", "demo", "kubewarden-demo", "minimal"} {
		if !regexp.MustCompile(`(?m)^` + name + ` `).MatchString(table) {
			t.Errorf("profiles list lacks %s:\n%s", name, out)
		}
	}
	// --version is wasmkube's, not Kubernetes' (whose flag component-base registers globally).
	code, out, _ = e.run("--version")
	if code != 0 || !strings.HasPrefix(out, "wasmkube version ") {
		t.Errorf("--version: %d %q", code, out)
	}
	if _, help, _ := e.run("--help"); strings.Contains(help, "reported version") {
		t.Errorf("--help shows component-base's --version:\n%s", help)
	}
	if code, _, stderr := e.run("up", "--version"); code == 0 || !strings.Contains(stderr, `unknown flag: --version for "wasmkube up"`) {
		t.Errorf("up --version: %d %q (component-base's hidden flag must not start a cluster)", code, stderr)
	}
	// A file profile's hints name it by its absolute path, which works from any directory.
	abs, _ := filepath.Abs(filepath.Join("testdata", "missing-module.yaml"))
	for _, args := range [][]string{{"reload"}, {"kubeconfig"}, {"decisions"}} {
		code, _, stderr := e.run(append(args, "--profile", "testdata/missing-module.yaml")...)
		if code == 0 || !strings.Contains(stderr, "start it with `wasmkube up --profile "+abs+"`") {
			t.Errorf("%s before up: %d %q, want the hint with %s", args[0], code, stderr, abs)
		}
	}
	code, out, _ = e.run("profiles", "show", "minimal")
	if code != 0 || !strings.Contains(out, "name: minimal") || !strings.Contains(out, "# source: builtin:minimal") {
		t.Errorf("profiles show: %d\n%s", code, out)
	}
	code, out, _ = e.run("version")
	if code != 0 || !strings.Contains(out, "kubernetes: v1.37.2") {
		t.Errorf("version: %d\n%s", code, out)
	}
	code, out, _ = e.run("completion", "bash")
	if code != 0 || !strings.Contains(out, "wasmkube") {
		t.Errorf("completion bash: %d", code)
	}
}

// TestKubewardenDemo runs the kubewarden-demo profile and the walkthroughs of its policies'
// READMEs with the built-in kubectl.
func TestKubewardenDemo(t *testing.T) {
	e := newEnv(t)
	up := e.startUp("--profile", "kubewarden-demo", "--port", "0")
	up.waitReady(t)
	kubectl := func(stdin string, args ...string) (int, string, string) {
		cmd := e.command(context.Background(), append([]string{"kubectl", "--profile", "kubewarden-demo"}, args...)...)
		cmd.Stdin = strings.NewReader(stdin)
		var out, errOut bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errOut
		_ = cmd.Run()
		return cmd.ProcessState.ExitCode(), out.String(), errOut.String()
	}
	steps := []struct {
		stdin string
		args  []string
		ok    bool
		want  string // in stdout and stderr together
	}{
		{"", []string{"create", "configmap", "c", "--from-literal=a=b"}, false,
			`admission WASM module "safe-annotations" denied the request: ConfigMap c: missing mandatory annotations: owner`},
		{"apiVersion: v1\nkind: ConfigMap\nmetadata: {name: c, annotations: {owner: me}}\n", []string{"create", "-f", "-"}, true,
			"Warning: ConfigMap c has no description annotation"},
		{"", []string{"get", "configmap", "c", "-o", "jsonpath={.metadata.labels}"}, true, `{"cost-center":"42","owner":"platform"}`},
		{"", []string{"create", "ingress", "web", "--rule=a.example.com/*=web:80"}, true, "ingress.networking.k8s.io/web created"},
		{"", []string{"create", "ingress", "web2", "--rule=a.example.com/*=web:80"}, false,
			`admission WASM module "unique-ingress-host" denied the request: host already in use: a.example.com (used by default/web)`},
		// Rego, Gatekeeper mode (examples/required-labels).
		{"", []string{"create", "namespace", "team-a"}, false,
			`admission WASM module "required-labels" denied the request: Namespace team-a has no label "owner"`},
		{"apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {owner: me, env: test}}\n", []string{"create", "-f", "-"}, false,
			`Namespace team-a: label env=test is not one of ["dev", "staging", "prod"]`},
		{"apiVersion: v1\nkind: Namespace\nmetadata: {name: team-a, labels: {owner: me, env: dev}}\n", []string{"create", "-f", "-"}, true, "namespace/team-a created"},
		// Rego, OPA mode (examples/no-latest-tag).
		{"", []string{"run", "web", "--image=nginx"}, false,
			`admission WASM module "no-latest-tag" denied the request: container web: image nginx has no tag or the tag latest; name a version or a digest`},
		{"", []string{"create", "job", "web", "--image=nginx:latest"}, false,
			`admission WASM module "no-latest-tag" denied the request: container web: image nginx:latest has no tag or the tag latest`},
		{"", []string{"run", "web", "--image=nginx:1.27"}, true, "pod/web created"},
	}
	for _, s := range steps {
		var code int
		var out, stderr string
		// The Ingress cache of unique-ingress-host catches up within moments of a create.
		for range 20 {
			if code, out, stderr = kubectl(s.stdin, s.args...); (code == 0) == s.ok {
				break
			}
			time.Sleep(100 * time.Millisecond)
		}
		if (code == 0) != s.ok || !strings.Contains(out+stderr, s.want) {
			t.Errorf("kubectl %s: exit %d, want ok=%v and %q in:\n%s%s", strings.Join(s.args, " "), code, s.ok, s.want, out, stderr)
		}
	}
	if code := up.interrupt(t); code != 0 {
		t.Errorf("exit %d", code)
	}
}
