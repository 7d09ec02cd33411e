package wasmkube

import (
	"bytes"
	"context"
	"fmt"
	"math"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	admissionregistrationv1 "k8s.io/api/admissionregistration/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/validation"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"sigs.k8s.io/yaml"

	"github.com/wasmkube/wasmkube/apiserver/pki"
	"github.com/wasmkube/wasmkube/profiles"
	"github.com/wasmkube/wasmkube/wasm/hook"
)

// The files BridgeConfig.Write writes.
const (
	// BridgeAdmissionFile holds the Mutating/ValidatingWebhookConfiguration (kubectl apply -f).
	BridgeAdmissionFile = "admission-webhooks.yaml"
	// BridgeAuthenticationFile is kube-apiserver's --authentication-token-webhook-config-file.
	BridgeAuthenticationFile = "authentication-webhook.kubeconfig"
	// BridgeAuthorizationFile is kube-apiserver's --authorization-webhook-config-file.
	BridgeAuthorizationFile = "authorization-webhook.kubeconfig"
	// BridgeFlagsFile lists the kube-apiserver flags naming the files, one per line.
	BridgeFlagsFile = "kube-apiserver.flags"
	// BridgeAdmissionConfigFile is kube-apiserver's --admission-control-config-file, and
	// BridgeAdmissionKubeconfigFile the kubeconfig it names, with which kube-apiserver presents
	// its client certificate to the bridge's admission webhooks (BridgeOptions.AdmissionClientAuth).
	BridgeAdmissionConfigFile     = "admission-configuration.yaml"
	BridgeAdmissionKubeconfigFile = "admission-webhook.kubeconfig"
)

// bridgeWebhookSuffix makes a module's name the webhook's (webhook names are domain names).
const bridgeWebhookSuffix = ".wasmkube.dev"

// BridgeConfig is what points an API server at a bridge: the admission webhook manifests, and
// for kube-apiserver's own flags the authentication and authorization webhook kubeconfigs.
// NewBridgeConfig makes it without effects beyond the certificates; Write writes it.
type BridgeConfig struct {
	// AdmissionWebhooks are the MutatingWebhookConfiguration and ValidatingWebhookConfiguration
	// (YAML, for kubectl apply): one webhook per admission module, with its rules, selectors,
	// match conditions and failure policy, the bridge's CA as caBundle, and a timeout a second
	// longer than the module's. Empty without admission modules.
	AdmissionWebhooks []byte
	// AuthenticationKubeconfig and AuthorizationKubeconfig are the webhook config files of
	// kube-apiserver (nil without such modules); they hold the client certificate and key the
	// bridge asks of kube-apiserver.
	AuthenticationKubeconfig, AuthorizationKubeconfig []byte
	// AdmissionKubeconfig holds kube-apiserver's client certificate for the bridge's host only
	// (never for other webhooks); nil unless BridgeOptions.AdmissionClientAuth.
	AdmissionKubeconfig []byte

	authnTTL, authzTTL time.Duration
	// chain is the profile's authorizer chain with WASM's place given to Webhook.
	chain []string
}

// NewBridgeConfig loads p's modules (to learn what each admission module is: a Kubewarden
// policy's metadata can give its rules and whether it mutates) and describes the configuration
// of the bridge StartBridge(p, opts) serves. It creates the bridge's certificates in
// opts.CertDir when missing, so that the printed CA is the one the bridge serves with.
func NewBridgeConfig(ctx context.Context, p *profiles.Loaded, opts BridgeOptions) (*BridgeConfig, error) {
	opts, err := opts.withDefaults(p)
	if err != nil {
		return nil, err
	}
	bundle, err := pki.EnsureBridge(opts.pkiRequest())
	if err != nil {
		return nil, fmt.Errorf("the bridge's certificates in %s: %w", opts.CertDir, err)
	}
	mods := newClusterModules(opts.moduleReader(), opts.ModuleCacheDir, []string{profiles.WASM}, opts.Logger)
	defer mods.close()
	if _, err := mods.load(ctx, p, bridgePlan(p)); err != nil {
		return nil, fmt.Errorf("load profile %s: %w", p.Source, err)
	}
	gen := mods.live.Snapshot()
	c := &BridgeConfig{authnTTL: DefaultAuthnCacheTTL, authzTTL: DefaultAuthzCacheTTL, chain: webhookChain(p)}
	if a := p.Authentication; a != nil && a.CacheTTL != nil {
		c.authnTTL = a.CacheTTL.Duration
	}
	if a := p.Authorization; a != nil && a.CacheTTL != nil {
		c.authzTTL = a.CacheTTL.Duration
	}
	if c.AdmissionWebhooks, err = admissionWebhooks(p.Name, opts, bundle.CACertPEM, gen.Admission); err != nil {
		return nil, err
	}
	if opts.AdmissionClientAuth {
		if c.AdmissionKubeconfig, err = admissionKubeconfig(opts.URL, bundle); err != nil {
			return nil, err
		}
	}
	if gen.Token != nil {
		if c.AuthenticationKubeconfig, err = webhookKubeconfig(opts.URL+hook.WebhookAuthenticatePath, bundle); err != nil {
			return nil, err
		}
	}
	if gen.Authorizer != nil {
		if c.AuthorizationKubeconfig, err = webhookKubeconfig(opts.URL+hook.WebhookAuthorizePath, bundle); err != nil {
			return nil, err
		}
	}
	return c, nil
}

// webhookChain is p's authorizer chain with the modules' place (WASM) given to Webhook.
func webhookChain(p *profiles.Loaded) []string {
	chain := slices.Clone(profiles.TakeWASMFlags(p.Profile, nil).Modules.AuthorizationChain)
	if i := slices.Index(chain, profiles.WASM); i >= 0 {
		chain[i] = "Webhook"
	} else {
		chain = append(chain, "Webhook")
	}
	return chain
}

// admissionWebhooks describes the admission modules as webhook configurations, YAML.
func admissionWebhooks(profile string, opts BridgeOptions, ca []byte, modules []hook.AdmissionModule) ([]byte, error) {
	base := opts.URL
	meta := metav1.ObjectMeta{Name: "wasmkube-" + profile, Labels: map[string]string{"app.kubernetes.io/managed-by": "wasmkube"}}
	mutating := &admissionregistrationv1.MutatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "MutatingWebhookConfiguration"}, ObjectMeta: meta}
	validating := &admissionregistrationv1.ValidatingWebhookConfiguration{
		TypeMeta: metav1.TypeMeta{APIVersion: "admissionregistration.k8s.io/v1", Kind: "ValidatingWebhookConfiguration"}, ObjectMeta: meta}
	for _, m := range modules {
		v, err := validatingWebhook(base, ca, m)
		if err != nil {
			return nil, err
		}
		v.NamespaceSelector = exempting(v.NamespaceSelector, opts.ExemptNamespaces)
		if !m.Mutating {
			validating.Webhooks = append(validating.Webhooks, v)
			continue
		}
		never := admissionregistrationv1.NeverReinvocationPolicy
		mutating.Webhooks = append(mutating.Webhooks, admissionregistrationv1.MutatingWebhook{Name: v.Name, ClientConfig: v.ClientConfig,
			Rules: v.Rules, FailurePolicy: v.FailurePolicy, MatchPolicy: v.MatchPolicy, NamespaceSelector: v.NamespaceSelector,
			ObjectSelector: v.ObjectSelector, SideEffects: v.SideEffects, TimeoutSeconds: v.TimeoutSeconds,
			AdmissionReviewVersions: v.AdmissionReviewVersions, ReinvocationPolicy: &never, MatchConditions: v.MatchConditions})
	}
	var out bytes.Buffer
	fmt.Fprintf(&out, "# The admission modules of profile %s, served by `wasmkube serve` at %s.\n", profile, base)
	out.WriteString("# Both configurations are always printed, empty or not: applied again after a module is removed,\n" +
		"# they remove its webhook (a webhook left behind would get 404 from the bridge, and fail).\n")
	for _, obj := range []any{mutating, validating} {
		b, err := yaml.Marshal(obj)
		if err != nil {
			return nil, fmt.Errorf("encode the webhook configuration: %w", err)
		}
		out.WriteString("---\n")
		out.Write(b)
	}
	return out.Bytes(), nil
}

// exempting is selector (nil: every namespace) that also leaves out the namespaces exempt.
func exempting(selector *metav1.LabelSelector, exempt []string) *metav1.LabelSelector {
	if len(exempt) == 0 {
		return selector
	}
	out := &metav1.LabelSelector{}
	if selector != nil {
		out = selector.DeepCopy()
	}
	out.MatchExpressions = append(out.MatchExpressions, metav1.LabelSelectorRequirement{
		Key: corev1.LabelMetadataName, Operator: metav1.LabelSelectorOpNotIn, Values: slices.Clone(exempt)})
	return out
}

// validatingWebhook describes one module as a webhook (the fields both kinds share).
func validatingWebhook(base string, ca []byte, m hook.AdmissionModule) (admissionregistrationv1.ValidatingWebhook, error) {
	name := m.Name() + bridgeWebhookSuffix
	if errs := validation.IsDNS1123Subdomain(name); len(errs) > 0 {
		return admissionregistrationv1.ValidatingWebhook{}, fmt.Errorf("admission module %q: its webhook would be named %q, which is not a valid name (%s): rename the module (lower-case letters, digits and '-')",
			m.Name(), name, strings.Join(errs, "; "))
	}
	u := base + hook.WebhookAdmissionPath + url.PathEscape(m.Name())
	fail := admissionregistrationv1.Fail
	if m.FailurePolicy == admissionregistrationv1.Ignore {
		fail = admissionregistrationv1.Ignore
	}
	equivalent := admissionregistrationv1.Equivalent
	none := admissionregistrationv1.SideEffectClassNone
	// A second beyond the module's own bound, so that the module's timeout (decided by its failure
	// policy, with its message) comes first; webhooks may wait 30 s at most.
	timeout := int32(min(30, math.Ceil(m.Timeout.Seconds())+1))
	return admissionregistrationv1.ValidatingWebhook{Name: name,
		ClientConfig: admissionregistrationv1.WebhookClientConfig{URL: &u, CABundle: ca},
		Rules:        m.Rules, FailurePolicy: &fail, MatchPolicy: &equivalent,
		NamespaceSelector: m.NamespaceSelector, ObjectSelector: m.ObjectSelector, SideEffects: &none,
		TimeoutSeconds: &timeout, AdmissionReviewVersions: []string{"v1"}, MatchConditions: m.MatchConditions}, nil
}

// webhookKubeconfig is a webhook config file of kube-apiserver: the bridge's URL and CA, and
// the client certificate kube-apiserver presents.
func webhookKubeconfig(server string, b *pki.BridgeBundle) ([]byte, error) {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["wasmkube-bridge"] = &clientcmdapi.Cluster{Server: server, CertificateAuthorityData: b.CACertPEM}
	cfg.AuthInfos[pki.BridgeClientUser] = &clientcmdapi.AuthInfo{ClientCertificateData: b.ClientCertPEM, ClientKeyData: b.ClientKeyPEM}
	cfg.Contexts["webhook"] = &clientcmdapi.Context{Cluster: "wasmkube-bridge", AuthInfo: pki.BridgeClientUser}
	cfg.CurrentContext = "webhook"
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("encode the webhook kubeconfig: %w", err)
	}
	return out, nil
}

// admissionKubeconfig is the kubeconfig of kube-apiserver's webhook admission plugins: the
// client certificate for the bridge's host:port alone (a wildcard user would present it to every
// webhook of the cluster).
func admissionKubeconfig(base string, b *pki.BridgeBundle) ([]byte, error) {
	u, err := url.Parse(base)
	if err != nil {
		return nil, err
	}
	host := u.Host
	if u.Port() == "" {
		host += ":443"
	}
	cfg := clientcmdapi.NewConfig()
	cfg.AuthInfos[host] = &clientcmdapi.AuthInfo{ClientCertificateData: b.ClientCertPEM, ClientKeyData: b.ClientKeyPEM}
	out, err := clientcmd.Write(*cfg)
	if err != nil {
		return nil, fmt.Errorf("encode the admission webhooks' kubeconfig: %w", err)
	}
	return out, nil
}

// admissionConfiguration is kube-apiserver's AdmissionConfiguration naming kubeconfig for both
// webhook admission plugins.
func admissionConfiguration(kubeconfig string) []byte {
	var b strings.Builder
	b.WriteString("apiVersion: apiserver.config.k8s.io/v1\nkind: AdmissionConfiguration\nplugins:\n")
	for _, plugin := range []string{"ValidatingAdmissionWebhook", "MutatingAdmissionWebhook"} {
		fmt.Fprintf(&b, "- name: %s\n  configuration:\n    apiVersion: apiserver.config.k8s.io/v1\n    kind: WebhookAdmissionConfiguration\n    kubeConfigFile: %q\n", plugin, kubeconfig)
	}
	return []byte(b.String())
}

// APIServerArgs are the kube-apiserver flags (name=value, without dashes) that point it at the
// authentication and authorization webhook files once written in dir; none without such modules.
func (c *BridgeConfig) APIServerArgs(dir string) []string {
	var args []string
	if c.AuthenticationKubeconfig != nil {
		args = append(args, "authentication-token-webhook-config-file="+filepath.Join(dir, BridgeAuthenticationFile),
			"authentication-token-webhook-version=v1", "authentication-token-webhook-cache-ttl="+c.authnTTL.String())
	}
	if c.AdmissionKubeconfig != nil {
		args = append(args, "admission-control-config-file="+filepath.Join(dir, BridgeAdmissionConfigFile))
	}
	if c.AuthorizationKubeconfig != nil {
		args = append(args, "authorization-mode="+strings.Join(c.chain, ","),
			"authorization-webhook-config-file="+filepath.Join(dir, BridgeAuthorizationFile), "authorization-webhook-version=v1",
			"authorization-webhook-cache-authorized-ttl="+c.authzTTL.String(), "authorization-webhook-cache-unauthorized-ttl="+c.authzTTL.String())
	}
	return args
}

// Write writes the configuration's files into dir (created 0700; files 0600, as the
// kubeconfigs hold a private key): BridgeAdmissionFile, the webhook kubeconfigs there are, and
// BridgeFlagsFile with APIServerArgs(absolute dir), one --flag=value per line. It returns the
// files written.
func (c *BridgeConfig) Write(dir string) ([]string, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, err
	}
	if err := os.MkdirAll(abs, 0o700); err != nil {
		return nil, fmt.Errorf("create %s: %w", abs, err)
	}
	var flags strings.Builder
	for _, a := range c.APIServerArgs(abs) {
		flags.WriteString("--" + a + "\n")
	}
	var admissionConfig []byte // names the kubeconfig beside it: made once dir is known
	if c.AdmissionKubeconfig != nil {
		admissionConfig = admissionConfiguration(filepath.Join(abs, BridgeAdmissionKubeconfigFile))
	}
	files := []struct {
		name string
		data []byte
	}{{BridgeAdmissionFile, c.AdmissionWebhooks}, {BridgeAuthenticationFile, c.AuthenticationKubeconfig},
		{BridgeAuthorizationFile, c.AuthorizationKubeconfig}, {BridgeAdmissionKubeconfigFile, c.AdmissionKubeconfig},
		{BridgeAdmissionConfigFile, admissionConfig}, {BridgeFlagsFile, []byte(flags.String())}}
	var written []string
	for _, f := range files {
		path := filepath.Join(abs, f.name)
		if f.data == nil {
			if err := os.Remove(path); err != nil && !os.IsNotExist(err) { // stale from an earlier profile
				return written, err
			}
			continue
		}
		if err := pki.WriteFileAtomic(path, f.data); err != nil {
			return written, fmt.Errorf("write %s: %w", path, err)
		}
		written = append(written, path)
	}
	return written, nil
}
