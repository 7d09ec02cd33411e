package apiserver

import (
	"context"
	"errors"
	"fmt"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// WaitReady waits until /readyz answers ok and the default namespace exists, as upstream's test
// server does. It returns early with the cause when the server stops, ctx ends or timeout passes.
func (a *APIServer) WaitReady(ctx context.Context, cfg *rest.Config, timeout time.Duration) error {
	client, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return fmt.Errorf("client for readiness: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(50 * time.Millisecond)
	defer ticker.Stop()
	var last error
	for phase := 0; phase < 2; {
		select {
		case <-a.done:
			if a.err != nil {
				return fmt.Errorf("kube-apiserver stopped while starting: %w", a.err)
			}
			return errors.New("kube-apiserver stopped while starting; see the log in the data dir")
		case <-ctx.Done():
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("kube-apiserver not ready after %s: %w", timeout, last)
		case <-ticker.C:
		}
		switch phase {
		case 0:
			body, err := client.Discovery().RESTClient().Get().AbsPath("/readyz").DoRaw(ctx)
			if err == nil && string(body) == "ok" {
				phase++
				continue
			}
			last = fmt.Errorf("/readyz: %v %s", err, body)
		case 1:
			_, err := client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
			if err == nil {
				phase++
				continue
			}
			last = fmt.Errorf("namespace default: %w", err)
		}
	}
	return nil
}
