package bench

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// Packages the separate-process baseline is built from, at the versions this module requires:
// the same code wasmkube embeds, as envtest and kwokctl run it.
const (
	etcdMain          = "go.etcd.io/etcd/server/v3"
	kubeAPIServerMain = "k8s.io/kubernetes/cmd/kube-apiserver"
)

// goCmd runs the go command in the module's root and returns its trimmed stdout.
func goCmd(ctx context.Context, root string, args ...string) (string, error) {
	return runGo(ctx, root, nil, args...)
}

// goBuild runs `go build args…` in root with CGO_ENABLED=0, as `make build` and upstream's
// release binaries are built: with cgo, Go's linker keeps every exported method once the
// `plugin` package is linked (kubectl's kustomize links it), which makes wasmkube 43 MB larger
// (docs/rationale.md, "The binary").
func goBuild(ctx context.Context, root string, args ...string) error {
	_, err := runGo(ctx, root, append(os.Environ(), "CGO_ENABLED=0"), append([]string{"build"}, args...)...)
	return err
}

// runGo runs the go command in root with env (the process's own when nil).
func runGo(ctx context.Context, root string, env []string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, "go", args...)
	cmd.Dir = root
	cmd.Env = env
	var out, errOut bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errOut
	if err := cmd.Run(); err != nil {
		return "", fmt.Errorf("go %s: %w\n%s", strings.Join(args, " "), err, errOut.String())
	}
	return strings.TrimSpace(out.String()), nil
}

// buildWasmkube builds this tree's wasmkube as `make build` does (not stripped, no cgo) into dir.
func buildWasmkube(ctx context.Context, root, dir string) (string, error) {
	out := filepath.Join(dir, "wasmkube")
	if err := goBuild(ctx, root, "-trimpath", "-o", out, "./cmd/wasmkube"); err != nil {
		return "", fmt.Errorf("build wasmkube: %w", err)
	}
	return out, nil
}

// separateBinaries are an etcd and a kube-apiserver built from the module cache.
type separateBinaries struct {
	Etcd, KubeAPIServer string
	// Versions names what they were built from, e.g. "etcd v3.7.0, kube-apiserver v1.37.2, go1.26.8".
	Versions string
}

// buildSeparate builds (or takes from cacheDir, keyed by the versions) the binaries of the
// separate-process baseline. A first build of kube-apiserver takes minutes; later runs reuse it.
func buildSeparate(ctx context.Context, root, cacheDir string) (separateBinaries, error) {
	etcdVersion, err := goCmd(ctx, root, "list", "-m", "-f", "{{.Version}}", etcdMain)
	if err != nil {
		return separateBinaries{}, err
	}
	kubeVersion, err := goCmd(ctx, root, "list", "-m", "-f", "{{.Version}}", "k8s.io/kubernetes")
	if err != nil {
		return separateBinaries{}, err
	}
	goVersion, err := goCmd(ctx, root, "env", "GOVERSION")
	if err != nil {
		return separateBinaries{}, err
	}
	dir := filepath.Join(cacheDir, fmt.Sprintf("etcd-%s_kube-%s_%s_nocgo", etcdVersion, kubeVersion, goVersion))
	bins := separateBinaries{
		Etcd:          filepath.Join(dir, "etcd"),
		KubeAPIServer: filepath.Join(dir, "kube-apiserver"),
		Versions:      fmt.Sprintf("etcd %s, kube-apiserver %s, %s, CGO_ENABLED=0", etcdVersion, kubeVersion, goVersion),
	}
	for pkg, out := range map[string]string{etcdMain: bins.Etcd, kubeAPIServerMain: bins.KubeAPIServer} {
		if err := buildCached(ctx, root, pkg, out); err != nil {
			return separateBinaries{}, err
		}
	}
	return bins, nil
}

// buildCached builds pkg into out unless out exists; the build goes to a temp file renamed into
// place, so an interrupted build never leaves a broken binary in the cache.
func buildCached(ctx context.Context, root, pkg, out string) error {
	if _, err := os.Stat(out); err == nil {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(out), 0o755); err != nil {
		return fmt.Errorf("bench cache: %w", err)
	}
	tmp := out + ".tmp"
	if err := goBuild(ctx, root, "-trimpath", "-ldflags=-s -w", "-o", tmp, pkg); err != nil {
		return fmt.Errorf("build %s for the separate-process baseline: %w", pkg, err)
	}
	return os.Rename(tmp, out)
}

// buildBase builds the wasmkube of a git revision into out, from a temporary worktree.
func buildBase(ctx context.Context, root, rev, out string) error {
	src := out + "-src"
	if _, err := runOutput(ctx, "git", os.Environ(), "-C", root, "worktree", "add", "--detach", src, rev); err != nil {
		return fmt.Errorf("check out base %s: %w", rev, err)
	}
	defer func() {
		_, _ = runOutput(context.Background(), "git", os.Environ(), "-C", root, "worktree", "remove", "--force", src)
	}()
	if err := goBuild(ctx, src, "-trimpath", "-o", out, "./cmd/wasmkube"); err != nil {
		return fmt.Errorf("build base %s: %w", rev, err)
	}
	return nil
}
