package wasmkube_test

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	appsv1 "k8s.io/api/apps/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	apierrors "k8s.io/apimachinery/pkg/api/errors"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/wait"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube"
	"github.com/wasmkube/wasmkube/datadir"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
)

// One cluster for the package: Kubernetes keeps process-global state, and a start costs seconds.
// It runs the demo profile plus test modules and the original proof of concept's flags
// (testProfile).
var (
	cluster *wasmkube.Cluster
	profile *profiles.Loaded
	homeDir string
)

func TestMain(m *testing.M) { os.Exit(runMain(m)) }

func runMain(m *testing.M) int {
	tmp, err := os.MkdirTemp("", "wasmkube-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(tmp)
	// Before HOME moves: the go command keeps its caches there.
	var args []string
	if profile, args, err = testProfile(filepath.Join(tmp, "files")); err != nil {
		fmt.Fprintln(os.Stderr, "test profile:", err)
		return 1
	}
	// Nothing may be written outside the data dir: point HOME at an empty dir and check it later.
	homeDir = filepath.Join(tmp, "home")
	if err := os.MkdirAll(homeDir, 0o700); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	os.Setenv("HOME", homeDir)

	cluster, err = wasmkube.Up(context.Background(), profile, wasmkube.Options{
		BuiltinModules: examples.FS(),
		DataDir:        filepath.Join(tmp, "data"),
		Port:           ptr.To[int32](0),
		ModuleCacheDir: filepath.Join(tmp, "module-cache"),
		APIServerArgs:  args,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "start cluster:", err)
		return 1
	}
	code := m.Run()
	if cluster == nil { // a failed restart left none running
		return 1
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.Stop(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "stop cluster:", err)
		return 1
	}
	return code
}

func client(t *testing.T) kubernetes.Interface {
	t.Helper()
	return kubernetes.NewForConfigOrDie(cluster.RESTConfig)
}

func poll(t *testing.T, what string, cond func(ctx context.Context) (bool, error)) {
	t.Helper()
	if err := wait.PollUntilContextTimeout(context.Background(), 100*time.Millisecond, time.Minute, true, cond); err != nil {
		t.Fatalf("waiting for %s: %v", what, err)
	}
}

// TestCluster runs in order: the last step restarts the shared cluster on its data dir.
func TestCluster(t *testing.T) {
	t.Run("KubeconfigIsPrivateAndWorks", testKubeconfig)
	t.Run("EtcdOnPrivateSocketAndDataDirMarked", testEtcdSocketAndMarker)
	t.Run("ServerVersion", testServerVersion)
	t.Run("MagicTokenAuthnAuthz", testMagicToken)
	t.Run("MagicAdmission", testMagicAdmission)
	t.Run("MutationOrder", testMutationOrder)
	t.Run("WarningsAndAuditAnnotations", testWarningsAndAudit)
	t.Run("FailurePolicyAndTimeout", testFailurePolicy)
	t.Run("SelectorsAndMatchConditions", testSelectors)
	t.Run("DryRun", testDryRun)
	t.Run("Kubewarden", testKubewarden)
	t.Run("Rego", testRego)
	t.Run("UngrantedPolicyRefused", testUngrantedPolicyRefused)
	t.Run("GrantedReadsOnly", testGrantedReadsOnly)
	t.Run("LookupVersions", testLookupVersions)
	t.Run("DenyStands", testDenyStands)
	t.Run("TokenNeverLogged", testTokenNeverLogged)
	t.Run("OriginalFlagsAndConfigFiles", testOriginalFlags)
	t.Run("NamespaceLifecycle", testNamespaceLifecycle)
	t.Run("DefaultServiceAccountAndRootCA", testDefaultServiceAccount)
	t.Run("DeploymentCreatesReplicaSet", testDeployment)
	t.Run("SimulatedNodes", testSimulatedNodes)
	t.Run("AggregatedRolesHaveRules", testAggregatedRoles)
	t.Run("SecondUpOnSameDataDirFails", testSecondUp)
	t.Run("BusyPortIsAClearError", testBusyPort)
	t.Run("NothingWrittenOutsideDataDir", testNothingOutsideDataDir)
	t.Run("SecureDefaults", testSecureDefaults)
	// The reliability suite's server parts (reliability_test.go).
	t.Run("HostileModulesWhileServing", testHostileModulesWhileServing)
	t.Run("Load", func(t *testing.T) { testLoad(t, false) })
	t.Run("FaultsUnderLoad", func(t *testing.T) { testLoad(t, true) })
	t.Run("DecisionLog", testDecisionLog)
	t.Run("HotReload", testHotReload)
	t.Run("RestartKeepsData", testRestart)
	t.Run("DenyAllAuthorizerFirstNeverLocksOutAdmin", testDenyAllFirst)
	t.Run("AuthorizerBetweenNodeAndRBAC", testDenyAllBetween)
}

func testKubeconfig(t *testing.T) {
	st, err := os.Stat(cluster.KubeconfigPath)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("kubeconfig %s: mode %v, err %v", cluster.KubeconfigPath, st.Mode().Perm(), err)
	}
	if cluster.Kubeconfig.CurrentContext != "wasmkube-demo" {
		t.Errorf("context %q", cluster.Kubeconfig.CurrentContext)
	}
	if !strings.HasPrefix(cluster.Server, "https://127.0.0.1:") {
		t.Errorf("server %s is not on loopback", cluster.Server)
	}
}

// testEtcdSocketAndMarker: the apiserver reaches etcd through a 0600 unix socket in the 0700
// data dir (no TCP port), and the data dir carries wasmkube's marker.
func testEtcdSocketAndMarker(t *testing.T) {
	sock := filepath.Join(cluster.DataDir, "etcd.sock")
	if !slices.Equal(cluster.Plan.EtcdServers, []string{"unix://" + sock}) || !slices.Contains(cluster.Plan.APIServerArgs, "--etcd-servers=unix://"+sock) {
		t.Errorf("etcd servers %v, want the socket %s", cluster.Plan.EtcdServers, sock)
	}
	if fi, err := os.Lstat(sock); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket %s: %v %v", sock, fi, err)
	}
	if fi, err := os.Stat(cluster.DataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("data dir: %v %v", fi, err)
	}
	if m, err := datadir.ReadMarker(cluster.DataDir); err != nil || m.FormatVersion != datadir.FormatVersion || m.CreatedBy != wasmkube.Version() {
		t.Errorf("marker %+v %v", m, err)
	}
}

func testServerVersion(t *testing.T) {
	v, err := client(t).Discovery().ServerVersion()
	if err != nil {
		t.Fatal(err)
	}
	if v.GitVersion != "v1.37.2" || v.Major != "1" || v.Minor != "37" {
		t.Errorf("server version %+v, want v1.37.2", v)
	}
}

func testNamespaceLifecycle(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	ns := &corev1.Namespace{ObjectMeta: metav1.ObjectMeta{Name: "lifecycle"}}
	if _, err := c.CoreV1().Namespaces().Create(ctx, ns, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "c"}, Data: map[string]string{"k": "v"}}
	if _, err := c.CoreV1().ConfigMaps("lifecycle").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	if err := c.CoreV1().Namespaces().Delete(ctx, "lifecycle", metav1.DeleteOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "namespace lifecycle to be gone (the namespace controller finalizes it)", func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().Namespaces().Get(ctx, "lifecycle", metav1.GetOptions{})
		return apierrors.IsNotFound(err), nil
	})
}

func testDefaultServiceAccount(t *testing.T) {
	c := client(t)
	poll(t, "the default ServiceAccount", func(ctx context.Context) (bool, error) {
		_, err := c.CoreV1().ServiceAccounts("default").Get(ctx, "default", metav1.GetOptions{})
		return err == nil, nil
	})
	poll(t, "the kube-root-ca.crt ConfigMap", func(ctx context.Context) (bool, error) {
		cm, err := c.CoreV1().ConfigMaps("default").Get(ctx, "kube-root-ca.crt", metav1.GetOptions{})
		return err == nil && strings.Contains(cm.Data["ca.crt"], "BEGIN CERTIFICATE"), nil
	})
}

func testDeployment(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	// The demo's workload-policy wants a team label and an image from an allowed registry.
	labels := map[string]string{"app": "web", "team": "platform"}
	d := &appsv1.Deployment{
		ObjectMeta: metav1.ObjectMeta{Name: "web"},
		Spec: appsv1.DeploymentSpec{
			Replicas: ptr.To[int32](1),
			Selector: &metav1.LabelSelector{MatchLabels: labels},
			Template: corev1.PodTemplateSpec{
				ObjectMeta: metav1.ObjectMeta{Labels: labels},
				Spec:       corev1.PodSpec{Containers: []corev1.Container{{Name: "web", Image: "registry.k8s.io/pause:3.10"}}},
			},
		},
	}
	d.Labels = labels
	if _, err := c.AppsV1().Deployments("default").Create(ctx, d, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	poll(t, "a ReplicaSet and a Pod for the Deployment", func(ctx context.Context) (bool, error) {
		rs, err := c.AppsV1().ReplicaSets("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		if err != nil || len(rs.Items) == 0 {
			return false, nil
		}
		pods, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{LabelSelector: "app=web"})
		return err == nil && len(pods.Items) == 1, nil
	})
}

func testAggregatedRoles(t *testing.T) {
	c := client(t)
	poll(t, "the aggregated view ClusterRole to have rules", func(ctx context.Context) (bool, error) {
		r, err := c.RbacV1().ClusterRoles().Get(ctx, "view", metav1.GetOptions{})
		return err == nil && len(r.Rules) > 0, nil
	})
}

func testSecondUp(t *testing.T) {
	_, err := wasmkube.Up(context.Background(), profile, wasmkube.Options{BuiltinModules: examples.FS(), DataDir: cluster.DataDir, Port: ptr.To[int32](0)})
	if !errors.Is(err, wasmkube.ErrAlreadyRunning) {
		t.Fatalf("second Up on a running data dir: %v, want ErrAlreadyRunning", err)
	}
	if !strings.Contains(err.Error(), "wasmkube.lock") || !strings.Contains(err.Error(), fmt.Sprint(os.Getpid())) {
		t.Errorf("error should name the lock and the process holding it: %v", err)
	}
}

func testBusyPort(t *testing.T) {
	port := cluster.Plan.Port
	_, err := wasmkube.Up(context.Background(), profile, wasmkube.Options{BuiltinModules: examples.FS(), DataDir: t.TempDir(), Port: &port})
	if err == nil {
		t.Fatal("Up on a busy port succeeded")
	}
	for _, want := range []string{fmt.Sprintf("port %d", port), "already in use", "--port"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("error lacks %q: %v", want, err)
		}
	}
}

func testNothingOutsideDataDir(t *testing.T) {
	entries, err := os.ReadDir(homeDir)
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 0 {
		t.Errorf("files written to $HOME: %v", entries)
	}
}

func testRestart(t *testing.T) {
	ctx := context.Background()
	c := client(t)
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "survivor"}, Data: map[string]string{"k": "v"}}
	if _, err := c.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	stopCtx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	if err := cluster.Stop(stopCtx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := cluster.Wait(); err != nil {
		t.Fatalf("wait after stop: %v", err)
	}
	var err error
	cluster, err = wasmkube.Up(ctx, profile, wasmkube.Options{BuiltinModules: examples.FS(), DataDir: cluster.DataDir, Port: ptr.To[int32](0), ModuleCacheDir: t.TempDir()})
	if err != nil {
		t.Fatalf("restart on the same data dir: %v", err)
	}
	got, err := client(t).CoreV1().ConfigMaps("default").Get(ctx, "survivor", metav1.GetOptions{})
	if err != nil || got.Data["k"] != "v" {
		t.Fatalf("after restart: %v %v", got, err)
	}
}

// testMagicToken drives the demo profile's authentication and authorization modules.
func testMagicToken(t *testing.T) {
	ctx := context.Background()
	cfg := rest.AnonymousClientConfig(cluster.RESTConfig)
	cfg.BearerToken = "magic-token"
	c := kubernetes.NewForConfigOrDie(cfg)
	review, err := c.AuthenticationV1().SelfSubjectReviews().Create(ctx, &authenticationv1.SelfSubjectReview{}, metav1.CreateOptions{})
	if err != nil {
		t.Fatalf("whoami with magic-token: %v", err)
	}
	u := review.Status.UserInfo
	if u.Username != "magic-user" || u.UID != "0" || !slices.Contains(u.Groups, "magic-group") || !slices.Contains(u.Groups, "system:authenticated") {
		t.Errorf("magic-token is %+v", u)
	}
	if _, err := c.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); err != nil {
		t.Errorf("magic-user listing configmaps: %v", err)
	}
	if _, err := c.CoreV1().Pods("default").List(ctx, metav1.ListOptions{}); !apierrors.IsForbidden(err) {
		t.Errorf("magic-user listing pods: %v, want forbidden", err)
	}
	// kubectl auth can-i --list: honest about what the modules cannot list.
	rules, err := c.AuthorizationV1().SelfSubjectRulesReviews().Create(ctx, &authorizationv1.SelfSubjectRulesReview{Spec: authorizationv1.SelfSubjectRulesReviewSpec{Namespace: "default"}}, metav1.CreateOptions{})
	if err != nil || !rules.Status.Incomplete || !strings.Contains(rules.Status.EvaluationError, "WASM") {
		t.Errorf("rules review: %v %+v", err, rules.Status)
	}
	// Every call shows on the API server's /metrics, per module and hook.
	body, err := client(t).CoreV1().RESTClient().Get().AbsPath("/metrics").DoRaw(ctx)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		`wasmkube_module_calls_total{hook="authn",module="magic-authn"}`,
		`wasmkube_module_calls_total{hook="authz",module="magic-authz"}`,
		`wasmkube_module_call_duration_seconds_bucket{hook="authz",module="magic-authz",le=`,
		`wasmkube_module_pool_instances{module="magic-authn"}`,
	} {
		if !strings.Contains(string(body), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
	cfg.BearerToken = "wrong-token"
	if _, err := kubernetes.NewForConfigOrDie(cfg).CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{}); !apierrors.IsUnauthorized(err) {
		t.Errorf("wrong token: %v, want unauthorized", err)
	}
}
