package cli

import (
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestBridgeWalkthrough: `wasmkube serve` serves the demo profile's modules as webhooks; a second
// cluster with no modules of its own, configured with what `serve --print-config` printed and
// wrote (unchanged), runs the magic walkthrough through the bridge. Then the bridge's probes,
// metrics and client-certificate check, and a graceful stop.
func TestBridgeWalkthrough(t *testing.T) {
	e := newEnv(t)
	port := fmt.Sprint(freePorts(t, 1)[0])
	bridge := e.start("serve", "--profile", "demo", "--port", port, "--admission-client-auth")
	bridge.waitLine(t, "Serving the modules of profile demo")

	cfgDir := filepath.Join(e.root, "bridge-config")
	code, manifests, stderr := e.run("serve", "--profile", "demo", "--port", port, "--admission-client-auth", "--print-config", "--config-dir", cfgDir)
	if code != 0 {
		t.Fatalf("serve --print-config: %d %s", code, stderr)
	}
	written, err := os.ReadFile(filepath.Join(cfgDir, "admission-webhooks.yaml"))
	if err != nil || string(written) != manifests {
		t.Fatalf("admission-webhooks.yaml differs from what was printed (%v)", err)
	}
	flags, err := os.ReadFile(filepath.Join(cfgDir, "kube-apiserver.flags"))
	if err != nil {
		t.Fatal(err)
	}
	var args []string
	for _, line := range strings.Split(strings.TrimSpace(string(flags)), "\n") {
		args = append(args, fmt.Sprintf("%q", line))
	}
	profile := filepath.Join(e.root, "bridged.yaml")
	doc := fmt.Sprintf(`apiVersion: wasmkube.dev/v1alpha1
kind: Profile
name: bridged
port: 0
controllers: {enabled: false}
apiserver:
  extraArgs: [%s]
`, strings.Join(args, ", "))
	if err := os.WriteFile(profile, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	up := e.startUp("--profile", profile)
	up.waitReady(t)
	if strings.Contains(up.text(), "modules ready") {
		t.Errorf("the bridged cluster loaded modules of its own:\n%s", up.text())
	}
	kubectl := func(args ...string) (int, string, string) {
		return e.run(append([]string{"kubectl", "--profile", profile}, args...)...)
	}
	if code, out, stderr := kubectl("apply", "-f", filepath.Join(cfgDir, "admission-webhooks.yaml")); code != 0 {
		t.Fatalf("kubectl apply the printed webhooks: %d %s %s", code, out, stderr)
	}
	walkthrough(t, "bridge", `admission webhook "magic-validate.wasmkube.dev" denied the request: `, kubectl)

	client := bridgeClient(t, filepath.Join(e.root, "data", "wasmkube", "bridge", "demo"))
	base := "https://127.0.0.1:" + port
	for path, want := range map[string]string{"/healthz": "ok", "/readyz": "ok",
		"/metrics": `wasmkube_module_calls_total{hook="admission",module="magic-validate"}`} {
		status, body := get(t, client, base+path)
		if status != http.StatusOK || !strings.Contains(body, want) {
			t.Errorf("GET %s: %d, want 200 and %q in:\n%.2000s", path, status, want, body)
		}
	}
	// Who a token belongs to is told only to a client with the certificate of the printed
	// kubeconfig; with --admission-client-auth, the admission webhooks answer only it too (the
	// walkthrough above passed: kube-apiserver presented it through the printed
	// AdmissionConfiguration).
	for path, review := range map[string]string{
		"/authenticate": `{"apiVersion":"authentication.k8s.io/v1","kind":"TokenReview","spec":{"token":"magic-token"}}`,
		"/admission/magic-validate": `{"apiVersion":"admission.k8s.io/v1","kind":"AdmissionReview","request":{"uid":"u",` +
			`"operation":"CREATE","object":{"apiVersion":"v1","kind":"ConfigMap","data":{"not-allowed-value":"x"}}}}`,
	} {
		resp, err := client.Post(base+path, "application/json", strings.NewReader(review))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || strings.Contains(string(body), "magic-user") || strings.Contains(string(body), "not allowed") {
			t.Errorf("%s without a client certificate: %d %s; want 401", path, resp.StatusCode, body)
		}
	}

	// kube-apiserver's client certificate may read the decisions: magic-validate's denial is there.
	certDir := filepath.Join(e.root, "data", "wasmkube", "bridge", "demo")
	pair, err := tls.LoadX509KeyPair(filepath.Join(certDir, "kube-apiserver-client.crt"), filepath.Join(certDir, "kube-apiserver-client.key"))
	if err != nil {
		t.Fatal(err)
	}
	withCert := bridgeClient(t, certDir)
	withCert.Transport.(*http.Transport).TLSClientConfig.Certificates = []tls.Certificate{pair}
	if status, body := get(t, withCert, base+"/wasmkube/decisions?module=magic-validate"); status != http.StatusOK ||
		!strings.Contains(body, `"result":"denied"`) || !strings.Contains(body, "not-allowed-value") {
		t.Errorf("decisions: %d %s", status, body)
	}

	if code := up.interrupt(t); code != 0 {
		t.Errorf("up exited %d:\n%s", code, up.text())
	}
	if code := bridge.signal(t, syscall.SIGTERM); code != 0 || !strings.Contains(bridge.text(), "Stopping") {
		t.Errorf("serve exited %d on SIGTERM:\n%s", code, bridge.text())
	}
}

// bridgeClient trusts the bridge's CA (in its cert dir) and presents no client certificate.
func bridgeClient(t *testing.T, certDir string) *http.Client {
	t.Helper()
	ca, err := os.ReadFile(filepath.Join(certDir, "ca.crt"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
}

func get(t *testing.T, c *http.Client, url string) (int, string) {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}
