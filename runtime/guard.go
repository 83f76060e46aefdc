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
	lastEnd  int64        // when the last outer call ended (BeginNext); owner only
	done     chan struct{}
	dead     atomic.Bool // set before done is closed; cheaper to poll
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
		g.begin(nanotime())
	}
}

func (g *Guard) begin(now int64) {
	g.start.Store(now)
	// After the store: a watchdog that parks re-reads every start after
	// announcing it, so one of the two sees the other.
	if g.wd.parked.Load() {
		g.wd.unpark()
	}
}

// BeginNext is Begin for an outer call that follows the previous one at
// once, with nothing worth timing in between (proxy_on_log and
// proxy_on_delete after proxy_on_done): the call starts when the previous
// one ended, by the clock reading End took. Reading the clock cost 35 ns
// in a loop and 90 ns between guest calls here, as much as a small
// callback. Only call it right after End.
func (g *Guard) BeginNext() {
	if g.depth != 0 || g.lastEnd == 0 {
		g.Begin()
		return
	}
	g.depth = 1
	g.begin(g.lastEnd)
}

// End marks the end of a call and returns how long the outermost call took
// (zero for a nested one), so that callers need not read the clock again.
func (g *Guard) End() time.Duration {
	g.depth--
	if g.depth != 0 {
		return 0
	}
	start := g.start.Swap(0)
	g.lastEnd = nanotime()
	return time.Duration(g.lastEnd - start)
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
func (g *Guard) Dead() bool { return g.dead.Load() }

// Close unregisters the guard from the watchdog.
func (g *Guard) Close() { g.wd.remove(g) }

// OnFire sets what stops the instance when the guard fires; the ABI host
// passes the module's Interrupter.
// Set it before the first call.
func (g *Guard) OnFire(f func()) { g.onFire = f }

func (g *Guard) fire() {
	g.once.Do(func() {
		g.dead.Store(true)
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
	// parked is true while run waits for a call to begin (or for a first
	// guard) instead of ticking.
	parked atomic.Bool
}

// The watchdog does not tick. It sleeps until the earliest deadline of the
// calls in progress, and never longer than the shortest timeout of any
// guard, so that a call beginning while it sleeps is looked at by its
// deadline; with no call in progress after such a sleep it parks until
// the next Begin. An earlier version woke every 2 ms while any instance
// existed: 3.8% of a core on an idle node (measured with getrusage), in
// scheduler and timer work that profiles do not attribute to it. Now a
// busy node wakes it about once per shortest timeout (10 times a second
// at the default), and an idle one not at all.
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
	w.mu.Unlock()
	// Its timeout may be shorter than the sleep in progress.
	select {
	case w.wake <- struct{}{}:
	default:
	}
}

// unpark wakes a parked watchdog; Begin calls it.
func (w *watchdog) unpark() {
	if w.parked.CompareAndSwap(true, false) {
		select {
		case w.wake <- struct{}{}:
		default:
		}
	}
}

// park waits until a call begins or the watchdog stops; it returns false
// for the latter.
func (w *watchdog) park() bool {
	w.parked.Store(true)
	// A call that began before parked was visible did not wake us: look.
	if _, busy := w.check(nanotime()); busy {
		w.parked.Store(false)
		return true
	}
	select {
	case <-w.quit:
		return false
	case <-w.wake:
		return true
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
	t := time.NewTimer(time.Hour)
	t.Stop()
	rested := false // slept at least once since the last wake-up
	for {
		now := nanotime()
		next, busy := w.check(now)
		if next == 0 || (!busy && rested) {
			// No guards, or nothing running for a whole sleep: wait for
			// the next Begin.
			if !w.park() {
				return
			}
			rested = false
			continue
		}
		rested = true
		t.Reset(time.Duration(next - now))
		select {
		case <-w.quit:
			t.Stop()
			return
		case <-w.wake: // a new guard, or a stale wake-up: look again
			t.Stop()
		case <-t.C:
		}
	}
}

// check fires the guards whose call has run past its deadline and returns
// when to look next (0 when there are no guards) and whether any call is in
// progress.
func (w *watchdog) check(now int64) (next int64, busy bool) {
	var expired []*Guard
	w.mu.Lock()
	for g := range w.guards {
		if next == 0 || now+g.timeout < next {
			next = now + g.timeout
		}
		s := g.start.Load()
		if s == 0 || g.Dead() {
			continue
		}
		busy = true
		switch deadline := s + g.timeout; {
		case deadline <= now:
			expired = append(expired, g)
		case deadline < next:
			next = deadline
		}
	}
	w.mu.Unlock()
	for _, g := range expired {
		g.timedOut.Store(true)
		g.fire()
	}
	return next, busy
}
