package h3

import (
	"sync"
	"testing"
	"time"
)

// testJob blocks until released.
type testJob struct {
	wg      *sync.WaitGroup
	release chan struct{}
}

func (j testJob) serve() {
	<-j.release
	j.wg.Done()
}

func TestWorkerPool(t *testing.T) {
	p := newWorkerPool(3, 50*time.Millisecond)
	release := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(5)
	for range 5 {
		p.dispatch(testJob{&wg, release})
	}
	// Three workers and two goroutines of their own: nothing queues.
	if !waitFor(time.Second, func() bool { return p.running.Load() == 3 }) {
		t.Fatalf("%d workers running, want the pool's 3", p.running.Load())
	}
	close(release)
	wg.Wait()
	if !waitFor(time.Second, func() bool { return p.idle.Load() == 3 }) {
		t.Fatalf("%d workers idle, want 3", p.idle.Load())
	}
	// An idle worker takes the next job.
	wg.Add(1)
	p.dispatch(testJob{&wg, release})
	wg.Wait()
	if n := p.running.Load(); n != 3 {
		t.Fatalf("%d workers after reuse, want 3", n)
	}
	// Idle for whole periods: they end.
	if !waitFor(2*time.Second, func() bool { return p.running.Load() == 0 }) {
		t.Fatalf("%d idle workers still running after several idle periods", p.running.Load())
	}
	// After stop, idle workers end and new jobs still run.
	wg.Add(2)
	p.dispatch(testJob{&wg, release})
	p.dispatch(testJob{&wg, release})
	wg.Wait()
	p.stop()
	if !waitFor(2*time.Second, func() bool { return p.running.Load() == 0 }) {
		t.Fatalf("%d workers running after stop", p.running.Load())
	}
	wg.Add(3)
	for range 3 {
		p.dispatch(testJob{&wg, release})
	}
	wg.Wait()
	if n := p.running.Load(); n != 0 {
		t.Fatalf("%d workers counted after stop, want 0", n)
	}
}
