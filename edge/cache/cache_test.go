package cache

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

func TestConfigIsStrictAndChecked(t *testing.T) {
	f, err := NewFactory(Options{MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	bad := map[string]string{
		`{"ttl":"300s","tll":"1s"}`:          "unknown field",
		`{"invalidation":"sometimes"}`:       "not one of",
		`{"methods":["GET","POST"]}`:         "only GET and HEAD",
		`{"methods":["HEAD"]}`:               "needs GET",
		`{"ttl":"-1s"}`:                      "out of range",
		`{"maxObjectBytes":0}`:               "must be positive",
		`{"maxObjectBytes":1048576}`:         "quarter of its memory budget",
		`{"staleIfError":"forever"}`:         "config",
		`{"enabled":"yes"}`:                  "config",
		`{"xCacheHeader":true,"extra":true}`: "unknown field",
	}
	for cfg, want := range bad {
		_, err := f.New(context.Background(), config.PolicySpec{Type: Type, Config: json.RawMessage(cfg)}, plugins.Scope{APIID: "a", Stage: "s"})
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Errorf("config %s: error %v, want one mentioning %q", cfg, err, want)
		}
	}
	good := `{"enabled":true,"ttl":"300s","maxObjectBytes":1024,"methods":["GET","HEAD"],"staleIfError":"60s","invalidation":"allow","xCacheHeader":false}`
	if _, err := f.New(context.Background(), config.PolicySpec{Type: Type, Config: json.RawMessage(good)}, plugins.Scope{}); err != nil {
		t.Fatal(err)
	}
}

func TestMissThenHitThroughRealServers(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{"ttl":"60s"}`})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("Surrogate-Key", "pets pet-1")
		w.Header().Set("ETag", `"v1"`)
		io.WriteString(w, "pet one")
	})
	r := e.get("/pets/1")
	expect(t, "first", r, 200, "Miss", "pet one")
	if r.header.Get("Surrogate-Key") != "" {
		t.Fatal("Surrogate-Key reached the client")
	}
	e.clock.Advance(5 * time.Second)
	r = e.get("/pets/1")
	expect(t, "second", r, 200, "Hit", "pet one")
	if r.header.Get("Age") != "5" || r.header.Get("Surrogate-Key") != "" || r.header.Get("Content-Type") != "text/plain" || r.header.Get("Etag") != `"v1"` {
		t.Fatalf("hit headers: %v", r.header)
	}
	r = e.do(http.MethodHead, "/pets/1")
	expect(t, "head", r, 200, "Hit", "")
	if r.header.Get("Content-Length") != "7" {
		t.Fatalf("HEAD Content-Length %q", r.header.Get("Content-Length"))
	}
	e.wantHits(1)
	// A HEAD miss fills GET's object.
	r = e.do(http.MethodHead, "/pets/2")
	expect(t, "head miss", r, 200, "Miss", "")
	if e.origin.lastRequest().Method != http.MethodGet {
		t.Fatalf("HEAD miss went to the origin as %s", e.origin.lastRequest().Method)
	}
	expect(t, "get after head", e.get("/pets/2"), 200, "Hit", "pet one")
	e.wantHits(2)
	// Expired after the TTL.
	e.clock.Advance(61 * time.Second)
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "pet one v2") })
	expect(t, "expired", e.get("/pets/1"), 200, "Miss", "pet one v2")
}

func TestRouteOverridesStage(t *testing.T) {
	e := newEnv(t, envOpts{
		stageCfg: `{"ttl":"60s","xCacheHeader":true}`,
		routes: []testRoute{
			{prefix: "/"},
			{prefix: "/off", routeCfg: `{"enabled":false}`},
			{prefix: "/short", routeCfg: `{"ttl":"5s"}`},
			{prefix: "/quiet", routeCfg: `{"xCacheHeader":false}`},
		},
	})
	e.get("/off")
	r := e.get("/off")
	if r.header.Get("X-Cache") != "" {
		t.Fatalf("disabled route answered with X-Cache %q", r.header.Get("X-Cache"))
	}
	e.wantHits(2)
	e.get("/short")
	e.clock.Advance(6 * time.Second)
	expect(t, "route ttl", e.get("/short"), 200, "Miss", "hello")
	e.get("/quiet")
	r = e.get("/quiet")
	if r.header.Get("X-Cache") != "" || e.hits() != 5 {
		t.Fatalf("quiet route: X-Cache %q, origin hits %d", r.header.Get("X-Cache"), e.hits())
	}
	// The stage TTL still applies where the route says nothing.
	e.get("/other")
	e.clock.Advance(30 * time.Second)
	expect(t, "stage ttl", e.get("/other"), 200, "Hit", "hello")
}

func TestKeyParametersAndUnkeyedQuery(t *testing.T) {
	e := newEnv(t, envOpts{
		stageCfg: `{}`,
		routes:   []testRoute{{prefix: "/", keys: []string{"method.request.querystring.page", "method.request.header.Accept-Language"}}},
	})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "q=%s lang=%s", r.URL.RawQuery, r.Header.Get("Accept-Language"))
	})
	expect(t, "page 1", e.get("/list?page=1&utm=x"), 200, "Miss", "q=page=1 lang=")
	expect(t, "page 1 other unkeyed", e.get("/list?utm=y&page=1"), 200, "Hit", "q=page=1 lang=")
	expect(t, "page 2", e.get("/list?page=2"), 200, "Miss", "q=page=2 lang=")
	expect(t, "no page", e.get("/list?utm=z"), 200, "Miss", "q= lang=")
	expect(t, "lang", e.get("/list?page=1", "Accept-Language", "fr"), 200, "Miss", "q=page=1 lang=fr")
	expect(t, "lang hit", e.get("/list?page=1", "Accept-Language", "fr"), 200, "Hit", "q=page=1 lang=fr")
	expect(t, "host is keyed", e.get("/list?page=1", "Host", "other.example"), 200, "Miss", "q=page=1 lang=")
	// A ';' could be read as a separator by the origin: not cached.
	r := e.get("/list?page=1;page=3")
	if r.header.Get("X-Cache") != "" {
		t.Fatalf("';' query was considered by the cache: %v", r.header)
	}
}

func TestStagesNeverShareObjects(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`, routes: []testRoute{{prefix: "/", stage: "prod"}, {prefix: "/", stage: "beta"}}})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "prod") })
	expect(t, "prod", e.get("/x"), 200, "Miss", "prod")
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "beta") })
	expect(t, "beta", e.get("/x", "X-Test-Stage", "beta"), 200, "Miss", "beta")
	expect(t, "prod again", e.get("/x"), 200, "Hit", "prod")
	if n := e.factory.Store().PurgeStage("api1", "beta"); n != 1 {
		t.Fatalf("PurgeStage beta removed %d objects, want 1", n)
	}
	expect(t, "prod survives", e.get("/x"), 200, "Hit", "prod")
}

func TestVary(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/star") {
			w.Header().Set("Vary", "*")
		} else {
			w.Header().Set("Vary", "Accept-Language")
		}
		io.WriteString(w, "lang="+r.Header.Get("Accept-Language"))
	})
	expect(t, "en", e.get("/v", "Accept-Language", "en"), 200, "Miss", "lang=en")
	expect(t, "de", e.get("/v", "Accept-Language", "de"), 200, "Miss", "lang=de")
	expect(t, "en hit", e.get("/v", "Accept-Language", "en"), 200, "Hit", "lang=en")
	expect(t, "de hit", e.get("/v", "Accept-Language", "de"), 200, "Hit", "lang=de")
	expect(t, "none", e.get("/v"), 200, "Miss", "lang=")
	expect(t, "star", e.get("/star"), 200, "Miss", "lang=")
	expect(t, "star again", e.get("/star"), 200, "Miss", "lang=")
}

func TestOriginCacheControl(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{"ttl":"100s"}`})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch r.URL.Path {
		case "/no-store":
			h.Set("Cache-Control", "no-store")
		case "/private":
			h.Set("Cache-Control", "private, max-age=100")
		case "/max-age":
			h.Set("Cache-Control", "max-age=10")
		case "/s-maxage":
			h.Set("Cache-Control", "max-age=1000, s-maxage=10")
		case "/expires":
			h.Set("Date", "Mon, 01 Jan 2024 00:00:00 GMT")
			h.Set("Expires", "Mon, 01 Jan 2024 00:00:10 GMT")
		case "/expires-invalid":
			h.Set("Expires", "0")
		case "/aged":
			h.Set("Cache-Control", "max-age=10")
			h.Set("Age", "8")
		case "/cookie":
			h.Set("Set-Cookie", "session=abc")
		case "/no-cache":
			h.Set("Cache-Control", "no-cache")
			h.Set("ETag", `"nc"`)
			if r.Header.Get("If-None-Match") == `"nc"` {
				w.WriteHeader(http.StatusNotModified)
				return
			}
		}
		io.WriteString(w, "body")
	})
	for _, p := range []string{"/no-store", "/private", "/cookie", "/expires-invalid"} {
		e.get(p)
		r := e.get(p)
		expect(t, p, r, 200, "Miss", "body")
		if r.header.Get("Set-Cookie") != "" && p != "/cookie" {
			t.Fatal("unexpected cookie")
		}
	}
	for _, p := range []string{"/max-age", "/s-maxage", "/expires"} {
		e.get(p)
		e.clock.Advance(9 * time.Second)
		expect(t, p+" fresh", e.get(p), 200, "Hit", "body")
		e.clock.Advance(2 * time.Second)
		expect(t, p+" expired", e.get(p), 200, "Miss", "body")
	}
	e.get("/aged")
	e.clock.Advance(1 * time.Second)
	r := e.get("/aged")
	expect(t, "aged fresh", r, 200, "Hit", "body")
	if r.header.Get("Age") != "9" {
		t.Fatalf("Age %q, want 9 (8 from the origin + 1 in the cache)", r.header.Get("Age"))
	}
	e.clock.Advance(2 * time.Second)
	expect(t, "aged expired", e.get("/aged"), 200, "Miss", "body")

	e.get("/no-cache")
	expect(t, "no-cache revalidates", e.get("/no-cache"), 200, "Revalidated", "body")
	if e.origin.lastRequest().Header.Get("If-None-Match") != `"nc"` {
		t.Fatal("no-cache revalidation sent no If-None-Match")
	}
}

func TestOnlyDefaultCacheableStatusesAreStored(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{"ttl":"100s"}`})
	status := 200
	explicit := false
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		if explicit {
			w.Header().Set("Cache-Control", "max-age=100")
		}
		w.WriteHeader(status)
		io.WriteString(w, "x")
	})
	for i, s := range []int{400, 401, 403, 429, 431, 500, 502, 503, 504, 206, 302, 307} {
		status, explicit = s, true
		p := fmt.Sprintf("/never/%d", i)
		e.get(p)
		r := e.get(p)
		if r.status != s || r.header.Get("X-Cache") != "Miss" {
			t.Fatalf("status %d with max-age: second answer %d X-Cache %q; must never be stored", s, r.status, r.header.Get("X-Cache"))
		}
	}
	// Negative cacheable statuses need the origin's explicit freshness.
	status, explicit = 404, false
	e.get("/404-implicit")
	expect(t, "404 without freshness", e.get("/404-implicit"), 404, "Miss", "x")
	status, explicit = 404, true
	e.get("/404-explicit")
	expect(t, "404 with max-age", e.get("/404-explicit"), 404, "Hit", "x")
	for _, s := range []int{200, 203, 204, 300, 301, 308} {
		status, explicit = s, false
		p := fmt.Sprintf("/default/%d", s)
		e.get(p)
		r := e.get(p)
		if r.status != s || r.header.Get("X-Cache") != "Hit" {
			t.Fatalf("status %d with the default TTL: %d X-Cache %q, want a hit", s, r.status, r.header.Get("X-Cache"))
		}
	}
}

func TestCredentials(t *testing.T) {
	e := newEnv(t, envOpts{
		stageCfg: `{}`,
		routes: []testRoute{
			{prefix: "/"},
			{prefix: "/per-user", keys: []string{"method.request.header.Authorization"}},
		},
	})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasPrefix(r.URL.Path, "/public") {
			w.Header().Set("Cache-Control", "public, max-age=60")
		}
		io.WriteString(w, "for "+r.Header.Get("Authorization")+r.Header.Get("Cookie")+r.Header.Get("X-Api-Key"))
	})
	// Personal answers are not stored, and are not served to others.
	for _, cred := range [][]string{{"Authorization", "Bearer alice"}, {"Cookie", "s=alice"}, {"X-Api-Key", "alice"}} {
		p := "/me-" + cred[0]
		expect(t, p, e.get(p, cred...), 200, "Miss", "for "+strings.TrimPrefix(cred[1], ""))
		expect(t, p+" anonymous", e.get(p), 200, "Miss", "for ")
		// An object stored for anonymous callers is not served to a
		// caller with credentials...
		expect(t, p+" again", e.get(p, cred...), 200, "Miss", "*")
	}
	// ... unless the origin marked it public.
	expect(t, "public", e.get("/public", "Authorization", "Bearer alice"), 200, "Miss", "for Bearer alice")
	expect(t, "public shared", e.get("/public", "Authorization", "Bearer bob"), 200, "Hit", "for Bearer alice")
	// A route keyed on the credential caches per credential.
	expect(t, "alice", e.get("/per-user", "Authorization", "Bearer alice"), 200, "Miss", "for Bearer alice")
	expect(t, "bob", e.get("/per-user", "Authorization", "Bearer bob"), 200, "Miss", "for Bearer bob")
	expect(t, "alice hit", e.get("/per-user", "Authorization", "Bearer alice"), 200, "Hit", "for Bearer alice")
}

func TestConditionalRequestsFromCache(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("ETag", `W/"abc"`)
		w.Header().Set("Last-Modified", "Mon, 01 Jan 2024 00:00:00 GMT")
		io.WriteString(w, "doc")
	})
	e.get("/doc")
	r := e.get("/doc", "If-None-Match", `"x", W/"abc"`)
	if r.status != 304 || r.body != "" || r.header.Get("X-Cache") != "Hit" || r.header.Get("Etag") != `W/"abc"` {
		t.Fatalf("If-None-Match: %d %q %v", r.status, r.body, r.header)
	}
	r = e.get("/doc", "If-Modified-Since", "Tue, 02 Jan 2024 00:00:00 GMT")
	if r.status != 304 {
		t.Fatalf("If-Modified-Since after Last-Modified: %d", r.status)
	}
	expect(t, "modified since", e.get("/doc", "If-Modified-Since", "Sun, 31 Dec 2023 00:00:00 GMT"), 200, "Hit", "doc")
	expect(t, "etag mismatch", e.get("/doc", "If-None-Match", `"zzz"`), 200, "Hit", "doc")
	e.wantHits(1)
	// The client's conditionals never reach the origin on a miss: the
	// cache needs the whole response.
	e.get("/doc2", "If-None-Match", `W/"abc"`)
	if e.origin.lastRequest().Header.Get("If-None-Match") != "" {
		t.Fatal("client's If-None-Match was forwarded on a fill")
	}
}

func TestRevalidationWithOrigin(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	version := "v1"
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"`+version+`"`)
		if r.Header.Get("If-None-Match") == `"`+version+`"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "content "+version)
	})
	e.get("/r")
	e.clock.Advance(11 * time.Second)
	r := e.get("/r")
	expect(t, "revalidated", r, 200, "Revalidated", "content v1")
	if e.origin.lastRequest().Header.Get("If-None-Match") != `"v1"` {
		t.Fatal("revalidation did not send the stored ETag")
	}
	if r.header.Get("Age") != "0" {
		t.Fatalf("Age after revalidation %q", r.header.Get("Age"))
	}
	e.clock.Advance(5 * time.Second)
	expect(t, "fresh again", e.get("/r"), 200, "Hit", "content v1")
	e.clock.Advance(6 * time.Second)
	version = "v2"
	expect(t, "changed", e.get("/r"), 200, "Miss", "content v2")
	expect(t, "new hit", e.get("/r"), 200, "Hit", "content v2")
}

func TestStaleWhileRevalidateRunsOneBackgroundRefresh(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	release := make(chan struct{})
	var mu sync.Mutex
	body := "old"
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		b := body
		mu.Unlock()
		if b == "new" {
			<-release
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=30")
		io.WriteString(w, b)
	})
	e.get("/swr")
	mu.Lock()
	body = "new"
	mu.Unlock()
	e.clock.Advance(15 * time.Second)
	var wg sync.WaitGroup
	for range 10 {
		wg.Go(func() {
			expect(t, "stale", e.get("/swr"), 200, "Stale", "old")
		})
	}
	wg.Wait()
	// All ten were answered while the refresh is still held at the origin.
	eventually(t, "the background refresh to reach the origin", func() bool { return e.hits() == 2 })
	close(release)
	eventually(t, "the refresh to be stored", func() bool {
		r := e.get("/swr")
		return r.header.Get("X-Cache") == "Hit" && r.body == "new"
	})
	e.wantHits(2)
	// Beyond the window the stale object is not served.
	e.clock.Advance(10*time.Second + 31*time.Second)
	expect(t, "past window", e.get("/swr"), 200, "Miss", "new")
}

func TestStaleIfErrorWhenOriginIsDown(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{"staleIfError":"60s"}`})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/must":
			w.Header().Set("Cache-Control", "max-age=10, must-revalidate")
		case "/own":
			w.Header().Set("Cache-Control", "max-age=10, stale-if-error=20")
		default:
			w.Header().Set("Cache-Control", "max-age=10")
		}
		io.WriteString(w, "kept")
	})
	for _, p := range []string{"/a", "/must", "/own"} {
		e.get(p)
	}
	// The origin stops: its listener is closed.
	e.origin.srv.Close()
	e.clock.Advance(31 * time.Second) // 21 s stale
	expect(t, "within stage window", e.get("/a"), 200, "Stale", "kept")
	r := e.get("/must")
	if r.status != http.StatusBadGateway {
		t.Fatalf("must-revalidate object served stale: %d %q", r.status, r.header.Get("X-Cache"))
	}
	r = e.get("/own")
	if r.status != http.StatusBadGateway {
		t.Fatalf("object past its own stale-if-error=20 served: %d %q", r.status, r.header.Get("X-Cache"))
	}
	e.clock.Advance(38 * time.Second) // 59 s stale
	expect(t, "end of window", e.get("/a"), 200, "Stale", "kept")
	e.clock.Advance(2 * time.Second) // 61 s stale
	r = e.get("/a")
	if r.status != http.StatusBadGateway && r.status != http.StatusGatewayTimeout {
		t.Fatalf("past the window: %d %q, want 502/504", r.status, r.body)
	}
}

func TestStaleIfErrorOnOrigin5xx(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	fail := false
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		if fail {
			w.WriteHeader(http.StatusServiceUnavailable)
			io.WriteString(w, "down")
			return
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-if-error=60")
		io.WriteString(w, "ok")
	})
	e.get("/s")
	fail = true
	e.clock.Advance(40 * time.Second)
	expect(t, "503 hidden", e.get("/s"), 200, "Stale", "ok")
	e.clock.Advance(40 * time.Second)
	expect(t, "503 after window", e.get("/s"), 503, "Miss", "down")
}

func TestVaryVariantsSurviveRevalidation(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		lang := r.Header.Get("Accept-Language")
		w.Header().Set("Vary", "Accept-Language")
		w.Header().Set("Cache-Control", "max-age=10")
		w.Header().Set("ETag", `"`+lang+`"`)
		if r.Header.Get("If-None-Match") == `"`+lang+`"` {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		io.WriteString(w, "lang="+lang)
	})
	e.get("/v", "Accept-Language", "en")
	e.get("/v", "Accept-Language", "de")
	e.clock.Advance(11 * time.Second)
	expect(t, "en revalidated", e.get("/v", "Accept-Language", "en"), 200, "Revalidated", "lang=en")
	expect(t, "de still its own", e.get("/v", "Accept-Language", "de"), 200, "Revalidated", "lang=de")
	expect(t, "en hit", e.get("/v", "Accept-Language", "en"), 200, "Hit", "lang=en")
	expect(t, "de hit", e.get("/v", "Accept-Language", "de"), 200, "Hit", "lang=de")
}

// A background refresh is bounded by its own timeout: a hanging origin
// does not hold the key's flight for ever, and a later stale hit starts a
// new refresh.
func TestBackgroundRefreshTimesOut(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`, opts: Options{RefreshTimeout: 100 * time.Millisecond}})
	hang := make(chan struct{})
	defer close(hang)
	var n atomic.Int64
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		if n.Add(1) > 1 {
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Cache-Control", "max-age=10, stale-while-revalidate=60")
		io.WriteString(w, "v1")
	})
	e.get("/t")
	e.clock.Advance(20 * time.Second)
	expect(t, "stale", e.get("/t"), 200, "Stale", "v1")
	eventually(t, "the refresh at the origin", func() bool { return n.Load() == 2 })
	flights := func() int {
		total := 0
		s := e.factory.Store()
		for i := range flightShards {
			sh := &s.flights[i]
			sh.mu.Lock()
			total += len(sh.m)
			sh.mu.Unlock()
		}
		return total
	}
	eventually(t, "the refresh to time out", func() bool { return flights() == 0 })
	expect(t, "still stale", e.get("/t"), 200, "Stale", "v1")
	eventually(t, "a second refresh", func() bool { return n.Load() == 3 })
}

// Checklist H56: the origin resets the connection or does not answer in
// time; the stale object answers within the stage's window.
func TestStaleIfErrorOnResetAndTimeout(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{"staleIfError":"60s"}`, originTimeout: 200 * time.Millisecond})
	var mode atomic.Value
	mode.Store("ok")
	hang := make(chan struct{})
	defer close(hang)
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		switch mode.Load() {
		case "reset":
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				if tc, ok := conn.(interface{ SetLinger(int) error }); ok {
					_ = tc.SetLinger(0) // close with RST
				}
				conn.Close()
			}
			return
		case "hang":
			select {
			case <-hang:
			case <-r.Context().Done():
			}
			return
		}
		w.Header().Set("Cache-Control", "max-age=10")
		io.WriteString(w, "kept")
	})
	e.get("/r")
	e.clock.Advance(20 * time.Second)
	mode.Store("reset")
	expect(t, "reset", e.get("/r"), 200, "Stale", "kept")
	mode.Store("hang")
	expect(t, "timeout", e.get("/r"), 200, "Stale", "kept")
	e.clock.Advance(60 * time.Second)
	if r := e.get("/r"); r.status != http.StatusBadGateway && r.status != http.StatusGatewayTimeout {
		t.Fatalf("past the window: %d", r.status)
	}
}

// Chains are rebuilt for every snapshot; the store belongs to the factory
// and keeps its objects across the swap.
func TestObjectsSurviveSnapshotSwap(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{"ttl":"60s"}`})
	e.get("/swap")
	reg, err := plugins.NewRegistry(e.factory, testAuth{})
	if err != nil {
		t.Fatal(err)
	}
	var terminalCalls atomic.Int64
	chain, _, err := reg.Build(context.Background(), []plugins.Attached{{
		Spec:  config.PolicySpec{Type: Type, Config: json.RawMessage(`{"ttl":"30s"}`)},
		Scope: plugins.Scope{APIID: "api1", Stage: "prod"},
	}}, plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		terminalCalls.Add(1)
		w.WriteHeader(http.StatusTeapot)
	}))
	if err != nil {
		t.Fatal(err)
	}
	e.chains["prod /"] = chain // the edge swaps to the new snapshot
	expect(t, "after swap", e.get("/swap"), 200, "Hit", "hello")
	if terminalCalls.Load() != 0 {
		t.Fatal("the new chain went to the origin")
	}
}
