package cli

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube/profiles"
)

// BenchmarkUp measures `wasmkube up` as a user runs it, in a child process: start → ready (the
// "Press Ctrl-C" line, i.e. /readyz ok, default namespace, controllers started, kubeconfig
// written), RSS at ready, and SIGINT → exit. fresh starts on an empty data dir; warm restarts
// on the data of a previous run. minimal (no controllers) is the baseline measured in the same run.
//
//	go test ./cmd/wasmkube/cli -run '^$' -bench BenchmarkUp -benchtime 5x
func BenchmarkUp(b *testing.B) {
	for _, profile := range []string{"minimal", "demo"} {
		for _, mode := range []string{"fresh", "warm"} {
			b.Run(profile+"/"+mode, func(b *testing.B) { benchmarkUp(b, profile, mode == "fresh") })
		}
	}
}

func benchmarkUp(b *testing.B, profile string, fresh bool) {
	e := newEnv(b)
	dataDir := filepath.Join(e.root, "data", "wasmkube", profile)
	if !fresh {
		startStop(b, e, profile) // leaves data behind for the warm starts
	}
	var ready, stop []time.Duration
	var rss []float64
	for i := 0; i < b.N; i++ {
		if fresh {
			if err := os.RemoveAll(dataDir); err != nil {
				b.Fatal(err)
			}
		}
		r, m, s := startStop(b, e, profile)
		ready, rss, stop = append(ready, r), append(rss, m), append(stop, s)
	}
	b.ReportMetric(median(ready).Seconds(), "ready-s")
	b.ReportMetric(medianFloat(rss), "rss-MB")
	b.ReportMetric(median(stop).Seconds(), "stop-s")
}

// startStop runs one `up` to ready and back down; it returns start→ready, RSS at ready (MB)
// and SIGINT→exit.
func startStop(b *testing.B, e *env, profile string) (time.Duration, float64, time.Duration) {
	b.Helper()
	began := time.Now()
	up := e.startUp("--profile", profile, "--port", "0")
	up.waitReady(b)
	readyAfter := time.Since(began)
	rss, err := rssMB(up.cmd.Process.Pid)
	if err != nil {
		b.Fatal(err)
	}
	began = time.Now()
	if code := up.interrupt(b); code != 0 {
		b.Fatalf("exit %d:\n%s", code, up.text())
	}
	return readyAfter, rss, time.Since(began)
}

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

func median(d []time.Duration) time.Duration {
	s := append([]time.Duration(nil), d...)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	return s[len(s)/2]
}

func medianFloat(f []float64) float64 {
	s := append([]float64(nil), f...)
	sort.Float64s(s)
	return s[len(s)/2]
}

// BenchmarkAdmissionLatency measures what the demo profile's admission modules (magic-mutate,
// then magic-validate) add to a ConfigMap create, end to end through kube-apiserver: two
// clusters run side by side in child processes, the demo and the demo without its admission
// section (the baseline), and the creates alternate between them so both see the same machine.
//
//	go test ./cmd/wasmkube/cli -run '^$' -bench BenchmarkAdmissionLatency -benchtime 2000x
func BenchmarkAdmissionLatency(b *testing.B) {
	e := newEnv(b)
	baseline, err := profileWithoutAdmission(e.root)
	if err != nil {
		b.Fatal(err)
	}
	clusters := map[string]*upProcess{
		"demo":         e.startUp("--profile", "demo", "--port", "0"),
		"no-admission": e.startUp("--profile", baseline, "--port", "0"),
	}
	configMaps := map[string]typedcorev1.ConfigMapInterface{}
	for name, up := range clusters {
		up.waitReady(b)
		cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(e.root, "data", "wasmkube", name, "kubeconfig"))
		if err != nil {
			b.Fatal(err)
		}
		cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit
		configMaps[name] = kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("default")
	}
	ctx := context.Background()
	create := func(name string, i int) time.Duration {
		cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}, Data: map[string]string{"i": strconv.Itoa(i)}}
		began := time.Now()
		got, err := configMaps[name].Create(ctx, cm, metav1.CreateOptions{})
		elapsed := time.Since(began)
		if err != nil {
			b.Fatalf("%s: create: %v", name, err)
		}
		if (got.Data["magic-value"] == "foobar") != (name == "demo") {
			b.Fatalf("%s: magic-value %q: the modules ran where they should not, or did not run", name, got.Data["magic-value"])
		}
		return elapsed
	}
	for i := range 50 { // warm up connections, caches and pools
		create("demo", i)
		create("no-admission", i)
	}
	latencies := map[string][]time.Duration{}
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		order := []string{"demo", "no-admission"}
		if i%2 == 1 {
			order[0], order[1] = order[1], order[0]
		}
		for _, name := range order {
			latencies[name] = append(latencies[name], create(name, i))
		}
	}
	b.StopTimer()
	for _, name := range []string{"demo", "no-admission"} {
		b.ReportMetric(float64(percentile(latencies[name], 50).Microseconds()), name+"-p50-µs")
		b.ReportMetric(float64(percentile(latencies[name], 99).Microseconds()), name+"-p99-µs")
	}
	added := percentile(latencies["demo"], 50) - percentile(latencies["no-admission"], 50)
	b.ReportMetric(float64(added.Microseconds()), "added-p50-µs")
	for _, up := range clusters {
		up.interrupt(b)
	}
}

// profileWithoutAdmission writes the demo profile without its admission section, named
// no-admission, and returns its path.
func profileWithoutAdmission(dir string) (string, error) {
	src, ok := profiles.BuiltinSource("demo")
	if !ok {
		return "", fmt.Errorf("no built-in demo profile")
	}
	var doc map[string]any
	if err := yaml.Unmarshal(src, &doc); err != nil {
		return "", err
	}
	delete(doc, "admission")
	doc["name"] = "no-admission"
	out, err := yaml.Marshal(doc)
	if err != nil {
		return "", err
	}
	path := filepath.Join(dir, "no-admission.yaml")
	return path, os.WriteFile(path, out, 0o600)
}

func percentile(d []time.Duration, p int) time.Duration {
	s := slices.Clone(d)
	slices.Sort(s)
	return s[(len(s)-1)*p/100]
}
