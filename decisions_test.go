package wasmkube_test

import (
	"context"
	"strings"
	"testing"

	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"

	"github.com/wasmkube/wasmkube/wasm/hook"
)

// testDecisionLog: the server serves its modules' decisions to the admin, behind
// authentication and authorization: magic-user, whom the modules authenticate, is refused; the
// admin reads the denial of a request just made, and never a token.
func testDecisionLog(t *testing.T) {
	ctx := context.Background()
	cfg := rest.AnonymousClientConfig(cluster.RESTConfig)
	cfg.BearerToken = "magic-token"
	magic := kubernetes.NewForConfigOrDie(cfg)
	_, err := magic.CoreV1().RESTClient().Get().AbsPath(hook.DecisionsPath).DoRaw(ctx)
	if !apierrors.IsForbidden(err) {
		t.Errorf("magic-user reads the decision log: %v, want 403", err)
	}
	_, err = magic.CoreV1().ConfigMaps("default").Create(ctx, configMap("logged", nil, map[string]string{"not-allowed-value": "x"}), metav1.CreateOptions{})
	if err == nil {
		t.Fatal("magic-validate admitted the ConfigMap")
	}
	body, err := client(t).CoreV1().RESTClient().Get().AbsPath(hook.DecisionsPath).Param("module", "magic-validate").DoRaw(ctx)
	if err != nil {
		t.Fatalf("the admin reads the decision log: %v", err)
	}
	lines := strings.Split(strings.TrimSpace(string(body)), "\n")
	last := lines[len(lines)-1]
	for _, want := range []string{`"module":"magic-validate"`, `"result":"denied"`, `"name":"logged"`, `"user":"magic-user"`, `"operation":"CREATE"`} {
		if !strings.Contains(last, want) {
			t.Errorf("the last decision lacks %s: %s", want, last)
		}
	}
	all, err := client(t).CoreV1().RESTClient().Get().AbsPath(hook.DecisionsPath).DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(all), "magic-token") || strings.Contains(string(all), hmacSecret) {
		t.Error("the decision log shows a token or a secret")
	}
}
