package nodes

import (
	"fmt"

	"github.com/go-logr/logr"
	"k8s.io/apimachinery/pkg/apis/meta/v1/unstructured/unstructuredscheme"
	"k8s.io/apimachinery/pkg/runtime/schema"
	"k8s.io/client-go/discovery"
	"k8s.io/client-go/discovery/cached/memory"
	"k8s.io/client-go/dynamic"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
	"k8s.io/client-go/restmapper"
	"k8s.io/utils/clock"
	nodefast "sigs.k8s.io/kwok/kustomize/stage/node/fast"
	nodeheartbeat "sigs.k8s.io/kwok/kustomize/stage/node/heartbeat-with-lease"
	podfast "sigs.k8s.io/kwok/kustomize/stage/pod/fast"
	"sigs.k8s.io/kwok/pkg/apis/internalversion"
	"sigs.k8s.io/kwok/pkg/apis/v1alpha1"
	"sigs.k8s.io/kwok/pkg/kwok/controllers"
	kwoklog "sigs.k8s.io/kwok/pkg/log"
	"sigs.k8s.io/yaml"
)

// Settings of kwok's controllers; kwok's own defaults except where noted.
const (
	// leaseSeconds is each node's lease duration, as a kubelet's default.
	leaseSeconds = 40
	// parallelism is how many nodes' and pods' stages kwok plays at once. kwok's default is 4;
	// a local apiserver takes more, and 1,000 pods start faster.
	parallelism = 16
)

// stages are the kwok stages the nodes play: kwok's "fast" node and pod stages (no delays), and
// node heartbeats through leases, as `kwokctl create cluster` sets up by default.
func stages() (map[internalversion.StageResourceRef][]*internalversion.Stage, error) {
	out := map[internalversion.StageResourceRef][]*internalversion.Stage{}
	for _, doc := range []string{nodefast.DefaultNodeInit, nodeheartbeat.DefaultNodeHeartbeatWithLease,
		podfast.DefaultPodReady, podfast.DefaultPodComplete, podfast.DefaultPodDelete} {
		var st v1alpha1.Stage
		if err := yaml.UnmarshalStrict([]byte(doc), &st); err != nil {
			return nil, fmt.Errorf("kwok stage: %w", err)
		}
		in, err := internalversion.ConvertToInternalStage(&st)
		if err != nil {
			return nil, fmt.Errorf("kwok stage %s: %w", st.Name, err)
		}
		out[in.Spec.ResourceRef] = append(out[in.Spec.ResourceRef], in)
	}
	return out, nil
}

// controllerConfig is kwok's controller configuration over clients made from admin,
// impersonating User. The clients are not rate-limited on the client side, as kwok's own command
// makes them: the apiserver is local, and its priority and fairness apply to User.
func controllerConfig(admin *rest.Config) (controllers.Config, error) {
	cfg := rest.CopyConfig(admin)
	cfg.Impersonate = rest.ImpersonationConfig{UserName: User}
	cfg.QPS, cfg.Burst = -1, 0
	cfg.UserAgent = "wasmkube-nodes (kwok)"
	typed, err := kubernetes.NewForConfig(cfg)
	if err != nil {
		return controllers.Config{}, err
	}
	dyn, err := dynamic.NewForConfig(cfg)
	if err != nil {
		return controllers.Config{}, err
	}
	disc, err := discovery.NewDiscoveryClientForConfig(cfg)
	if err != nil {
		return controllers.Config{}, err
	}
	// kwok reads the OpenAPI v3 schemas through a client of no group, for unstructured objects.
	raw := rest.CopyConfig(cfg)
	raw.GroupVersion = &schema.GroupVersion{}
	raw.NegotiatedSerializer = unstructuredscheme.NewUnstructuredNegotiatedSerializer()
	restClient, err := rest.RESTClientFor(raw)
	if err != nil {
		return controllers.Config{}, err
	}
	st, err := stages()
	if err != nil {
		return controllers.Config{}, err
	}
	return controllers.Config{
		Clock:         clock.RealClock{},
		TypedClient:   typed,
		DynamicClient: dyn,
		RESTClient:    restClient,
		RESTMapper:    restmapper.NewDeferredDiscoveryRESTMapper(memory.NewMemCacheClient(disc)),
		LocalStages:   st,

		ManageNodesWithAnnotationSelector: kwokSelector,
		CIDR:                              "10.0.0.0/24",
		NodeLeaseDurationSeconds:          leaseSeconds,
		NodeLeaseParallelism:              parallelism,
		NodePlayStageParallelism:          parallelism,
		PodPlayStageParallelism:           parallelism,
		PodsOnNodeSyncParallelism:         1,
		ID:                                "wasmkube",
	}, nil
}

// kwokLogger passes kwok's warnings and errors to logger (at info, kwok logs every lease
// renewal).
func kwokLogger(logger logr.Logger) *kwoklog.Logger {
	return kwoklog.NewLogger(logWriter{logger: logger}, kwoklog.LevelWarn)
}
