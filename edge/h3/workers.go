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
type workerPool struct {
	work    chan *stream
	quit    chan struct{}
	stopped sync.Once
	size    int32
	running atomic.Int32
	idle    time.Duration
}

// workerIdle is how long a worker waits for a stream before it ends.
const workerIdle = 10 * time.Second

func newWorkerPool(size int, idle time.Duration) *workerPool {
	return &workerPool{work: make(chan *stream), quit: make(chan struct{}), size: int32(size), idle: idle}
}

// dispatch serves st on an idle worker, a new worker, or a goroutine of
// its own, and returns at once.
func (p *workerPool) dispatch(st *stream) {
	select {
	case p.work <- st:
		return
	default:
	}
	if p.running.Add(1) <= p.size {
		go p.worker(st)
		return
	}
	p.running.Add(-1)
	go st.serve()
}

func (p *workerPool) worker(st *stream) {
	defer p.running.Add(-1) // also when a handler ends the goroutine (runtime.Goexit)
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		st.serve()
		t.Reset(p.idle)
		select {
		case st = <-p.work:
		case <-t.C:
			return
		case <-p.quit:
			return
		}
	}
}

// stop ends idle workers, and busy ones once their stream is served.
func (p *workerPool) stop() { p.stopped.Do(func() { close(p.quit) }) }
