package cache

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestPurges(t *testing.T) {
	e := newEnv(t, envOpts{
		stageCfg: `{}`,
		routes:   []testRoute{{prefix: "/", keys: []string{"method.request.querystring.page"}}},
	})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		switch {
		case strings.HasPrefix(r.URL.Path, "/list"):
			w.Header().Set("Vary", "Accept-Language")
			w.Header().Set("Surrogate-Key", "lists all")
		case strings.HasPrefix(r.URL.Path, "/pets"):
			w.Header().Set("Surrogate-Key", "pets all")
		}
		io.WriteString(w, r.URL.Path+"?"+r.URL.RawQuery)
	})
	fill := func(paths ...string) {
		for _, p := range paths {
			e.get(p)
			e.get(p, "Accept-Language", "fr")
		}
	}
	fill("/list?page=1", "/list?page=2", "/list", "/listing", "/pets/1", "/pets/2", "/other")
	s := e.factory.Store()
	// Both variants of page 1; the unkeyed parameter is ignored, as in requests.
	if n := s.PurgeURL("127.0.0.1:1234", "/list?page=1&utm=x"); n != 2 {
		t.Fatalf("PurgeURL /list?page=1 removed %d, want 2 (two variants)", n)
	}
	expect(t, "purged", e.get("/list?page=1"), 200, "Miss", "/list?page=1")
	expect(t, "other page kept", e.get("/list?page=2"), 200, "Hit", "/list?page=2")
	if n := s.PurgeURL("127.0.0.1", "/list"); n != 2 {
		t.Fatalf("PurgeURL /list (no page) removed %d, want 2", n)
	}
	if n := s.PurgePrefix("127.0.0.1", "/list"); n != 5 {
		t.Fatalf("PurgePrefix /list removed %d, want 5 (page 1 refilled, page 2 x2, /listing x2)", n)
	}
	if n := s.PurgeTag("pets"); n != 2 {
		t.Fatalf("PurgeTag pets removed %d, want 2", n)
	}
	expect(t, "tag purged", e.get("/pets/1"), 200, "Miss", "/pets/1?")
	expect(t, "untagged kept", e.get("/other"), 200, "Hit", "/other?")
	if n := s.PurgeTag("nothing"); n != 0 {
		t.Fatalf("PurgeTag of an unknown tag removed %d", n)
	}
	if n := s.PurgeStage("api1", "prod"); n != 2 {
		t.Fatalf("PurgeStage removed %d, want 2", n)
	}
	if got := testutil.ToFloat64(s.metrics.purged); got != 13 {
		t.Fatalf("purged_total %v, want 13", got)
	}
}

func TestPurgeRequestsAsData(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	e.get("/a")
	e.get("/b")
	s := e.factory.Store()
	var req PurgeRequest
	if err := json.Unmarshal([]byte(`{"seq":7,"kind":"url","host":"127.0.0.1","path":"/a"}`), &req); err != nil {
		t.Fatal(err)
	}
	if n, err := s.ApplyPurge(req); n != 1 || err != nil {
		t.Fatalf("ApplyPurge: %d %v", n, err)
	}
	e.get("/a")
	// The same sequence number again (a replayed stream) is skipped, and
	// so is an older one.
	if n, err := s.ApplyPurge(req); n != 0 || err != nil {
		t.Fatalf("replayed purge: %d %v", n, err)
	}
	req.Seq = 6
	if n, _ := s.ApplyPurge(req); n != 0 {
		t.Fatal("an older purge was applied")
	}
	if s.LastPurgeSeq() != 7 {
		t.Fatalf("LastPurgeSeq %d", s.LastPurgeSeq())
	}
	for _, bad := range []PurgeRequest{
		{Kind: "everything"},
		{Kind: PurgeKindURL, Host: "h", Path: "no-slash"},
		{Kind: PurgeKindPrefix, Path: "/x"},
		{Kind: PurgeKindTag, Tag: "two words"},
		{Kind: PurgeKindStage, APIID: "a"},
	} {
		if _, err := s.ApplyPurge(bad); err == nil {
			t.Errorf("purge %+v accepted", bad)
		}
	}
}

// A response fetched before a purge must not be stored after it.
func TestPurgeDuringFetchWins(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	release := make(chan struct{})
	var block atomic.Bool
	block.Store(true)
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		if block.Load() {
			<-release
		}
		io.WriteString(w, "v")
	})
	done := make(chan resp)
	go func() { done <- e.get("/p") }()
	eventually(t, "the fetch at the origin", func() bool { return e.hits() == 1 })
	e.factory.Store().PurgeURL("127.0.0.1", "/p")
	block.Store(false)
	close(release)
	<-done
	expect(t, "after purge", e.get("/p"), 200, "Miss", "v")
	expect(t, "later fetch stored", e.get("/p"), 200, "Hit", "v")
}

func TestMetrics(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	e.get("/m")
	e.get("/m")
	e.get("/m")
	e.do(http.MethodPost, "/other")
	n, err := testutil.GatherAndCount(e.reg)
	if err != nil || n == 0 {
		t.Fatalf("gather: %d %v", n, err)
	}
	s := e.factory.Store()
	if testutil.ToFloat64(s.metrics.hit) != 2 || testutil.ToFloat64(s.metrics.miss) != 1 || testutil.ToFloat64(s.metrics.bypass) != 1 {
		t.Fatalf("hit %v miss %v bypass %v", testutil.ToFloat64(s.metrics.hit), testutil.ToFloat64(s.metrics.miss), testutil.ToFloat64(s.metrics.bypass))
	}
	if r := s.metrics.hitRatio(); r != 0.5 {
		t.Fatalf("hit ratio %v, want 0.5", r)
	}
	mfs, err := e.reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	names := map[string]float64{}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			if g := m.GetGauge(); g != nil {
				names[mf.GetName()] = g.GetValue()
			} else {
				names[mf.GetName()] = 0
			}
		}
	}
	for _, want := range []string{"portico_cache_requests_total", "portico_cache_evictions_total", "portico_cache_bytes", "portico_cache_objects", "portico_cache_hit_ratio", "portico_cache_budget_bytes", "portico_cache_coalesced_total", "portico_cache_purged_total", "portico_cache_background_refreshes_total"} {
		if _, ok := names[want]; !ok {
			t.Errorf("metric %s not registered", want)
		}
	}
	if names["portico_cache_bytes"] <= 0 || names["portico_cache_objects"] != 1 {
		t.Fatalf("bytes %v objects %v", names["portico_cache_bytes"], names["portico_cache_objects"])
	}
	// A second store on the same registry is refused with a clear error.
	if _, err := NewFactory(Options{MaxBytes: 1 << 20, Registerer: e.reg}); err == nil || !strings.Contains(err.Error(), "already registered") {
		t.Fatalf("second registration: %v", err)
	}
}

func TestSyncPurges(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	s := e.factory.Store()
	fill := func(paths ...string) {
		t.Helper()
		for _, p := range paths {
			e.get(p)
		}
	}
	url := func(seq uint64, path string) PurgeRequest {
		return PurgeRequest{Seq: seq, Kind: PurgeKindURL, Host: "127.0.0.1", Path: path}
	}
	fill("/a", "/b", "/c")
	// The first sync applies whatever is above the last Seq, without
	// minding that the log does not start at 1.
	res, err := s.SyncPurges([]PurgeRequest{url(41, "/a"), url(40, "/x")})
	if err != nil || res.Applied != 2 || res.Removed != 1 || res.Cleared || s.LastPurgeSeq() != 41 {
		t.Fatalf("first sync: %+v %v, last %d", res, err, s.LastPurgeSeq())
	}
	expect(t, "purged", e.get("/a"), 200, "Miss", "hello")
	expect(t, "kept", e.get("/b"), 200, "Hit", "hello")
	// The same log again, and a log that joins up.
	if res, _ := s.SyncPurges([]PurgeRequest{url(40, "/x"), url(41, "/a")}); res.Applied != 0 || res.Removed != 0 {
		t.Fatalf("replayed log: %+v", res)
	}
	if res, _ := s.SyncPurges([]PurgeRequest{url(41, "/a"), url(42, "/b")}); res.Applied != 1 || res.Removed != 1 || res.Cleared {
		t.Fatalf("next purge: %+v", res)
	}
	// A gap: purges 43 and 44 were missed, so everything goes.
	fill("/a", "/b")
	res, _ = s.SyncPurges([]PurgeRequest{url(45, "/nothing")})
	if !res.Cleared || !strings.Contains(res.Reason, "purges 43 to 44 were missed") || s.LastPurgeSeq() != 45 {
		t.Fatalf("gap: %+v, last %d", res, s.LastPurgeSeq())
	}
	expect(t, "cleared", e.get("/c"), 200, "Miss", "hello")
	// A log that went backwards (a new origin database) empties the store
	// and restarts from its numbers.
	res, _ = s.SyncPurges([]PurgeRequest{url(1, "/nothing")})
	if !res.Cleared || !strings.Contains(res.Reason, "reset") || s.LastPurgeSeq() != 1 {
		t.Fatalf("log reset: %+v, last %d", res, s.LastPurgeSeq())
	}
	expect(t, "cleared again", e.get("/c"), 200, "Miss", "hello")
	if res, _ := s.SyncPurges([]PurgeRequest{url(1, "/nothing"), url(2, "/c")}); res.Applied != 1 || res.Removed != 1 {
		t.Fatalf("after the reset: %+v", res)
	}
	if _, err := s.SyncPurges([]PurgeRequest{{Kind: PurgeKindTag, Tag: "t"}}); err == nil {
		t.Fatal("a log entry without a sequence number was accepted")
	}
}
