package bench

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"slices"
	"strings"
	"time"

	admissionv1 "k8s.io/api/admission/v1"
	authenticationv1 "k8s.io/api/authentication/v1"
	authorizationv1 "k8s.io/api/authorization/v1"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"
	"k8s.io/client-go/util/cert"
)

// The rule every admission way enforces (examples/magic-validate's): a ConfigMap whose data has
// this key is rejected.
const forbiddenKey = "not-allowed-value"

// The identities the webhook knows, matching what the example modules answer.
const (
	webhookToken = "webhook-token"
	webhookUser  = "webhook-user"
	// accessGroup is the group the access comparison authorizes (magic-authz's).
	accessGroup = "magic-group"
)

// webhookServer is a Go webhook on loopback HTTPS that answers what a user would otherwise run
// out of process: a validating admission webhook, a token authentication webhook and an
// authorization webhook, each the same rule as the module it is compared with.
type webhookServer struct {
	URL    string // https://127.0.0.1:PORT
	CAData []byte // PEM the API server trusts for it
	srv    *http.Server
}

// startWebhook serves on a kernel-chosen loopback port with a fresh self-signed certificate.
func startWebhook() (*webhookServer, error) {
	certPEM, keyPEM, err := cert.GenerateSelfSignedCertKey("127.0.0.1", []net.IP{net.ParseIP("127.0.0.1")}, nil)
	if err != nil {
		return nil, fmt.Errorf("webhook certificate: %w", err)
	}
	pair, err := tls.X509KeyPair(certPEM, keyPEM)
	if err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, fmt.Errorf("webhook listener: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /validate", serveJSON(validateReview))
	mux.HandleFunc("POST /authenticate", serveJSON(authenticateReview))
	mux.HandleFunc("POST /authorize", serveJSON(authorizeReview))
	w := &webhookServer{
		URL:    "https://" + l.Addr().String(),
		CAData: certPEM,
		srv: &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second,
			TLSConfig: &tls.Config{Certificates: []tls.Certificate{pair}, MinVersion: tls.VersionTLS12}},
	}
	go func() { _ = w.srv.ServeTLS(l, "", "") }()
	return w, nil
}

// Close stops the server.
func (w *webhookServer) Close() error {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	return w.srv.Shutdown(ctx)
}

// serveJSON decodes a review of type T, lets answer fill in its status, and writes it back.
func serveJSON[T any](answer func(*T) error) http.HandlerFunc {
	return func(rw http.ResponseWriter, r *http.Request) {
		review := new(T)
		if err := json.NewDecoder(http.MaxBytesReader(rw, r.Body, 3<<20)).Decode(review); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		if err := answer(review); err != nil {
			http.Error(rw, err.Error(), http.StatusBadRequest)
			return
		}
		rw.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(rw).Encode(review)
	}
}

func validateReview(review *admissionv1.AdmissionReview) error {
	if review.Request == nil {
		return errors.New("no request")
	}
	resp := &admissionv1.AdmissionResponse{UID: review.Request.UID, Allowed: true}
	var cm corev1.ConfigMap
	if review.Request.Kind.Kind == "ConfigMap" {
		if err := json.Unmarshal(review.Request.Object.Raw, &cm); err != nil {
			return err
		}
		if _, found := cm.Data[forbiddenKey]; found {
			resp.Allowed = false
			resp.Result = &metav1.Status{Code: 400, Message: "value '" + forbiddenKey + "' not allowed in configmap"}
		}
	}
	review.Request, review.Response = nil, resp
	return nil
}

func authenticateReview(review *authenticationv1.TokenReview) error {
	review.Status = authenticationv1.TokenReviewStatus{}
	if review.Spec.Token == webhookToken || strings.HasPrefix(review.Spec.Token, webhookToken+"-") {
		review.Status.Authenticated = true
		review.Status.User = authenticationv1.UserInfo{Username: webhookUser, UID: "1", Groups: []string{accessGroup}}
	}
	review.Spec = authenticationv1.TokenReviewSpec{}
	return nil
}

func authorizeReview(review *authorizationv1.SubjectAccessReview) error {
	attrs := review.Spec.ResourceAttributes
	allowed := slices.Contains(review.Spec.Groups, accessGroup) && attrs != nil && attrs.Resource == "configmaps"
	review.Status = authorizationv1.SubjectAccessReviewStatus{Allowed: allowed}
	if allowed {
		review.Status.Reason = accessGroup + " may access configmaps"
	}
	return nil
}

// writeWebhookConfig writes the kubeconfig-format file kube-apiserver reads for an
// authentication or authorization webhook at path (e.g. "/authenticate").
func (w *webhookServer) writeWebhookConfig(file, path string) error {
	cfg := clientcmdapi.NewConfig()
	cfg.Clusters["webhook"] = &clientcmdapi.Cluster{Server: w.URL + path, CertificateAuthorityData: w.CAData}
	cfg.AuthInfos["apiserver"] = &clientcmdapi.AuthInfo{}
	cfg.Contexts["webhook"] = &clientcmdapi.Context{Cluster: "webhook", AuthInfo: "apiserver"}
	cfg.CurrentContext = "webhook"
	if err := clientcmd.WriteToFile(*cfg, file); err != nil {
		return fmt.Errorf("webhook config %s: %w", file, err)
	}
	return os.Chmod(file, 0o600)
}
