package bench

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"

	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube/etcd"
)

// pollInterval is how often the separate-process baseline polls etcd's /health and
// kube-apiserver's /readyz: as often as wasmkube polls its own /readyz (apiserver/ready.go), ten
// times as often as envtest (100 ms), so that polling does not slow the baseline down.
const pollInterval = 10 * time.Millisecond

// etcdTuning are the flags that make the etcd binary behave as wasmkube's embedded etcd does
// (etcd/etcd.go, embedConfig: its raft timing, fsync off as in the profiles' default and as
// envtest runs etcd): what they change is part of the comparison only if both sides have it.
var etcdTuning = []string{
	"--heartbeat-interval=" + strconv.Itoa(etcd.TickMs),
	"--election-timeout=" + strconv.Itoa(etcd.ElectionMs),
	"--unsafe-no-fsync=true",
}

// dryRunPlan is the part of `wasmkube up --dry-run` the baseline takes its flags from.
type dryRunPlan struct {
	DataDir           string   `json:"dataDir"`
	KubeAPIServerArgs []string `json:"kubeAPIServerArgs"`
}

// apiServerArgs are the kube-apiserver flags `up --dry-run` prints for the profile, with the
// port and etcd servers of the baseline.
func (h home) apiServerArgs(ctx context.Context, profile string, port int, etcdURL string) ([]string, string, error) {
	out, err := runOutput(ctx, h.bin, h.env(), "up", "--profile", profile, "--dry-run")
	if err != nil {
		return nil, "", err
	}
	var plan dryRunPlan
	if err := yaml.Unmarshal([]byte(out), &plan); err != nil {
		return nil, "", fmt.Errorf("read `up --dry-run` output: %w", err)
	}
	args := make([]string, 0, len(plan.KubeAPIServerArgs))
	for _, a := range plan.KubeAPIServerArgs {
		switch {
		case strings.HasPrefix(a, "--secure-port="):
			a = "--secure-port=" + strconv.Itoa(port)
		case strings.HasPrefix(a, "--etcd-servers="):
			a = "--etcd-servers=" + etcdURL
		case strings.HasPrefix(a, "--enable-admission-plugins="):
			// A stock kube-apiserver has no WASM plugin (`up` always enables it).
			if a = withoutPlugin(a, "WASM"); a == "" {
				continue
			}
		}
		args = append(args, a)
	}
	return args, plan.DataDir, nil
}

// withoutPlugin returns the --enable-admission-plugins flag a without plugin, "" when none is
// left.
func withoutPlugin(a, plugin string) string {
	name, value, _ := strings.Cut(a, "=")
	var kept []string
	for _, p := range strings.Split(value, ",") {
		if p != plugin && p != "" {
			kept = append(kept, p)
		}
	}
	if len(kept) == 0 {
		return ""
	}
	return name + "=" + strings.Join(kept, ",")
}

// separate is an etcd process and a kube-apiserver process, as envtest and kwokctl run them.
type separate struct {
	etcd, apiserver *child
}

// separateStart is one start of the baseline: flags from the profile's plan in h (whose PKI an
// earlier `up` wrote), etcd data in etcdDir.
type separateStart struct {
	bins    separateBinaries
	home    home
	profile string
	etcdDir string
}

// start starts etcd, waits for its /health, starts kube-apiserver and waits for /readyz and the
// default namespace; it returns the processes and the time from the first exec to ready.
func (s separateStart) start(ctx context.Context) (_ *separate, ready time.Duration, err error) {
	ports, err := freePorts(3)
	if err != nil {
		return nil, 0, err
	}
	clientURL := fmt.Sprintf("http://127.0.0.1:%d", ports[0])
	args, dataDir, err := s.home.apiServerArgs(ctx, s.profile, ports[2], clientURL)
	if err != nil {
		return nil, 0, err
	}
	began := time.Now()
	p := &separate{}
	defer func() {
		if err != nil {
			p.kill()
		}
	}()
	if p.etcd, err = startChild("etcd", s.bins.Etcd, os.Environ(), s.etcdArgs(clientURL, ports[1])...); err != nil {
		return nil, 0, err
	}
	if err = poll(ctx, p.etcd, clientURL+"/health", nil, ""); err != nil {
		return nil, 0, err
	}
	if p.apiserver, err = startChild("kube-apiserver", s.bins.KubeAPIServer, os.Environ(), args...); err != nil {
		return nil, 0, err
	}
	client, token, err := adminClient(dataDir)
	if err != nil {
		return nil, 0, err
	}
	base := fmt.Sprintf("https://127.0.0.1:%d", ports[2])
	for _, path := range []string{"/readyz", "/api/v1/namespaces/default"} {
		if err = poll(ctx, p.apiserver, base+path, client, token); err != nil {
			return nil, 0, err
		}
	}
	return p, time.Since(began), nil
}

func (s separateStart) etcdArgs(clientURL string, peerPort int) []string {
	peerURL := fmt.Sprintf("http://127.0.0.1:%d", peerPort)
	return append([]string{
		"--name=default", "--data-dir=" + s.etcdDir,
		"--listen-client-urls=" + clientURL, "--advertise-client-urls=" + clientURL,
		"--listen-peer-urls=" + peerURL, "--initial-advertise-peer-urls=" + peerURL,
		"--initial-cluster=default=" + peerURL, "--log-level=warn",
	}, etcdTuning...)
}

// rssMB is the two processes' resident memory together.
func (p *separate) rssMB() (float64, error) {
	a, err := rssMB(p.etcd.cmd.Process.Pid)
	if err != nil {
		return 0, err
	}
	b, err := rssMB(p.apiserver.cmd.Process.Pid)
	return a + b, err
}

// stop ends kube-apiserver, then etcd (SIGTERM, as envtest does) and returns the time taken.
func (p *separate) stop() (time.Duration, error) {
	began := time.Now()
	for _, c := range []*child{p.apiserver, p.etcd} {
		if err := c.cmd.Process.Signal(syscall.SIGTERM); err != nil {
			return 0, fmt.Errorf("stop %s: %w", c.name, err)
		}
		select {
		case <-c.done:
		case <-time.After(30 * time.Second):
			p.kill()
			return 0, fmt.Errorf("%s did not stop within 30s", c.name)
		}
	}
	return time.Since(began), nil
}

func (p *separate) kill() {
	for _, c := range []*child{p.apiserver, p.etcd} {
		if c != nil {
			c.kill()
		}
	}
}

// poll GETs url every pollInterval until it answers 200; it fails when the process exits first
// or after two minutes.
func poll(ctx context.Context, c *child, url string, client *http.Client, token string) error {
	if client == nil {
		client = http.DefaultClient
	}
	deadline := time.Now().Add(2 * time.Minute)
	for {
		if ok := get(ctx, client, url, token); ok {
			return nil
		}
		select {
		case <-c.done:
			return fmt.Errorf("%s exited while starting:\n%s", c.name, c.output())
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pollInterval):
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %s not ready after 2m:\n%s", c.name, url, c.output())
		}
	}
}

func get(ctx context.Context, client *http.Client, url, token string) bool {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, url, nil)
	if err != nil {
		return false
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := client.Do(req)
	if err != nil {
		return false
	}
	_ = resp.Body.Close()
	return resp.StatusCode == http.StatusOK
}

// adminClient trusts the data dir's CA and returns the admin token wasmkube wrote there.
func adminClient(dataDir string) (*http.Client, string, error) {
	ca, err := os.ReadFile(filepath.Join(dataDir, "pki", "ca.crt"))
	if err != nil {
		return nil, "", fmt.Errorf("separate baseline needs the PKI of an earlier up: %w", err)
	}
	token, err := os.ReadFile(filepath.Join(dataDir, "pki", "admin.token"))
	if err != nil {
		return nil, "", err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(ca) {
		return nil, "", errors.New("no certificate in " + filepath.Join(dataDir, "pki", "ca.crt"))
	}
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}
	return &http.Client{Transport: tr, Timeout: 5 * time.Second}, strings.TrimSpace(string(token)), nil
}

// freePorts asks the kernel for n free loopback ports. The baseline's processes bind them after
// these listeners close, which can race with another program; a bench run is not a server.
func freePorts(n int) ([]int, error) {
	var ports []int
	for range n {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			return nil, err
		}
		defer l.Close()
		ports = append(ports, l.Addr().(*net.TCPAddr).Port)
	}
	return ports, nil
}
