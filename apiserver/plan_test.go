package apiserver

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
)

func input() PlanInput {
	return PlanInput{Name: "demo", DataDir: "/d", Address: "127.0.0.1", Port: 6443, AuthorizationModes: []string{"Node", "RBAC"}}
}

// TestPlanDefaults: the plain inputs become the default flags: the built-in authorizer chain,
// the admission plugins next to NodeRestriction, the controllers only when asked.
func TestPlanDefaults(t *testing.T) {
	in := input()
	in.AdmissionPlugins = []string{"X"}
	plan, err := NewPlan(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--authorization-mode=Node,RBAC", "--enable-admission-plugins=NodeRestriction,X", "--secure-port=6443", "--bind-address=127.0.0.1"} {
		if !slices.Contains(plan.APIServerArgs, want) {
			t.Errorf("missing %s in %v", want, plan.APIServerArgs)
		}
	}
	if plan.ControllerManagerArgs != nil {
		t.Errorf("controllers not asked for, but planned: %v", plan.ControllerManagerArgs)
	}
	in.Controllers, in.ExtraControllerManagerArgs = true, []string{"v=3"}
	if plan, err = NewPlan(in); err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan.ControllerManagerArgs, "--cluster-name=wasmkube-demo") || !slices.Contains(plan.ControllerManagerArgs, "--v=3") {
		t.Errorf("controller manager: %v", plan.ControllerManagerArgs)
	}
}

func TestPlanScheduler(t *testing.T) {
	in := input()
	plan, err := NewPlan(in)
	if err != nil {
		t.Fatal(err)
	}
	if plan.SchedulerArgs != nil {
		t.Errorf("scheduler not asked for, but planned: %v", plan.SchedulerArgs)
	}
	in.Scheduler, in.ExtraSchedulerArgs = true, []string{"kube-api-qps=20", "v=4"}
	if plan, err = NewPlan(in); err != nil {
		t.Fatal(err)
	}
	args := plan.SchedulerArgs
	for _, want := range []string{"--kubeconfig=" + plan.Layout.SchedulerKubeconfig(), "--leader-elect=false", "--secure-port=0", "--kube-api-qps=20", "--v=4"} {
		if !slices.Contains(args, want) {
			t.Errorf("scheduler flags lack %s: %v", want, args)
		}
	}
	if slices.Contains(args, "--kube-api-qps=500") {
		t.Errorf("the profile's kube-api-qps did not replace the default: %v", args)
	}
}

func TestPlanExtraArgsOverride(t *testing.T) {
	in := input()
	in.Port = 0
	in.ExtraAPIServerArgs = [][]string{
		{"--authorization-mode=RBAC", "v=2", "feature-gates=A=true"},
		{"v=4", "feature-gates=B=true", "feature-gates=C=false"},
	}
	plan, err := NewPlan(in)
	if err != nil {
		t.Fatal(err)
	}
	args := plan.APIServerArgs
	if slices.Contains(args, "--authorization-mode=Node,RBAC") || !slices.Contains(args, "--authorization-mode=RBAC") {
		t.Errorf("the first layer did not replace the default authorization mode: %v", args)
	}
	if slices.Contains(args, "--v=2") || !slices.Contains(args, "--v=4") {
		t.Errorf("the second layer did not replace the first's v: %v", args)
	}
	if slices.Contains(args, "--feature-gates=A=true") || !slices.Contains(args, "--feature-gates=B=true") || !slices.Contains(args, "--feature-gates=C=false") {
		t.Errorf("a flag repeated in one layer must be kept twice and replace earlier layers: %v", args)
	}
	if !slices.Contains(args, "--secure-port=0") {
		t.Errorf("port override missing: %v", args)
	}
}

func TestPlanRejectsOwnedFlags(t *testing.T) {
	for _, flag := range []string{"secure-port=1", "--bind-address=0.0.0.0"} {
		in := input()
		in.ExtraAPIServerArgs = [][]string{nil, {flag}}
		_, err := NewPlan(in)
		if err == nil || !strings.Contains(err.Error(), "--port") {
			t.Errorf("%s: got %v, want an error pointing at --port", flag, err)
		}
	}
}

func TestPlanEtcdSocketAndPort(t *testing.T) {
	plan, err := NewPlan(input())
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Contains(plan.APIServerArgs, "--etcd-servers=unix:///d/etcd.sock") || !slices.Equal(plan.EtcdServers, []string{"unix:///d/etcd.sock"}) {
		t.Errorf("embedded etcd: %v %v, want its socket in the data dir", plan.EtcdServers, plan.APIServerArgs)
	}
	running := plan.WithPort(40000)
	if !slices.Contains(running.APIServerArgs, "--secure-port=40000") {
		t.Errorf("running plan: %v", running.APIServerArgs)
	}
	if running.Server() != "https://127.0.0.1:40000" {
		t.Errorf("server = %s", running.Server())
	}
	if slices.Contains(plan.APIServerArgs, "--secure-port=40000") {
		t.Error("WithPort changed the original plan")
	}
}

// TestEtcdSocketLongDataDir: a data dir too long for a unix socket address, or with a comma
// (--etcd-servers is a list), gets a socket named after it in a private directory of the user's.
func TestEtcdSocketLongDataDir(t *testing.T) {
	runtimeDir := t.TempDir()
	long := "/" + strings.Repeat("long-directory-name/", 6) + "data"
	for _, dataDir := range []string{long, "/tmp/a,b"} {
		t.Run(dataDir, func(t *testing.T) {
			t.Setenv("XDG_RUNTIME_DIR", runtimeDir)
			sock := Layout{DataDir: dataDir}.EtcdSocket()
			if filepath.Dir(sock) != filepath.Join(runtimeDir, "wasmkube") || len(sock) > MaxSocketPath {
				t.Errorf("socket %s (%d bytes), want one in %s/wasmkube of at most %d bytes", sock, len(sock), runtimeDir, MaxSocketPath)
			}
			if other := (Layout{DataDir: dataDir + "2"}).EtcdSocket(); other == sock {
				t.Errorf("two data dirs share the socket %s", sock)
			}
			t.Setenv("XDG_RUNTIME_DIR", "")
			t.Setenv("TMPDIR", "/"+strings.Repeat("t", 100))
			want := fmt.Sprintf("/tmp/wasmkube-%d/", os.Geteuid())
			if sock := (Layout{DataDir: dataDir}).EtcdSocket(); !strings.HasPrefix(sock, want) || len(sock) > MaxSocketPath {
				t.Errorf("without a runtime dir and a long TMPDIR: %s, want one in %s", sock, want)
			}
		})
	}
	if got := (Layout{DataDir: "/short"}).EtcdSocket(); got != "/short/etcd.sock" {
		t.Errorf("short data dir: %s, want /short/etcd.sock", got)
	}
}

func TestPlanExternalEtcd(t *testing.T) {
	in := input()
	in.ExternalEtcd = &ExternalEtcd{Servers: []string{"https://127.0.0.1:2379"}, CAFile: "/profiles/ca.crt", CertFile: "/abs/etcd.crt", KeyFile: "/abs/etcd.key", Prefix: "/ext"}
	plan, err := NewPlan(in)
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"--etcd-servers=https://127.0.0.1:2379", "--etcd-cafile=/profiles/ca.crt", "--etcd-certfile=/abs/etcd.crt", "--etcd-prefix=/ext"} {
		if !slices.Contains(plan.APIServerArgs, want) {
			t.Errorf("missing %s in %v", want, plan.APIServerArgs)
		}
	}
	if !slices.Equal(plan.EtcdServers, in.ExternalEtcd.Servers) || plan.ExternalEtcd == in.ExternalEtcd {
		t.Errorf("etcd servers %v (the plan keeps its own copy of the input: %v)", plan.EtcdServers, plan.ExternalEtcd != in.ExternalEtcd)
	}
}
