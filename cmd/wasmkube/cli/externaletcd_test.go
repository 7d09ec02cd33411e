package cli

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"go.etcd.io/etcd/client/pkg/v3/transport"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/server/v3/embed"
	"go.uber.org/zap"
	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/tools/clientcmd"
)

// etcdTLS are the files of a test CA, a serving certificate for 127.0.0.1 and a client
// certificate, in dir.
type etcdTLS struct{ ca, serverCert, serverKey, clientCert, clientKey string }

func writeEtcdTLS(t *testing.T, dir string) etcdTLS {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test etcd CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	ca, _ := x509.ParseCertificate(caDER)
	files := etcdTLS{ca: filepath.Join(dir, "ca.crt")}
	writePEM(t, files.ca, "CERTIFICATE", caDER)
	issue := func(name string, serial int64, usage x509.ExtKeyUsage) (string, string) {
		key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		tmpl := &x509.Certificate{SerialNumber: big.NewInt(serial), Subject: pkix.Name{CommonName: name},
			NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
			KeyUsage: x509.KeyUsageDigitalSignature, ExtKeyUsage: []x509.ExtKeyUsage{usage}, IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}}
		der, err := x509.CreateCertificate(rand.Reader, tmpl, ca, &key.PublicKey, caKey)
		if err != nil {
			t.Fatal(err)
		}
		keyDER, _ := x509.MarshalECPrivateKey(key)
		cert, keyFile := filepath.Join(dir, name+".crt"), filepath.Join(dir, name+".key")
		writePEM(t, cert, "CERTIFICATE", der)
		writePEM(t, keyFile, "EC PRIVATE KEY", keyDER)
		return cert, keyFile
	}
	files.serverCert, files.serverKey = issue("server", 2, x509.ExtKeyUsageServerAuth)
	files.clientCert, files.clientKey = issue("client", 3, x509.ExtKeyUsageClientAuth)
	return files
}

func writePEM(t *testing.T, path, kind string, der []byte) {
	t.Helper()
	if err := os.WriteFile(path, pem.EncodeToMemory(&pem.Block{Type: kind, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
}

// freePorts returns n loopback ports free a moment ago.
func freePorts(t *testing.T, n int) []int {
	t.Helper()
	var ports []int
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		ports = append(ports, ln.Addr().(*net.TCPAddr).Port)
	}
	return ports
}

// etcdCluster is a 3-member etcd cluster in this process: clients over TLS with client
// certificates only, peers on loopback.
type etcdCluster struct {
	t       *testing.T
	configs []*embed.Config
	mu      sync.Mutex
	members []*embed.Etcd
}

func startEtcdCluster(t *testing.T, dir string, tls etcdTLS) *etcdCluster {
	t.Helper()
	ports := freePorts(t, 9)
	var initial []string
	for i := range 3 {
		initial = append(initial, fmt.Sprintf("m%d=http://127.0.0.1:%d", i, ports[3+i]))
	}
	c := &etcdCluster{t: t, members: make([]*embed.Etcd, 3)}
	for i := range 3 {
		cfg := embed.NewConfig()
		cfg.Name, cfg.Dir = fmt.Sprintf("m%d", i), filepath.Join(dir, fmt.Sprintf("m%d", i))
		client := url.URL{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", ports[i])}
		peer := url.URL{Scheme: "http", Host: fmt.Sprintf("127.0.0.1:%d", ports[3+i])}
		cfg.ListenClientUrls, cfg.AdvertiseClientUrls = []url.URL{client}, []url.URL{client}
		// etcd's HTTP endpoints on a port of their own: the client port then serves gRPC alone,
		// and a member that stops sends its clients a GOAWAY (they retry elsewhere) instead of
		// answering a late request from its HTTP mux.
		cfg.ListenClientHttpUrls = []url.URL{{Scheme: "https", Host: fmt.Sprintf("127.0.0.1:%d", ports[6+i])}}
		cfg.ListenPeerUrls, cfg.AdvertisePeerUrls = []url.URL{peer}, []url.URL{peer}
		cfg.InitialCluster, cfg.InitialClusterToken = strings.Join(initial, ","), "wasmkube-test"
		cfg.ClientTLSInfo = transport.TLSInfo{CertFile: tls.serverCert, KeyFile: tls.serverKey, TrustedCAFile: tls.ca, ClientCertAuth: true}
		cfg.ZapLoggerBuilder = embed.NewZapLoggerBuilder(zap.NewNop())
		cfg.EnableGRPCGateway = false
		c.configs = append(c.configs, cfg)
	}
	var wg sync.WaitGroup
	for i := range 3 {
		wg.Add(1)
		go func() { defer wg.Done(); c.start(i) }()
	}
	wg.Wait()
	t.Cleanup(func() {
		for i := range 3 {
			c.stop(i)
		}
	})
	return c
}

// start starts member i (again) and waits until it serves.
func (c *etcdCluster) start(i int) {
	e, err := embed.StartEtcd(c.configs[i])
	if err != nil {
		c.t.Errorf("start etcd member %d: %v", i, err)
		return
	}
	select {
	case <-e.Server.ReadyNotify():
	case <-time.After(time.Minute):
		c.t.Errorf("etcd member %d not ready after a minute", i)
	}
	c.mu.Lock()
	c.members[i] = e
	c.mu.Unlock()
}

func (c *etcdCluster) stop(i int) {
	c.mu.Lock()
	e := c.members[i]
	c.members[i] = nil
	c.mu.Unlock()
	if e != nil {
		e.Close()
	}
}

func (c *etcdCluster) endpoints() []string {
	var out []string
	for _, cfg := range c.configs {
		out = append(out, cfg.AdvertiseClientUrls[0].String())
	}
	return out
}

// follower returns a member that is not the leader.
func (c *etcdCluster) follower(tls etcdTLS) int { return c.find(tls, false) }

// leader returns the member that leads.
func (c *etcdCluster) leader(tls etcdTLS) int { return c.find(tls, true) }

// find returns the leader, or a member that is not the leader.
func (c *etcdCluster) find(tls etcdTLS, leader bool) int {
	c.t.Helper()
	info := transport.TLSInfo{CertFile: tls.clientCert, KeyFile: tls.clientKey, TrustedCAFile: tls.ca}
	tlsConfig, err := info.ClientConfig()
	if err != nil {
		c.t.Fatal(err)
	}
	cli, err := clientv3.New(clientv3.Config{Endpoints: c.endpoints(), TLS: tlsConfig, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		c.t.Fatal(err)
	}
	defer cli.Close()
	for i, ep := range c.endpoints() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		st, err := cli.Status(ctx, ep)
		cancel()
		if err != nil {
			c.t.Fatal(err)
		}
		if (st.Header.MemberId == st.Leader) == leader {
			return i
		}
	}
	c.t.Fatalf("no member found (leader: %t)", leader)
	return -1
}

// externalProfile writes a profile of a cluster on the etcd cluster, under prefix.
func externalProfile(t *testing.T, dir, name, prefix string, endpoints []string, tls etcdTLS) string {
	t.Helper()
	doc := fmt.Sprintf(`apiVersion: wasmkube.dev/v1alpha1
kind: Profile
name: %s
port: 0
controllers: {enabled: false}
etcd:
  external:
    servers: [%s]
    caFile: %s
    certFile: %s
    keyFile: %s
    prefix: %s
`, name, strings.Join(endpoints, ", "), tls.ca, tls.clientCert, tls.clientKey, prefix)
	path := filepath.Join(dir, name+".yaml")
	if err := os.WriteFile(path, []byte(doc), 0o600); err != nil {
		t.Fatal(err)
	}
	return path
}

// TestExternalEtcdFailover: `up` on a 3-member etcd cluster (TLS, client certificates) keeps
// taking writes, none failing, while a follower is stopped and brought back; while the leader is,
// a write in flight may fail but none acknowledged is lost; a second wasmkube on the same etcd
// cluster under another prefix sees none of the first one's data.
func TestExternalEtcdFailover(t *testing.T) {
	e := newEnv(t)
	tls := writeEtcdTLS(t, e.root)
	etcd := startEtcdCluster(t, filepath.Join(e.root, "etcd"), tls)
	profileA := externalProfile(t, e.root, "ext-a", "/cluster-a", etcd.endpoints(), tls)
	profileB := externalProfile(t, e.root, "ext-b", "/cluster-b", etcd.endpoints(), tls)
	upA := e.startUp("--profile", profileA)
	upA.waitReady(t)
	a := externalClient(t, e, "ext-a")

	var acked, failed atomic.Int64
	var firstErr atomic.Value
	stop := make(chan struct{})
	writing := make(chan struct{})
	go func() {
		defer close(writing)
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			cm := &corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: fmt.Sprintf("w-%d", i)}, Data: map[string]string{"i": fmt.Sprint(i)}}
			_, err := a.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{})
			cancel()
			if err != nil {
				failed.Add(1)
				firstErr.CompareAndSwap(nil, err.Error())
				continue
			}
			acked.Add(1)
		}
	}()
	waitWrites := func(n int64) {
		t.Helper()
		target := acked.Load() + n
		deadline := time.Now().Add(time.Minute)
		for acked.Load() < target && time.Now().Before(deadline) {
			time.Sleep(10 * time.Millisecond)
		}
		if acked.Load() < target {
			t.Fatalf("fewer than %d writes acknowledged in a minute (%d failed: %v)", n, failed.Load(), firstErr.Load())
		}
	}
	waitWrites(50)
	down := etcd.follower(tls)
	etcd.stop(down)
	t.Logf("stopped etcd member m%d (a follower) after %d writes", down, acked.Load())
	waitWrites(100)
	etcd.start(down)
	t.Logf("member m%d back after %d writes", down, acked.Load())
	waitWrites(50)
	if failed.Load() != 0 {
		t.Errorf("%d of %d writes failed while a follower was down and back; first: %v", failed.Load(), acked.Load()+failed.Load(), firstErr.Load())
	}
	// The leader: a write in flight on it may fail (etcd's client does not retry a transaction
	// whose outcome it cannot know; kube-apiserver returns the error). Nothing acknowledged is
	// lost, and the writes go on.
	lead := etcd.leader(tls)
	etcd.stop(lead)
	t.Logf("stopped etcd member m%d (the leader) after %d writes", lead, acked.Load())
	waitWrites(100)
	etcd.start(lead)
	waitWrites(50)
	close(stop)
	<-writing
	t.Logf("%d writes acknowledged; %d failed while the leader went (first: %v)", acked.Load(), failed.Load(), firstErr.Load())
	list, err := a.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
	if err != nil {
		t.Fatal(err)
	}
	written := 0
	for _, cm := range list.Items {
		if strings.HasPrefix(cm.Name, "w-") {
			written++
		}
	}
	if int64(written) < acked.Load() || int64(written) > acked.Load()+failed.Load() {
		t.Errorf("%d ConfigMaps stored, %d writes acknowledged and %d failed: an acknowledged write was lost", written, acked.Load(), failed.Load())
	}

	// Another wasmkube on the same etcd cluster, another prefix: its own data only.
	upB := e.startUp("--profile", profileB)
	upB.waitReady(t)
	b := externalClient(t, e, "ext-b")
	if _, err := b.CoreV1().ConfigMaps("default").Create(context.Background(),
		&corev1.ConfigMap{ObjectMeta: metav1.ObjectMeta{Name: "only-b"}}, metav1.CreateOptions{}); err != nil {
		t.Fatal(err)
	}
	for name, c := range map[string]kubernetes.Interface{"ext-a": a, "ext-b": b} {
		list, err := c.CoreV1().ConfigMaps("default").List(context.Background(), metav1.ListOptions{})
		if err != nil {
			t.Fatal(err)
		}
		var names []string
		for _, cm := range list.Items {
			names = append(names, cm.Name)
		}
		joined := " " + strings.Join(names, " ") + " "
		if name == "ext-a" && strings.Contains(joined, " only-b ") || name == "ext-b" && strings.Contains(joined, " w-0 ") {
			t.Errorf("%s sees the other cluster's data: %v", name, names)
		}
	}
	for _, up := range []*upProcess{upB, upA} {
		if code := up.interrupt(t); code != 0 {
			t.Errorf("up exited %d:\n%s", code, up.text())
		}
	}
}

func externalClient(t *testing.T, e *env, profile string) kubernetes.Interface {
	t.Helper()
	cfg, err := clientcmd.BuildConfigFromFlags("", filepath.Join(e.root, "data", "wasmkube", profile, "kubeconfig"))
	if err != nil {
		t.Fatal(err)
	}
	cfg.QPS, cfg.Burst = -1, 0 // no client-side rate limit: the writes are as fast as the server takes them
	return kubernetes.NewForConfigOrDie(cfg)
}
