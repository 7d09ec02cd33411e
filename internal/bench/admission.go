package bench

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
	"k8s.io/utils/ptr"
)

// Ways a validating rule can run; each has its own namespace, labelled bench-policy=WAY.
const (
	wayNone    = "none"
	wayWASM    = "wasm"
	wayRust    = "wasm-rust"
	wayCEL     = "cel"
	wayWebhook = "webhook"
)

var admissionWays = []string{wayNone, wayWASM, wayRust, wayCEL, wayWebhook}

// rustModule is the crate-free Rust build of the rule, relative to the module root. Profiles
// name it by path, not as builtin:, so that a base revision's binary (make bench-compare),
// which may not embed it, runs the same file.
var rustModule = filepath.Join("examples", "magic-validate-rust", "magic-validate-rust.wasm")

// admissionProfile runs magic-validate (Go, the SDK) in the namespaces labelled
// bench-policy=wasm and the Rust module at rustPath in those labelled bench-policy=wasm-rust.
func admissionProfile(rustPath string) string {
	return `apiVersion: wasmkube.dev/v1alpha1
kind: Profile
name: bench-admission
controllers:
  enabled: false
admission:
  modules:
  - module: builtin:magic-validate
    rules:
    - {operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}
    namespaceSelector:
      matchLabels: {bench-policy: wasm}
  - module: ` + strconv.Quote(rustPath) + `
    rules:
    - {operations: [CREATE, UPDATE], apiGroups: [""], apiVersions: [v1], resources: [configmaps]}
    namespaceSelector:
      matchLabels: {bench-policy: wasm-rust}
`
}

// AdmissionResult is the one-rule comparison: per cluster and way, the p50 latency a create adds
// over no policy (µs) and creates/s at Clients concurrent clients relative to no policy.
type AdmissionResult struct {
	Creates, Clients int
	Duration         time.Duration
	Clusters         []AdmissionCluster
}

// AdmissionCluster is one cluster's figures (this tree's, or a base revision's).
type AdmissionCluster struct {
	Label          string            // "" for this tree, else the base revision
	BaseP50        Series            // µs, no policy
	Added          map[string]Series // µs, p50(way) - p50(none) per round
	AddedP99       map[string]Series // µs, p99(way) - p99(none) per round
	Throughput     map[string]Series // creates/s ÷ none's creates/s per round
	BaseThroughput Series            // creates/s, no policy
}

// admissionTarget is one cluster under measurement.
type admissionTarget struct {
	cs  *kubernetes.Clientset
	res *AdmissionCluster
}

// measureAdmission starts one cluster per home (this tree's binary, and a base revision's when
// comparing), each with the rule five ways (none, Go module, Rust module, CEL policy, webhook),
// checks each way rejects what it should, then interleaves creates between the clusters and ways.
// root is the module root (for the Rust module's file).
func measureAdmission(ctx context.Context, root string, homes []home, labels []string, rounds, creates, clients int, duration time.Duration) (*AdmissionResult, error) {
	hook, err := startWebhook()
	if err != nil {
		return nil, err
	}
	defer hook.Close()
	res := &AdmissionResult{Creates: creates, Clients: clients, Duration: duration}
	var targets []admissionTarget
	for i, h := range homes {
		up, cs, err := startAdmissionCluster(ctx, h, filepath.Join(root, rustModule), hook)
		if err != nil {
			return nil, err
		}
		defer up.kill()
		res.Clusters = append(res.Clusters, AdmissionCluster{Label: labels[i],
			Added: map[string]Series{}, AddedP99: map[string]Series{}, Throughput: map[string]Series{}})
		targets = append(targets, admissionTarget{cs: cs})
	}
	for i := range targets {
		targets[i].res = &res.Clusters[i]
	}
	for r := range rounds {
		if err := latencyRound(ctx, targets, r, creates); err != nil {
			return nil, err
		}
		for _, t := range targets {
			if err := throughputRound(ctx, t, r, clients, duration); err != nil {
				return nil, err
			}
		}
	}
	return res, nil
}

func startAdmissionCluster(ctx context.Context, h home, rustPath string, hook *webhookServer) (*upCluster, *kubernetes.Clientset, error) {
	ref := filepath.Join(h.root, "bench-admission.yaml")
	if err := os.WriteFile(ref, []byte(admissionProfile(rustPath)), 0o600); err != nil {
		return nil, nil, err
	}
	up, _, err := h.startUp(ctx, ref, "bench-admission")
	if err != nil {
		return nil, nil, err
	}
	cs, err := clientFor(up.kubeconfig())
	if err == nil {
		err = setUpAdmissionWays(ctx, cs, hook)
	}
	if err != nil {
		up.kill()
		return nil, nil, err
	}
	return up, cs, nil
}

// clientFor is a clientset without client-side rate limits.
func clientFor(kubeconfig string) (*kubernetes.Clientset, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return nil, err
	}
	cfg.QPS, cfg.Burst = -1, 0
	return kubernetes.NewForConfig(cfg)
}

func namespaceOf(way string) string { return "bench-" + way }

func setUpAdmissionWays(ctx context.Context, cs *kubernetes.Clientset, hook *webhookServer) error {
	for _, way := range admissionWays {
		ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: namespaceOf(way), Labels: map[string]string{"bench-policy": way}}}
		if _, err := cs.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil && !apierrors.IsAlreadyExists(err) {
			return fmt.Errorf("namespace %s: %w", ns.Name, err)
		}
	}
	reg := cs.AdmissionregistrationV1()
	policy, binding := celPolicy()
	if _, err := reg.ValidatingAdmissionPolicies().Create(ctx, policy, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("ValidatingAdmissionPolicy: %w", err)
	}
	if _, err := reg.ValidatingAdmissionPolicyBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("ValidatingAdmissionPolicyBinding: %w", err)
	}
	if _, err := reg.ValidatingWebhookConfigurations().Create(ctx, webhookConfig(hook), metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("ValidatingWebhookConfiguration: %w", err)
	}
	return checkWays(ctx, cs)
}

var configMapRule = admissionregistrationv1.RuleWithOperations{
	Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
	Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: []string{"configmaps"}},
}

func wayLabel(way string) *metav1.LabelSelector {
	return &metav1.LabelSelector{MatchLabels: map[string]string{"bench-policy": way}}
}

func celPolicy() (*admissionregistrationv1.ValidatingAdmissionPolicy, *admissionregistrationv1.ValidatingAdmissionPolicyBinding) {
	policy := &admissionregistrationv1.ValidatingAdmissionPolicy{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-magic-validate"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicySpec{
			FailurePolicy:    ptr.To(admissionregistrationv1.Fail),
			MatchConstraints: &admissionregistrationv1.MatchResources{ResourceRules: []admissionregistrationv1.NamedRuleWithOperations{{RuleWithOperations: configMapRule}}},
			Validations: []admissionregistrationv1.Validation{{
				Expression: "!has(object.data) || !('" + forbiddenKey + "' in object.data)",
				Message:    "value '" + forbiddenKey + "' not allowed in configmap",
			}},
		},
	}
	binding := &admissionregistrationv1.ValidatingAdmissionPolicyBinding{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-magic-validate"},
		Spec: admissionregistrationv1.ValidatingAdmissionPolicyBindingSpec{
			PolicyName:        policy.Name,
			ValidationActions: []admissionregistrationv1.ValidationAction{admissionregistrationv1.Deny},
			MatchResources:    &admissionregistrationv1.MatchResources{NamespaceSelector: wayLabel(wayCEL)},
		},
	}
	return policy, binding
}

func webhookConfig(hook *webhookServer) *admissionregistrationv1.ValidatingWebhookConfiguration {
	return &admissionregistrationv1.ValidatingWebhookConfiguration{
		ObjectMeta: metav1.ObjectMeta{Name: "bench-magic-validate"},
		Webhooks: []admissionregistrationv1.ValidatingWebhook{{
			Name:                    "magic-validate.bench.wasmkube.dev",
			ClientConfig:            admissionregistrationv1.WebhookClientConfig{URL: ptr.To(hook.URL + "/validate"), CABundle: hook.CAData},
			Rules:                   []admissionregistrationv1.RuleWithOperations{configMapRule},
			NamespaceSelector:       wayLabel(wayWebhook),
			FailurePolicy:           ptr.To(admissionregistrationv1.Fail),
			SideEffects:             ptr.To(admissionregistrationv1.SideEffectClassNone),
			AdmissionReviewVersions: []string{"v1"},
			TimeoutSeconds:          ptr.To[int32](10),
		}},
	}
}

// checkWays waits until every policy way rejects a ConfigMap with the forbidden key (the CEL
// policy and the webhook configuration take effect a moment after they are created) and no
// policy lets it through: otherwise the comparison would measure a rule that does not run.
func checkWays(ctx context.Context, cs *kubernetes.Clientset) error {
	deadline := time.Now().Add(time.Minute)
	for _, way := range admissionWays {
		for {
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "check-"}, Data: map[string]string{forbiddenKey: "x"}}
			_, err := cs.CoreV1().ConfigMaps(namespaceOf(way)).Create(ctx, cm, metav1.CreateOptions{})
			if way == wayNone && err != nil {
				return fmt.Errorf("no-policy namespace rejected a create: %w", err)
			}
			if (way == wayNone) == (err == nil) {
				break
			}
			if time.Now().After(deadline) {
				return fmt.Errorf("the %s way does not reject a ConfigMap with %q after a minute", way, forbiddenKey)
			}
			time.Sleep(200 * time.Millisecond)
		}
	}
	return nil
}

func create(ctx context.Context, cs *kubernetes.Clientset, way string, i int) (time.Duration, error) {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{GenerateName: "bench-"}, Data: map[string]string{"i": strconv.Itoa(i)}}
	began := time.Now()
	_, err := cs.CoreV1().ConfigMaps(namespaceOf(way)).Create(ctx, cm, metav1.CreateOptions{})
	if err != nil {
		return 0, fmt.Errorf("create in %s: %w", namespaceOf(way), err)
	}
	return time.Since(began), nil
}

// latencyRound creates n ConfigMaps per cluster and way, taking turns create by create.
func latencyRound(ctx context.Context, targets []admissionTarget, round, n int) error {
	type key struct{ target, way int }
	var order []key
	for t := range targets {
		for w := range admissionWays {
			order = append(order, key{t, w})
		}
	}
	lat := map[key][]time.Duration{}
	// A new random order for every create of every way: a create's aftermath (watch events,
	// a webhook's connection) spills into the next create, so a fixed order, even rotated,
	// would always charge one way with its predecessor's.
	rnd := rand.New(rand.NewPCG(uint64(round), 11))
	for range n {
		rnd.Shuffle(len(order), func(a, b int) { order[a], order[b] = order[b], order[a] })
		for _, at := range order {
			d, err := create(ctx, targets[at.target].cs, admissionWays[at.way], len(lat[at]))
			if err != nil {
				return err
			}
			lat[at] = append(lat[at], d)
		}
	}
	for t, target := range targets {
		res := target.res
		base50, base99 := percentile(lat[key{t, 0}], 50), percentile(lat[key{t, 0}], 99)
		res.BaseP50.AddDuration(base50, time.Microsecond)
		for w, way := range admissionWays[1:] {
			added, added99 := res.Added[way], res.AddedP99[way]
			added.AddDuration(percentile(lat[key{t, w + 1}], 50)-base50, time.Microsecond)
			added99.AddDuration(percentile(lat[key{t, w + 1}], 99)-base99, time.Microsecond)
			res.Added[way], res.AddedP99[way] = added, added99
		}
	}
	return nil
}

// throughputRound runs clients concurrent creators for d per way and records creates/s.
func throughputRound(ctx context.Context, t admissionTarget, round, clients int, d time.Duration) error {
	rates := map[string]float64{}
	for k := range admissionWays {
		way := admissionWays[(k+round)%len(admissionWays)]
		rate, err := createRate(ctx, t.cs, way, clients, d)
		if err != nil {
			return err
		}
		rates[way] = rate
	}
	t.res.BaseThroughput.Add(rates[wayNone])
	for _, way := range admissionWays[1:] {
		s := t.res.Throughput[way]
		s.Add(rates[way] / rates[wayNone])
		t.res.Throughput[way] = s
	}
	return nil
}

func createRate(ctx context.Context, cs *kubernetes.Clientset, way string, clients int, d time.Duration) (float64, error) {
	var done atomic.Int64
	var firstErr error
	var once sync.Once
	var wg sync.WaitGroup
	began := time.Now()
	for c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; time.Since(began) < d; i++ {
				if _, err := create(ctx, cs, way, c*1_000_000+i); err != nil {
					once.Do(func() { firstErr = err })
					return
				}
				done.Add(1)
			}
		}()
	}
	wg.Wait()
	return float64(done.Load()) / time.Since(began).Seconds(), firstErr
}
