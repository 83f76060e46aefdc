package runtime

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Guard is the context every call into one instance runs under, and the
// per-call deadline of that instance.
//
// Each instance has one long-lived Guard: the engine's single watchdog
// goroutine fires it when the call in progress has run past its deadline,
// and firing sets the instance's interrupt flag (see instrument and
// Interrupter), which the guest's next loop iteration turns into a trap. A
// call costs two atomic stores; no timer, context or goroutine per call.
//
// After a timeout the instance must be discarded: the Guard stays done for
// good.
type Guard struct {
	timeout int64 // nanoseconds
	wd      *watchdog

	start    atomic.Int64 // monotonic nanoseconds when the outer call began; 0 when idle
	depth    int          // nesting of Begin/End; only touched by the instance's owner
	done     chan struct{}
	once     sync.Once
	timedOut atomic.Bool
	killed   atomic.Bool
	onFire   func()

	// Data is for the ABI host: it finds its per-instance state here from
	// inside host functions (see GuardFrom).
	Data any
}

type guardKey struct{}

// NewGuard returns a guard for one instance. It carries no values but
// itself: wazero asks the context of every call for its experimental
// options, and a plain answer keeps that free. Release it with Close when
// the instance is closed.
func (e *Engine) NewGuard(timeout time.Duration) *Guard {
	if timeout <= 0 {
		timeout = DefaultCallbackTimeout
	}
	g := &Guard{
		timeout: int64(timeout),
		wd:      e.watchdog,
		done:    make(chan struct{}),
	}
	e.watchdog.add(g)
	return g
}

// DefaultCallbackTimeout is the deadline of one callback when a plugin sets
// none.
const DefaultCallbackTimeout = 100 * time.Millisecond

// GuardFrom returns the guard a call runs under, from the context wazero
// hands to host functions.
func GuardFrom(ctx context.Context) *Guard {
	if g, ok := ctx.(*Guard); ok {
		return g
	}
	g, _ := ctx.Value(guardKey{}).(*Guard)
	return g
}

// Begin marks the start of a call into the instance. Calls may nest (a host
// function calling the guest's allocator): the deadline covers the
// outermost one.
func (g *Guard) Begin() {
	g.depth++
	if g.depth == 1 {
		g.start.Store(nanotime())
	}
}

// End marks the end of a call and returns how long the outermost call took
// (zero for a nested one), so that callers need not read the clock again.
func (g *Guard) End() time.Duration {
	g.depth--
	if g.depth != 0 {
		return 0
	}
	start := g.start.Swap(0)
	return time.Duration(nanotime() - start)
}

// TimedOut reports whether a call under this guard ran past its deadline.
func (g *Guard) TimedOut() bool { return g.timedOut.Load() }

// Kill makes every current and later call under the guard fail: wazero
// closes the module at its next check. It is how an instance is stopped
// from outside, for example when its plugin is closed.
func (g *Guard) Kill() {
	g.killed.Store(true)
	g.fire()
}

// Dead reports whether the guard has fired (timeout or kill): the instance
// must not be called again.
func (g *Guard) Dead() bool {
	select {
	case <-g.done:
		return true
	default:
		return false
	}
}

// Close unregisters the guard from the watchdog.
func (g *Guard) Close() { g.wd.remove(g) }

// OnFire sets what stops the instance when the guard fires; the ABI host
// passes the module's Interrupter.
// Set it before the first call.
func (g *Guard) OnFire(f func()) { g.onFire = f }

func (g *Guard) fire() {
	g.once.Do(func() {
		close(g.done)
		if g.onFire != nil {
			g.onFire()
		}
	})
}

// Deadline implements context.Context. The deadline is enforced by the
// watchdog, not reported, so that wazero takes the cheap path.
func (g *Guard) Deadline() (time.Time, bool) { return time.Time{}, false }

// Done implements context.Context.
func (g *Guard) Done() <-chan struct{} { return g.done }

// Err implements context.Context.
func (g *Guard) Err() error {
	if !g.Dead() {
		return nil
	}
	if g.timedOut.Load() {
		return context.DeadlineExceeded
	}
	return context.Canceled
}

// Value implements context.Context.
func (g *Guard) Value(key any) any {
	if _, ok := key.(guardKey); ok {
		return g
	}
	return nil
}

// epoch is the fixed origin of nanotime; it is never written after
// initialisation.
var epoch = time.Now()

func nanotime() int64 { return int64(time.Since(epoch)) + 1 }

// watchdog is the one goroutine per engine that fires guards whose call
// has run past its deadline.
type watchdog struct {
	mu     sync.Mutex
	guards map[*Guard]struct{}
	wake   chan struct{}
	quit   chan struct{}
	wg     sync.WaitGroup
}

// watchdogTick bounds how late a deadline can fire. Ticks only happen while
// at least one guard exists.
const watchdogTick = 2 * time.Millisecond

func newWatchdog() *watchdog {
	w := &watchdog{
		guards: make(map[*Guard]struct{}),
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
	}
	w.wg.Add(1)
	go w.run()
	return w
}

func (w *watchdog) add(g *Guard) {
	w.mu.Lock()
	w.guards[g] = struct{}{}
	n := len(w.guards)
	w.mu.Unlock()
	if n == 1 {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

func (w *watchdog) remove(g *Guard) {
	w.mu.Lock()
	delete(w.guards, g)
	w.mu.Unlock()
}

func (w *watchdog) stop() {
	close(w.quit)
	w.wg.Wait()
}

func (w *watchdog) run() {
	defer w.wg.Done()
	t := time.NewTicker(watchdogTick)
	defer t.Stop()
	for {
		w.mu.Lock()
		idle := len(w.guards) == 0
		w.mu.Unlock()
		if idle {
			t.Stop()
			select {
			case <-w.quit:
				return
			case <-w.wake:
			}
			t.Reset(watchdogTick)
			continue
		}
		select {
		case <-w.quit:
			return
		case <-t.C:
		}
		now := nanotime()
		var expired []*Guard
		w.mu.Lock()
		for g := range w.guards {
			s := g.start.Load()
			if s != 0 && now-s > g.timeout && !g.Dead() {
				expired = append(expired, g)
			}
		}
		w.mu.Unlock()
		for _, g := range expired {
			g.timedOut.Store(true)
			g.fire()
		}
	}
}
