package pki

import (
	"crypto/x509"
	"crypto/x509/pkix"
	"fmt"
	"net"
	"os"
	"time"
)

// The files of a webhook bridge's PKI directory (EnsureBridge), beside ca.crt and ca.key.
func (p Paths) BridgeServingCert() string { return p.file("bridge.crt") }
func (p Paths) BridgeServingKey() string  { return p.file("bridge.key") }
func (p Paths) BridgeClientCert() string  { return p.file("kube-apiserver-client.crt") }
func (p Paths) BridgeClientKey() string   { return p.file("kube-apiserver-client.key") }

// BridgeClientUser is the subject of the client certificate kube-apiserver presents to a bridge.
const BridgeClientUser = "kube-apiserver"

// BridgeBundle is what a webhook bridge's configuration needs: its CA (the caBundle of the
// webhooks) and the client certificate kube-apiserver presents, all PEM.
type BridgeBundle struct {
	Paths
	CACertPEM, ClientCertPEM, ClientKeyPEM []byte
	// Generated lists the base names of the files written by this call.
	Generated []string
}

// EnsureBridge creates the PKI of a webhook bridge (`wasmkube serve`) in req.Dir or reuses it:
// a CA, the bridge's serving certificate (loopback, req.IPs and req.DNSNames) and a client
// certificate for kube-apiserver (CN kube-apiserver), with Ensure's rules: 0600 files in a 0700
// directory, written atomically, reused while usable. A directory whose files are all usable is
// only read, so replicas of a bridge can share it read-only (mounted from a Secret).
func EnsureBridge(req Request) (*BridgeBundle, error) {
	now := time.Now()
	if req.Now != nil {
		now = req.Now()
	}
	if err := os.MkdirAll(req.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create the bridge's pki dir: %w", err)
	}
	s := &state{req: req, paths: Paths{Dir: req.Dir}, now: now}
	if err := s.ensureCA(); err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	ips := append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, req.IPs...)
	dns := append([]string{"localhost"}, req.DNSNames...)
	leaves := []leaf{
		{name: "serving", certPath: s.paths.BridgeServingCert(), keyPath: s.paths.BridgeServingKey(),
			subject: pkix.Name{CommonName: "wasmkube-bridge"}, usage: x509.ExtKeyUsageServerAuth, ips: ips, dns: dns},
		{name: "client", certPath: s.paths.BridgeClientCert(), keyPath: s.paths.BridgeClientKey(),
			subject: pkix.Name{CommonName: BridgeClientUser}, usage: x509.ExtKeyUsageClientAuth},
	}
	for _, l := range leaves {
		if err := s.ensureLeaf(l); err != nil {
			return nil, fmt.Errorf("%s certificate: %w", l.name, err)
		}
	}
	b := &BridgeBundle{Paths: s.paths, Generated: s.generated}
	for path, dst := range map[string]*[]byte{s.paths.CACert(): &b.CACertPEM, s.paths.BridgeClientCert(): &b.ClientCertPEM,
		s.paths.BridgeClientKey(): &b.ClientKeyPEM} {
		var err error
		if *dst, err = os.ReadFile(path); err != nil {
			return nil, err
		}
	}
	return b, nil
}
