package wasmkube

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/gofrs/flock"

	"github.com/wasmkube/wasmkube/apiserver"
	"github.com/wasmkube/wasmkube/apiserver/kubeconfig"
	"github.com/wasmkube/wasmkube/apiserver/pki"
)

// ErrAlreadyRunning is returned by Up when another cluster holds the data directory's lock.
var ErrAlreadyRunning = errors.New("already running")

// Stop stops the controllers, then the kube-apiserver, then etcd, and releases the data
// directory. It is safe to call more than once and from several goroutines; ctx bounds the wait.
func (c *Cluster) Stop(ctx context.Context) error {
	c.life.Stop(nil)
	select {
	case <-c.life.Done():
		return c.life.Err()
	case <-ctx.Done():
		return fmt.Errorf("stop cluster %s: %w", c.Name, ctx.Err())
	}
}

// Wait blocks until the cluster has stopped, by Stop or because a component failed, and returns
// the cause of a failure.
func (c *Cluster) Wait() error {
	<-c.life.Done()
	return c.life.Err()
}

// Done is closed once the cluster has stopped.
func (c *Cluster) Done() <-chan struct{} { return c.life.Done() }

// onStop registers fn to run on Stop (or on a failed Up), in reverse order of registration.
func (c *Cluster) onStop(fn func() error) { c.life.OnStop(fn) }

// component is a part of the cluster that runs until stopped.
type component interface {
	Done() <-chan struct{}
	Err() error
}

// watch stops the cluster when a component stops on its own; the component's failure becomes
// the cluster's error unless Stop was called first (lifecycle.Stopper keeps the first cause).
func (c *Cluster) watch(name string, comp component) {
	select {
	case <-c.life.Stopping():
	case <-comp.Done():
		c.life.Stop(fmt.Errorf("%s stopped: %v", name, comp.Err()))
	}
}

// watchEtcd stops the cluster when the embedded etcd fails.
func (c *Cluster) watchEtcd() {
	select {
	case <-c.life.Stopping():
	case err := <-c.etcdErr:
		c.life.Stop(fmt.Errorf("etcd failed: %w", err))
	}
}

// lockDataDir takes the data directory's lock for the life of the cluster and returns its
// release.
func lockDataDir(layout apiserver.Layout, name string) (unlock func() error, _ error) {
	if err := os.MkdirAll(layout.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	lk := flock.New(layout.Lock(), flock.SetPermissions(0o600))
	ok, err := lk.TryLock()
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", layout.Lock(), err)
	}
	pidFile := layout.PIDFile()
	if !ok {
		holder := ""
		if b, err := os.ReadFile(pidFile); err == nil {
			holder = "process " + strings.TrimSpace(string(b)) + ", "
		}
		return nil, fmt.Errorf("profile %s is %w (%slock %s): stop that cluster first (Ctrl-C where `wasmkube up` runs), or start another profile or --data-dir",
			name, ErrAlreadyRunning, holder, layout.Lock())
	}
	if err := pki.WriteFileAtomic(pidFile, []byte(strconv.Itoa(os.Getpid())+"\n")); err != nil {
		_ = lk.Unlock()
		return nil, fmt.Errorf("pid file: %w", err)
	}
	return func() error {
		_ = os.Remove(pidFile)
		return lk.Unlock()
	}, nil
}

// logOutput returns where the Kubernetes logs go: w, or DATADIR/logs/kube.log.
func (c *Cluster) logOutput(layout apiserver.Layout, w io.Writer) (io.Writer, error) {
	if w != nil {
		return w, nil
	}
	if err := os.MkdirAll(layout.Logs(), 0o700); err != nil {
		return nil, fmt.Errorf("create log dir: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(layout.Logs(), "kube.log"), os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		return nil, fmt.Errorf("open log: %w", err)
	}
	// The file stays open: klog keeps writing to it for the life of the process.
	return f, nil
}

// writeComponentKubeconfig writes the kubeconfig of a component (kube-controller-manager,
// kube-scheduler) that authenticates with its client certificate.
func writeComponentKubeconfig(plan *apiserver.Plan, b *pki.Bundle, name, certFile, keyFile, path string) error {
	certPEM, err := os.ReadFile(certFile)
	if err != nil {
		return err
	}
	keyPEM, err := os.ReadFile(keyFile)
	if err != nil {
		return err
	}
	cfg := kubeconfig.Build(kubeconfig.Credentials{
		Name: name, Server: plan.Server(), CAPEM: b.CACertPEM, ClientCert: certPEM, ClientKey: keyPEM,
	})
	return kubeconfig.Write(path, cfg)
}

func describePKI(b *pki.Bundle) string {
	if len(b.Generated) == 0 {
		return "reused"
	}
	return fmt.Sprintf("generated %d files", len(b.Generated))
}
