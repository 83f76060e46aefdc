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
// call costs two atomic adds; no clock reading, timer, context or goroutine
// per call.
//
// After a timeout the instance must be discarded: the Guard stays done for
// good.
//
// RATIONALE: calls are numbered, not timed. Begin and End each add one to
// the guard's call counter, so it is odd while a call runs and names that
// call. The watchdog, which looks at every guard at least once per
// watchPeriod of its timeout while any call runs, notes when it first saw
// a call number and fires the guard when the same call is still running a
// whole timeout later. A call is thus stopped no earlier than its timeout
// after it began (for a call it has not seen before, the watchdog reads the
// clock only after loading the call counters, so that reading is never
// earlier than the call's start) and no later than timeout + watchPeriod
// (plus however long the watchdog is kept off a core). Reading the
// monotonic clock at Begin and End instead cost 35 ns in a loop and about
// 90 ns between guest calls on the project's machines: four to eight
// readings, 12% of a small authorizer's request in process.
type Guard struct {
	timeout int64 // nanoseconds
	period  int64 // how often the watchdog must look while a call runs
	wd      *watchdog

	calls    atomic.Uint64 // outer calls begun plus calls ended: odd while one runs
	depth    int           // nesting of Begin/End; only touched by the instance's owner
	done     chan struct{}
	dead     atomic.Bool // set before done is closed; cheaper to poll
	once     sync.Once
	timedOut atomic.Bool
	killed   atomic.Bool
	onFire   func()

	// Owned by the watchdog (under its lock): the running call it last
	// saw, and when it first saw it.
	seen   uint64
	seenAt int64

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
	return e.watchdog.newGuard(timeout)
}

// newGuard returns a guard watched by w.
func (w *watchdog) newGuard(timeout time.Duration) *Guard {
	if timeout <= 0 {
		timeout = DefaultCallbackTimeout
	}
	g := &Guard{
		timeout: int64(timeout),
		period:  int64(watchPeriod(timeout)),
		wd:      w,
		done:    make(chan struct{}),
	}
	w.add(g)
	return g
}

// DefaultCallbackTimeout is the deadline of one callback when a plugin sets
// none.
const DefaultCallbackTimeout = 100 * time.Millisecond

// watchPeriod is how often the watchdog looks at a guard with a call in
// progress: a quarter of its timeout, between 1 ms and 250 ms. A call is
// stopped at most that long after its deadline.
func watchPeriod(timeout time.Duration) time.Duration {
	return min(max(timeout/4, time.Millisecond), 250*time.Millisecond)
}

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
	if g.depth != 1 {
		return
	}
	g.calls.Add(1)
	// After the add: a watchdog that parks re-reads every counter after
	// announcing it, so one of the two sees the other.
	if g.wd.parked.Load() {
		g.wd.unpark()
	}
}

// End marks the end of a call.
func (g *Guard) End() {
	g.depth--
	if g.depth == 0 {
		g.calls.Add(1)
	}
}

// running reports whether an outer call is in progress, and which.
func (g *Guard) running() (call uint64, ok bool) {
	c := g.calls.Load()
	return c, c&1 == 1
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

// epoch is the fixed origin of Nanotime; it is never written after
// initialisation.
var epoch = time.Now()

// Nanotime is a monotonic clock reading in nanoseconds, always above zero.
func Nanotime() int64 { return int64(time.Since(epoch)) + 1 }

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
	// clock is the monotonic clock the watchdog reads: Nanotime. Tests
	// replace it, before any use, in a watchdog whose goroutine they did
	// not start (newIdleWatchdog), and call check themselves.
	clock func() int64
}

// The watchdog does not tick while nothing runs. With a call in progress
// it looks again within the watch period of every guard (a quarter of its
// timeout) and at the deadline of every call it has seen; with no call in
// progress after such a sleep it parks until the next Begin. An earlier
// version woke every 2 ms while any instance existed: 3.8% of a core on an
// idle node (measured with getrusage), in scheduler and timer work that
// profiles do not attribute to it. Now a busy node wakes it a few times per
// shortest timeout (40 times a second at the default), and an idle one not
// at all.
func newWatchdog() *watchdog {
	w := newIdleWatchdog()
	w.wg.Add(1)
	go w.run()
	return w
}

// newIdleWatchdog returns a watchdog whose goroutine is not started.
func newIdleWatchdog() *watchdog {
	return &watchdog{
		guards: make(map[*Guard]struct{}),
		wake:   make(chan struct{}, 1),
		quit:   make(chan struct{}),
		clock:  Nanotime,
	}
}

func (w *watchdog) add(g *Guard) {
	w.mu.Lock()
	w.guards[g] = struct{}{}
	w.mu.Unlock()
	// Its watch period may be shorter than the sleep in progress.
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
	if _, busy := w.check(w.clock()); busy {
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
		now := w.clock()
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
//
// now was read before the call counters are loaded, possibly long before
// if the watchdog was kept off a core in between, and a call that began in
// that gap must not be credited with a start at now. So now only decides
// which of the calls already seen have expired (a stale now fires them
// late, never early), and a call seen for the first time is timed from one
// clock reading taken after every counter was loaded.
func (w *watchdog) check(now int64) (next int64, busy bool) {
	var expired, fresh []*Guard
	w.mu.Lock()
	for g := range w.guards {
		if next == 0 || now+g.period < next {
			next = now + g.period
		}
		call, running := g.running()
		if !running || g.Dead() {
			continue
		}
		busy = true
		if call != g.seen {
			// A call not seen before: it began at most one watch
			// period ago (or when the watchdog was woken for it).
			g.seen = call
			fresh = append(fresh, g)
			continue
		}
		switch deadline := g.seenAt + g.timeout; {
		case deadline <= now:
			expired = append(expired, g)
		case deadline < next:
			next = deadline
		}
	}
	if len(fresh) > 0 {
		// After every counter load above, so no earlier than any of
		// these calls began.
		seenAt := w.clock()
		for _, g := range fresh {
			g.seenAt = seenAt
			// A whole timeout away, so not expired.
			if deadline := seenAt + g.timeout; deadline < next {
				next = deadline
			}
		}
	}
	w.mu.Unlock()
	for _, g := range expired {
		g.timedOut.Store(true)
		g.fire()
	}
	return next, busy
}
