package nodes

import (
	"errors"
	"net/netip"
	"strings"
	"testing"

	"github.com/go-logr/logr/funcr"
	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	"sigs.k8s.io/kwok/pkg/apis/internalversion"
)

func TestBuild(t *testing.T) {
	spec := Spec{Prefix: "demo-node", Count: MaxCount, CPU: resource.MustParse("4"), Memory: resource.MustParse("8Gi"), Pods: 110, KubeletVersion: "v1.37.2"}
	nodes, err := Build(spec)
	if err != nil {
		t.Fatal(err)
	}
	if len(nodes) != MaxCount || nodes[0].Name != "demo-node-0" || nodes[MaxCount-1].Name != "demo-node-999" {
		t.Fatalf("%d nodes, first %s", len(nodes), nodes[0].Name)
	}
	ips, cidrs := map[string]bool{}, map[string]bool{}
	service := netip.MustParsePrefix("10.96.0.0/12")
	for _, n := range nodes {
		ip := n.Status.Addresses[0].Address
		cidr := netip.MustParsePrefix(n.Spec.PodCIDR)
		if ips[ip] || cidrs[cidr.String()] {
			t.Fatalf("%s: IP %s or pod CIDR %s given twice", n.Name, ip, cidr)
		}
		ips[ip], cidrs[cidr.String()] = true, true
		if !netip.MustParsePrefix("172.18.0.0/16").Contains(netip.MustParseAddr(ip)) || cidr.Bits() != 24 || service.Overlaps(cidr) {
			t.Fatalf("%s: IP %s, pod CIDR %s", n.Name, ip, cidr)
		}
		if n.Annotations[KwokAnnotation] != KwokAnnotationValue || n.Labels[ManagedByLabel] != ManagedBy || n.Labels[corev1.LabelHostname] != n.Name {
			t.Fatalf("%s: labels %v annotations %v", n.Name, n.Labels, n.Annotations)
		}
	}
	n := nodes[1]
	if n.Status.Capacity.Cpu().String() != "4" || n.Status.Allocatable.Memory().String() != "8Gi" || n.Status.Capacity.Pods().Value() != 110 ||
		n.Status.NodeInfo.KubeletVersion != "v1.37.2" || n.Status.Addresses[0].Address != "172.18.0.3" || n.Spec.PodCIDR != "10.244.1.0/24" {
		t.Errorf("node 1: %+v %+v", n.Spec, n.Status)
	}
	if nodes[256].Spec.PodCIDR != "10.245.0.0/24" || nodes[254].Status.Addresses[0].Address != "172.18.1.0" {
		t.Errorf("node 256 pod CIDR %s, node 254 IP %s", nodes[256].Spec.PodCIDR, nodes[254].Status.Addresses[0].Address)
	}
	for _, bad := range []int{-1, MaxCount + 1} {
		if _, err := Build(Spec{Count: bad}); err == nil {
			t.Errorf("Build accepted %d nodes", bad)
		}
	}
	if s := (*Spec)(nil).String(); s != "none" {
		t.Errorf("nil spec: %q", s)
	}
	if s := spec.String(); s != "1000 × (cpu 4, memory 8Gi, pods 110)" {
		t.Errorf("spec: %q", s)
	}
}

// TestStages checks that kwok's embedded stages parse and cover what the nodes play: node
// initialization and heartbeats, pod ready, complete and delete.
func TestStages(t *testing.T) {
	st, err := stages()
	if err != nil {
		t.Fatal(err)
	}
	names := map[internalversion.StageResourceRef][]string{}
	for ref, list := range st {
		for _, s := range list {
			names[ref] = append(names[ref], s.Name)
		}
	}
	node := internalversion.StageResourceRef{APIGroup: "v1", Kind: "Node"}
	pod := internalversion.StageResourceRef{APIGroup: "v1", Kind: "Pod"}
	if len(st) != 2 || len(names[node]) != 2 || len(names[pod]) != 3 {
		t.Errorf("stages: %v; want 2 node stages and 3 pod stages", names)
	}
}

// TestKwokLogs checks that kwok's records reach the logger as key-value lines, errors as
// errors, and that the races kwok logs in normal operation are kept below the default verbosity.
func TestKwokLogs(t *testing.T) {
	var lines []string
	logger := funcr.New(func(prefix, args string) { lines = append(lines, args) }, funcr.Options{})
	kwok := kwokLogger(logger)
	kwok.Error("failed to apply stage", "err", errors.New(`failed to delete pod web-1: pods "web-1" not found`), "pod", "default/web-1", "stage", "pod-delete")
	kwok.Info("Syncing lease", "node", "n-0")
	kwok.Error("failed to apply stage", "err", errors.New("Internal error"), "pod", "default/web-2", "stage", "pod-ready")
	if len(lines) != 1 || !strings.Contains(lines[0], `"msg"="failed to apply stage"`) || !strings.Contains(lines[0], `"error"=null`) ||
		!strings.Contains(lines[0], `"err"="Internal error"`) || !strings.Contains(lines[0], `"stage"="pod-ready"`) {
		t.Errorf("logged %q; want only the pod-ready error, with its keys", lines)
	}
}
