package bench

import (
	"context"
	"fmt"
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
	wayCEL     = "cel"
	wayWebhook = "webhook"
)

var admissionWays = []string{wayNone, wayWASM, wayCEL, wayWebhook}

// admissionProfile runs magic-validate in the namespaces labelled bench-policy=wasm.
const admissionProfile = `apiVersion: wasmkube.dev/v1alpha1
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
`

// AdmissionResult is the one-rule comparison: per way, the p50 latency a create adds over no
// policy (µs) and creates/s at Clients concurrent clients relative to no policy.
type AdmissionResult struct {
	Creates, Clients int
	Duration         time.Duration
	BaseP50          Series            // µs, no policy
	Added            map[string]Series // µs, p50(way) - p50(none) per round
	AddedP99         map[string]Series // µs, p99(way) - p99(none) per round
	Throughput       map[string]Series // creates/s ÷ none's creates/s per round
	BaseThroughput   Series            // creates/s, no policy
}

// measureAdmission starts one cluster with the rule four ways (none, module, CEL policy,
// webhook), checks each way rejects what it should, then interleaves creates between the ways.
func measureAdmission(ctx context.Context, h home, rounds, creates, clients int, duration time.Duration) (*AdmissionResult, error) {
	hook, err := startWebhook()
	if err != nil {
		return nil, err
	}
	defer hook.Close()
	ref := filepath.Join(h.root, "bench-admission.yaml")
	if err := os.WriteFile(ref, []byte(admissionProfile), 0o600); err != nil {
		return nil, err
	}
	up, _, err := h.startUp(ctx, ref, "bench-admission")
	if err != nil {
		return nil, err
	}
	defer up.kill()
	cs, err := clientFor(up.kubeconfig())
	if err != nil {
		return nil, err
	}
	if err := setUpAdmissionWays(ctx, cs, hook); err != nil {
		return nil, err
	}
	res := &AdmissionResult{Creates: creates, Clients: clients, Duration: duration,
		Added: map[string]Series{}, AddedP99: map[string]Series{}, Throughput: map[string]Series{}}
	for r := range rounds {
		if err := latencyRound(ctx, cs, r, creates, res); err != nil {
			return nil, err
		}
		if err := throughputRound(ctx, cs, r, clients, duration, res); err != nil {
			return nil, err
		}
	}
	_, err = up.stop()
	return res, err
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

// latencyRound creates n ConfigMaps per way, the ways taking turns create by create.
func latencyRound(ctx context.Context, cs *kubernetes.Clientset, round, n int, res *AdmissionResult) error {
	lat := map[string][]time.Duration{}
	for i := range n {
		for k := range admissionWays {
			way := admissionWays[(k+i+round)%len(admissionWays)]
			d, err := create(ctx, cs, way, i)
			if err != nil {
				return err
			}
			lat[way] = append(lat[way], d)
		}
	}
	base50, base99 := percentile(lat[wayNone], 50), percentile(lat[wayNone], 99)
	res.BaseP50.AddDuration(base50, time.Microsecond)
	for _, way := range admissionWays[1:] {
		added, added99 := res.Added[way], res.AddedP99[way]
		added.AddDuration(percentile(lat[way], 50)-base50, time.Microsecond)
		added99.AddDuration(percentile(lat[way], 99)-base99, time.Microsecond)
		res.Added[way], res.AddedP99[way] = added, added99
	}
	return nil
}

// throughputRound runs clients concurrent creators for d per way and records creates/s.
func throughputRound(ctx context.Context, cs *kubernetes.Clientset, round, clients int, d time.Duration, res *AdmissionResult) error {
	rates := map[string]float64{}
	for k := range admissionWays {
		way := admissionWays[(k+round)%len(admissionWays)]
		rate, err := createRate(ctx, cs, way, clients, d)
		if err != nil {
			return err
		}
		rates[way] = rate
	}
	res.BaseThroughput.Add(rates[wayNone])
	for _, way := range admissionWays[1:] {
		s := res.Throughput[way]
		s.Add(rates[way] / rates[wayNone])
		res.Throughput[way] = s
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
