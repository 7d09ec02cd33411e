package bench

import (
	"context"
	crand "crypto/rand"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	corev1 "k8s.io/api/core/v1"
	rbacv1 "k8s.io/api/rbac/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"

	"github.com/wasmkube/wasmkube/apiserver/pki"
)

// Static tokens of the access comparison (the token file every access cluster reads).
const (
	staticToken = "static-token" // static-user, group magic-group: what a module or webhook must authorize
	rbacToken   = "rbac-token"   // rbac-user, group bench-rbac: what RBAC authorizes
	moduleToken = "magic-token"  // examples/magic-authn's token (magic-user, group magic-group)
	rbacGroup   = "bench-rbac"
)

const accessTokens = staticToken + `,static-user,101,"` + accessGroup + `"
` + rbacToken + `,rbac-user,102,"` + rbacGroup + `"
`

// accessWay is one cluster of the access comparison: its profile and the requests measured in
// it. Each cluster's rows are compared with its own built-in rows (the static token file, RBAC),
// so that the clusters need not be alike to the microsecond.
type accessWay struct {
	name    string
	profile string
	rows    []accessRow
}

// accessRow is one kind of request: who sends it and what it asks.
type accessRow struct {
	name, token, path string
	// fresh sends token plus a new suffix each time, so that no cache can answer it.
	fresh bool
}

// The two requests: /version is authorized by RBAC for every authenticated user (so only
// authentication differs between tokens); a ConfigMap GET needs the authorizer under test.
const (
	versionPath   = "/version"
	configMapPath = "/api/v1/namespaces/default/configmaps/bench"
)

// accessWays writes the token file and webhook configs into dir. The token file replaces
// wasmkube's own, so it lists the admin token too (admin, which startAccessClusters gives every
// cluster before its first start).
func accessWays(dir, admin string, hook *webhookServer) ([]accessWay, error) {
	tokens := filepath.Join(dir, "tokens.csv")
	authn, authz := filepath.Join(dir, "authn-webhook.yaml"), filepath.Join(dir, "authz-webhook.yaml")
	adminLine := fmt.Sprintf("%s,%s,%s,%q\n", admin, pki.AdminUser, pki.AdminUser, pki.AdminGroup)
	if err := os.WriteFile(tokens, []byte(adminLine+accessTokens), 0o600); err != nil {
		return nil, err
	}
	if err := hook.writeWebhookConfig(authn, "/authenticate"); err != nil {
		return nil, err
	}
	if err := hook.writeWebhookConfig(authz, "/authorize"); err != nil {
		return nil, err
	}
	builtin := []accessRow{
		{"static token file", staticToken, versionPath, false},
		{"RBAC", rbacToken, configMapPath, false},
	}
	webhookArgs := []string{"token-auth-file=" + tokens,
		"authentication-token-webhook-config-file=" + authn, "authentication-token-webhook-version=v1",
		"authorization-mode=Node,RBAC,Webhook", "authorization-webhook-config-file=" + authz, "authorization-webhook-version=v1"}
	noCache := []string{"authentication-token-webhook-cache-ttl=0s",
		"authorization-webhook-cache-authorized-ttl=0s", "authorization-webhook-cache-unauthorized-ttl=0s"}
	static := []string{"token-auth-file=" + tokens}
	// kube-apiserver caches every successful token authentication for 10 s (its built-in
	// TokenSuccessCacheTTL, no flag), webhook or not: only a new token each time reaches the webhook.
	return []accessWay{
		{name: "module", profile: accessProfile("bench-access-module", static, "0s"),
			rows: append(builtin, accessRow{"module token (magic-authn), no cache", moduleToken, versionPath, false},
				accessRow{"module decision (magic-authz, after RBAC), no cache", staticToken, configMapPath, false})},
		{name: "module-cached", profile: accessProfile("bench-access-module-cached", static, "default"),
			rows: append(builtin, accessRow{"module token (magic-authn), default cache (10s)", moduleToken, versionPath, false},
				accessRow{"module decision (magic-authz, after RBAC), default cache (10s)", staticToken, configMapPath, false})},
		{name: "webhook", profile: accessProfile("bench-access-webhook", append(webhookArgs, noCache...), ""),
			rows: append(builtin, accessRow{"webhook token, a new one each request (never cached)", webhookToken, versionPath, true},
				accessRow{"webhook decision, no cache (after RBAC)", staticToken, configMapPath, false})},
		{name: "webhook-cached", profile: accessProfile("bench-access-webhook-cached", webhookArgs, ""),
			rows: append(builtin, accessRow{"webhook token, default cache (2m)", webhookToken, versionPath, false},
				accessRow{"webhook decision, default cache (5m allowed)", staticToken, configMapPath, false})},
	}, nil
}

// accessProfile is a profile without controllers, with args for kube-apiserver and, unless
// moduleCache is empty, magic-authn (its cache TTL moduleCache, "default" for the profile's
// default) and magic-authz.
func accessProfile(name string, args []string, moduleCache string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "apiVersion: wasmkube.dev/v1alpha1\nkind: Profile\nname: %s\ncontrollers:\n  enabled: false\napiserver:\n  extraArgs:\n", name)
	for _, a := range args {
		fmt.Fprintf(&b, "  - %q\n", a)
	}
	if moduleCache != "" {
		b.WriteString("authentication:\n")
		if moduleCache != "default" {
			fmt.Fprintf(&b, "  cacheTTL: %s\n", moduleCache)
		}
		b.WriteString("  modules:\n  - module: builtin:magic-authn\n")
		b.WriteString("authorization:\n  chain: [Node, RBAC, WASM]\n")
		if moduleCache != "default" {
			fmt.Fprintf(&b, "  cacheTTL: %s\n", moduleCache)
		}
		b.WriteString("  modules:\n  - module: builtin:magic-authz\n")
	}
	return b.String()
}

// AccessResult holds, per cluster and row, the p50 latency (µs) of each round.
type AccessResult struct {
	Requests int
	Ways     []AccessWayResult
}

// AccessWayResult is one cluster's rows.
type AccessWayResult struct {
	Name string
	Rows []AccessRowResult
}

// AccessRowResult is one row's p50 request latency per round (µs).
type AccessRowResult struct {
	Name string
	Path string
	P50  Series
}

// measureAccess starts one cluster per way, side by side, and interleaves requests between all
// their rows.
func measureAccess(ctx context.Context, h home, rounds, requests int) (*AccessResult, error) {
	hook, err := startWebhook()
	if err != nil {
		return nil, err
	}
	defer hook.Close()
	admin := crand.Text() + crand.Text() // wasmkube keeps admin tokens of 32 characters or more
	ways, err := accessWays(h.root, admin, hook)
	if err != nil {
		return nil, err
	}
	for _, w := range ways {
		if err := h.giveAdminToken("bench-access-"+w.name, admin); err != nil {
			return nil, err
		}
	}
	clients, stop, err := startAccessClusters(ctx, h, ways)
	if err != nil {
		return nil, err
	}
	defer stop()
	res := &AccessResult{Requests: requests}
	for i, w := range ways {
		res.Ways = append(res.Ways, AccessWayResult{Name: w.name})
		for _, r := range w.rows {
			res.Ways[i].Rows = append(res.Ways[i].Rows, AccessRowResult{Name: r.name, Path: r.path})
		}
	}
	for round := range rounds {
		if err := accessRound(ctx, ways, clients, round, requests, res); err != nil {
			return nil, err
		}
	}
	return res, nil
}

// accessClient sends raw GETs with a bearer token to one cluster.
type accessClient struct {
	host string
	http *http.Client
}

func startAccessClusters(ctx context.Context, h home, ways []accessWay) ([]accessClient, func(), error) {
	var ups []*upCluster
	stop := func() {
		for _, u := range ups {
			u.kill()
		}
	}
	var clients []accessClient
	for _, w := range ways {
		ref := filepath.Join(h.root, "bench-access-"+w.name+".yaml")
		if err := os.WriteFile(ref, []byte(w.profile), 0o600); err != nil {
			stop()
			return nil, nil, err
		}
		up, _, err := h.startUp(ctx, ref, "bench-access-"+w.name)
		if err != nil {
			stop()
			return nil, nil, err
		}
		ups = append(ups, up)
		c, err := setUpAccessCluster(ctx, up.kubeconfig())
		if err != nil {
			stop()
			return nil, nil, fmt.Errorf("%s: %w", w.name, err)
		}
		clients = append(clients, c)
	}
	return clients, stop, nil
}

// setUpAccessCluster creates the ConfigMap the rows read and lets group bench-rbac read it
// through RBAC; it returns a client that sends the rows' tokens.
func setUpAccessCluster(ctx context.Context, kubeconfig string) (accessClient, error) {
	cfg, err := clientcmd.BuildConfigFromFlags("", kubeconfig)
	if err != nil {
		return accessClient{}, err
	}
	cs, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return accessClient{}, err
	}
	if err := createAccessObjects(ctx, cs); err != nil {
		return accessClient{}, err
	}
	tr, err := rest.TransportFor(rest.AnonymousClientConfig(cfg))
	if err != nil {
		return accessClient{}, err
	}
	c := accessClient{host: cfg.Host, http: &http.Client{Transport: tr, Timeout: 10 * time.Second}}
	return c, c.waitAccess(ctx, accessRow{"RBAC", rbacToken, configMapPath, false})
}

func createAccessObjects(ctx context.Context, cs *kubernetes.Clientset) error {
	cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "bench"}, Data: map[string]string{"a": "1"}}
	if _, err := cs.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("ConfigMap default/bench: %w", err)
	}
	role := &rbacv1.ClusterRole{ObjectMeta: metav1.ObjectMeta{Name: "bench-configmap-reader"},
		Rules: []rbacv1.PolicyRule{{APIGroups: []string{""}, Resources: []string{"configmaps"}, Verbs: []string{"get"}}}}
	if _, err := cs.RbacV1().ClusterRoles().Create(ctx, role, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("ClusterRole: %w", err)
	}
	binding := &rbacv1.ClusterRoleBinding{ObjectMeta: metav1.ObjectMeta{Name: "bench-configmap-reader"},
		RoleRef:  rbacv1.RoleRef{APIGroup: rbacv1.GroupName, Kind: "ClusterRole", Name: role.Name},
		Subjects: []rbacv1.Subject{{Kind: rbacv1.GroupKind, APIGroup: rbacv1.GroupName, Name: rbacGroup}}}
	if _, err := cs.RbacV1().ClusterRoleBindings().Create(ctx, binding, metav1.CreateOptions{}); err != nil {
		return fmt.Errorf("ClusterRoleBinding: %w", err)
	}
	return nil
}

// waitAccess waits until row's request succeeds: RBAC's authorizer reads an informer, so a new
// binding takes effect a moment after it is created.
func (c accessClient) waitAccess(ctx context.Context, row accessRow) error {
	deadline := time.Now().Add(30 * time.Second)
	for {
		_, err := c.get(ctx, row)
		if err == nil {
			return nil
		}
		if time.Now().After(deadline) {
			return fmt.Errorf("%s: %w", row.name, err)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// accessRound sends requests per row, every row of every cluster taking turns.
func accessRound(ctx context.Context, ways []accessWay, clients []accessClient, round, n int, res *AccessResult) error {
	type key struct{ way, row int }
	var order []key
	for w, way := range ways {
		for r := range way.rows {
			order = append(order, key{w, r})
		}
	}
	lat := map[key][]time.Duration{}
	// A random order each time: the first request to a cluster after requests to the others is
	// slower (its goroutines and connection went idle), and a fixed order would give that cost
	// to the same rows every time.
	rnd := rand.New(rand.NewPCG(uint64(round), 11))
	for range n {
		for _, k := range rnd.Perm(len(order)) {
			at := order[k]
			row := ways[at.way].rows[at.row]
			d, err := clients[at.way].get(ctx, row)
			if err != nil {
				return fmt.Errorf("%s, %s: %w", ways[at.way].name, row.name, err)
			}
			lat[at] = append(lat[at], d)
		}
	}
	for at, d := range lat {
		res.Ways[at.way].Rows[at.row].P50.AddDuration(percentile(d, 50), time.Microsecond)
	}
	return nil
}

func (c accessClient) get(ctx context.Context, row accessRow) (time.Duration, error) {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.host+row.path, nil)
	if err != nil {
		return 0, err
	}
	token := row.token
	if row.fresh {
		token += "-" + strconv.FormatInt(time.Now().UnixNano(), 36)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	began := time.Now()
	resp, err := c.http.Do(req)
	if err != nil {
		return 0, err
	}
	body, _ := io.ReadAll(resp.Body)
	_ = resp.Body.Close()
	elapsed := time.Since(began)
	if resp.StatusCode != http.StatusOK {
		return 0, fmt.Errorf("GET %s: %s: %s", row.path, resp.Status, body)
	}
	return elapsed, nil
}

// giveAdminToken writes the admin token a profile's first start takes (up keeps an admin token
// it finds in pki/ and adopts a data dir that holds only pki/).
func (h home) giveAdminToken(profile, token string) error {
	dir := filepath.Join(h.dataDir(profile), "pki")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "admin.token"), []byte(token+"\n"), 0o600)
}
