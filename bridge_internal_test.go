package wasmkube

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	"k8s.io/client-go/tools/clientcmd"
	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube/apiserver/pki"
	"github.com/wasmkube/wasmkube/examples"
	"github.com/wasmkube/wasmkube/profiles"
)

// TestBridgeConfig: the demo's printed configuration has one webhook per admission module with
// the entry's rules, selectors, match conditions and failure policy, in the kind its mutating
// says; kubeconfigs with the bridge's CA and a client certificate; flags naming the files; every
// file 0600.
func TestBridgeConfig(t *testing.T) {
	p, err := profiles.NewFinder("").Resolve("demo")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := BridgeOptions{CertDir: filepath.Join(dir, "pki"), BuiltinModules: examples.FS(), ModuleCacheDir: filepath.Join(dir, "cache"),
		Address: "0.0.0.0", URL: "https://bridge.example:8443", ExemptNamespaces: []string{"wasmkube-system"}}
	c, err := NewBridgeConfig(context.Background(), p, opts)
	if err != nil {
		t.Fatal(err)
	}
	docs := strings.Split(string(c.AdmissionWebhooks), "\n---\n")
	if len(docs) != 3 {
		t.Fatalf("want a comment, a mutating and a validating configuration:\n%s", c.AdmissionWebhooks)
	}
	var mutating admissionregistrationv1.MutatingWebhookConfiguration
	var validating admissionregistrationv1.ValidatingWebhookConfiguration
	if err := yaml.UnmarshalStrict([]byte(docs[1]), &mutating); err != nil {
		t.Fatal(err)
	}
	if err := yaml.UnmarshalStrict([]byte(docs[2]), &validating); err != nil {
		t.Fatal(err)
	}
	if len(mutating.Webhooks) != 1 || mutating.Webhooks[0].Name != "magic-mutate.wasmkube.dev" ||
		len(mutating.Webhooks[0].MatchConditions) != 1 || *mutating.Webhooks[0].ClientConfig.URL != "https://bridge.example:8443/admission/magic-mutate" {
		t.Errorf("mutating webhooks: %+v", mutating.Webhooks)
	}
	if len(validating.Webhooks) != 2 || validating.Webhooks[1].Name != "workload-policy.wasmkube.dev" {
		t.Fatalf("validating webhooks: %+v", validating.Webhooks)
	}
	// The bridge's namespace is left out of every webhook, beside what the entry selects.
	for _, w := range append(validating.Webhooks, admissionregistrationv1.ValidatingWebhook{Name: mutating.Webhooks[0].Name, NamespaceSelector: mutating.Webhooks[0].NamespaceSelector}) {
		sel := w.NamespaceSelector
		if sel == nil || len(sel.MatchExpressions) == 0 {
			t.Fatalf("%s: no namespaceSelector", w.Name)
		}
		last := sel.MatchExpressions[len(sel.MatchExpressions)-1]
		if last.Key != "kubernetes.io/metadata.name" || last.Operator != "NotIn" || len(last.Values) != 1 || last.Values[0] != "wasmkube-system" {
			t.Errorf("%s: namespaceSelector %+v does not exempt wasmkube-system", w.Name, sel)
		}
	}
	if n := len(validating.Webhooks[1].NamespaceSelector.MatchExpressions); n != 2 {
		t.Errorf("workload-policy's own namespace rule was lost: %d expressions", n)
	}
	if len(p.Admission.Modules[2].NamespaceSelector.MatchExpressions) != 1 {
		t.Error("exempting changed the profile's own selector")
	}
	wp := validating.Webhooks[1]
	if wp.NamespaceSelector == nil || len(wp.Rules) != 3 || *wp.FailurePolicy != admissionregistrationv1.Fail ||
		*wp.TimeoutSeconds != 3 || *wp.SideEffects != admissionregistrationv1.SideEffectClassNone || len(wp.ClientConfig.CABundle) == 0 {
		t.Errorf("workload-policy's webhook lost its entry's settings: %+v", wp)
	}

	out := filepath.Join(dir, "out")
	written, err := c.Write(out)
	if err != nil || len(written) != 4 {
		t.Fatalf("write: %v %v", written, err)
	}
	for _, f := range written {
		if st, err := os.Stat(f); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", f, st.Mode(), err)
		}
	}
	kc, err := clientcmd.LoadFromFile(filepath.Join(out, BridgeAuthorizationFile))
	if err != nil {
		t.Fatal(err)
	}
	cl, user := kc.Clusters[kc.Contexts[kc.CurrentContext].Cluster], kc.AuthInfos[kc.Contexts[kc.CurrentContext].AuthInfo]
	if cl.Server != "https://bridge.example:8443/authorize" || len(cl.CertificateAuthorityData) == 0 || len(user.ClientCertificateData) == 0 {
		t.Errorf("authorization kubeconfig: %+v %+v", cl, user)
	}
	flags, _ := os.ReadFile(filepath.Join(out, BridgeFlagsFile))
	for _, want := range []string{"--authorization-mode=Node,RBAC,Webhook\n", "--authentication-token-webhook-config-file=" + filepath.Join(out, BridgeAuthenticationFile)} {
		if !strings.Contains(string(flags), want) {
			t.Errorf("flags lack %q:\n%s", want, flags)
		}
	}
}

// TestStartBridgeRefusesPoliciesThatReadTheCluster: without the served cluster's kubeconfig, a
// policy granted reads of the cluster is refused at start, naming its entry.
func TestStartBridgeRefusesPoliciesThatReadTheCluster(t *testing.T) {
	p, err := profiles.NewFinder("").Resolve("kubewarden-demo")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	_, err = StartBridge(context.Background(), p, BridgeOptions{CertDir: dir, BuiltinModules: examples.FS(), Port: 1})
	if err == nil || !strings.Contains(err.Error(), "(unique-ingress-host) reads the cluster") || !strings.Contains(err.Error(), "--kubeconfig") {
		t.Fatalf("err = %v", err)
	}
}

// TestBridgeConfigAdmissionClientAuth: with AdmissionClientAuth, kube-apiserver's client
// certificate is given for the bridge's host:port alone, through an AdmissionConfiguration for
// both webhook plugins that the flags name.
func TestBridgeConfigAdmissionClientAuth(t *testing.T) {
	p, err := profiles.NewFinder("").Resolve("demo")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	c, err := NewBridgeConfig(context.Background(), p, BridgeOptions{CertDir: filepath.Join(dir, "pki"), BuiltinModules: examples.FS(),
		ModuleCacheDir: filepath.Join(dir, "cache"), URL: "https://bridge.example:8443", AdmissionClientAuth: true})
	if err != nil {
		t.Fatal(err)
	}
	out := filepath.Join(dir, "out")
	written, err := c.Write(out)
	if err != nil || len(written) != 6 {
		t.Fatalf("write: %v %v", written, err)
	}
	kc, err := clientcmd.LoadFromFile(filepath.Join(out, BridgeAdmissionKubeconfigFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(kc.AuthInfos) != 1 || kc.AuthInfos["bridge.example:8443"] == nil || len(kc.AuthInfos["bridge.example:8443"].ClientCertificateData) == 0 {
		t.Errorf("admission kubeconfig users: %v; want only bridge.example:8443", kc.AuthInfos)
	}
	admission, _ := os.ReadFile(filepath.Join(out, BridgeAdmissionConfigFile))
	flags, _ := os.ReadFile(filepath.Join(out, BridgeFlagsFile))
	if strings.Count(string(admission), "kubeConfigFile: \""+filepath.Join(out, BridgeAdmissionKubeconfigFile)) != 2 ||
		!strings.Contains(string(flags), "--admission-control-config-file="+filepath.Join(out, BridgeAdmissionConfigFile)) {
		t.Errorf("admission configuration:\n%s\nflags:\n%s", admission, flags)
	}
}

// TestBridgeReplicas: two bridges of one profile sharing a cert dir (as replicas behind a
// Service share a Secret) answer alike, each trusted through the one printed CA; stopping one
// leaves the other serving, and a stopped one is not ready.
func TestBridgeReplicas(t *testing.T) {
	p, err := profiles.NewFinder("").Resolve("demo")
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	opts := BridgeOptions{CertDir: filepath.Join(dir, "pki"), BuiltinModules: examples.FS(), ModuleCacheDir: filepath.Join(dir, "cache")}
	var replicas []*Bridge
	for _, port := range freeTCPPorts(t, 2) {
		o := opts
		o.Port = port
		b, err := StartBridge(context.Background(), p, o)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { _ = b.Stop(context.Background()) })
		replicas = append(replicas, b)
	}
	client := bridgeTestClient(t, opts.CertDir)
	review := `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"magic-token"}}`
	for _, b := range replicas {
		resp, err := client.Post(b.URL()+"/authenticate", "application/json", strings.NewReader(review))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(body), `"username":"magic-user"`) {
			t.Errorf("%s: %d %s", b.URL(), resp.StatusCode, body)
		}
	}
	if err := replicas[0].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := client.Get(replicas[0].URL() + "/readyz"); err == nil {
		t.Error("a stopped replica still answers")
	}
	if resp, err := client.Get(replicas[1].URL() + "/readyz"); err != nil || resp.StatusCode != 200 {
		t.Errorf("the other replica: %v %v", resp, err)
	}
}

// freeTCPPorts returns n ports free on loopback a moment ago.
func freeTCPPorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
		defer ln.Close()
	}
	return ports
}

// bridgeTestClient trusts the bridge CA of certDir and presents kube-apiserver's certificate.
func bridgeTestClient(t *testing.T, certDir string) *http.Client {
	t.Helper()
	paths := pki.Paths{Dir: certDir}
	ca, err := os.ReadFile(paths.CACert())
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tls.LoadX509KeyPair(paths.BridgeClientCert(), paths.BridgeClientKey())
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
		TLSClientConfig: &tls.Config{RootCAs: pool, Certificates: []tls.Certificate{pair}}}}
}
