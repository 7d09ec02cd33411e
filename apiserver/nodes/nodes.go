// Package nodes simulates a cluster's nodes with kwok's controllers (sigs.k8s.io/kwok): it
// creates the Node objects a Spec describes and keeps them as a kubelet would, without
// containers. Nodes stay Ready (heartbeats and leases); Pods bound to them get pod IPs,
// container statuses and ready conditions and report Running; Pods whose containers all end
// (a Job's) succeed; deleted Pods go away.
//
// Build describes the Node objects without effects; Start creates them, removes the nodes it
// made before that the Spec no longer has, and runs kwok's controllers until Stop.
package nodes

import (
	"fmt"
	"net/netip"
	"runtime"

	corev1 "k8s.io/api/core/v1"
	"k8s.io/apimachinery/pkg/api/resource"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
)

// Labels and annotations of the simulated nodes.
const (
	// ManagedByLabel marks the nodes wasmkube made: Start deletes those the Spec no longer has.
	ManagedByLabel = "app.kubernetes.io/managed-by"
	ManagedBy      = "wasmkube"
	// KwokAnnotation selects the nodes kwok's controllers manage, as kwok's own docs do. A node
	// a user creates with it is simulated too.
	KwokAnnotation      = "kwok.x-k8s.io/node"
	KwokAnnotationValue = "fake"
	kwokSelector        = KwokAnnotation + "=" + KwokAnnotationValue
)

// MaxCount bounds Spec.Count: node IPs and pod CIDRs are laid out for that many.
const MaxCount = 1000

// Spec describes the simulated nodes: Count nodes, each with the same capacity.
type Spec struct {
	// Prefix names the nodes PREFIX-0, PREFIX-1, …
	Prefix string
	Count  int
	// CPU, Memory and Pods are each node's capacity (and allocatable).
	CPU, Memory resource.Quantity
	Pods        int64
	// KubeletVersion is what the nodes report as their kubelet's version (kwok's when empty).
	KubeletVersion string
}

// String describes the spec in a line; "none" for a nil or empty one.
func (s *Spec) String() string {
	if s == nil || s.Count == 0 {
		return "none"
	}
	return fmt.Sprintf("%d × (cpu %s, memory %s, pods %d)", s.Count, s.CPU.String(), s.Memory.String(), s.Pods)
}

// Names are the nodes' names, in order.
func (s Spec) Names() []string {
	out := make([]string, s.Count)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%d", s.Prefix, i)
	}
	return out
}

// Build returns the Node objects of the Spec, with their status: a kubelet registers its node
// with capacity and addresses, and kwok fills in the rest (conditions, node info).
func Build(s Spec) ([]*corev1.Node, error) {
	if s.Count < 0 || s.Count > MaxCount {
		return nil, fmt.Errorf("%d nodes: must be 0-%d", s.Count, MaxCount)
	}
	out := make([]*corev1.Node, s.Count)
	for i, name := range s.Names() {
		out[i] = buildNode(s, i, name)
	}
	return out, nil
}

func buildNode(s Spec, i int, name string) *corev1.Node {
	capacity := corev1.ResourceList{
		corev1.ResourceCPU:    s.CPU,
		corev1.ResourceMemory: s.Memory,
		corev1.ResourcePods:   *resource.NewQuantity(s.Pods, resource.DecimalSI),
	}
	return &corev1.Node{
		ObjectMeta: metav1.ObjectMeta{
			Name: name,
			Labels: map[string]string{
				ManagedByLabel:         ManagedBy,
				corev1.LabelHostname:   name,
				corev1.LabelOSStable:   "linux",
				corev1.LabelArchStable: runtime.GOARCH,
				"type":                 "kwok",
			},
			Annotations: map[string]string{
				KwokAnnotation: KwokAnnotationValue,
				// Nodes that are not a kubelet's have no TTL for cached objects.
				"node.alpha.kubernetes.io/ttl": "0",
			},
		},
		Spec: corev1.NodeSpec{PodCIDR: podCIDR(i), PodCIDRs: []string{podCIDR(i)}},
		Status: corev1.NodeStatus{
			Capacity:    capacity,
			Allocatable: capacity,
			Addresses: []corev1.NodeAddress{
				{Type: corev1.NodeInternalIP, Address: nodeIP(i)},
				{Type: corev1.NodeHostName, Address: name},
			},
			// kwok keeps what the node reports and fills in the rest.
			NodeInfo: corev1.NodeSystemInfo{
				KubeletVersion:  s.KubeletVersion,
				OSImage:         "wasmkube simulated node (kwok)",
				OperatingSystem: "linux",
				Architecture:    runtime.GOARCH,
			},
		},
	}
}

// nodeIP is node i's InternalIP: 172.18.0.2 onwards, as kind's first nodes on Docker's network.
func nodeIP(i int) string {
	base := netip.MustParseAddr("172.18.0.2").As4()
	n := uint32(base[2])<<8 | uint32(base[3]) + uint32(i)
	return netip.AddrFrom4([4]byte{base[0], base[1], byte(n >> 8), byte(n)}).String()
}

// podCIDR is node i's pod range: a /24 of 10.244.0.0/14 (kind's pod subnet, widened for
// MaxCount nodes), apart from the service range 10.96.0.0/12.
func podCIDR(i int) string {
	return fmt.Sprintf("10.%d.%d.0/24", 244+i/256, i%256)
}
