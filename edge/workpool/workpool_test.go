package workpool

import (
	"runtime"
	"sync"
	"testing"
	"time"
)

// blockingJob runs until released.
type blockingJob struct {
	started, done *sync.WaitGroup
	release       chan struct{}
}

func (j blockingJob) Run() {
	if j.started != nil {
		j.started.Done()
	}
	<-j.release
	j.done.Done()
}

// funcJob runs a function.
type funcJob func()

func (f funcJob) Run() { f() }

func waitFor(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(time.Millisecond)
	}
	return true
}

// The pool's life: at most size workers, the rest on goroutines of their
// own (nothing queues); an idle worker takes the next job; idle workers
// end after whole idle periods; after Stop, workers end and jobs still run.
func TestPool(t *testing.T) {
	p := New(3, 50*time.Millisecond)
	release := make(chan struct{})
	var started, done sync.WaitGroup
	started.Add(5)
	done.Add(5)
	for range 5 {
		p.Go(blockingJob{&started, &done, release})
	}
	// All five run at once although the pool holds three.
	started.Wait()
	if n := p.Running(); n != 3 {
		t.Fatalf("%d workers running, want the pool's 3", n)
	}
	close(release)
	done.Wait()
	if !waitFor(5*time.Second, func() bool { return p.Idle() == 3 }) {
		t.Fatalf("%d workers idle, want 3", p.Idle())
	}
	done.Add(1)
	p.Go(blockingJob{nil, &done, release})
	done.Wait()
	if n := p.Running(); n != 3 {
		t.Fatalf("%d workers after reuse, want 3", n)
	}
	if !waitFor(5*time.Second, func() bool { return p.Running() == 0 }) {
		t.Fatalf("%d idle workers still running after several idle periods", p.Running())
	}
	done.Add(2)
	p.Go(blockingJob{nil, &done, release})
	p.Go(blockingJob{nil, &done, release})
	done.Wait()
	p.Stop()
	p.Stop() // twice is harmless
	if !waitFor(5*time.Second, func() bool { return p.Running() == 0 }) {
		t.Fatalf("%d workers running after Stop", p.Running())
	}
	done.Add(3)
	for range 3 {
		p.Go(blockingJob{nil, &done, release})
	}
	done.Wait()
	if n := p.Running(); n != 0 {
		t.Fatalf("%d workers counted after Stop, want 0", n)
	}
}

// Sequential jobs mostly find a worker waiting: workers are reused.
func TestPoolReusesWorkers(t *testing.T) {
	p := New(1000, time.Minute)
	defer p.Stop()
	for range 200 {
		ran := make(chan struct{})
		p.Go(funcJob(func() { close(ran) }))
		<-ran
	}
	// One that has just finished may not be back at its receive when the
	// next job comes, and then a new worker starts.
	if n := p.Running(); n >= 100 {
		t.Fatalf("%d workers for 200 sequential jobs: workers are not reused", n)
	}
}

// A job that ends its goroutine (runtime.Goexit, as t.FailNow does) ends
// its worker, and the count stays right.
func TestPoolJobExits(t *testing.T) {
	p := New(2, time.Minute)
	defer p.Stop()
	for range 5 {
		exited := make(chan struct{})
		p.Go(funcJob(func() {
			defer close(exited)
			runtime.Goexit()
		}))
		<-exited
	}
	if !waitFor(5*time.Second, func() bool { return p.Running() == 0 }) {
		t.Fatalf("%d workers counted after their jobs ended their goroutines", p.Running())
	}
	ran := make(chan struct{})
	p.Go(funcJob(func() { close(ran) }))
	<-ran
}
