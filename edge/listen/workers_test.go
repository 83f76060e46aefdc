package listen

import (
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"testing"
	"time"
)

// A handler on a worker answers as it would on the caller's goroutine,
// and a worker's stack grows once and then serves request after request.
func TestHandlerWorkersServe(t *testing.T) {
	p := newHandlerWorkers(1000, time.Minute)
	h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Path", r.URL.Path)
		w.WriteHeader(http.StatusTeapot)
	})
	for i := range 200 {
		rec := httptest.NewRecorder()
		p.serve(h, rec, httptest.NewRequest("GET", "/x", nil))
		if rec.Code != http.StatusTeapot || rec.Header().Get("X-Path") != "/x" {
			t.Fatalf("request %d: %d %v", i, rec.Code, rec.Header())
		}
	}
	// Sequential requests mostly find a worker waiting. (One that has
	// just answered may not be back at its receive yet when the next
	// request comes, and then a new worker starts.)
	if n := p.workers.Load(); n >= 100 {
		t.Fatalf("%d workers for 200 sequential requests: workers are not reused", n)
	}
}

// A panic in the handler reaches the server's goroutine with its value
// unchanged, so the server still recognises http.ErrAbortHandler; the
// worker survives it.
func TestHandlerWorkersPanic(t *testing.T) {
	p := newHandlerWorkers(1, time.Minute)
	for _, v := range []any{http.ErrAbortHandler, "boom"} {
		got := func() (r any) {
			defer func() { r = recover() }()
			p.serve(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { panic(v) }), httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
			return nil
		}()
		if got != v {
			t.Fatalf("recovered %v, want %v", got, v)
		}
	}
	ran := false
	p.serve(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { ran = true }), httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	if !ran || p.workers.Load() != 1 {
		t.Fatalf("after panics: ran %v, %d workers", ran, p.workers.Load())
	}
}

// With every worker busy and the pool at its size, a request runs on its
// own goroutine at once: the pool never makes a request wait for another.
func TestHandlerWorkersFullRunsInline(t *testing.T) {
	p := newHandlerWorkers(2, time.Minute)
	release := make(chan struct{})
	var started sync.WaitGroup
	started.Add(5)
	var done sync.WaitGroup
	for range 5 {
		done.Add(1)
		go func() {
			defer done.Done()
			p.serve(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {
				started.Done()
				<-release
			}), httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}()
	}
	waited := make(chan struct{})
	go func() { started.Wait(); close(waited) }()
	select {
	case <-waited:
	case <-time.After(10 * time.Second):
		t.Fatal("5 blocking handlers did not all start with a pool of 2")
	}
	if n := p.workers.Load(); n > 2 {
		t.Fatalf("%d workers, the pool's size is 2", n)
	}
	close(release)
	done.Wait()
}

// Idle workers end after the idle time.
func TestHandlerWorkersIdleExit(t *testing.T) {
	p := newHandlerWorkers(4, 20*time.Millisecond)
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.serve(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { time.Sleep(10 * time.Millisecond) }),
				httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		}()
	}
	wg.Wait()
	waitNoWorkers(t, p, "still running long after the idle time")
}

// After stop, idle workers end at once, and a request that still comes is
// served and leaves no worker behind.
func TestHandlerWorkersStop(t *testing.T) {
	p := newHandlerWorkers(4, time.Hour)
	h := http.HandlerFunc(func(http.ResponseWriter, *http.Request) {})
	p.serve(h, httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	p.stop()
	p.stop() // twice is fine
	p.serve(h, httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
	waitNoWorkers(t, p, "still running after stop")
}

// A handler that calls runtime.Goexit ends the server's goroutine as it
// would without the pool, and its worker; nothing waits for ever.
func TestHandlerWorkersGoexit(t *testing.T) {
	p := newHandlerWorkers(4, time.Hour)
	ended := make(chan struct{})
	go func() {
		defer close(ended)
		p.serve(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { runtime.Goexit() }),
			httptest.NewRecorder(), httptest.NewRequest("GET", "/", nil))
		t.Error("serve returned after the handler called Goexit")
	}()
	select {
	case <-ended:
	case <-time.After(10 * time.Second):
		t.Fatal("the server's goroutine still waits for a handler that called Goexit")
	}
	waitNoWorkers(t, p, "left after Goexit")
}

// waitNoWorkers fails the test if p still has workers 10 s from now.
func waitNoWorkers(t *testing.T, p *handlerWorkers, when string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for p.workers.Load() != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("%d workers %s", p.workers.Load(), when)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
