package runtime

import (
	"context"
	"errors"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

type fakeInst struct{ id int }

func newFakePool(t *testing.T, size int, fail *atomic.Bool) (*Pool[*fakeInst], *atomic.Int64) {
	t.Helper()
	var made atomic.Int64
	var destroyed atomic.Int64
	p, err := NewPool(context.Background(), PoolConfig[*fakeInst]{
		Size: size,
		New: func(context.Context) (*fakeInst, error) {
			if fail != nil && fail.Load() {
				return nil, errors.New("cannot start")
			}
			return &fakeInst{id: int(made.Add(1))}, nil
		},
		Destroy:     func(*fakeInst) { destroyed.Add(1) },
		WaitTimeout: 200 * time.Millisecond,
		MinBackoff:  10 * time.Millisecond,
		MaxBackoff:  40 * time.Millisecond,
	})
	if err != nil {
		t.Fatal(err)
	}
	return p, &destroyed
}

func TestPoolBoundsInstances(t *testing.T) {
	p, destroyed := newFakePool(t, 3, nil)
	ctx := context.Background()
	var held []*fakeInst
	for i := 0; i < 3; i++ {
		in, err := p.Acquire(ctx)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, in)
	}
	if p.Live() != 3 {
		t.Fatalf("live %d", p.Live())
	}
	// A fourth waits, then times out with ErrBusy.
	if _, err := p.Acquire(ctx); !errors.Is(err, ErrBusy) {
		t.Fatalf("fourth acquire: %v", err)
	}
	// A cancelled caller gives up at once and never gets an instance.
	cctx, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := p.Acquire(cctx); !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled acquire: %v", err)
	}
	// A waiter gets the next released instance.
	var wg sync.WaitGroup
	wg.Add(1)
	var got *fakeInst
	go func() {
		defer wg.Done()
		got, _ = p.Acquire(ctx)
	}()
	time.Sleep(20 * time.Millisecond)
	p.Release(held[0])
	wg.Wait()
	if got != held[0] {
		t.Fatalf("waiter got %v, want the released instance", got)
	}
	p.Release(got)
	p.Release(held[1])
	p.Release(held[2])
	p.Close()
	if destroyed.Load() != 3 || p.Live() != 0 {
		t.Fatalf("after close: destroyed %d live %d", destroyed.Load(), p.Live())
	}
	if _, err := p.Acquire(ctx); !errors.Is(err, ErrPoolClosed) {
		t.Fatalf("acquire after close: %v", err)
	}
}

func TestPoolReplacesDiscarded(t *testing.T) {
	var fail atomic.Bool
	p, _ := newFakePool(t, 1, &fail)
	defer p.Close()
	ctx := context.Background()
	in, _ := p.Acquire(ctx)
	fail.Store(true)
	p.Discard(in)
	// In back-off with no instance: fail fast rather than queue.
	if _, err := p.Acquire(ctx); !errors.Is(err, ErrUnavailable) && !errors.Is(err, ErrBusy) {
		t.Fatalf("acquire while replacing: %v", err)
	}
	fail.Store(false)
	deadline := time.Now().Add(2 * time.Second)
	for {
		in, err := p.Acquire(ctx)
		if err == nil {
			p.Release(in)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("never replaced: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	if p.Live() != 1 {
		t.Fatalf("live %d", p.Live())
	}
}

// newTestEngine returns an engine that is closed when the test ends.
func newTestEngine(t *testing.T) *Engine {
	t.Helper()
	e, err := NewEngine(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close(context.Background()) })
	return e
}

// waitFired fails the test unless g fires within d.
func waitFired(t *testing.T, g *Guard, d time.Duration, what string) {
	t.Helper()
	select {
	case <-g.Done():
	case <-time.After(d):
		t.Fatal(what)
	}
}

func TestGuardFiresOnDeadline(t *testing.T) {
	e := newTestEngine(t)
	g := e.NewGuard(20 * time.Millisecond)
	defer g.Close()
	g.Begin()
	g.End()
	time.Sleep(40 * time.Millisecond)
	if g.Dead() {
		t.Fatal("guard fired with no call in progress")
	}
	g.Begin()
	waitFired(t, g, 2*time.Second, "guard did not fire")
	g.End()
	if !g.TimedOut() || !errors.Is(g.Err(), context.DeadlineExceeded) {
		t.Fatalf("timed out %v err %v", g.TimedOut(), g.Err())
	}
}

// An idle watchdog parks instead of ticking, and a call that begins while
// it is parked is still stopped at its deadline.
func TestGuardFiresAfterWatchdogParked(t *testing.T) {
	e := newTestEngine(t)
	g := e.NewGuard(20 * time.Millisecond)
	defer g.Close()
	for round := range 3 {
		deadline := time.Now().Add(5 * time.Second)
		for !e.watchdog.parked.Load() {
			if time.Now().After(deadline) {
				t.Fatalf("round %d: the watchdog never parked with no call in progress", round)
			}
			time.Sleep(10 * time.Millisecond)
		}
		if round < 2 {
			// Short calls wake it; it parks again once idle.
			g.Begin()
			g.End()
			continue
		}
		g.Begin()
		waitFired(t, g, 2*time.Second, "a call that began while the watchdog was parked was never stopped")
		g.End()
		if !g.TimedOut() {
			t.Fatal("guard fired without a timeout")
		}
	}
}

// A guard added with a shorter timeout than the watchdog's current sleep
// is still stopped at its own deadline.
func TestGuardWithShorterTimeoutAddedDuringSleep(t *testing.T) {
	e := newTestEngine(t)
	long := e.NewGuard(10 * time.Second)
	defer long.Close()
	long.Begin() // the watchdog now sleeps until this call's deadline
	defer long.End()
	time.Sleep(20 * time.Millisecond)
	short := e.NewGuard(30 * time.Millisecond)
	defer short.Close()
	short.Begin()
	// Far less than the long guard's 10 s, far more than the short one's 30 ms.
	waitFired(t, short, 3*time.Second, "the short guard did not fire while a long one kept the watchdog asleep")
	short.End()
	if long.Dead() {
		t.Fatal("the long guard fired early")
	}
}

// manualWatchdog is a watchdog with no goroutine and a clock the test
// sets: the test calls check itself, so nothing depends on how the
// scheduler treats the test.
type manualWatchdog struct {
	*watchdog
	now int64 // what the watchdog's clock reads
}

func newManualWatchdog(t *testing.T) *manualWatchdog {
	t.Helper()
	m := &manualWatchdog{watchdog: newIdleWatchdog(), now: 1}
	m.clock = func() int64 { return m.now }
	return m
}

// checkAt sets the clock to now and runs one check with that reading.
func (m *manualWatchdog) checkAt(now int64) {
	m.now = now
	m.check(now)
}

const testTimeout = 30 * time.Millisecond

// A call still running a whole timeout after the watchdog first saw it is
// stopped; one timeout less a nanosecond is not enough.
func TestGuardCheckFiresAfterTimeout(t *testing.T) {
	m := newManualWatchdog(t)
	g := m.newGuard(testTimeout)
	defer g.Close()
	const t0 = 1000
	m.checkAt(t0)
	if g.Dead() {
		t.Fatal("fired with no call in progress")
	}
	g.Begin()
	m.checkAt(t0 + 1)
	m.checkAt(t0 + 1 + int64(testTimeout) - 1)
	if g.Dead() {
		t.Fatal("fired one nanosecond before the timeout")
	}
	m.checkAt(t0 + 1 + int64(testTimeout))
	if !g.TimedOut() || !errors.Is(g.Err(), context.DeadlineExceeded) {
		t.Fatalf("a call running a whole timeout was not stopped: timed out %v err %v", g.TimedOut(), g.Err())
	}
	g.End()
}

// Separate calls are timed separately: a call that ended and another that
// began are not one call, however far apart the watchdog looks.
func TestGuardSeparateCallsDoNotAddUp(t *testing.T) {
	m := newManualWatchdog(t)
	g := m.newGuard(testTimeout)
	defer g.Close()
	const t0 = 1000
	g.Begin()
	m.checkAt(t0)
	g.End()
	g.Begin()
	m.checkAt(t0 + int64(testTimeout) + 1)
	if g.Dead() {
		t.Fatal("the second call was charged with the first one's time")
	}
	// Many calls in a row, each seen by one check, over ten timeouts.
	now := t0 + int64(testTimeout) + 1
	for range 100 {
		g.End()
		g.Begin()
		now += int64(testTimeout) / 10
		m.checkAt(now)
	}
	g.End()
	if g.Dead() {
		t.Fatal("a run of short calls fired the guard")
	}
}

// A nested call (a host function calling the guest's allocator) is part of
// the outer one: beginning and ending it does not restart the deadline.
func TestGuardNestedCallsAreOneCall(t *testing.T) {
	m := newManualWatchdog(t)
	g := m.newGuard(testTimeout)
	defer g.Close()
	const t0 = 1000
	g.Begin()
	m.checkAt(t0)
	for i := range 10 {
		g.Begin()
		g.End()
		m.checkAt(t0 + int64(i+1)*int64(testTimeout)/10)
	}
	g.End()
	if !g.TimedOut() {
		t.Fatal("an outer call kept running by nested calls was never stopped")
	}
}

// The watchdog may be kept off a core between reading the clock and
// looking at the guards. A call that began in that gap is timed from a
// reading taken after the watchdog saw it, not from the stale one, so it
// is not stopped before its timeout.
func TestGuardCallFirstSeenWithStaleClock(t *testing.T) {
	m := newManualWatchdog(t)
	g := m.newGuard(testTimeout)
	defer g.Close()
	const stale = 1000
	fresh := stale + 3*int64(testTimeout) // how long the watchdog was off a core
	g.Begin()                             // after the stale reading
	m.now = fresh
	m.check(stale)
	if g.Dead() {
		t.Fatal("a call first seen was stopped at once")
	}
	m.checkAt(fresh + int64(testTimeout) - 1)
	if g.Dead() {
		t.Fatalf("stopped %v after the watchdog first saw it: before its timeout of %v", testTimeout-1, testTimeout)
	}
	m.checkAt(fresh + int64(testTimeout))
	if !g.TimedOut() {
		t.Fatal("not stopped a whole timeout after it was first seen")
	}
	g.End()
}

func TestWatchPeriod(t *testing.T) {
	for _, c := range []struct{ timeout, want time.Duration }{
		{time.Millisecond, time.Millisecond},
		{100 * time.Millisecond, 25 * time.Millisecond},
		{10 * time.Second, 250 * time.Millisecond},
	} {
		if got := watchPeriod(c.timeout); got != c.want {
			t.Errorf("watchPeriod(%v) = %v, want %v", c.timeout, got, c.want)
		}
	}
}

func BenchmarkPoolAcquireRelease(b *testing.B) {
	p, err := NewPool(context.Background(), PoolConfig[*fakeInst]{
		Size: 4, New: func(context.Context) (*fakeInst, error) { return &fakeInst{}, nil }, Destroy: func(*fakeInst) {},
	})
	if err != nil {
		b.Fatal(err)
	}
	defer p.Close()
	ctx := context.Background()
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			in, err := p.Acquire(ctx)
			if err != nil {
				b.Error(err)
				return
			}
			p.Release(in)
		}
	})
}

func BenchmarkGuardBeginEnd(b *testing.B) {
	e, _ := NewEngine(context.Background(), Config{})
	defer e.Close(context.Background())
	g := e.NewGuard(time.Second)
	defer g.Close()
	b.ReportAllocs()
	for b.Loop() {
		g.Begin()
		g.End()
	}
}
