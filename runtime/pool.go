package runtime

import (
	"context"
	"errors"
	"sync"
	"time"
)

// Errors returned by Pool.Acquire.
var (
	ErrPoolClosed = errors.New("plugin is closed")
	// ErrUnavailable: no instance is healthy and a replacement is waiting
	// for its back-off to end.
	ErrUnavailable = errors.New("plugin has no healthy instance (replacing a failed one)")
	// ErrBusy: every instance is in use and the wait queue is full or the
	// wait took too long.
	ErrBusy = errors.New("plugin is overloaded: every instance is busy")
)

// PoolConfig configures a Pool.
type PoolConfig[T any] struct {
	// Size is the most instances the pool keeps; at least 1.
	Size int
	// New creates an instance, running whatever start-up the ABI needs.
	New func(ctx context.Context) (T, error)
	// Destroy releases an instance for good.
	Destroy func(T)
	// MaxWaiters bounds how many requests may queue for an instance;
	// beyond it Acquire fails at once with ErrBusy. Zero means 64 per instance.
	MaxWaiters int
	// WaitTimeout bounds the wait for an instance; zero means one second.
	WaitTimeout time.Duration
	// MinBackoff and MaxBackoff bound the delay before a failed instance is
	// replaced; it doubles with each consecutive failure. Zero means 50 ms
	// and 10 s.
	MinBackoff, MaxBackoff time.Duration
	// OnFailure, if set, is told of failures to create a replacement.
	OnFailure func(error)
	// OnCount, if set, is told the number of live instances when it changes.
	OnCount func(int)
}

// Pool is a bounded set of long-lived instances. A request acquires one
// instance, is served by it alone, and releases it; an instance that failed
// (trap, timeout) is discarded instead and replaced after a back-off.
// Instances are created lazily up to Size, the first one by NewPool so that
// a module that cannot start is refused before it serves anything.
type Pool[T comparable] struct {
	cfg PoolConfig[T]

	mu         sync.Mutex
	idle       []T
	total      int // live instances, idle or in use, plus those being created
	waiters    []*waiter[T]
	failures   int
	nextCreate time.Time
	refilling  bool
	closed     bool
	timer      *time.Timer
}

type waiter[T any] struct{ ch chan T }

// NewPool returns a pool holding one ready instance, or the error that
// creating it gave.
func NewPool[T comparable](ctx context.Context, cfg PoolConfig[T]) (*Pool[T], error) {
	if cfg.Size < 1 {
		cfg.Size = 1
	}
	if cfg.MaxWaiters <= 0 {
		cfg.MaxWaiters = 64 * cfg.Size
	}
	if cfg.WaitTimeout <= 0 {
		cfg.WaitTimeout = time.Second
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 50 * time.Millisecond
	}
	if cfg.MaxBackoff < cfg.MinBackoff {
		cfg.MaxBackoff = 10 * time.Second
	}
	first, err := cfg.New(ctx)
	if err != nil {
		return nil, err
	}
	p := &Pool[T]{cfg: cfg, idle: []T{first}, total: 1}
	p.count()
	return p, nil
}

func (p *Pool[T]) count() {
	if p.cfg.OnCount != nil {
		p.cfg.OnCount(p.total)
	}
}

// Acquire returns an instance for the caller's exclusive use until Release
// or Discard. It gives up when ctx is done (a cancelled request never waits
// for, or runs, a plugin).
func (p *Pool[T]) Acquire(ctx context.Context) (T, error) {
	var zero T
	if err := ctx.Err(); err != nil {
		return zero, err
	}
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return zero, ErrPoolClosed
	}
	if n := len(p.idle); n > 0 {
		t := p.idle[n-1]
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		return t, nil
	}
	if p.total < p.cfg.Size && !time.Now().Before(p.nextCreate) {
		p.total++
		p.count()
		p.mu.Unlock()
		t, err := p.cfg.New(context.WithoutCancel(ctx))
		if err != nil {
			p.mu.Lock()
			p.total--
			p.count()
			p.failedLocked()
			p.mu.Unlock()
			if p.cfg.OnFailure != nil {
				p.cfg.OnFailure(err)
			}
			return zero, ErrUnavailable
		}
		return t, nil
	}
	if p.total == 0 && !p.refilling {
		p.mu.Unlock()
		return zero, ErrUnavailable
	}
	if len(p.waiters) >= p.cfg.MaxWaiters {
		p.mu.Unlock()
		return zero, ErrBusy
	}
	w := &waiter[T]{ch: make(chan T, 1)}
	p.waiters = append(p.waiters, w)
	p.mu.Unlock()

	timer := time.NewTimer(p.cfg.WaitTimeout)
	defer timer.Stop()
	var err error
	select {
	case t, ok := <-w.ch:
		if !ok {
			return zero, ErrPoolClosed
		}
		return t, nil
	case <-ctx.Done():
		err = ctx.Err()
	case <-timer.C:
		err = ErrBusy
	}
	p.mu.Lock()
	for i, x := range p.waiters {
		if x == w {
			p.waiters = append(p.waiters[:i], p.waiters[i+1:]...)
			p.mu.Unlock()
			return zero, err
		}
	}
	p.mu.Unlock()
	// An instance was handed over while we gave up: pass it on.
	if t, ok := <-w.ch; ok {
		p.Release(t)
	}
	return zero, err
}

// Release returns a healthy instance to the pool.
func (p *Pool[T]) Release(t T) {
	p.mu.Lock()
	p.failures = 0
	if p.closed {
		p.total--
		p.count()
		p.mu.Unlock()
		p.cfg.Destroy(t)
		return
	}
	p.giveLocked(t)
	p.mu.Unlock()
}

func (p *Pool[T]) giveLocked(t T) {
	if len(p.waiters) > 0 {
		w := p.waiters[0]
		p.waiters = p.waiters[1:]
		w.ch <- t
		return
	}
	p.idle = append(p.idle, t)
}

// Discard destroys an instance that failed and schedules its replacement
// after a back-off.
func (p *Pool[T]) Discard(t T) {
	p.mu.Lock()
	p.total--
	p.count()
	closed := p.closed
	if !closed {
		p.failedLocked()
	}
	p.mu.Unlock()
	p.cfg.Destroy(t)
}

// Remove takes an idle instance out of the pool if it is there, reporting
// whether it was. Used when an instance is found broken outside a request.
func (p *Pool[T]) Remove(t T) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	for i, x := range p.idle {
		if x == t {
			p.idle = append(p.idle[:i], p.idle[i+1:]...)
			return true
		}
	}
	return false
}

// failedLocked records a failure and arranges a replacement so that a pool
// never stays empty after its instances failed.
func (p *Pool[T]) failedLocked() {
	p.failures++
	d := p.cfg.MinBackoff
	for i := 1; i < p.failures && d < p.cfg.MaxBackoff; i++ {
		d *= 2
	}
	d = min(d, p.cfg.MaxBackoff)
	p.nextCreate = time.Now().Add(d)
	if p.total == 0 || len(p.waiters) > 0 {
		if !p.refilling {
			p.refilling = true
			p.timer = time.AfterFunc(d, p.refill)
		}
	}
}

// refill creates one instance after a back-off, for the waiting requests or
// to keep one warm.
func (p *Pool[T]) refill() {
	p.mu.Lock()
	if p.closed || p.total >= p.cfg.Size {
		p.refilling = false
		p.mu.Unlock()
		return
	}
	p.total++
	p.count()
	p.mu.Unlock()
	t, err := p.cfg.New(context.Background())
	p.mu.Lock()
	p.refilling = false
	if err != nil {
		p.total--
		p.count()
		p.failedLocked()
		p.mu.Unlock()
		if p.cfg.OnFailure != nil {
			p.cfg.OnFailure(err)
		}
		return
	}
	if p.closed {
		p.total--
		p.count()
		p.mu.Unlock()
		p.cfg.Destroy(t)
		return
	}
	p.giveLocked(t)
	p.mu.Unlock()
}

// Live returns the number of live instances.
func (p *Pool[T]) Live() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.total
}

// Close destroys the idle instances and makes the pool refuse new
// acquisitions; instances in use are destroyed when they come back.
func (p *Pool[T]) Close() {
	p.mu.Lock()
	if p.closed {
		p.mu.Unlock()
		return
	}
	p.closed = true
	idle := p.idle
	p.idle = nil
	p.total -= len(idle)
	p.count()
	for _, w := range p.waiters {
		close(w.ch)
	}
	p.waiters = nil
	if p.timer != nil {
		p.timer.Stop()
	}
	p.mu.Unlock()
	for _, t := range idle {
		p.cfg.Destroy(t)
	}
}
