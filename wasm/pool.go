package wasm

import (
	"context"
	"fmt"
	"sync"
	"time"
)

// pool holds a pooled module's instances. It is filled lazily: Load makes one instance (proving
// the module instantiates), and a call that finds no idle instance makes one, up to PoolSize.
// Idle instances are reused last in, first out, so that a module called one request at a time
// keeps using one instance, whose code and memory are still in the CPU's caches, and never makes
// a second.
//
// A token (a value in tokens) is the right to hold an instance: at most PoolSize are taken, so
// at most PoolSize instances exist (each is idle, held by a token's owner, or being replaced
// under one). A caller that takes a token and finds no idle instance makes one.
type pool struct {
	tokens chan struct{}
	mu     sync.Mutex
	idle   []*instance
}

func newPool(size int) *pool { return &pool{tokens: make(chan struct{}, size)} }

// free is the number of tokens not taken: instances idle or that may be made.
func (p *pool) free() int { return cap(p.tokens) - len(p.tokens) }

// pop takes the most recently used idle instance, or nil.
func (p *pool) pop() *instance {
	p.mu.Lock()
	defer p.mu.Unlock()
	n := len(p.idle)
	if n == 0 {
		return nil
	}
	inst := p.idle[n-1]
	p.idle[n-1] = nil
	p.idle = p.idle[:n-1]
	return inst
}

// push makes inst idle.
func (p *pool) push(inst *instance) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.idle = append(p.idle, inst)
}

// idleCount is the number of idle instances.
func (p *pool) idleCount() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.idle)
}

// closeIdle closes every idle instance.
func (p *pool) closeIdle() {
	for inst := p.pop(); inst != nil; inst = p.pop() {
		inst.close()
	}
}

// take takes one token of tokens, waiting until the deadline or ctx ends (KindBusy).
func (m *Module) take(ctx context.Context, tokens chan struct{}, export string, deadline time.Time) error {
	select {
	case tokens <- struct{}{}:
		return nil
	default:
	}
	timer := time.NewTimer(time.Until(deadline))
	defer timer.Stop()
	select {
	case tokens <- struct{}{}:
		return nil
	case <-timer.C:
		return &CallError{Module: m.cfg.Name, Export: export, Kind: KindBusy,
			Err: fmt.Errorf("all %d instances busy until the deadline", m.cfg.PoolSize)}
	case <-ctx.Done():
		return &CallError{Module: m.cfg.Name, Export: export, Kind: KindBusy, Err: ctx.Err()}
	}
}

// acquire takes a token and the most recently used idle instance, or makes a new one.
func (m *Module) acquire(ctx context.Context, export string, deadline time.Time) (*instance, error) {
	if err := m.take(ctx, m.pool.tokens, export, deadline); err != nil {
		return nil, err
	}
	if inst := m.pool.pop(); inst != nil {
		return inst, nil
	}
	inst, err := m.newInstance(ctx, nil, deadline)
	if err != nil {
		<-m.pool.tokens
		return nil, m.instanceError(export, err)
	}
	return inst, nil
}

// release makes a healthy instance idle again and gives its token back. A faulted one is closed;
// when no other instance is idle, its replacement is made in the background (under the same
// token) so the next caller does not wait for a new instance.
func (m *Module) release(inst *instance) {
	if !inst.broken && !m.closed.Load() {
		m.pool.push(inst)
		<-m.pool.tokens
		return
	}
	inst.close()
	if m.closed.Load() || m.pool.idleCount() > 0 {
		<-m.pool.tokens
		return
	}
	replaced := m.background(func() {
		defer m.observePool()
		defer func() { <-m.pool.tokens }()
		fresh, err := m.newInstance(context.Background(), nil, time.Now().Add(m.cfg.startBudget()))
		if err == nil {
			m.pool.push(fresh) // else the next caller makes one
		}
	})
	if !replaced {
		<-m.pool.tokens
	}
}

// closePool takes every token (waiting for the calls that hold one, within ctx) and closes the
// idle instances.
func (m *Module) closePool(ctx context.Context) error {
	for i := 0; i < cap(m.pool.tokens); i++ {
		select {
		case m.pool.tokens <- struct{}{}:
		case <-ctx.Done():
			return fmt.Errorf("close module %q: %d instances still in use: %w", m.cfg.Name, cap(m.pool.tokens)-i, ctx.Err())
		}
	}
	m.pool.closeIdle()
	m.observing.Lock()
	m.observer.ObservePool(m.cfg.Name, 0, 0)
	m.observing.Unlock()
	return nil
}
