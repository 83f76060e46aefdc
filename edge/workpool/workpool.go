// Package workpool runs request handlers on long-lived goroutines.
//
// A fresh goroutine starts with the runtime's smallest stack, and the
// gateway's request pipeline is deep: a goroutine per request grew its
// stack several times, each growth copying it (runtime.copystack was
// 12–15% of a listener's CPU under HTTP/2 and HTTP/3 load). A worker's
// stack has grown already when its next request comes. edge/h2 and
// edge/h3 serve their streams on a Pool.
//
// A Pool never queues: when no worker is idle and the pool is at its
// size, the job gets a goroutine of its own, so a request never waits
// behind another. An idle worker waits on the work channel alone (no timer
// and no select per job); a janitor ends, once a period, the workers the
// load did not need.
package workpool

import (
	"sync"
	"sync/atomic"
	"time"
)

// Job is one unit of work, such as a request stream served start to end.
// Run must recover its own panics: a panic on a worker ends the process,
// as it would on any goroutine.
type Job interface{ Run() }

// Pool runs jobs on long-lived workers. The zero Pool is not usable; call
// New.
type Pool struct {
	work    chan Job // nil: end
	quit    chan struct{}
	stopped atomic.Bool
	stop1   sync.Once
	start1  sync.Once // the janitor starts with the first worker
	size    int32
	running atomic.Int32
	idle    atomic.Int32 // workers waiting on work
	period  time.Duration
}

// DefaultIdle is how long a worker may wait for a job before it ends.
const DefaultIdle = 10 * time.Second

// New returns a pool of at most size workers, each ending after it stayed
// idle for a whole period of idle.
func New(size int, idle time.Duration) *Pool {
	if idle <= 0 {
		idle = DefaultIdle
	}
	return &Pool{work: make(chan Job), quit: make(chan struct{}), size: int32(size), period: idle}
}

// Go runs j on an idle worker, a new worker, or a goroutine of its own,
// and returns at once. After Stop, every job gets a goroutine of its own.
func (p *Pool) Go(j Job) {
	select {
	case p.work <- j:
		return
	default:
	}
	if p.stopped.Load() {
		go j.Run()
		return
	}
	if p.running.Add(1) <= p.size {
		p.start1.Do(func() { go p.janitor() })
		go p.worker(j)
		return
	}
	p.running.Add(-1)
	go j.Run()
}

func (p *Pool) worker(j Job) {
	defer p.running.Add(-1) // also when a job ends the goroutine (runtime.Goexit)
	for j != nil {
		j.Run()
		if p.stopped.Load() {
			return
		}
		p.idle.Add(1)
		if p.stopped.Load() { // Stop may have counted the idle already
			p.idle.Add(-1)
			return
		}
		j = <-p.work
		p.idle.Add(-1)
	}
}

// janitor ends, once a period, as many workers as were idle both at the
// period's start and at its end (those the load did not need), and the
// idle workers once the pool is stopped.
func (p *Pool) janitor() {
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
func (p *Pool) retire(n int32) {
	for ; n > 0; n-- {
		select {
		case p.work <- nil:
		default:
			return
		}
	}
}

// Stop ends idle workers, and busy ones once their job is done. Jobs
// given to Go after Stop still run, each on a goroutine of its own.
func (p *Pool) Stop() {
	p.stop1.Do(func() {
		p.stopped.Store(true)
		close(p.quit)
	})
}

// Running returns how many workers exist, idle or busy.
func (p *Pool) Running() int { return int(p.running.Load()) }

// Idle returns how many workers wait for a job.
func (p *Pool) Idle() int { return int(p.idle.Load()) }
