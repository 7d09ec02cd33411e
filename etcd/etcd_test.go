package etcd

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// With this variable set to an endpoint, the test binary tries to read secretKey from it and
// exits 0 if it could (see readAsOtherUser).
const readEndpointEnv = "WASMKUBE_ETCD_TEST_READ"

const secretKey, secretValue = "/registry/secrets/default/s", "top-secret"

func TestMain(m *testing.M) {
	if ep := os.Getenv(readEndpointEnv); ep != "" {
		os.Exit(readAndReport(ep))
	}
	os.Exit(m.Run())
}

// readAndReport tries to read secretKey at ep and prints what happened: exit 0 when it read it.
func readAndReport(ep string) int {
	if path, ok := strings.CutPrefix(ep, "unix://"); ok {
		if c, err := net.Dial("unix", path); err != nil {
			fmt.Println("dial:", err)
		} else {
			c.Close()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	c, err := clientv3.New(clientv3.Config{Endpoints: []string{ep}, DialTimeout: 2 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		fmt.Println("client:", err)
		return 3
	}
	defer c.Close()
	r, err := c.Get(ctx, secretKey)
	if err != nil {
		fmt.Println("get:", err)
		return 3
	}
	if len(r.Kvs) == 0 {
		fmt.Println("read: no such key")
		return 3
	}
	fmt.Printf("read %s = %s\n", secretKey, r.Kvs[0].Value)
	return 0
}

func start(t *testing.T, cfg Config) *Server {
	t.Helper()
	s, err := Start(context.Background(), cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	return s
}

func TestStartRestartKeepsData(t *testing.T) {
	dir := t.TempDir()
	cfg := Config{DataDir: filepath.Join(dir, "etcd"), Socket: filepath.Join(dir, "etcd.sock"), LogFile: filepath.Join(dir, "etcd.log")}

	s := start(t, cfg)
	if eps := s.Endpoints(); len(eps) != 1 || eps[0] != "unix://"+cfg.Socket {
		t.Fatalf("endpoints %v, want [unix://%s]", eps, cfg.Socket)
	}
	put(t, s.Endpoints(), "k", "v")
	s.Close()
	if _, err := os.Lstat(cfg.Socket); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("socket left after Close: %v", err)
	}

	// A socket file left by a killed process does not stop the next start.
	if l, err := net.Listen("unix", cfg.Socket); err != nil {
		t.Fatal(err)
	} else {
		l.(*net.UnixListener).SetUnlinkOnClose(false)
		l.Close()
	}
	s = start(t, cfg)
	defer s.Close()
	if got := get(t, s.Endpoints(), "k"); got != "v" {
		t.Fatalf("after restart k = %q, want v", got)
	}
}

// TestOtherUsersCannotReachEtcd starts etcd in a data dir whose parents other users may enter
// and checks that it opens no TCP port, that its socket and the socket's directory are private,
// and (when the test runs as root) that another user's client cannot read a key.
func TestOtherUsersCannotReachEtcd(t *testing.T) {
	open := openTempDir(t)
	dataDir := filepath.Join(open, "data")
	if err := os.Mkdir(dataDir, 0o755); err != nil { // as a user's mkdir with umask 022 leaves it
		t.Fatal(err)
	}
	before := tcpListeners(t)
	s := start(t, Config{DataDir: filepath.Join(dataDir, "etcd"), Socket: filepath.Join(dataDir, "etcd.sock")})
	defer s.Close()
	put(t, s.Endpoints(), secretKey, secretValue)

	if after := tcpListeners(t); after > before {
		t.Errorf("etcd opened %d TCP listening sockets; want none (clients on the unix socket, no peer listener)", after-before)
	}
	for _, ep := range s.Endpoints() {
		if !strings.HasPrefix(ep, "unix://") {
			t.Errorf("endpoint %s is not a unix socket", ep)
		}
	}
	if fi, err := os.Lstat(filepath.Join(dataDir, "etcd.sock")); err != nil || fi.Mode().Type() != os.ModeSocket || fi.Mode().Perm() != 0o600 {
		t.Errorf("socket: %v; want a 0600 socket", describe(fi, err))
	}
	if fi, err := os.Stat(dataDir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Errorf("socket dir: %v; want 0700", describe(fi, err))
	}

	if os.Geteuid() != 0 {
		t.Skip("not root: cannot run a client as another user (the modes above keep other users out)")
	}
	out, err := runAsNobody(t, s.Endpoints()[0])
	if err == nil || strings.Contains(out, secretValue) {
		t.Fatalf("user nobody read etcd (err %v):\n%s", err, out)
	}
	if !strings.Contains(out, "permission denied") {
		t.Errorf("want the other user's dial refused with permission denied (%v):\n%s", err, out)
	}
}

func describe(fi os.FileInfo, err error) string {
	if err != nil {
		return err.Error()
	}
	return fi.Mode().String()
}

// runAsNobody runs a copy of the test binary as user 65534, reading secretKey at ep.
func runAsNobody(t *testing.T, ep string) (string, error) {
	t.Helper()
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(openTempDir(t), "reader")
	src, err := os.Open(self)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	dst, err := os.OpenFile(bin, os.O_CREATE|os.O_WRONLY, 0o755)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := io.Copy(dst, src); err != nil {
		t.Fatal(err)
	}
	if err := dst.Close(); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(bin)
	cmd.Env = []string{readEndpointEnv + "=" + ep, "HOME=/"}
	cmd.Dir = "/"
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	return string(out), err
}

// openTempDir is a temporary directory that every user may enter (t.TempDir's parent is 0700).
func openTempDir(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "wasmkube-etcd-test-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// tcpListeners counts this process's listening TCP sockets (Linux: /proc).
func tcpListeners(t *testing.T) int {
	t.Helper()
	if runtime.GOOS != "linux" {
		t.Skip("counting listening sockets needs /proc")
	}
	listening := map[string]bool{}
	for _, f := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			fields := strings.Fields(line)
			if len(fields) > 9 && fields[3] == "0A" { // TCP_LISTEN
				listening[fields[9]] = true
			}
		}
	}
	fds, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, fd := range fds {
		link, err := os.Readlink(filepath.Join("/proc/self/fd", fd.Name()))
		if inode, ok := strings.CutPrefix(link, "socket:["); err == nil && ok && listening[strings.TrimSuffix(inode, "]")] {
			n++
		}
	}
	return n
}

func TestPrivateDir(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "a", "b")
	if err := PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("created %v, err %v; want 0700", fi.Mode().Perm(), err)
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir(dir); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Stat(dir); fi.Mode().Perm() != 0o700 {
		t.Errorf("0755 dir left %v; want 0700", fi.Mode().Perm())
	}
	if os.Geteuid() != 0 {
		t.Skip("not root: cannot give a directory to another user")
	}
	if err := os.Chown(dir, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if err := PrivateDir(dir); err == nil || !strings.Contains(err.Error(), "belongs to user 65534") {
		t.Errorf("dir of another user: %v, want an error naming the owner", err)
	}
}

func TestStartNeedsSocket(t *testing.T) {
	if _, err := Start(context.Background(), Config{DataDir: t.TempDir()}); err == nil || !strings.Contains(err.Error(), "socket") {
		t.Fatalf("no socket: %v", err)
	}
}

func TestCheckReachable(t *testing.T) {
	dir := t.TempDir()
	s := start(t, Config{DataDir: filepath.Join(dir, "etcd"), Socket: filepath.Join(dir, "etcd.sock")})
	defer s.Close()
	if err := CheckReachable(context.Background(), External{Servers: s.Endpoints()}, 5*time.Second); err != nil {
		t.Fatalf("running etcd not reachable: %v", err)
	}
	// One member down (refused, or dropping packets: a blackhole address) leaves the others to answer.
	mixed := append([]string{"http://127.0.0.1:1", "http://192.0.2.1:2379"}, s.Endpoints()...)
	if err := CheckReachable(context.Background(), External{Servers: mixed}, 5*time.Second); err != nil {
		t.Fatalf("a cluster with a member down: %v", err)
	}
	err := CheckReachable(context.Background(), External{Servers: []string{"http://127.0.0.1:1"}}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "etcd.external.servers") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("unreachable etcd: got %v, want an error naming the server and the profile field", err)
	}
}

func client(t testing.TB, eps []string) *clientv3.Client {
	t.Helper()
	c, err := clientv3.New(clientv3.Config{Endpoints: eps, DialTimeout: 5 * time.Second, Logger: zap.NewNop()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func put(t *testing.T, eps []string, k, v string) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := client(t, eps).Put(ctx, k, v); err != nil {
		t.Fatal(err)
	}
}

func get(t *testing.T, eps []string, k string) string {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	r, err := client(t, eps).Get(ctx, k)
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Kvs) == 0 {
		return ""
	}
	return string(r.Kvs[0].Value)
}
