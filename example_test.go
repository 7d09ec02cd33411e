package wasmkube_test

import (
	"context"
	"fmt"
	"os"
	"time"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/utils/ptr"

	"github.com/wasmkube/wasmkube"
)

// Example starts a cluster from the built-in minimal profile (kube-apiserver and etcd, no
// controllers: the fastest start) on a temporary data directory and a free port, then uses
// client-go with the admin's config to create a ConfigMap and list it.
func Example() {
	// Kubernetes keeps process-global state: one cluster per process at a time. This test binary
	// runs a shared cluster for its tests; it stops here (a program of your own skips this).
	stopSharedCluster()

	ctx := context.Background()
	p, err := wasmkube.ResolveProfile("minimal")
	if err != nil {
		fmt.Println(err)
		return
	}
	dataDir, err := os.MkdirTemp("", "wasmkube-example-")
	if err != nil {
		fmt.Println(err)
		return
	}
	defer os.RemoveAll(dataDir)
	c, err := wasmkube.Up(ctx, p, wasmkube.Options{DataDir: dataDir, Port: ptr.To[int32](0)})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer c.Stop(context.Background())

	client := kubernetes.NewForConfigOrDie(c.RESTConfig)
	cm := &corev1.ConfigMap{
		ObjectMeta: metav1.ObjectMeta{Name: "hello", Labels: map[string]string{"app": "example"}},
		Data:       map[string]string{"greeting": "hi"},
	}
	if _, err := client.CoreV1().ConfigMaps("default").Create(ctx, cm, metav1.CreateOptions{}); err != nil {
		fmt.Println(err)
		return
	}
	list, err := client.CoreV1().ConfigMaps("default").List(ctx, metav1.ListOptions{LabelSelector: "app=example"})
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, item := range list.Items {
		fmt.Printf("%s/%s greeting=%s\n", item.Namespace, item.Name, item.Data["greeting"])
	}
	// Output: default/hello greeting=hi
}

// stopSharedCluster stops the cluster TestMain started, so an example can start its own. Examples
// run after the tests; TestMain's Stop of the stopped cluster at the end is a no-op.
// Benchmarks that need the shared cluster run with -run '^$' (Makefile), without the examples.
func stopSharedCluster() {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := cluster.Stop(ctx); err != nil {
		fmt.Fprintln(os.Stderr, "stop the shared cluster:", err)
	}
}
