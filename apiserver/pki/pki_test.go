package pki

import (
	"crypto/x509"
	"errors"
	"maps"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"k8s.io/client-go/util/cert"
)

func TestEnsureCreatesThenReuses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	b, err := Ensure(Request{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Generated) != 14 {
		t.Fatalf("first run generated %v, want all 14 files", b.Generated)
	}
	st, err := os.Stat(dir)
	if err != nil || st.Mode().Perm() != 0o700 {
		t.Fatalf("pki dir mode = %v, %v; want 0700", st.Mode().Perm(), err)
	}
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		info, _ := e.Info()
		if info.Mode().Perm() != 0o600 {
			t.Errorf("%s mode = %v, want 0600", e.Name(), info.Mode().Perm())
		}
	}
	if len(entries) != 14 {
		t.Errorf("pki dir has %d entries (temp files left?), want 14", len(entries))
	}

	before := readAll(t, dir)
	b2, err := Ensure(Request{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if len(b2.Generated) != 0 {
		t.Fatalf("second run regenerated %v, want nothing", b2.Generated)
	}
	if after := readAll(t, dir); !maps.Equal(before, after) {
		t.Fatal("second run changed files on disk")
	}
}

func TestServingCertificate(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(Request{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	c := loadCert(t, Paths{dir}.ServingCert())
	for _, ip := range []net.IP{net.ParseIP("127.0.0.1"), net.ParseIP("::1")} {
		if !slices.ContainsFunc(c.IPAddresses, ip.Equal) {
			t.Errorf("serving cert lacks IP SAN %s", ip)
		}
	}
	if !slices.Contains(c.DNSNames, "localhost") {
		t.Error("serving cert lacks DNS SAN localhost")
	}
	if err := c.CheckSignatureFrom(loadCert(t, Paths{dir}.CACert())); err != nil {
		t.Errorf("serving cert not signed by the CA: %v", err)
	}
	admin := loadCert(t, Paths{dir}.AdminCert())
	if !slices.Contains(admin.Subject.Organization, "system:masters") || admin.ExtKeyUsage[0] != x509.ExtKeyUsageClientAuth {
		t.Errorf("admin cert subject %v usage %v", admin.Subject, admin.ExtKeyUsage)
	}
}

func TestRegeneratesOnlyWhatIsMissingOrWrong(t *testing.T) {
	dir := t.TempDir()
	p := Paths{dir}
	if _, err := Ensure(Request{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := os.Remove(p.AdminKey()); err != nil {
		t.Fatal(err)
	}
	b, err := Ensure(Request{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Generated, []string{"admin.key", "admin.crt"}) {
		t.Fatalf("after removing admin.key regenerated %v, want admin pair only", b.Generated)
	}

	b, err = Ensure(Request{Dir: dir, IPs: []net.IP{net.ParseIP("192.0.2.7")}})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Generated, []string{"apiserver.key", "apiserver.crt"}) {
		t.Fatalf("a new SAN regenerated %v, want the serving pair only", b.Generated)
	}
}

func TestRegeneratesExpiring(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(Request{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	later := func() time.Time { return time.Now().Add(LeafValidity - RenewBefore + time.Hour) }
	b, err := Ensure(Request{Dir: dir, Now: later})
	if err != nil {
		t.Fatal(err)
	}
	if len(b.Generated) != 8 || slices.Contains(b.Generated, "ca.crt") {
		t.Fatalf("leaves close to expiry: regenerated %v, want the four leaf pairs and not the CA", b.Generated)
	}

	muchLater := func() time.Time { return time.Now().Add(10 * 365 * 24 * time.Hour) }
	b, err = Ensure(Request{Dir: dir, Now: muchLater})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(b.Generated, "ca.crt") || !slices.Contains(b.Generated, "admin.crt") {
		t.Fatalf("CA close to expiry: regenerated %v, want the CA and every leaf", b.Generated)
	}
}

func TestCorruptFileIsReplaced(t *testing.T) {
	dir := t.TempDir()
	p := Paths{dir}
	if _, err := Ensure(Request{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p.ServiceAccountPub(), []byte("garbage"), 0o600); err != nil {
		t.Fatal(err)
	}
	b, err := Ensure(Request{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(b.Generated, []string{"sa.pub"}) {
		t.Fatalf("corrupt sa.pub: regenerated %v, want sa.pub derived again from the kept sa.key", b.Generated)
	}
}

// TestClusterDataKeepsCAAndServiceAccountKey: when the cluster has data, a lost CA or
// service-account key is an error that names the files and writes nothing; without data they
// are generated, and the bundle says the CA is new.
func TestClusterDataKeepsCAAndServiceAccountKey(t *testing.T) {
	for _, lost := range []struct {
		name    string
		damage  func(p Paths) error
		mention string
	}{
		{"ca.key removed", func(p Paths) error { return os.Remove(p.CAKey()) }, "ca.key"},
		{"ca.crt corrupt", func(p Paths) error { return os.WriteFile(p.CACert(), []byte("garbage"), 0o600) }, "ca.crt"},
		{"pki removed", func(p Paths) error { return os.RemoveAll(p.Dir) }, "ca.crt"},
		{"sa.key removed", func(p Paths) error { return os.Remove(p.ServiceAccountKey()) }, "sa.key"},
	} {
		t.Run(lost.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "pki")
			p := Paths{dir}
			if _, err := Ensure(Request{Dir: dir}); err != nil {
				t.Fatal(err)
			}
			if err := lost.damage(p); err != nil {
				t.Fatal(err)
			}
			if err := os.MkdirAll(dir, 0o700); err != nil {
				t.Fatal(err)
			}
			before := readAll(t, dir)
			_, err := Ensure(Request{Dir: dir, ClusterData: true})
			if !errors.Is(err, ErrLost) || !strings.Contains(err.Error(), lost.mention) {
				t.Fatalf("got %v, want ErrLost naming %s", err, lost.mention)
			}
			if after := readAll(t, dir); !maps.Equal(before, after) {
				t.Error("a refused Ensure changed files")
			}
			b, err := Ensure(Request{Dir: dir})
			if err != nil {
				t.Fatal(err)
			}
			if wantNewCA := lost.mention != "sa.key"; b.NewCA != wantNewCA {
				t.Errorf("NewCA = %v, want %v (generated %v)", b.NewCA, wantNewCA, b.Generated)
			}
		})
	}

	dir := t.TempDir()
	if _, err := Ensure(Request{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	muchLater := func() time.Time { return time.Now().Add(10 * 365 * 24 * time.Hour) }
	if b, err := Ensure(Request{Dir: dir, Now: muchLater, ClusterData: true}); err != nil || !b.NewCA {
		t.Errorf("an expiring CA of a cluster with data: %v, NewCA %v; want it renewed", err, b != nil && b.NewCA)
	}
	if b, err := Ensure(Request{Dir: dir, ClusterData: true}); err != nil || b.NewCA || len(b.Generated) != 0 {
		t.Errorf("an intact PKI with ClusterData: %v %+v", err, b)
	}
}

// TestStaleTempFilesRemoved: the temporary file of a write a SIGKILL interrupted is gone after
// the next Ensure, and nothing else is touched.
func TestStaleTempFilesRemoved(t *testing.T) {
	dir := t.TempDir()
	if _, err := Ensure(Request{Dir: dir}); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, ".ca.key.tmp-123456")
	if err := os.WriteFile(stale, []byte("half a key"), 0o600); err != nil {
		t.Fatal(err)
	}
	before := readAll(t, dir)
	delete(before, filepath.Base(stale))
	b, err := Ensure(Request{Dir: dir})
	if err != nil || len(b.Generated) != 0 {
		t.Fatalf("%v, generated %v", err, b.Generated)
	}
	if after := readAll(t, dir); !maps.Equal(before, after) {
		t.Errorf("files after: %v", slices.Collect(maps.Keys(after)))
	}
}

func loadCert(t *testing.T, path string) *x509.Certificate {
	t.Helper()
	certs, err := cert.CertsFromFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return certs[0]
}

func readAll(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	entries, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		out[e.Name()] = string(b)
	}
	return out
}

func TestAdminToken(t *testing.T) {
	dir := t.TempDir()
	b, err := Ensure(Request{Dir: dir})
	if err != nil {
		t.Fatal(err)
	}
	csv, _ := os.ReadFile(Paths{dir}.TokenAuthFile())
	if len(b.AdminToken) < 32 || string(csv) != b.AdminToken+`,kubernetes-admin,kubernetes-admin,"system:masters"`+"\n" {
		t.Fatalf("token %q, file %q", b.AdminToken, csv)
	}
	b2, err := Ensure(Request{Dir: dir})
	if err != nil || b2.AdminToken != b.AdminToken {
		t.Fatalf("token not reused: %v", err)
	}
}
