package wasmkube_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/apimachinery/pkg/watch"
	"k8s.io/client-go/kubernetes"
	typedcorev1 "k8s.io/client-go/kubernetes/typed/core/v1"
	"k8s.io/client-go/rest"

	"github.com/wasmkube/wasmkube/internal/memstat"
	"github.com/wasmkube/wasmkube/profiles"
)

// The reliability suite's parts that need the API server (docs/reliability.md): load, faults
// under load, and hostile modules while the server serves. `make test` runs them small;
// `make reliability` sets WASMKUBE_LOAD_REQUESTS=10000.

// hostileInServer are the hostile modules (wasm/testdata/hostile) loaded as admission modules
// for ConfigMaps labelled hostile=NAME, with what each call must end with.
var hostileInServer = map[string]string{
	"recursion":          "timeout",
	"indirect-recursion": "timeout",
	"deep-recursion":     "stack",
	"table-growth":       "timeout",
	"table-bulk":         "timeout",
	"memory-growth":      "timeout",
	"memory-bulk":        "timeout",
	"random-flood":       "timeout",
	"stderr-flood":       "timeout",
}

const (
	hostileTimeout = time.Second
	hostileMemory  = 16 << 20
	hostilePool    = 2
	chaosTimeout   = 500 * time.Millisecond
)

// reliabilityModules are the admission modules of the reliability suite: the hostile modules,
// and chaos, which fails on ConfigMaps whose names say -trap-, -loop- or -memory-.
func reliabilityModules(faults string) ([]profiles.AdmissionModule, error) {
	configMaps := []admissionregistrationv1.RuleWithOperations{{
		Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create},
		Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
	}}
	memory := resource.NewQuantity(hostileMemory, resource.BinarySI).String()
	var out []profiles.AdmissionModule
	for name := range hostileInServer {
		path, err := filepath.Abs(filepath.Join("wasm", "testdata", "hostile", name+".wasm"))
		if err != nil {
			return nil, err
		}
		pool := int32(hostilePool)
		out = append(out, profiles.AdmissionModule{
			Module: profiles.Module{Name: "hostile-" + name, Module: path, MemoryLimit: memory, PoolSize: &pool,
				Timeout: &metav1.Duration{Duration: hostileTimeout}},
			Rules:          configMaps,
			FailurePolicy:  string(admissionregistrationv1.Fail),
			ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"hostile": name}},
		})
	}
	out = append(out, profiles.AdmissionModule{
		Module: profiles.Module{Name: "chaos", Module: faults, Settings: json.RawMessage(`{"mode":"chaos"}`),
			MemoryLimit: "32Mi", Timeout: &metav1.Duration{Duration: chaosTimeout}},
		Rules:          configMaps,
		FailurePolicy:  string(admissionregistrationv1.Fail),
		ObjectSelector: &metav1.LabelSelector{MatchLabels: map[string]string{"test": "chaos"}},
	})
	return out, nil
}

// testHostileModulesWhileServing: every hostile module runs on all its instances at once; each
// request ends within the module's timeout + 100 ms, with a 500 that names the module and the
// bound; /readyz keeps answering; memory grows by less than 2 × memory limit × pool size.
func testHostileModulesWhileServing(t *testing.T) {
	ctx := context.Background()
	// Clients without client-go's rate limit (5 per second by default): the poller's requests
	// would otherwise make the hostile ones wait for their turn.
	c, poller := unlimitedClient(), unlimitedClient()
	ns := createNamespace(t, c, "hostile")
	stop := make(chan struct{})
	readyz := make(chan string, 1)
	var slowestReadyz atomic.Int64
	go pollReadyz(poller, stop, readyz, &slowestReadyz)
	// The server's heap may grow to twice its live size between two collections, hundreds of
	// megabytes here; a small GC target keeps the process's own ups and downs below what the
	// measurement must see.
	defer debug.SetGCPercent(debug.SetGCPercent(10))
	for name, bound := range hostileInServer {
		t.Run(name, func(t *testing.T) {
			// The baseline is the highest the process's memory goes while idle (after a GC,
			// without returning memory to the system, which would make the server fault it back
			// in during the run): the server's own ups and downs are not the module's.
			runtime.GC()
			idle := watchRSS(t)
			time.Sleep(300 * time.Millisecond)
			before := idle()
			peak := watchRSS(t)
			var wg sync.WaitGroup
			var slowest atomic.Int64
			for i := range hostilePool {
				wg.Add(1)
				go func() {
					defer wg.Done()
					began := time.Now()
					_, err := c.CoreV1().ConfigMaps(ns).Create(ctx, configMap(fmt.Sprintf("%s-%d", name, i), map[string]string{"hostile": name}, nil), metav1.CreateOptions{})
					slowest.Store(max(slowest.Load(), int64(time.Since(began))))
					if !apierrors.IsInternalError(err) || !strings.Contains(err.Error(), `"hostile-`+name+`"`) || !strings.Contains(err.Error(), bound) {
						t.Errorf("%v; want a 500 naming the module and %q", err, bound)
					}
				}()
			}
			wg.Wait()
			grew := max(peak()-before, 0)
			t.Logf("slowest request %s (timeout %s), RSS grew %d MiB at most", time.Duration(slowest.Load()).Round(time.Millisecond), hostileTimeout, grew>>20)
			if took := time.Duration(slowest.Load()); took > hostileTimeout+100*time.Millisecond {
				t.Errorf("a request took %s, more than the timeout %s + 100ms", took, hostileTimeout)
			}
			if bound := int64(2 * hostileMemory * hostilePool); grew >= bound {
				t.Errorf("RSS grew by %d MiB, not less than %d MiB", grew>>20, bound>>20)
			}
		})
	}
	close(stop)
	if msg := <-readyz; msg != "" {
		t.Error(msg)
	}
	t.Logf("slowest /readyz while the hostile modules ran: %s", time.Duration(slowestReadyz.Load()).Round(time.Millisecond))
}

// pollReadyz asks /readyz every 20 ms until stop; it reports the first failure (or "") on out.
func pollReadyz(c kubernetes.Interface, stop <-chan struct{}, out chan<- string, slowest *atomic.Int64) {
	failure := ""
	defer func() { out <- failure }()
	for {
		select {
		case <-stop:
			return
		case <-time.After(20 * time.Millisecond):
		}
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		began := time.Now()
		body, err := c.CoreV1().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
		cancel()
		slowest.Store(max(slowest.Load(), int64(time.Since(began))))
		if err != nil && failure == "" {
			failure = fmt.Sprintf("/readyz failed while hostile modules ran: %v %s", err, body)
		}
	}
}

// loadRequests is the number of requests of a load run: WASMKUBE_LOAD_REQUESTS, else 2000.
func loadRequests(t *testing.T) int {
	if v := os.Getenv("WASMKUBE_LOAD_REQUESTS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil {
			t.Fatalf("WASMKUBE_LOAD_REQUESTS=%q: %v", v, err)
		}
		return n
	}
	return 2000
}

const loadClients = 32

// testLoad sends mixed requests (create, get, list, update, delete, watch) from 32 clients:
// ConfigMaps as magic-user (the demo's authentication, authorization, mutating and validating
// modules all run) and Pods as the admin (workload-policy). Without faults: no 5xx, no denial.
// With faults, 1 % of the ConfigMaps make the chaos module trap, 1 % overrun its timeout and
// 1 % exceed its memory: exactly those fail, with a 500 naming the module and the failure. After
// the run, memory (after GC) is within 10 % of the warm baseline, goroutines are back and every
// module instance is idle again.
//
// The baseline is taken after a warm-up run of the same size and mix: what the first run of a
// load makes the server keep is bounded but not small (the watch cache sizes itself to the
// event rate, etcd keeps every revision until the API server compacts it, every 5 minutes),
// and a leak shows as growth from one such run to the next.
func testLoad(t *testing.T, faults bool) {
	c := client(t)
	ns := createNamespace(t, c, map[bool]string{false: "load", true: "chaos"}[faults])
	clients := loadClientsFor(t)
	n := loadRequests(t)
	warm := runLoad(t, clients, ns, n, faults)
	if warm.unexpected.Load() > 0 {
		t.Errorf("warm-up: %d unexpected errors (first: %s)", warm.unexpected.Load(), warm.firstError())
	}
	rss0, goroutines0 := memstat.Settled(), runtime.NumGoroutine()
	began := time.Now()
	res := runLoad(t, clients, ns, n, faults)
	took := time.Since(began)
	t.Logf("%d requests from %d clients in %s (%.0f/s): %d failed as planned, %d unexpected errors, %d watches closed by the server and opened again",
		res.requests.Load(), loadClients, took.Round(time.Millisecond), float64(res.requests.Load())/took.Seconds(), res.planned.Load(), res.unexpected.Load(), res.rewatches.Load())
	if res.unexpected.Load() > 0 {
		t.Errorf("%d unexpected errors (first: %s)", res.unexpected.Load(), res.firstError())
	}
	if faults && res.planned.Load() == 0 {
		t.Error("no request met a fault")
	}
	poll(t, "goroutines back to the baseline", func(context.Context) (bool, error) {
		return runtime.NumGoroutine() <= goroutines0+20, nil
	})
	var busy string
	var metricsErr error
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, func(ctx context.Context) (bool, error) {
		busy, metricsErr = busyPools(ctx, c)
		return metricsErr == nil && busy == "", nil
	}); err != nil {
		t.Fatalf("module instances not idle after a minute: %s (metrics: %v)", busy, metricsErr)
	}
	rss1 := memstat.Settled()
	t.Logf("RSS after GC: warm baseline %d MiB, after the run %d MiB; goroutines %d → %d",
		rss0>>20, rss1>>20, goroutines0, runtime.NumGoroutine())
	if float64(rss1) > 1.1*float64(rss0) {
		t.Errorf("RSS after the run %d MiB is more than 10 %% over the warm baseline %d MiB", rss1>>20, rss0>>20)
	}
}

// unlimitedClient is an admin client without client-go's client-side rate limit.
func unlimitedClient() kubernetes.Interface {
	cfg := rest.CopyConfig(cluster.RESTConfig)
	cfg.QPS, cfg.Burst = -1, 0
	return kubernetes.NewForConfigOrDie(cfg)
}

type loadClient struct {
	magic, admin kubernetes.Interface
}

func loadClientsFor(t *testing.T) []loadClient {
	out := make([]loadClient, loadClients)
	for i := range out {
		cfg := rest.AnonymousClientConfig(cluster.RESTConfig)
		cfg.BearerToken = "magic-token"
		cfg.QPS, cfg.Burst = -1, 0
		admin := rest.CopyConfig(cluster.RESTConfig)
		admin.QPS, admin.Burst = -1, 0
		out[i] = loadClient{magic: kubernetes.NewForConfigOrDie(cfg), admin: kubernetes.NewForConfigOrDie(admin)}
	}
	return out
}

type loadResult struct {
	requests, planned, unexpected atomic.Int64
	// rewatches counts watches the server closed before their event came (see awaitModified).
	rewatches atomic.Int64
	mu        sync.Mutex
	first     string
}

func (r *loadResult) fail(format string, args ...any) {
	r.unexpected.Add(1)
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.first == "" {
		r.first = fmt.Sprintf(format, args...)
	}
}

func (r *loadResult) firstError() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.first
}

// runLoad sends about n requests from the clients, each client a loop of one ConfigMap's life
// (create, get, list, update, a watch that sees the update, delete) and, every tenth round, a
// Pod's (create, get, delete).
func runLoad(t *testing.T, clients []loadClient, ns string, n int, faults bool) *loadResult {
	res := &loadResult{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for i, lc := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(uint64(i), 1))
			for round := 0; res.requests.Load() < int64(n); round++ {
				id := next.Add(1)
				name := fmt.Sprintf("c%d", id)
				fault := ""
				if faults {
					switch r := rng.IntN(100); r {
					case 0, 1, 2:
						fault = []string{"trap", "loop", "memory"}[r]
						name = fmt.Sprintf("c-%s-%d", fault, id)
					}
				}
				configMapLife(lc.magic, ns, name, fault, res)
				if round%10 == 9 {
					podLife(lc.admin, ns, fmt.Sprintf("p%d", id), res)
				}
			}
		}()
	}
	wg.Wait()
	return res
}

// check counts a request and records it as unexpected when it failed.
func (r *loadResult) check(what string, err error) bool {
	r.requests.Add(1)
	if err != nil {
		r.fail("%s: %v", what, err)
		return false
	}
	return true
}

func configMapLife(c kubernetes.Interface, ns, name, fault string, res *loadResult) {
	ctx := context.Background()
	cms := c.CoreV1().ConfigMaps(ns)
	labels := map[string]string{"test": "chaos", "load": name}
	created, err := cms.Create(ctx, configMap(name, labels, map[string]string{"k": name}), metav1.CreateOptions{})
	if fault != "" {
		res.requests.Add(1)
		want := map[string]string{"trap": "trap", "loop": "timeout", "memory": "memory"}[fault]
		if apierrors.IsInternalError(err) && strings.Contains(err.Error(), `admission WASM module "chaos" failed`) && strings.Contains(err.Error(), want) {
			res.planned.Add(1)
		} else {
			res.fail("create %s (fault %s): %v; want a 500 naming chaos and %q", name, fault, err, want)
		}
		return
	}
	if !res.check("create "+name, err) {
		return
	}
	if created.Data["magic-value"] != "foobar" {
		res.fail("create %s: magic-mutate did not run: %v", name, created.Data)
	}
	got, err := cms.Get(ctx, name, metav1.GetOptions{})
	if !res.check("get "+name, err) {
		return
	}
	_, err = cms.List(ctx, metav1.ListOptions{LabelSelector: "load=" + name})
	res.check("list "+name, err)
	w, err := cms.Watch(ctx, metav1.ListOptions{LabelSelector: "load=" + name, ResourceVersion: got.ResourceVersion})
	if !res.check("watch "+name, err) {
		return
	}
	got.Data["k"] = "updated"
	_, err = cms.Update(ctx, got, metav1.UpdateOptions{})
	if res.check("update "+name, err) {
		w = awaitModified(ctx, cms, w, name, got.ResourceVersion, res)
	}
	w.Stop()
	res.check("delete "+name, cms.Delete(ctx, name, metav1.DeleteOptions{}))
}

// awaitModified waits for the MODIFIED event on w. A watch the server closed (the watch cache
// drops a watcher that falls behind under load, as Kubernetes does) is opened again from the
// same resource version, as informers do, up to three times; res counts the re-watches.
func awaitModified(ctx context.Context, cms typedcorev1.ConfigMapInterface, w watch.Interface, name, rv string, res *loadResult) watch.Interface {
	for attempt := 0; ; attempt++ {
		select {
		case ev, ok := <-w.ResultChan():
			switch {
			case ok && ev.Type == watch.Modified:
				return w
			case ok || attempt == 3:
				res.fail("watch %s: %v %v (after %d re-watches)", name, ev.Type, ok, attempt)
				return w
			}
		case <-time.After(10 * time.Second):
			res.fail("watch %s: no event in 10s", name)
			return w
		}
		res.rewatches.Add(1)
		again, err := cms.Watch(ctx, metav1.ListOptions{LabelSelector: "load=" + name, ResourceVersion: rv})
		if !res.check("watch again "+name, err) {
			return w
		}
		w = again
	}
}

func podLife(c kubernetes.Interface, ns, name string, res *loadResult) {
	ctx := context.Background()
	pods := c.CoreV1().Pods(ns)
	pod := &corev1.Pod{
		ObjectMeta: metav1.ObjectMeta{Name: name, Labels: map[string]string{"team": "load"}},
		Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "c", Image: "registry.k8s.io/pause:3.10"}}},
	}
	if !res.check("create pod "+name, createPod(ctx, pods, pod)) {
		return
	}
	_, err := pods.Get(ctx, name, metav1.GetOptions{})
	res.check("get pod "+name, err)
	res.check("delete pod "+name, pods.Delete(ctx, name, metav1.DeleteOptions{GracePeriodSeconds: new(int64)}))
}

// createPod creates pod, retrying while the namespace's default ServiceAccount does not exist yet.
func createPod(ctx context.Context, pods interface {
	Create(context.Context, *corev1.Pod, metav1.CreateOptions) (*corev1.Pod, error)
}, pod *corev1.Pod) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := pods.Create(ctx, pod, metav1.CreateOptions{})
		if err == nil || !apierrors.IsForbidden(err) || !strings.Contains(err.Error(), "serviceaccount") || time.Now().After(deadline) {
			return err
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// createNamespace creates a namespace named prefix plus a random suffix.
func createNamespace(t *testing.T, c kubernetes.Interface, prefix string) string {
	ns, err := c.CoreV1().Namespaces().Create(context.Background(), &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{GenerateName: prefix + "-"}}, metav1.CreateOptions{})
	if err != nil {
		t.Fatal(err)
	}
	return ns.Name
}

// busyPools names the pooled modules whose idle instances are fewer than their pool size, with
// both numbers ("" when every instance is idle).
func busyPools(ctx context.Context, c kubernetes.Interface) (string, error) {
	body, err := c.CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		return "unknown", err
	}
	size, idle := map[string]string{}, map[string]string{}
	for _, line := range strings.Split(string(body), "\n") {
		for prefix, into := range map[string]map[string]string{
			"wasmkube_module_pool_instances{": size, "wasmkube_module_pool_idle_instances{": idle} {
			if rest, ok := strings.CutPrefix(line, prefix); ok {
				labels, value, _ := strings.Cut(rest, "} ")
				into[labels] = value
			}
		}
	}
	if len(size) == 0 {
		return "unknown", fmt.Errorf("no pool metrics")
	}
	var busy []string
	for labels, n := range size {
		if idle[labels] != n {
			busy = append(busy, fmt.Sprintf("%s: %s of %s idle", labels, idle[labels], n))
		}
	}
	sort.Strings(busy)
	return strings.Join(busy, "; "), nil
}

// watchRSS samples the process's resident memory until the test ends; peak returns the highest.
func watchRSS(t *testing.T) (peak func() int64) {
	peak, stop := memstat.Watch()
	t.Cleanup(stop)
	return peak
}
