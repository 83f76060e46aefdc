package h3

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerPool serves request streams on long-lived goroutines.
//
// Each request stream is served start to end (reading the request,
// running the handler, writing the response) by one goroutine. A fresh
// goroutine per stream, as quic-go's server has, starts with the
// runtime's smallest stack, and Portico's pipeline is deep enough that
// every request then grew its stack several times, each growth copying it
// (runtime.copystack was 15% of the listener's CPU under HTTP/3 load; see
// edge/listen/workers.go, which solves the same for HTTP/2). A worker's
// stack has grown already. The connection's accept loop hands a stream to
// an idle worker; when none is idle and the pool is full, the stream gets
// a goroutine of its own: the pool never queues a request behind another.
//
// An idle worker waits on the work channel alone (no timer, no select per
// request); a janitor ends the workers that stayed idle for a whole
// period, by handing them nil.
type workerPool struct {
	work    chan job // nil: end
	stopped atomic.Bool
	stop1   sync.Once
	start1  sync.Once // the janitor starts with the first worker
	quit    chan struct{}
	size    int32
	running atomic.Int32
	idle    atomic.Int32 // workers waiting on work
	period  time.Duration
}

// job is what a worker runs: a request stream (*stream), or a test's.
type job interface{ serve() }

// workerIdle is how long a worker may wait for a stream before it ends.
const workerIdle = 10 * time.Second

func newWorkerPool(size int, idle time.Duration) *workerPool {
	return &workerPool{work: make(chan job), quit: make(chan struct{}), size: int32(size), period: idle}
}

// dispatch serves st on an idle worker, a new worker, or a goroutine of
// its own, and returns at once.
func (p *workerPool) dispatch(st job) {
	select {
	case p.work <- st:
		return
	default:
	}
	if p.stopped.Load() {
		go st.serve()
		return
	}
	if p.running.Add(1) <= p.size {
		p.start1.Do(func() { go p.janitor() })
		go p.worker(st)
		return
	}
	p.running.Add(-1)
	go st.serve()
}

func (p *workerPool) worker(st job) {
	defer p.running.Add(-1) // also when a handler ends the goroutine (runtime.Goexit)
	for st != nil {
		st.serve()
		if p.stopped.Load() {
			return
		}
		p.idle.Add(1)
		if p.stopped.Load() { // stop may have counted the idle already
			p.idle.Add(-1)
			return
		}
		st = <-p.work
		p.idle.Add(-1)
	}
}

// janitor ends, once a period, as many workers as were idle both at the
// period's start and at its end (those the load did not need), and the
// idle workers once the pool is stopped.
func (p *workerPool) janitor() {
	t := time.NewTicker(p.period)
	defer t.Stop()
	idleBefore := int32(0)
	for {
		select {
		case <-t.C:
		case <-p.quit:
			// Workers that went idle before the stop: hand each a nil,
			// waiting briefly for one still on its way to the channel.
			deadline := time.Now().Add(time.Second)
			for p.idle.Load() > 0 && time.Now().Before(deadline) {
				select {
				case p.work <- nil:
				case <-time.After(10 * time.Millisecond):
				}
			}
			return
		}
		p.retire(min(idleBefore, p.idle.Load()))
		idleBefore = p.idle.Load()
	}
}

// retire hands nil to up to n idle workers.
func (p *workerPool) retire(n int32) {
	for ; n > 0; n-- {
		select {
		case p.work <- nil:
		default:
			return
		}
	}
}

// stop ends idle workers, and busy ones once their stream is served.
func (p *workerPool) stop() {
	p.stop1.Do(func() {
		p.stopped.Store(true)
		close(p.quit)
	})
}
