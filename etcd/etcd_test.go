package etcd

import (
	"context"
	"path/filepath"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

func TestStartRestartKeepsData(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	cfg := Config{DataDir: filepath.Join(dir, "etcd"), LogFile: filepath.Join(dir, "etcd.log")}

	s, err := Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	for _, ep := range s.Endpoints() {
		if !strings.HasPrefix(ep, "http://127.0.0.1:") || strings.HasSuffix(ep, ":0") {
			t.Fatalf("endpoint %q is not a bound loopback URL", ep)
		}
	}
	put(t, s.Endpoints(), "k", "v")
	s.Close()

	s, err = Start(ctx, cfg)
	if err != nil {
		t.Fatalf("restart: %v", err)
	}
	defer s.Close()
	if got := get(t, s.Endpoints(), "k"); got != "v" {
		t.Fatalf("after restart k = %q, want v", got)
	}
}

func TestCheckReachable(t *testing.T) {
	s, err := Start(context.Background(), Config{DataDir: filepath.Join(t.TempDir(), "etcd")})
	if err != nil {
		t.Fatalf("start: %v", err)
	}
	defer s.Close()
	if err := CheckReachable(context.Background(), External{Servers: s.Endpoints()}, 5*time.Second); err != nil {
		t.Fatalf("running etcd not reachable: %v", err)
	}
	err = CheckReachable(context.Background(), External{Servers: []string{"http://127.0.0.1:1"}}, time.Second)
	if err == nil || !strings.Contains(err.Error(), "etcd.external.servers") || !strings.Contains(err.Error(), "127.0.0.1:1") {
		t.Fatalf("unreachable etcd: got %v, want an error naming the server and the profile field", err)
	}
}

func client(t *testing.T, eps []string) *clientv3.Client {
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
