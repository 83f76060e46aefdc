package cache

import (
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestHundredConcurrentMissesAreOneOriginRequest(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	release := make(chan struct{})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "shared")
	})
	const n = 100
	var wg sync.WaitGroup
	results := make([]resp, n)
	for i := range n {
		wg.Go(func() { results[i] = e.get("/hot") })
	}
	// Hold the origin until the other 99 are waiting for the first.
	eventually(t, "99 requests waiting", func() bool { return e.factory.Store().waiting.Load() == n-1 })
	close(release)
	wg.Wait()
	e.wantHits(1)
	miss := 0
	for _, r := range results {
		if r.status != 200 || r.body != "shared" {
			t.Fatalf("a coalesced request got %d %q", r.status, r.body)
		}
		if r.header.Get("X-Cache") == "Miss" {
			miss++
		}
	}
	if miss != 1 {
		t.Fatalf("%d responses say Miss, want exactly the one that went to the origin", miss)
	}
}

func TestOriginFailureDoesNotFanOut(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	release := make(chan struct{})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		<-release
		w.WriteHeader(http.StatusServiceUnavailable)
		io.WriteString(w, "overloaded")
	})
	const n = 20
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r := e.get("/busy")
			if r.status != 503 || r.body != "overloaded" {
				t.Errorf("got %d %q", r.status, r.body)
			}
		})
	}
	eventually(t, "waiters", func() bool { return e.factory.Store().waiting.Load() == n-1 })
	close(release)
	wg.Wait()
	e.wantHits(1)
	// The error was not stored.
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "back") })
	expect(t, "after", e.get("/busy"), 200, "Miss", "back")
}

func TestUncacheableAnswerDoesNotSerialiseLaterRequests(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`, opts: Options{LockTimeout: 30 * time.Second}})
	var block atomic.Bool
	var inFlight, maxInFlight atomic.Int64
	release := make(chan struct{})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		cur := inFlight.Add(1)
		defer inFlight.Add(-1)
		for {
			m := maxInFlight.Load()
			if cur <= m || maxInFlight.CompareAndSwap(m, cur) {
				break
			}
		}
		if block.Load() {
			<-release
		}
		w.Header().Set("Cache-Control", "private")
		io.WriteString(w, "mine")
	})
	// The first answer is uncacheable: a hit-for-miss marker is stored.
	expect(t, "first", e.get("/personal"), 200, "Miss", "mine")
	block.Store(true)
	const n = 10
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() { e.get("/personal") })
	}
	// All ten reach the origin at once instead of queueing one by one
	// behind a lock.
	eventually(t, "10 concurrent origin requests", func() bool { return inFlight.Load() == n })
	close(release)
	wg.Wait()
	if e.factory.Store().waiting.Load() != 0 {
		t.Fatal("requests were left waiting")
	}
	// The marker ends after its time; a cacheable answer then replaces it.
	e.clock.Advance(11 * time.Second)
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "public now") })
	e.get("/personal")
	expect(t, "cacheable replaces marker", e.get("/personal"), 200, "Hit", "public now")
}

func TestWaitersGiveUpAfterTheLockTimeout(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`, opts: Options{LockTimeout: 50 * time.Millisecond}})
	release := make(chan struct{})
	var first atomic.Bool
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		if first.CompareAndSwap(false, true) {
			<-release
		}
		io.WriteString(w, "x")
	})
	done := make(chan struct{})
	go func() { e.get("/slow"); close(done) }()
	eventually(t, "the first request at the origin", func() bool { return e.hits() == 1 })
	// This one waits 50 ms for the first, then goes to the origin itself.
	expect(t, "second", e.get("/slow"), 200, "Miss", "x")
	e.wantHits(2)
	close(release)
	<-done
}

func TestInvalidationModes(t *testing.T) {
	e := newEnv(t, envOpts{
		stageCfg: `{"invalidation":"require-authorization"}`,
		routes: []testRoute{
			{prefix: "/"},
			{prefix: "/ignore", routeCfg: `{"invalidation":"ignore"}`},
			{prefix: "/allow", routeCfg: `{"invalidation":"allow"}`},
		},
	})
	var v atomic.Int64
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		io.WriteString(w, strings.Repeat("v", int(v.Add(1))))
	})
	e.get("/req")
	expect(t, "anonymous max-age=0 ignored", e.get("/req", "Cache-Control", "max-age=0"), 200, "Hit", "v")
	expect(t, "authorized invalidates", e.get("/req", "Cache-Control", "max-age=0", "Authorization", "Bearer admin"), 200, "Miss", "vv")
	expect(t, "new object for everyone", e.get("/req"), 200, "Hit", "vv")

	e.get("/ignore")
	expect(t, "ignore mode", e.get("/ignore", "Cache-Control", "max-age=0", "Authorization", "Bearer admin"), 200, "Hit", "vvv")

	e.get("/allow")
	expect(t, "allow mode", e.get("/allow", "Cache-Control", "no-cache"), 200, "Miss", "vvvvv")
	expect(t, "allow mode stored", e.get("/allow"), 200, "Hit", "vvvvv")
}

func TestUnsafeMethodInvalidatesTheURL(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	e.get("/item")
	expect(t, "hit", e.get("/item"), 200, "Hit", "hello")
	r := e.do(http.MethodPut, "/item")
	if r.header.Get("X-Cache") != "" {
		t.Fatal("PUT answered by the cache")
	}
	expect(t, "after PUT", e.get("/item"), 200, "Miss", "hello")
}

func TestGETWithBodyIsNotCached(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		io.WriteString(w, "q="+string(b))
	})
	e.get("/search")
	for _, q := range []string{"a", "b"} {
		req, _ := http.NewRequest(http.MethodGet, e.edge.URL+"/search", strings.NewReader(q))
		r := e.doReq(req)
		if r.body != "q="+q || r.header.Get("X-Cache") != "" {
			t.Fatalf("GET with body %q: %q X-Cache %q", q, r.body, r.header.Get("X-Cache"))
		}
	}
	expect(t, "bodyless still cached", e.get("/search"), 200, "Hit", "q=")
}

func TestObjectsOverTheSizeLimitStream(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{"maxObjectBytes":1000}`})
	big := strings.Repeat("b", 5000)
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/chunked" {
			// No Content-Length: the limit is found while streaming.
			for range 5 {
				io.WriteString(w, big[:1000])
				w.(http.Flusher).Flush()
			}
			return
		}
		io.WriteString(w, big)
	})
	for _, p := range []string{"/big", "/chunked"} {
		expect(t, p, e.get(p), 200, "Miss", big)
		expect(t, p+" again", e.get(p), 200, "Miss", big)
	}
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "small") })
	e.clock.Advance(11 * time.Second) // past the hit-for-miss marker
	e.get("/big")
	expect(t, "small fits", e.get("/big"), 200, "Hit", "small")
}

// The leader's client disconnecting must not hand its 502 to the waiters.
func TestLeaderDisconnectIsNotSharedWithWaiters(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	release := make(chan struct{})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		io.WriteString(w, "body")
	})
	leaderGone := make(chan struct{})
	go func() {
		defer close(leaderGone)
		c := &http.Client{Timeout: 200 * time.Millisecond}
		if res, err := c.Get(e.edge.URL + "/d"); err == nil {
			res.Body.Close()
			t.Errorf("the leader's request was expected to time out, got %d", res.StatusCode)
		}
	}()
	eventually(t, "the leader at the origin", func() bool { return e.hits() == 1 })
	const n = 5
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			r := e.get("/d")
			if r.status != 200 || r.body != "body" {
				t.Errorf("waiter got %d %q", r.status, r.body)
			}
		})
	}
	eventually(t, "waiters", func() bool { return e.factory.Store().waiting.Load() == n })
	<-leaderGone
	// The waiters go to the origin themselves, where they wait for release.
	eventually(t, "waiters at the origin", func() bool { return e.factory.Store().waiting.Load() == 0 && e.hits() == 1+n })
	close(release)
	wg.Wait()
}
