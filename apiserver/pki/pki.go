// Package pki creates and reuses the certificates and keys of a wasmkube cluster: one CA, the
// kube-apiserver's serving certificate, the service-account signing key pair, and client
// certificates for the admin (group system:masters) and kube-controller-manager.
//
// Files are written 0600 in a 0700 directory, atomically (temp file, then rename). Ensure reuses
// what is on disk and regenerates a file only when it is missing, unreadable, expiring, or no
// longer matches what is asked (another CA, missing SANs, another subject). For a cluster that
// already has data, a lost CA or service-account key is an error (ErrLost), not replaced.
package pki

import (
	"bytes"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"errors"
	"fmt"
	"math"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"k8s.io/client-go/util/cert"
	"k8s.io/client-go/util/keyutil"
)

// Validity and renewal windows.
const (
	LeafValidity = 365 * 24 * time.Hour
	// RenewBefore regenerates a certificate this long before it expires.
	RenewBefore = 30 * 24 * time.Hour
)

// Identities of the client certificates.
const (
	AdminUser             = "kubernetes-admin"
	AdminGroup            = "system:masters"
	ControllerManagerUser = "system:kube-controller-manager"
	SchedulerUser         = "system:kube-scheduler"
)

// Paths names the files of a PKI directory.
type Paths struct{ Dir string }

func (p Paths) file(name string) string { return filepath.Join(p.Dir, name) }

// CACert and the other methods return the path of one file.
func (p Paths) CACert() string                { return p.file("ca.crt") }
func (p Paths) CAKey() string                 { return p.file("ca.key") }
func (p Paths) ServingCert() string           { return p.file("apiserver.crt") }
func (p Paths) ServingKey() string            { return p.file("apiserver.key") }
func (p Paths) ServiceAccountKey() string     { return p.file("sa.key") }
func (p Paths) ServiceAccountPub() string     { return p.file("sa.pub") }
func (p Paths) AdminCert() string             { return p.file("admin.crt") }
func (p Paths) AdminKey() string              { return p.file("admin.key") }
func (p Paths) ControllerManagerCert() string { return p.file("controller-manager.crt") }
func (p Paths) ControllerManagerKey() string  { return p.file("controller-manager.key") }
func (p Paths) SchedulerCert() string         { return p.file("scheduler.crt") }
func (p Paths) SchedulerKey() string          { return p.file("scheduler.key") }
func (p Paths) AdminToken() string            { return p.file("admin.token") }
func (p Paths) TokenAuthFile() string         { return p.file("tokens.csv") }

// Request says what the serving certificate must cover.
type Request struct {
	Dir string
	// IPs and DNSNames are added to the serving certificate's SANs, beyond the loopback ones
	// (127.0.0.1, ::1, localhost) that it always has.
	IPs      []net.IP
	DNSNames []string
	// Now is the clock; time.Now when nil.
	Now func() time.Time
	// ClusterData says the cluster already holds data signed with this PKI: then a CA or
	// service-account key that is missing or unusable is an error wrapping ErrLost instead of
	// being replaced (a new one would silently invalidate every credential the cluster issued).
	// An expiring CA is still renewed.
	ClusterData bool
}

// ErrLost is wrapped by Ensure's error when Request.ClusterData is set and the CA or the
// service-account key is missing or unusable.
var ErrLost = errors.New("lost")

// Bundle holds what a kubeconfig needs. The admin client certificate (admin.crt, admin.key,
// group system:masters) stays on disk for a certificate-based kubeconfig.
type Bundle struct {
	Paths
	CACertPEM []byte
	// AdminToken is the admin's bearer token (group system:masters), listed in TokenAuthFile.
	AdminToken string
	// Generated lists the base names of the files written by this call.
	Generated []string
	// NewCA says this call created the CA (none was usable on disk, or it was expiring).
	NewCA bool
}

type state struct {
	req    Request
	paths  Paths
	now    time.Time
	caCert *x509.Certificate
	caKey  crypto.Signer
	// caChanged forces every leaf to be re-signed.
	caChanged bool
	generated []string
}

// Ensure creates the PKI in req.Dir or reuses it.
//
// # Notes
//
//   - Temporary files that an interrupted write left (WriteFileAtomic's ".NAME.tmp-*") are
//     removed first: only one Ensure may run on a directory at a time (wasmkube.Up holds the
//     data dir's lock).
func Ensure(req Request) (*Bundle, error) {
	now := time.Now()
	if req.Now != nil {
		now = req.Now()
	}
	if err := os.MkdirAll(req.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("create pki dir: %w", err)
	}
	s := &state{req: req, paths: Paths{Dir: req.Dir}, now: now}
	if err := removeStaleTemps(req.Dir); err != nil {
		return nil, err
	}
	if err := s.ensureCA(); err != nil {
		return nil, fmt.Errorf("certificate authority: %w", err)
	}
	ips := append([]net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback}, req.IPs...)
	dns := append([]string{"localhost", "kubernetes", "kubernetes.default", "kubernetes.default.svc", "kubernetes.default.svc.cluster.local"}, req.DNSNames...)
	leaves := []leaf{
		{name: "serving", certPath: s.paths.ServingCert(), keyPath: s.paths.ServingKey(),
			subject: pkix.Name{CommonName: "kube-apiserver"}, usage: x509.ExtKeyUsageServerAuth, ips: ips, dns: dns},
		{name: "admin", certPath: s.paths.AdminCert(), keyPath: s.paths.AdminKey(),
			subject: pkix.Name{CommonName: AdminUser, Organization: []string{AdminGroup}}, usage: x509.ExtKeyUsageClientAuth},
		{name: "controller-manager", certPath: s.paths.ControllerManagerCert(), keyPath: s.paths.ControllerManagerKey(),
			subject: pkix.Name{CommonName: ControllerManagerUser}, usage: x509.ExtKeyUsageClientAuth},
		{name: "scheduler", certPath: s.paths.SchedulerCert(), keyPath: s.paths.SchedulerKey(),
			subject: pkix.Name{CommonName: SchedulerUser}, usage: x509.ExtKeyUsageClientAuth},
	}
	for _, l := range leaves {
		if err := s.ensureLeaf(l); err != nil {
			return nil, fmt.Errorf("%s certificate: %w", l.name, err)
		}
	}
	if err := s.ensureServiceAccountKey(); err != nil {
		return nil, fmt.Errorf("service-account key: %w", err)
	}
	token, err := s.ensureAdminToken()
	if err != nil {
		return nil, fmt.Errorf("admin token: %w", err)
	}
	b := &Bundle{Paths: s.paths, Generated: s.generated, AdminToken: token, NewCA: s.caChanged}
	if b.CACertPEM, err = os.ReadFile(s.paths.CACert()); err != nil {
		return nil, err
	}
	return b, nil
}

func (s *state) ensureCA() error {
	certPEM, certErr := os.ReadFile(s.paths.CACert())
	keyPEM, keyErr := os.ReadFile(s.paths.CAKey())
	usable := false
	if certErr == nil && keyErr == nil {
		c, k, err := parsePair(certPEM, keyPEM)
		usable = err == nil && c.IsCA
		if usable && s.now.Add(RenewBefore).Before(c.NotAfter) {
			s.caCert, s.caKey = c, k
			return nil
		}
	}
	if !usable && s.req.ClusterData {
		return fmt.Errorf("%s or %s is missing or unusable: %w", s.paths.CACert(), s.paths.CAKey(), ErrLost)
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	c, err := cert.NewSelfSignedCACert(cert.Config{CommonName: "wasmkube-ca"}, key)
	if err != nil {
		return err
	}
	if err := s.writePair(s.paths.CACert(), s.paths.CAKey(), c.Raw, key); err != nil {
		return err
	}
	s.caCert, s.caKey, s.caChanged = c, key, true
	return nil
}

type leaf struct {
	name              string
	certPath, keyPath string
	subject           pkix.Name
	usage             x509.ExtKeyUsage
	ips               []net.IP
	dns               []string
}

func (s *state) ensureLeaf(l leaf) error {
	if !s.caChanged && s.leafUsable(l) {
		return nil
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	der, err := s.sign(l, key.Public())
	if err != nil {
		return err
	}
	return s.writePair(l.certPath, l.keyPath, der, key)
}

// leafUsable reports whether the certificate on disk is signed by the current CA, valid for
// longer than RenewBefore, has the asked subject and covers every asked SAN.
func (s *state) leafUsable(l leaf) bool {
	certPEM, err1 := os.ReadFile(l.certPath)
	keyPEM, err2 := os.ReadFile(l.keyPath)
	if err1 != nil || err2 != nil {
		return false
	}
	c, _, err := parsePair(certPEM, keyPEM)
	if err != nil || c.CheckSignatureFrom(s.caCert) != nil || !s.now.Add(RenewBefore).Before(c.NotAfter) {
		return false
	}
	if c.Subject.CommonName != l.subject.CommonName || !slices.Equal(c.Subject.Organization, l.subject.Organization) {
		return false
	}
	for _, ip := range l.ips {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			return false
		}
	}
	for _, d := range l.dns {
		if !slices.Contains(c.DNSNames, d) {
			return false
		}
	}
	return true
}

// sign issues a leaf certificate from the CA. client-go's cert package only makes self-signed
// certificates, and kubeadm's signer lives in k8s.io/kubernetes/cmd/kubeadm with its own
// dependencies; signing a template with crypto/x509 is a few lines.
func (s *state) sign(l leaf, pub crypto.PublicKey) ([]byte, error) {
	serial, err := rand.Int(rand.Reader, new(big.Int).SetInt64(math.MaxInt64-1))
	if err != nil {
		return nil, err
	}
	tmpl := &x509.Certificate{
		SerialNumber:          serial.Add(serial, big.NewInt(1)),
		Subject:               l.subject,
		NotBefore:             s.now.Add(-5 * time.Minute).UTC(),
		NotAfter:              s.now.Add(LeafValidity).UTC(),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment,
		ExtKeyUsage:           []x509.ExtKeyUsage{l.usage},
		BasicConstraintsValid: true,
		IPAddresses:           l.ips,
		DNSNames:              l.dns,
	}
	if tmpl.NotAfter.After(s.caCert.NotAfter) {
		tmpl.NotAfter = s.caCert.NotAfter
	}
	return x509.CreateCertificate(rand.Reader, tmpl, s.caCert, pub, s.caKey)
}

func (s *state) ensureServiceAccountKey() error {
	if keyPEM, err := os.ReadFile(s.paths.ServiceAccountKey()); err == nil {
		if k, err := keyutil.ParsePrivateKeyPEM(keyPEM); err == nil {
			if signer, ok := k.(crypto.Signer); ok {
				return s.ensureServiceAccountPub(signer)
			}
		}
	}
	if s.req.ClusterData {
		return fmt.Errorf("%s is missing or unusable: %w", s.paths.ServiceAccountKey(), ErrLost)
	}
	key, err := newKey()
	if err != nil {
		return err
	}
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := s.write(s.paths.ServiceAccountKey(), keyPEM); err != nil {
		return err
	}
	return s.ensureServiceAccountPub(key)
}

// ensureServiceAccountPub writes the public half of key unless sa.pub already holds it: a lost or
// corrupt sa.pub is derived again, never a reason for a new key.
func (s *state) ensureServiceAccountPub(key crypto.Signer) error {
	if pubPEM, err := os.ReadFile(s.paths.ServiceAccountPub()); err == nil {
		if pubs, err := keyutil.ParsePublicKeysPEM(pubPEM); err == nil && len(pubs) == 1 && publicKeysEqual(key.Public(), pubs[0]) {
			return nil
		}
	}
	pubDER, err := x509.MarshalPKIXPublicKey(key.Public())
	if err != nil {
		return err
	}
	return s.write(s.paths.ServiceAccountPub(), pemEncode("PUBLIC KEY", pubDER))
}

// ensureAdminToken keeps a random admin bearer token and the kube-apiserver token file that
// lists it. The admin kubeconfig authenticates with it rather than with the client certificate,
// so `kubectl --token T` really sends only T (a client certificate would win over any token).
func (s *state) ensureAdminToken() (string, error) {
	raw, err := os.ReadFile(s.paths.AdminToken())
	token := strings.TrimSpace(string(raw))
	if err != nil || len(token) < 32 {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		token = base64.RawURLEncoding.EncodeToString(b)
		if err := s.write(s.paths.AdminToken(), []byte(token+"\n")); err != nil {
			return "", err
		}
	}
	line := fmt.Sprintf("%s,%s,%s,\"%s\"\n", token, AdminUser, AdminUser, AdminGroup)
	if cur, err := os.ReadFile(s.paths.TokenAuthFile()); err != nil || string(cur) != line {
		if err := s.write(s.paths.TokenAuthFile(), []byte(line)); err != nil {
			return "", err
		}
	}
	return token, nil
}

func (s *state) writePair(certPath, keyPath string, der []byte, key crypto.Signer) error {
	keyPEM, err := keyutil.MarshalPrivateKeyToPEM(key)
	if err != nil {
		return err
	}
	if err := s.write(keyPath, keyPEM); err != nil {
		return err
	}
	return s.write(certPath, pemEncode(cert.CertificateBlockType, der))
}

// write replaces path atomically with a 0600 file.
func (s *state) write(path string, data []byte) error {
	if err := WriteFileAtomic(path, data); err != nil {
		return err
	}
	s.generated = append(s.generated, filepath.Base(path))
	return nil
}

// tempInfix marks WriteFileAtomic's temporary files: ".NAME.tmp-RANDOM".
const tempInfix = ".tmp-"

// WriteFileAtomic writes data to a temporary 0600 file beside path and renames it over path, so
// readers never see a partial file.
func WriteFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+tempInfix+"*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if err := f.Chmod(0o600); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(f.Name(), path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// removeStaleTemps removes the temporary files of writes a killed process left in dir.
func removeStaleTemps(dir string) error {
	stale, err := filepath.Glob(filepath.Join(dir, ".*"+tempInfix+"*"))
	if err != nil {
		return err
	}
	for _, f := range stale {
		if err := os.Remove(f); err != nil {
			return fmt.Errorf("remove the temporary file %s of an interrupted write: %w", f, err)
		}
	}
	return nil
}

// newKey makes an ECDSA P-256 key: accepted by every component here (serving, client certs,
// service-account tokens as ES256) and generated in microseconds rather than RSA's ~100 ms.
func newKey() (*ecdsa.PrivateKey, error) {
	return ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
}

func parsePair(certPEM, keyPEM []byte) (*x509.Certificate, crypto.Signer, error) {
	certs, err := cert.ParseCertsPEM(certPEM)
	if err != nil {
		return nil, nil, err
	}
	k, err := keyutil.ParsePrivateKeyPEM(keyPEM)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := k.(crypto.Signer)
	if !ok || !publicKeysEqual(signer.Public(), certs[0].PublicKey) {
		return nil, nil, errors.New("key does not match certificate")
	}
	return certs[0], signer, nil
}

func publicKeysEqual(a, b crypto.PublicKey) bool {
	ae, err1 := x509.MarshalPKIXPublicKey(a)
	be, err2 := x509.MarshalPKIXPublicKey(b)
	return err1 == nil && err2 == nil && bytes.Equal(ae, be)
}
