package apiserver

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/client-go/kubernetes"
	"k8s.io/client-go/rest"
)

// ReadyPollInterval is how often WaitReady asks the server. A verbose /readyz over loopback
// costs well under a millisecond of the server's time; a short interval lets `up` report ready
// within a few milliseconds of the last check passing.
const ReadyPollInterval = 10 * time.Millisecond

// BootstrapChecks are the /readyz checks of the post-start hooks that write the bootstrap
// objects (RBAC roles and bindings, system priority classes) and reconcile them with what this
// Kubernetes version ships. Each waits a fixed second before its first attempt (upstream's
// wait.Poll, not PollImmediate), so they end about a second after the server starts serving.
var BootstrapChecks = []string{
	"poststarthook/rbac/bootstrap-roles",
	"poststarthook/scheduling/bootstrap-system-priority-classes",
}

// WaitReady waits until /readyz answers ok and the default namespace exists, as upstream's test
// server does; checks named in exclude are not waited for (/readyz?exclude=NAME). It returns
// early with the cause when the server stops, ctx ends or timeout passes. The start's Mark hears
// of the first answer, of each /readyz check as it first passes, of /readyz ok and of the
// default namespace.
func (a *APIServer) WaitReady(ctx context.Context, cfg *rest.Config, timeout time.Duration, exclude ...string) error {
	client, err := kubernetes.NewForConfig(rest.CopyConfig(cfg))
	if err != nil {
		return fmt.Errorf("client for readiness: %w", err)
	}
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	ticker := time.NewTicker(ReadyPollInterval)
	defer ticker.Stop()
	poll := readyPoll{client: client, mark: a.mark, exclude: exclude, passed: map[string]bool{}}
	for !poll.done() {
		select {
		case <-a.done:
			if a.err != nil {
				return fmt.Errorf("kube-apiserver stopped while starting: %w", a.err)
			}
			return errors.New("kube-apiserver stopped while starting; see the log in the data dir")
		case <-ctx.Done():
			last := poll.last
			if last == nil {
				last = ctx.Err()
			}
			return fmt.Errorf("kube-apiserver not ready after %s: %w", timeout, last)
		case <-ticker.C:
		}
		poll.step(ctx)
	}
	return nil
}

// readyPoll is WaitReady's state: /readyz first, then the default namespace.
type readyPoll struct {
	client   kubernetes.Interface
	mark     func(phase, detail string)
	exclude  []string
	phase    int
	answered bool
	passed   map[string]bool
	last     error
}

func (p *readyPoll) done() bool { return p.phase == 2 }

// step asks once, and moves on to the next phase when the answer says so.
func (p *readyPoll) step(ctx context.Context) {
	switch p.phase {
	case 0:
		req := p.client.Discovery().RESTClient().Get().AbsPath("/readyz").Param("verbose", "true")
		for _, name := range p.exclude {
			req = req.Param("exclude", name)
		}
		body, err := req.DoRaw(ctx)
		p.noteChecks(string(body))
		if err == nil {
			p.mark("readyz ok", strings.Join(p.exclude, ", "))
			p.phase++
			return
		}
		p.last = fmt.Errorf("/readyz: %v %s", err, failedChecks(string(body)))
	case 1:
		_, err := p.client.CoreV1().Namespaces().Get(ctx, metav1.NamespaceDefault, metav1.GetOptions{})
		if err == nil {
			p.mark("default namespace", "")
			p.phase++
			return
		}
		p.last = fmt.Errorf("namespace default: %w", err)
	}
}

// noteChecks marks the first answer, and each check of a verbose /readyz body ("[+]NAME ok")
// the first time it passes.
func (p *readyPoll) noteChecks(body string) {
	if body == "" {
		return
	}
	if !p.answered {
		p.answered = true
		p.mark("kube-apiserver serving", "first /readyz answer")
	}
	for _, line := range strings.Split(body, "\n") {
		name, ok := strings.CutPrefix(line, "[+]")
		if !ok {
			continue
		}
		name = strings.TrimSuffix(name, " ok")
		if !p.passed[name] {
			p.passed[name] = true
			p.mark(name, "")
		}
	}
}

// failedChecks lists the checks a verbose /readyz body says failed ("[-]NAME failed: …").
func failedChecks(body string) string {
	var failed []string
	for _, line := range strings.Split(body, "\n") {
		if name, ok := strings.CutPrefix(line, "[-]"); ok {
			failed = append(failed, name)
		}
	}
	return strings.Join(failed, "; ")
}
