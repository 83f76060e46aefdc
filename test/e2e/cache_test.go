package e2e

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// cacheBackend is the backend behind the cached API. What it answers is
// chosen by the path: /s/SCENARIO/ID. It counts the requests it receives
// per path, which is how the tests see what the edge's cache sent on.
type cacheBackend struct {
	mu       sync.Mutex
	hits     map[string]int
	cond     map[string]int // conditional requests (If-None-Match) per path
	lastHdr  map[string]http.Header
	lastQry  map[string]string
	inflight atomic.Int64
	maxIn    atomic.Int64
}

func newCacheBackend() *cacheBackend {
	return &cacheBackend{hits: map[string]int{}, cond: map[string]int{}, lastHdr: map[string]http.Header{}, lastQry: map[string]string{}}
}

func (b *cacheBackend) count(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.hits[path]
}

func (b *cacheBackend) conditional(path string) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.cond[path]
}

func (b *cacheBackend) last(path string) (http.Header, string) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.lastHdr[path], b.lastQry[path]
}

func (b *cacheBackend) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	path := r.URL.Path
	b.mu.Lock()
	b.hits[path]++
	n := b.hits[path]
	if r.Header.Get("If-None-Match") != "" {
		b.cond[path]++
	}
	b.lastHdr[path], b.lastQry[path] = r.Header.Clone(), r.URL.RawQuery
	b.mu.Unlock()

	h := w.Header()
	h.Set("Content-Type", "text/plain")
	body := fmt.Sprintf("%s #%d", path, n)
	scenario := ""
	if rest, ok := strings.CutPrefix(path, "/s/"); ok {
		scenario, _, _ = strings.Cut(rest, "/")
	}
	switch {
	case path == "/items" || path == "/tenant-items":
		h.Set("Cache-Control", "max-age=60")
		body += " query=" + r.URL.RawQuery + " tenant=" + r.Header.Get("X-Tenant")
	case strings.Contains(path, "account"):
		// An account page: the origin sends no caching headers and
		// ignores what follows "account" in the path.
		user := "anonymous"
		if c := r.Header.Get("Cookie"); c != "" {
			user = c
		}
		body = "account of " + user
	case scenario == "plain":
	case scenario == "maxage":
		h.Set("Cache-Control", "max-age=60")
	case scenario == "nostore":
		h.Set("Cache-Control", "no-store")
	case scenario == "private":
		h.Set("Cache-Control", "private, max-age=60")
	case scenario == "smaxage":
		h.Set("Cache-Control", "s-maxage=60, max-age=0")
	case scenario == "public":
		h.Set("Cache-Control", "public, max-age=60")
	case scenario == "expires":
		now := time.Now().UTC()
		h.Set("Date", now.Format(http.TimeFormat))
		h.Set("Expires", now.Add(60*time.Second).Format(http.TimeFormat))
	case scenario == "age":
		h.Set("Cache-Control", "max-age=100")
		h.Set("Age", "30")
	case scenario == "etag":
		h.Set("Cache-Control", "max-age=1")
		h.Set("ETag", `"v1"`)
		if r.Header.Get("If-None-Match") == `"v1"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
	case scenario == "swr":
		h.Set("Cache-Control", "max-age=1, stale-while-revalidate=30")
		if n > 1 {
			// A slow refresh, so that the stale hits arrive during it.
			time.Sleep(300 * time.Millisecond)
		}
	case scenario == "sie":
		h.Set("Cache-Control", "max-age=1, stale-if-error=3")
	case scenario == "slow":
		h.Set("Cache-Control", "max-age=60")
		time.Sleep(500 * time.Millisecond)
	case scenario == "vary":
		h.Set("Cache-Control", "max-age=60")
		h.Set("Vary", "Accept-Language")
		body += " lang=" + r.Header.Get("Accept-Language")
	case scenario == "err500":
		h.Set("Cache-Control", "max-age=60")
		w.WriteHeader(http.StatusInternalServerError)
		io.WriteString(w, body)
		return
	case scenario == "err400":
		h.Set("Cache-Control", "max-age=60")
		w.WriteHeader(http.StatusBadRequest)
		io.WriteString(w, body)
		return
	case scenario == "cookie":
		h.Set("Cache-Control", "max-age=60")
		h.Set("Set-Cookie", "session=secret-"+strconv.Itoa(n))
	case scenario == "tag":
		h.Set("Cache-Control", "max-age=60")
		_, id, _ := strings.Cut(strings.TrimPrefix(path, "/s/tag/"), "/")
		h.Set("Surrogate-Key", "tag-"+strings.TrimPrefix(path, "/s/tag/")+" tagged"+id)
	case scenario == "echo":
		// The response depends on headers an attacker could send: the
		// classic unkeyed-input poisoning target.
		h.Set("Cache-Control", "max-age=60")
		for _, name := range []string{"X-Forwarded-Host", "X-Host", "X-Original-Url", "X-Rewrite-Url", "X-Forwarded-Scheme", "X-Http-Method-Override"} {
			body += " " + name + "=" + r.Header.Get(name)
		}
		body += " method=" + r.Method
	case scenario == "hfm":
		// Uncacheable; from the second request on, each waits (bounded)
		// until ten are in flight at once.
		h.Set("Cache-Control", "private")
		if n > 1 {
			in := b.inflight.Add(1)
			for {
				m := b.maxIn.Load()
				if in <= m || b.maxIn.CompareAndSwap(m, in) {
					break
				}
			}
			deadline := time.Now().Add(4 * time.Second)
			for b.maxIn.Load() < 10 && time.Now().Before(deadline) {
				time.Sleep(5 * time.Millisecond)
			}
			defer b.inflight.Add(-1)
		}
	default:
		http.NotFound(w, r)
		return
	}
	io.WriteString(w, body)
}

// closableBackend is a backend whose listener the test can close.
func closableBackend(t *testing.T, h http.Handler) (addr string, stop func()) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go s.Serve(ln)
	var once sync.Once
	stop = func() {
		once.Do(func() {
			s.SetKeepAlivesEnabled(false)
			_ = s.Close()
		})
	}
	t.Cleanup(stop)
	return ln.Addr().String(), stop
}

type cacheEnv struct {
	o       *origin
	e       *edgeNode
	b       *cacheBackend
	stopSIE func()
	apiID   string
}

const cacheHost = "cache.example.test"

func newCacheEnv(t *testing.T) *cacheEnv {
	t.Helper()
	env := &cacheEnv{b: newCacheBackend()}
	addr := backend(t, env.b)
	sieAddr, stop := closableBackend(t, env.b)
	env.stopSIE = stop
	env.o = startOrigin(t, "")
	cfg := strings.NewReplacer("SIEBACKEND", sieAddr, "BACKEND", addr).Replace(readFile(t, "testdata/cache/portico.yaml.tmpl"))
	if code, body := env.o.apply(t, cfg, map[string]string{"api.yaml": readFile(t, "testdata/cache/api.yaml")}); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	var api struct{ ID string }
	env.o.mustAdmin(t, "GET", "/v1/apis/cached", nil, &api)
	env.apiID = api.ID
	env.e = startEdge(t, env.o, "", "--cache-bytes", "64MiB")
	eventually(t, 10*time.Second, func() error {
		if r := env.e.do(t, "GET", cacheHost, "/prod/s/plain/ready", nil, nil); r.StatusCode != 200 {
			return fmt.Errorf("edge not serving yet: %d %s", r.StatusCode, r.Body)
		}
		return nil
	})
	return env
}

// get sends a GET to the cached API's host.
func (c *cacheEnv) get(t *testing.T, path string, hdr ...string) *response {
	t.Helper()
	h := http.Header{}
	for i := 0; i+1 < len(hdr); i += 2 {
		h.Add(hdr[i], hdr[i+1])
	}
	return c.e.do(t, "GET", cacheHost, path, nil, h)
}

// fetch is get for goroutines: it reports errors instead of failing.
func (c *cacheEnv) fetch(path string, hdr ...string) (xcache string, status int, body string, err error) {
	req, err := http.NewRequest("GET", c.e.url(path), nil)
	if err != nil {
		return "", 0, "", err
	}
	req.Host = cacheHost
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	res, err := c.e.client.Do(req)
	if err != nil {
		return "", 0, "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	return res.Header.Get("X-Cache"), res.StatusCode, string(b), err
}

// want checks a response's status, X-Cache and body ("*" for any body).
func want(t *testing.T, what string, r *response, status int, xcache, body string) {
	t.Helper()
	if r.StatusCode != status || r.Header.Get("X-Cache") != xcache || (body != "*" && string(r.Body) != body) {
		t.Fatalf("%s: %d X-Cache=%q body %q; want %d X-Cache=%q body %q", what, r.StatusCode, r.Header.Get("X-Cache"), r.Body, status, xcache, body)
	}
}

func (c *cacheEnv) wantHits(t *testing.T, path string, n int) {
	t.Helper()
	if got := c.b.count(path); got != n {
		t.Fatalf("the backend received %d requests for %s, want %d", got, path, n)
	}
}

// purge posts a purge to the admin API and returns its sequence number.
func (c *cacheEnv) purge(t *testing.T, in map[string]string) uint64 {
	t.Helper()
	var out struct{ Seq uint64 }
	code, body := c.o.admin(t, "POST", "/v1/cache/purge", in, &out)
	if code != http.StatusAccepted || out.Seq == 0 {
		t.Fatalf("purge %v: %d %s", in, code, body)
	}
	return out.Seq
}

// waitMiss polls path until the edge answers it from the backend again
// (the purge arrived), within 5 s. Until then every probe is a hit and
// reaches nothing.
func (c *cacheEnv) waitMiss(t *testing.T, path string) {
	t.Helper()
	eventually(t, 5*time.Second, func() error {
		if x := c.get(t, path).Header.Get("X-Cache"); x != "Miss" {
			return fmt.Errorf("%s still answered with X-Cache %q", path, x)
		}
		return nil
	})
}

func TestEdgeCache(t *testing.T) {
	c := newCacheEnv(t)

	t.Run("hits and misses", func(t *testing.T) {
		want(t, "first", c.get(t, "/prod/s/maxage/a"), 200, "Miss", "/s/maxage/a #1")
		r := c.get(t, "/prod/s/maxage/a")
		want(t, "second", r, 200, "Hit", "/s/maxage/a #1")
		if r.Header.Get("Age") == "" || r.Header.Get("X-Request-Id") == "" {
			t.Errorf("a hit lacks Age or its own request ID: %v", r.Header)
		}
		if id2 := c.get(t, "/prod/s/maxage/a").Header.Get("X-Request-Id"); id2 == r.Header.Get("X-Request-Id") {
			t.Error("two hits share a request ID: the stored X-Request-Id was replayed")
		}
		// HEAD is answered from GET's object.
		h := c.e.do(t, "HEAD", cacheHost, "/prod/s/maxage/a", nil, nil)
		if h.StatusCode != 200 || h.Header.Get("X-Cache") != "Hit" || len(h.Body) != 0 {
			t.Errorf("HEAD: %d %q %q", h.StatusCode, h.Header.Get("X-Cache"), h.Body)
		}
		c.wantHits(t, "/s/maxage/a", 1)
		// The stage's ttl applies to responses without freshness of their own.
		want(t, "plain", c.get(t, "/prod/s/plain/a"), 200, "Miss", "/s/plain/a #1")
		want(t, "plain", c.get(t, "/prod/s/plain/a"), 200, "Hit", "/s/plain/a #1")
		// Stages have their own objects.
		want(t, "other stage", c.get(t, "/test/s/maxage/a"), 200, "Miss", "/s/maxage/a #2")
	})

	t.Run("cache key parameters from the OpenAPI document", func(t *testing.T) {
		want(t, "page 1", c.get(t, "/prod/items?page=1"), 200, "Miss", "/items #1 query=page=1 tenant=")
		// An unkeyed parameter neither makes another object nor reaches the backend.
		want(t, "page 1 with utm", c.get(t, "/prod/items?utm=evil&page=1"), 200, "Hit", "/items #1 query=page=1 tenant=")
		want(t, "page 2", c.get(t, "/prod/items?page=2&utm=evil"), 200, "Miss", "/items #2 query=page=2 tenant=")
		if _, q := c.b.last("/items"); q != "page=2" {
			t.Errorf("the backend saw query %q; unkeyed parameters must not reach it", q)
		}
		// x-amazon-apigateway-integration cacheKeyParameters: a header.
		want(t, "tenant a", c.get(t, "/prod/tenant-items?page=1", "X-Tenant", "a"), 200, "Miss", "/tenant-items #1 query=page=1 tenant=a")
		want(t, "tenant b", c.get(t, "/prod/tenant-items?page=1", "X-Tenant", "b"), 200, "Miss", "/tenant-items #2 query=page=1 tenant=b")
		want(t, "tenant a again", c.get(t, "/prod/tenant-items?page=1", "X-Tenant", "a"), 200, "Hit", "/tenant-items #1 query=page=1 tenant=a")
	})

	t.Run("vary", func(t *testing.T) {
		want(t, "en", c.get(t, "/prod/s/vary/v", "Accept-Language", "en"), 200, "Miss", "/s/vary/v #1 lang=en")
		want(t, "fr", c.get(t, "/prod/s/vary/v", "Accept-Language", "fr"), 200, "Miss", "/s/vary/v #2 lang=fr")
		want(t, "en again", c.get(t, "/prod/s/vary/v", "Accept-Language", "en"), 200, "Hit", "/s/vary/v #1 lang=en")
		want(t, "fr again", c.get(t, "/prod/s/vary/v", "Accept-Language", "fr"), 200, "Hit", "/s/vary/v #2 lang=fr")
	})

	t.Run("cache-control rules", func(t *testing.T) {
		for _, sc := range []string{"nostore", "private", "cookie"} {
			p := "/prod/s/" + sc + "/r"
			want(t, sc, c.get(t, p), 200, "Miss", "*")
			r := c.get(t, p)
			want(t, sc+" again", r, 200, "Miss", "*")
			if sc == "cookie" && r.Header.Get("Set-Cookie") != "session=secret-2" {
				t.Errorf("each caller gets its own cookie: %q", r.Header.Get("Set-Cookie"))
			}
		}
		for _, sc := range []string{"smaxage", "expires", "public"} {
			p := "/prod/s/" + sc + "/r"
			want(t, sc, c.get(t, p), 200, "Miss", "/s/"+sc+"/r #1")
			want(t, sc+" again", c.get(t, p), 200, "Hit", "/s/"+sc+"/r #1")
		}
		c.get(t, "/prod/s/age/r")
		r := c.get(t, "/prod/s/age/r")
		if age, _ := strconv.Atoi(r.Header.Get("Age")); r.Header.Get("X-Cache") != "Hit" || age < 30 {
			t.Errorf("the origin's Age counts: %q, Age %q", r.Header.Get("X-Cache"), r.Header.Get("Age"))
		}
	})

	t.Run("per-route overrides", func(t *testing.T) {
		c.get(t, "/prod/nocache/maxage/o")
		r := c.get(t, "/prod/nocache/maxage/o")
		if r.Header.Get("X-Cache") != "" || c.b.count("/s/maxage/o") != 2 {
			t.Errorf("a route with enabled=false was cached: %q, %d backend hits", r.Header.Get("X-Cache"), c.b.count("/s/maxage/o"))
		}
		want(t, "short", c.get(t, "/prod/short/plain/o"), 200, "Miss", "/s/plain/o #1")
		want(t, "short", c.get(t, "/prod/short/plain/o"), 200, "Hit", "/s/plain/o #1")
		want(t, "stage ttl", c.get(t, "/prod/s/plain/o2"), 200, "Miss", "*")
		time.Sleep(1100 * time.Millisecond)
		want(t, "short after 1s", c.get(t, "/prod/short/plain/o"), 200, "Miss", "/s/plain/o #2")
		want(t, "stage ttl after 1s", c.get(t, "/prod/s/plain/o2"), 200, "Hit", "*")
	})

	t.Run("per-request invalidation", func(t *testing.T) {
		c.get(t, "/prod/s/maxage/i")
		// The stage lets only authenticated callers invalidate; this one
		// is anonymous, so it gets the stored answer.
		want(t, "anonymous max-age=0", c.get(t, "/prod/s/maxage/i", "Cache-Control", "max-age=0"), 200, "Hit", "/s/maxage/i #1")
		// The /inv route allows anyone.
		c.get(t, "/prod/inv/maxage/i2")
		want(t, "allowed max-age=0", c.get(t, "/prod/inv/maxage/i2", "Cache-Control", "max-age=0"), 200, "Miss", "/s/maxage/i2 #2")
		want(t, "replaced", c.get(t, "/prod/inv/maxage/i2"), 200, "Hit", "/s/maxage/i2 #2")
		// An unsafe method removes the stored response for its URL.
		c.get(t, "/prod/s/maxage/u")
		c.e.do(t, "POST", cacheHost, "/prod/s/maxage/u", strings.NewReader("x"), nil)
		want(t, "after POST", c.get(t, "/prod/s/maxage/u"), 200, "Miss", "/s/maxage/u #3")
	})

	t.Run("conditional requests and revalidation", func(t *testing.T) {
		want(t, "fill", c.get(t, "/prod/s/etag/c"), 200, "Miss", "/s/etag/c #1")
		r := c.get(t, "/prod/s/etag/c", "If-None-Match", `"v1"`)
		if r.StatusCode != 304 || r.Header.Get("X-Cache") != "Hit" || len(r.Body) != 0 {
			t.Fatalf("If-None-Match on a stored response: %d %q", r.StatusCode, r.Header.Get("X-Cache"))
		}
		want(t, "other etag", c.get(t, "/prod/s/etag/c", "If-None-Match", `"v0"`), 200, "Hit", "/s/etag/c #1")
		c.wantHits(t, "/s/etag/c", 1)
		time.Sleep(1100 * time.Millisecond) // max-age=1
		want(t, "stale: revalidated", c.get(t, "/prod/s/etag/c"), 200, "Revalidated", "/s/etag/c #1")
		if c.b.conditional("/s/etag/c") != 1 {
			t.Errorf("the backend saw %d conditional requests, want 1", c.b.conditional("/s/etag/c"))
		}
		want(t, "refreshed by the 304", c.get(t, "/prod/s/etag/c"), 200, "Hit", "/s/etag/c #1")
	})

	t.Run("authenticated requests", func(t *testing.T) {
		want(t, "anonymous fill", c.get(t, "/prod/s/plain/auth"), 200, "Miss", "/s/plain/auth #1")
		for _, cred := range [][]string{{"Authorization", "Bearer alice"}, {"Cookie", "session=alice"}, {"X-Api-Key", "alice-key"}} {
			want(t, cred[0], c.get(t, "/prod/s/plain/auth", cred...), 200, "Miss", "*")
		}
		// Their answers were not stored for everyone.
		want(t, "anonymous again", c.get(t, "/prod/s/plain/auth"), 200, "Hit", "/s/plain/auth #1")
		// A response the origin marks public is shared with them.
		c.get(t, "/prod/s/public/auth")
		want(t, "public", c.get(t, "/prod/s/public/auth", "Authorization", "Bearer bob"), 200, "Hit", "/s/public/auth #1")
		// A route keyed on Authorization keeps one object per credential.
		want(t, "keyed a", c.get(t, "/prod/keyed/plain/k", "Authorization", "Bearer a"), 200, "Miss", "/s/plain/k #1")
		want(t, "keyed b", c.get(t, "/prod/keyed/plain/k", "Authorization", "Bearer b"), 200, "Miss", "/s/plain/k #2")
		want(t, "keyed a again", c.get(t, "/prod/keyed/plain/k", "Authorization", "Bearer a"), 200, "Hit", "/s/plain/k #1")
	})

	t.Run("stale-while-revalidate: one background refresh", func(t *testing.T) {
		want(t, "fill", c.get(t, "/prod/s/swr/w"), 200, "Miss", "/s/swr/w #1")
		time.Sleep(1100 * time.Millisecond)
		// The first stale hit is answered at once and starts the refresh;
		// the hits during the refresh are answered stale too, and start
		// no other (the refresh takes 300 ms at the backend).
		want(t, "stale", c.get(t, "/prod/s/swr/w"), 200, "Stale", "/s/swr/w #1")
		var wg sync.WaitGroup
		results := make(chan string, 20)
		for range 20 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x, status, body, err := c.fetch("/prod/s/swr/w")
				results <- fmt.Sprintf("%s %d %s %v", x, status, body, err)
			}()
		}
		wg.Wait()
		close(results)
		for r := range results {
			if r != "Stale 200 /s/swr/w #1 <nil>" && r != "Hit 200 /s/swr/w #2 <nil>" {
				t.Errorf("a request within the stale-while-revalidate window got %q", r)
			}
		}
		eventually(t, 5*time.Second, func() error {
			r := c.get(t, "/prod/s/swr/w")
			switch got := r.Header.Get("X-Cache") + " " + string(r.Body); got {
			case "Hit /s/swr/w #2":
				return nil
			case "Stale /s/swr/w #1":
				return errors.New("the refresh has not finished")
			default:
				t.Fatalf("during the refresh: %q", got)
			}
			return nil
		})
		c.wantHits(t, "/s/swr/w", 2)
	})

	t.Run("100 concurrent misses are one backend request", func(t *testing.T) {
		var wg sync.WaitGroup
		var hits, misses, other atomic.Int64
		for range 100 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				x, status, body, err := c.fetch("/prod/s/slow/c100")
				switch {
				case err != nil || status != 200 || body != "/s/slow/c100 #1":
					other.Add(1)
					t.Errorf("%v %d %q", err, status, body)
				case x == "Hit":
					hits.Add(1)
				case x == "Miss":
					misses.Add(1)
				}
			}()
		}
		wg.Wait()
		c.wantHits(t, "/s/slow/c100", 1)
		if misses.Load() != 1 || hits.Load() != 99 {
			t.Errorf("%d misses, %d hits, %d other; want 1 miss and 99 hits", misses.Load(), hits.Load(), other.Load())
		}
	})

	t.Run("hit-for-miss: uncacheable answers do not queue requests", func(t *testing.T) {
		want(t, "first", c.get(t, "/prod/s/hfm/h"), 200, "Miss", "/s/hfm/h #1")
		var wg sync.WaitGroup
		for range 10 {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if x, status, _, err := c.fetch("/prod/s/hfm/h"); err != nil || status != 200 || x != "Miss" {
					t.Errorf("%v %d %q", err, status, x)
				}
			}()
		}
		wg.Wait()
		if m := c.b.maxIn.Load(); m != 10 {
			t.Errorf("at most %d requests for an uncacheable URL reached the backend at once; want all 10 (they queued behind each other)", m)
		}
	})

	t.Run("stale-if-error with the backend stopped", func(t *testing.T) {
		// The edge starts the object's clock when the backend's answer
		// arrives, after this instant and before the client has read it:
		// the window is checked against the time before the fill request.
		beforeFill := time.Now()
		want(t, "fill", c.get(t, "/prod/sie/sie/e"), 200, "Miss", "/s/sie/e #1")
		c.stopSIE()
		time.Sleep(1100 * time.Millisecond) // max-age=1
		want(t, "backend down, within stale-if-error=3", c.get(t, "/prod/sie/sie/e"), 200, "Stale", "/s/sie/e #1")
		// After max-age plus the window the error goes through.
		eventually(t, 8*time.Second, func() error {
			r := c.get(t, "/prod/sie/sie/e")
			switch {
			case r.StatusCode == 502 || r.StatusCode == 504:
				if since := time.Since(beforeFill); since < 4*time.Second {
					t.Errorf("the error went through %v after the fill request, before max-age + stale-if-error (4s)", since)
				}
				return nil
			case r.StatusCode == 200 && r.Header.Get("X-Cache") == "Stale":
				return errors.New("still stale")
			}
			t.Fatalf("unexpected answer %d %q %s", r.StatusCode, r.Header.Get("X-Cache"), r.Body)
			return nil
		})
	})

	t.Run("purges through the admin API", func(t *testing.T) {
		for _, p := range []string{"/prod/s/maxage/pu", "/prod/s/maxage/px/a", "/prod/s/maxage/px/b", "/prod/s/maxage/py", "/prod/s/tag/1", "/prod/s/tag/2", "/test/s/maxage/st", "/prod/s/maxage/st"} {
			c.get(t, p)
			want(t, p, c.get(t, p), 200, "Hit", "*")
		}
		c.purge(t, map[string]string{"url": "https://" + cacheHost + "/prod/s/maxage/pu"})
		c.waitMiss(t, "/prod/s/maxage/pu")

		c.purge(t, map[string]string{"host": cacheHost, "prefix": "/prod/s/maxage/px/"})
		c.waitMiss(t, "/prod/s/maxage/px/a")
		want(t, "prefix b", c.get(t, "/prod/s/maxage/px/b"), 200, "Miss", "*")
		want(t, "outside the prefix", c.get(t, "/prod/s/maxage/py"), 200, "Hit", "*")

		c.purge(t, map[string]string{"tag": "tag-1"})
		c.waitMiss(t, "/prod/s/tag/1")
		want(t, "other tag", c.get(t, "/prod/s/tag/2"), 200, "Hit", "*")

		seq := c.purge(t, map[string]string{"api": "cached", "stage": "test"})
		c.waitMiss(t, "/test/s/maxage/st")
		want(t, "other stage", c.get(t, "/prod/s/maxage/st"), 200, "Hit", "*")

		var list struct {
			Purges []struct {
				Seq   uint64
				Kind  string
				APIID string `json:"apiId"`
			}
		}
		c.o.mustAdmin(t, "GET", "/v1/cache/purges", nil, &list)
		if len(list.Purges) != 4 || list.Purges[0].Seq != seq || list.Purges[0].APIID != c.apiID {
			t.Errorf("purge list: %+v", list)
		}
		c.e.waitFor(regexp.MustCompile(`cache purges applied.*last_seq=`+strconv.FormatUint(seq, 10)), 5*time.Second)
	})

	t.Run("attacks (security checklist H)", func(t *testing.T) {
		// 51: unkeyed headers never reach the backend on a cacheable
		// request, so they cannot poison what the next caller gets.
		r := c.get(t, "/prod/s/echo/p", "X-Forwarded-Host", "evil.test", "X-Host", "evil.test", "X-Original-URL", "/admin",
			"X-Rewrite-URL", "/admin", "X-Forwarded-Scheme", "nothttps", "X-HTTP-Method-Override", "DELETE")
		clean := "/s/echo/p #1 X-Forwarded-Host=" + cacheHost + " X-Host= X-Original-Url= X-Rewrite-Url= X-Forwarded-Scheme= X-Http-Method-Override= method=GET"
		want(t, "attacker", r, 200, "Miss", clean)
		want(t, "victim", c.get(t, "/prod/s/echo/p"), 200, "Hit", clean)

		// 52: error responses are not stored, whatever their Cache-Control.
		for _, sc := range []string{"err500", "err400"} {
			p := "/prod/s/" + sc + "/x"
			c.get(t, p)
			r := c.get(t, p)
			if r.StatusCode < 400 || r.Header.Get("X-Cache") == "Hit" || c.b.count("/s/"+sc+"/x") != 2 {
				t.Errorf("%s: %d %q after %d backend requests", sc, r.StatusCode, r.Header.Get("X-Cache"), c.b.count("/s/"+sc+"/x"))
			}
		}
		// An oversized header is refused by the edge, and the refusal is
		// nobody else's answer.
		big := c.get(t, "/prod/s/maxage/big", "X-Big", strings.Repeat("a", 40<<10))
		if big.StatusCode != 431 {
			t.Errorf("oversized header: %d", big.StatusCode)
		}
		want(t, "after the oversized header", c.get(t, "/prod/s/maxage/big"), 200, "Miss", "/s/maxage/big #1")

		// 53: web cache deception. The victim's account page, requested
		// with a static-looking suffix, is not stored; the attacker gets
		// an anonymous page.
		for _, p := range []string{"/prod/s/account/x.css", "/prod/s/account%23x.css", "/prod/s/account/static/x.js"} {
			v := c.get(t, p, "Cookie", "user=victim")
			if v.StatusCode == 200 && string(v.Body) != "account of user=victim" {
				t.Errorf("%s: victim got %q", p, v.Body)
			}
			a := c.get(t, p)
			if strings.Contains(string(a.Body), "victim") {
				t.Errorf("%s: the attacker got the victim's page: %d %q %s", p, a.StatusCode, a.Header.Get("X-Cache"), a.Body)
			}
		}
		for _, p := range []string{"/prod/s/account%2Fx.css", "/prod/s/account;x.css", "/prod/s/account/..%2fstatic/x.css"} {
			v := c.get(t, p, "Cookie", "user=victim")
			a := c.get(t, p)
			if v.StatusCode != 400 || a.StatusCode != 400 || strings.Contains(string(a.Body), "victim") {
				t.Errorf("%s: victim %d, attacker %d %s; the edge refuses such paths", p, v.StatusCode, a.StatusCode, a.Body)
			}
		}

		// 54: GET with a body is neither answered from the store nor stored.
		c.get(t, "/prod/s/maxage/gb")
		gb := c.e.do(t, "GET", cacheHost, "/prod/s/maxage/gb", strings.NewReader("q=1"), nil)
		if gb.StatusCode != 200 || gb.Header.Get("X-Cache") != "" || c.b.count("/s/maxage/gb") != 2 {
			t.Errorf("GET with a body: %d X-Cache %q, %d backend requests", gb.StatusCode, gb.Header.Get("X-Cache"), c.b.count("/s/maxage/gb"))
		}
		want(t, "GET without a body", c.get(t, "/prod/s/maxage/gb"), 200, "Hit", "/s/maxage/gb #1")
	})
}

// An edge started without a cache refuses a configuration with a cache
// policy, saying why, instead of serving it uncached; so does an origin.
func TestCacheDisabled(t *testing.T) {
	addr := backend(t, newCacheBackend())
	cfg := strings.NewReplacer("SIEBACKEND", addr, "BACKEND", addr).Replace(readFile(t, "testdata/cache/portico.yaml.tmpl"))
	docs := map[string]string{"api.yaml": readFile(t, "testdata/cache/api.yaml")}

	off := startOrigin(t, "", "--cache-bytes", "0")
	code, body := off.apply(t, cfg, docs)
	if code != 400 || !strings.Contains(body, "--cache-bytes 0") {
		t.Errorf("an origin without a cache accepted a cache policy: %d %s", code, body)
	}

	o := startOrigin(t, "")
	if code, body := o.apply(t, cfg, docs); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	e := startEdge(t, o, "", "--cache-bytes", "0")
	e.waitFor(regexp.MustCompile(`--cache-bytes 0`), 10*time.Second)
	r := e.do(t, "GET", cacheHost, "/prod/s/maxage/x", nil, nil)
	if r.StatusCode != 503 {
		t.Errorf("an edge that refused its configuration served %d %s", r.StatusCode, r.Body)
	}
}
