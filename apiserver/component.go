package apiserver

import "context"

// component is a Kubernetes component running in its own goroutine until Stop: the
// kube-apiserver, kube-controller-manager or kube-scheduler.
type component struct {
	cancel context.CancelFunc
	done   chan struct{}
	err    error
}

// start runs fn in a goroutine; cancel must end it. fn's error is the component's.
func (c *component) start(cancel context.CancelFunc, fn func() error) {
	c.cancel, c.done = cancel, make(chan struct{})
	go func() {
		defer close(c.done)
		c.err = fn()
	}()
}

// Done is closed when the component has stopped, by Stop or on its own.
func (c *component) Done() <-chan struct{} { return c.done }

// Err is the error the component stopped with; valid after Done is closed.
func (c *component) Err() error { return c.err }

// Stop stops the component and waits until it has (the kube-apiserver drains its requests).
func (c *component) Stop() error {
	c.cancel()
	<-c.done
	return c.err
}
