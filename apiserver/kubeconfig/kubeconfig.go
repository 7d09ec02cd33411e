// Package kubeconfig writes a cluster's own kubeconfig and merges it into, or removes it from,
// the user's kubeconfig files. Everything goes through client-go's clientcmd: the cluster's own
// file is written 0600 and atomically, merges follow the KUBECONFIG rules and take kubectl's
// lock, and entries of other clusters are never touched.
package kubeconfig

import (
	"fmt"
	"os"
	"path/filepath"

	"k8s.io/client-go/rest"
	"k8s.io/client-go/tools/clientcmd"
	clientcmdapi "k8s.io/client-go/tools/clientcmd/api"

	"github.com/wasmkube/wasmkube/apiserver/pki"
)

// Credentials is what a kubeconfig for one cluster holds; certificates are PEM, embedded.
type Credentials struct {
	// Name is the cluster, user and context name.
	Name       string
	Server     string
	CAPEM      []byte
	ClientCert []byte
	ClientKey  []byte
	// Token, when set, is used instead of the client certificate.
	Token string
}

// Build returns a kubeconfig whose single context, cluster and user are named c.Name and whose
// current context is that one.
func Build(c Credentials) *clientcmdapi.Config {
	cfg := clientcmdapi.NewConfig()
	cluster := clientcmdapi.NewCluster()
	cluster.Server = c.Server
	cluster.CertificateAuthorityData = c.CAPEM
	user := clientcmdapi.NewAuthInfo()
	if c.Token != "" {
		user.Token = c.Token
	} else {
		user.ClientCertificateData = c.ClientCert
		user.ClientKeyData = c.ClientKey
	}
	ctx := clientcmdapi.NewContext()
	ctx.Cluster = c.Name
	ctx.AuthInfo = c.Name
	cfg.Clusters[c.Name] = cluster
	cfg.AuthInfos[c.Name] = user
	cfg.Contexts[c.Name] = ctx
	cfg.CurrentContext = c.Name
	return cfg
}

// Write writes cfg to path (0600), creating its directory (0700). The file is replaced
// atomically (a temporary file beside it, then rename): a reader or a crash never sees half a
// kubeconfig.
func Write(path string, cfg *clientcmdapi.Config) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return fmt.Errorf("write kubeconfig: %w", err)
	}
	b, err := clientcmd.Write(*cfg)
	if err != nil {
		return fmt.Errorf("write kubeconfig %s: %w", path, err)
	}
	if err := pki.WriteFileAtomic(path, b); err != nil {
		return fmt.Errorf("kubeconfig: %w", err)
	}
	return nil
}

// RESTConfig returns a client configuration for cfg's current context.
func RESTConfig(cfg *clientcmdapi.Config) (*rest.Config, error) {
	return clientcmd.NewDefaultClientConfig(*cfg, &clientcmd.ConfigOverrides{}).ClientConfig()
}

// UserConfigAccess is the user's kubeconfig as kubectl finds it: $KUBECONFIG (a list of files)
// or ~/.kube/config.
func UserConfigAccess() *clientcmd.PathOptions { return clientcmd.NewDefaultPathOptions() }

// Merge adds (or replaces) the context, cluster and user named name from own into the user's
// kubeconfig and makes it the current context. It returns the file written.
//
// # Notes
//
//   - clientcmd.ModifyConfig takes kubectl's lock on each file and writes only the entries that
//     changed, each to the file that holds it (new ones to the first KUBECONFIG file).
func Merge(access clientcmd.ConfigAccess, own *clientcmdapi.Config, name string) (string, error) {
	start, err := access.GetStartingConfig()
	if err != nil {
		return "", fmt.Errorf("read your kubeconfig: %w", err)
	}
	start.Clusters[name] = own.Clusters[name]
	start.AuthInfos[name] = own.AuthInfos[name]
	start.Contexts[name] = own.Contexts[name]
	start.CurrentContext = name
	if err := clientcmd.ModifyConfig(access, *start, false); err != nil {
		return "", fmt.Errorf("merge into your kubeconfig: %w", err)
	}
	return access.GetDefaultFilename(), nil
}

// Remove deletes the context, cluster and user named name from the user's kubeconfig, and the
// current context if it was that one. It reports whether anything was removed.
func Remove(access clientcmd.ConfigAccess, name string) (bool, error) {
	start, err := access.GetStartingConfig()
	if err != nil {
		return false, fmt.Errorf("read your kubeconfig: %w", err)
	}
	_, c1 := start.Clusters[name]
	_, c2 := start.AuthInfos[name]
	_, c3 := start.Contexts[name]
	if !c1 && !c2 && !c3 {
		return false, nil
	}
	delete(start.Clusters, name)
	delete(start.AuthInfos, name)
	delete(start.Contexts, name)
	if start.CurrentContext == name {
		start.CurrentContext = ""
	}
	if err := clientcmd.ModifyConfig(access, *start, false); err != nil {
		return false, fmt.Errorf("remove %s from your kubeconfig: %w", name, err)
	}
	return true, nil
}
