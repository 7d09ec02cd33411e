//go:build !race

// Package policytest shows policies tested against a live API server with package wasmkubetest:
// a real kube-apiserver and etcd in the test process, the policies' modules loaded from their
// files, requests made with client-go. `go test` here needs nothing else (no cluster, no
// downloads). Not under the race detector: it links kube-apiserver, whose race build exceeds
// what `make test` affords (the library's own tests run without it as well).
package policytest

import (
	"context"
	"os"
	"strings"
	"testing"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"

	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasmkubetest"
)

// One cluster for the whole test binary; Main stops it and removes its data.
func TestMain(m *testing.M) { os.Exit(wasmkubetest.Main(m)) }

// validate is an admission entry as a profile would have it: the module's file (relative to
// this directory) and the requests it sees.
func validate(name, module, settings string, resources ...string) profiles.AdmissionModule {
	m := profiles.AdmissionModule{
		Module: profiles.Module{Name: name, Module: module},
		Rules: []admissionregistrationv1.RuleWithOperations{{
			Operations: []admissionregistrationv1.OperationType{admissionregistrationv1.Create, admissionregistrationv1.Update},
			Rule:       admissionregistrationv1.Rule{APIGroups: []string{""}, APIVersions: []string{"v1"}, Resources: resources},
		}},
	}
	if settings != "" {
		m.Settings = []byte(settings)
	}
	return m
}

func TestMagicValidateInALiveServer(t *testing.T) {
	env := wasmkubetest.Start(t, wasmkubetest.Admission(
		validate("magic-validate", "../magic-validate/magic-validate.wasm", "", "configmaps")))
	cms := env.Client.CoreV1().ConfigMaps(env.Namespace)
	ctx := context.Background()

	bad := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Data: map[string]string{"not-allowed-value": "x"}}
	_, err := cms.Create(ctx, bad, metav1.CreateOptions{})
	if !apierrors.IsBadRequest(err) || !strings.Contains(err.Error(), "value 'not-allowed-value' not allowed in configmap") {
		t.Errorf("create with the key: %v, want magic-validate's denial", err)
	}
	good := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "good"}, Data: map[string]string{"fine": "x"}}
	if _, err := cms.Create(ctx, good, metav1.CreateOptions{}); err != nil {
		t.Errorf("create without the key: %v", err)
	}
}

func TestWorkloadPolicyInALiveServer(t *testing.T) {
	env := wasmkubetest.Start(t, wasmkubetest.Admission(
		validate("workload-policy", "../workload-policy/workload-policy.wasm", `{"requiredLabels":["team"],"allowedRegistries":["registry.k8s.io/"]}`, "pods")))
	pods := env.Client.CoreV1().Pods(env.Namespace)
	ctx := context.Background()
	pod := func(labels map[string]string, image string) *corev1.Pod {
		return &corev1.Pod{ObjectMeta: metav1.ObjectMeta{GenerateName: "web-", Labels: labels},
			Spec: corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: image}}}}
	}
	if _, err := pods.Create(ctx, pod(nil, "registry.k8s.io/pause:3.10"), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "lacks required labels: team") {
		t.Errorf("pod without the team label: %v", err)
	}
	if _, err := pods.Create(ctx, pod(map[string]string{"team": "a"}, "docker.io/library/nginx"), metav1.CreateOptions{}); err == nil || !strings.Contains(err.Error(), "docker.io/library/nginx") {
		t.Errorf("pod from another registry: %v", err)
	}
	if _, err := pods.Create(ctx, pod(map[string]string{"team": "a"}, "registry.k8s.io/pause:3.10"), metav1.CreateOptions{}); err != nil {
		t.Errorf("a pod the policy allows: %v", err)
	}
}

// TestModulesEndWithTheTest: a test that asks for no modules gets the cluster's own (the
// minimal profile has none): the modules of the tests before it are gone.
func TestModulesEndWithTheTest(t *testing.T) {
	env := wasmkubetest.Start(t)
	bad := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bad"}, Data: map[string]string{"not-allowed-value": "x"}}
	if _, err := env.Client.CoreV1().ConfigMaps(env.Namespace).Create(context.Background(), bad, metav1.CreateOptions{}); err != nil {
		t.Errorf("magic-validate should be gone with the test that asked for it: %v", err)
	}
}
