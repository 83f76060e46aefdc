package listen

import (
	"net/http"
	"runtime"
	"sync"
	"sync/atomic"
	"time"
)

// handlerWorkers runs HTTP/3 handlers on long-lived goroutines (edge/h2
// has its own pool for HTTP/2).
//
// Both servers start a fresh goroutine for every request, and a fresh
// goroutine starts with the runtime's smallest stack. The pipeline is deep
// (the listener's wrappers, routing, policies, the forwarder), so each
// request's goroutine grew its stack several times, and every growth copies
// the stack and walks its frames: runtime.copystack was 12% of the
// listener's CPU under h2load and 15% under HTTP/3 load. A worker's stack
// has already grown, so it is paid once per worker instead of once per
// request. The server's own goroutine waits for the worker, at the cost of
// two goroutine switches. (GODEBUG=adaptivestackstart=1, which starts
// goroutines with the average stack size, did not help: most goroutines are
// idle connection readers with small stacks.)
//
// When every worker is busy and the pool is at its size, the handler runs
// on the calling goroutine as before: the pool never queues a request.
type handlerWorkers struct {
	work    chan *handlerJob
	quit    chan struct{} // closed by stop
	stopped sync.Once
	size    int32
	workers atomic.Int32
	idle    time.Duration
	jobs    sync.Pool
}

type handlerJob struct {
	h    http.Handler
	w    http.ResponseWriter
	r    *http.Request
	done chan any // the handler's panic value, or nil
}

// Sizes: enough workers for the concurrent handlers of a busy node, few
// enough that their stacks stay small next to the connection buffers.
const (
	defaultHandlerWorkers = 256
	handlerWorkerIdle     = 10 * time.Second
)

func newHandlerWorkers(size int, idle time.Duration) *handlerWorkers {
	return &handlerWorkers{work: make(chan *handlerJob), quit: make(chan struct{}), size: int32(size), idle: idle}
}

// stop ends the idle workers, and the busy ones once their handler has
// returned. Requests that still come run on workers that end after them.
func (p *handlerWorkers) stop() { p.stopped.Do(func() { close(p.quit) }) }

// serve runs h on a worker and returns when it has returned. A panic in
// the handler is raised again here, on the server's goroutine, so that
// the server's own recovery (http.ErrAbortHandler, logging, resetting the
// stream) sees it as before; its stack trace then shows this goroutine.
func (p *handlerWorkers) serve(h http.Handler, w http.ResponseWriter, r *http.Request) {
	j, _ := p.jobs.Get().(*handlerJob)
	if j == nil {
		j = &handlerJob{done: make(chan any, 1)}
	}
	j.h, j.w, j.r = h, w, r
	select {
	case p.work <- j:
	default:
		if p.workers.Add(1) > p.size {
			p.workers.Add(-1)
			j.h, j.w, j.r = nil, nil, nil
			p.jobs.Put(j)
			h.ServeHTTP(w, r)
			return
		}
		go p.worker(j)
	}
	v := <-j.done
	j.h, j.w, j.r = nil, nil, nil
	p.jobs.Put(j)
	switch v.(type) {
	case nil:
	case goexit:
		runtime.Goexit()
	default:
		panic(v)
	}
}

func (p *handlerWorkers) worker(j *handlerJob) {
	defer p.workers.Add(-1)
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		runJob(j)
		t.Reset(p.idle)
		select {
		case j = <-p.work:
		case <-t.C:
			return
		case <-p.quit:
			return
		}
	}
}

// runJob calls the job's handler and sends on j.done nil when it returned,
// what it panicked with, or goexit when it called runtime.Goexit (which
// also ends this worker).
func runJob(j *handlerJob) {
	returned := false
	defer func() {
		switch v := recover(); {
		case returned:
			j.done <- nil
		case v != nil:
			j.done <- v
		default:
			j.done <- goexit{}
		}
	}()
	j.h.ServeHTTP(j.w, j.r)
	returned = true
}

// goexit reports a handler that called runtime.Goexit: the server's
// goroutine then ends the same way, as it would have without the worker.
type goexit struct{}

// onWorkers returns h running on p's workers.
func onWorkers(p *handlerWorkers, h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { p.serve(h, w, r) })
}
