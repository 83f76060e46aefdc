package ratelimit_test

import (
	"context"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/ratelimit"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

func TestMemoryBucket(t *testing.T) {
	clock := edgetest.NewClock(t0)
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clock.Now})
	ctx := context.Background()
	for i := range 10 {
		d, _ := m.Allow(ctx, "k", 2, 10, 1)
		if !d.Allowed || d.Remaining != 9-i {
			t.Fatalf("request %d: %+v, want allowed with %d remaining", i, d, 9-i)
		}
	}
	d, _ := m.Allow(ctx, "k", 2, 10, 1)
	if d.Allowed || d.RetryAfter != 500*time.Millisecond || d.Remaining != 0 {
		t.Fatalf("11th: %+v, want refused, retry in 500ms", d)
	}
	// Peeking takes nothing.
	clock.Advance(500 * time.Millisecond)
	for range 3 {
		if d, _ := m.Allow(ctx, "k", 2, 10, 0); !d.Allowed || d.Remaining != 1 {
			t.Fatalf("peek: %+v, want allowed with 1 remaining", d)
		}
	}
	if d, _ := m.Allow(ctx, "k", 2, 10, 1); !d.Allowed {
		t.Fatalf("after refill: %+v", d)
	}
	if d, _ := m.Allow(ctx, "k", 2, 10, 11); d.Allowed {
		t.Fatal("n above burst allowed")
	}
	if d, _ := m.Allow(ctx, "free", 0, 0, 1); !d.Allowed {
		t.Fatal("rate 0 must mean unlimited")
	}
}

func TestMemoryIsBounded(t *testing.T) {
	clock := edgetest.NewClock(t0)
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clock.Now, MaxKeys: 640})
	ctx := context.Background()
	for i := range 100_000 {
		_, _ = m.Allow(ctx, fmt.Sprint("key", i), 1, 1, 1)
		_, _ = m.Take(ctx, fmt.Sprint("key", i), 1, 10, t0.Add(time.Hour))
	}
	// Every shard holds at most MaxKeys/64 entries; a fresh key is still
	// limited correctly.
	if d, _ := m.Allow(ctx, "new", 1, 1, 1); !d.Allowed {
		t.Fatal("first request of a new key refused")
	}
	if d, _ := m.Allow(ctx, "new", 1, 1, 1); d.Allowed {
		t.Fatal("second request of a burst-1 key allowed")
	}
}

// The Redis script and the in-memory GCRA must take the same decisions.
func TestRedisMatchesMemory(t *testing.T) {
	rd := edgetest.StartRedis(t)
	clock := edgetest.NewClock(t0)
	r, err := ratelimit.NewRedis(ratelimit.RedisOptions{Addr: rd.Addr, Now: clock.Now})
	edgetest.Must(t, err)
	defer r.Close()
	m := ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clock.Now})
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range 2000 {
		key := fmt.Sprint("k", rng.IntN(4))
		rate, burst := []float64{1, 5, 100, 0.5}[rng.IntN(4)], []int{1, 5, 20}[rng.IntN(3)]
		key += fmt.Sprint(":", rate, ":", burst)
		n := rng.IntN(3)
		a, _ := m.Allow(ctx, key, rate, burst, n)
		b, err := r.Allow(ctx, key, rate, burst, n)
		edgetest.Must(t, err)
		if a.Allowed != b.Allowed || a.Remaining != b.Remaining || a.RetryAfter.Truncate(time.Millisecond) != b.RetryAfter.Truncate(time.Millisecond) {
			t.Fatalf("step %d (%s n=%d): memory %+v, redis %+v", i, key, n, a, b)
		}
		clock.Advance(time.Duration(rng.IntN(300)) * time.Millisecond)
	}
}

func TestQuotaCounters(t *testing.T) {
	rd := edgetest.StartRedis(t)
	clock := edgetest.NewClock(t0)
	r, err := ratelimit.NewRedis(ratelimit.RedisOptions{Addr: rd.Addr, Now: clock.Now})
	edgetest.Must(t, err)
	defer r.Close()
	for name, q := range map[string]ratelimit.QuotaCounter{"memory": ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clock.Now}), "redis": r} {
		t.Run(name, func(t *testing.T) {
			ctx := context.Background()
			end := t0.Add(time.Hour)
			for i := range 3 {
				d, err := q.Take(ctx, "q", 1, 3, end)
				edgetest.Must(t, err)
				if !d.Allowed || d.Used != int64(i+1) || d.Remaining != int64(2-i) {
					t.Fatalf("take %d: %+v", i, d)
				}
			}
			for range 3 { // refused takes do not count
				if d, _ := q.Take(ctx, "q", 1, 3, end); d.Allowed || d.Used != 3 {
					t.Fatalf("over the limit: %+v", d)
				}
			}
			// The next period starts from zero.
			if d, _ := q.Take(ctx, "q", 2, 3, end.Add(time.Hour)); !d.Allowed || d.Used != 2 {
				t.Fatalf("next period: %+v", d)
			}
		})
	}
}

func TestQuotaWindows(t *testing.T) {
	at := time.Date(2026, 11, 25, 15, 4, 5, 0, time.FixedZone("x", 3*3600)) // Wednesday, 12:04:05 UTC
	cases := []struct {
		p          config.QuotaPeriod
		start, end string
	}{
		{config.QuotaDay, "2026-11-25T00:00:00Z", "2026-11-26T00:00:00Z"},
		{config.QuotaWeek, "2026-11-23T00:00:00Z", "2026-11-30T00:00:00Z"},
		{config.QuotaMonth, "2026-11-01T00:00:00Z", "2026-12-01T00:00:00Z"},
	}
	for _, c := range cases {
		s, e := config.Quota{Limit: 1, Period: c.p}.Window(at)
		if s.Format(time.RFC3339) != c.start || e.Format(time.RFC3339) != c.end {
			t.Errorf("%s: %s..%s, want %s..%s", c.p, s.Format(time.RFC3339), e.Format(time.RFC3339), c.start, c.end)
		}
	}
	// A Sunday belongs to the week that started the Monday before.
	s, _ := config.Quota{Period: config.QuotaWeek}.Window(time.Date(2026, 11, 29, 23, 0, 0, 0, time.UTC))
	if s.Format(time.DateOnly) != "2026-11-23" {
		t.Errorf("Sunday's week starts %s", s.Format(time.DateOnly))
	}
}

func startThrottle(t *testing.T, lim ratelimit.Limiter, stage, route string) string {
	t.Helper()
	f, err := ratelimit.NewThrottleFactory(ratelimit.ThrottleOptions{Limiter: lim, Registerer: prometheus.NewRegistry()})
	edgetest.Must(t, err)
	reg, err := plugins.NewRegistry(f)
	edgetest.Must(t, err)
	_, b := edgetest.StartBackend(t)
	c := edgetest.Config{APIID: "pets", Stage: "prod", Backend: b.URL,
		Routes: []config.Route{{Method: "GET", Path: "/a"}, {Method: "GET", Path: "/b"}}}
	if stage != "" {
		c.StagePolicies = []config.PolicySpec{{Type: "throttle", Config: json.RawMessage(stage)}}
	}
	if route != "" {
		c.Routes[1].Policies = []config.PolicySpec{{Type: "throttle", Config: json.RawMessage(route)}}
	}
	return edgetest.Start(t, reg, c).URL
}

func TestStageAndRouteThrottle(t *testing.T) {
	clock := edgetest.NewClock(t0)
	u := startThrottle(t, ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clock.Now}), `{"rate":10,"burst":4}`, `{"rate":1,"burst":1}`)
	// The stage bucket (4) is shared by /a and /b; /b also has its own (1),
	// checked after the stage's, so a /b refused by its route bucket has
	// still used a stage token.
	var got []int
	for _, p := range []string{"/a", "/b", "/b", "/a", "/a", "/a"} {
		st, _, _ := edgetest.Get(t, u+p)
		got = append(got, st)
	}
	want := []int{200, 200, 429, 200, 429, 429}
	if fmt.Sprint(got) != fmt.Sprint(want) {
		t.Fatalf("statuses %v, want %v", got, want)
	}
}

func TestThrottlePerClient(t *testing.T) {
	clock := edgetest.NewClock(t0)
	u := startThrottle(t, ratelimit.NewMemory(ratelimit.MemoryOptions{Now: clock.Now}), `{"rate":1,"burst":2,"per":"client"}`, "")
	for i, want := range []int{200, 200, 429} {
		if st, h, _ := edgetest.Get(t, u+"/a"); st != want || (st == 429 && h.Get("Retry-After") != "1") {
			t.Fatalf("request %d: %d, want %d", i, st, want)
		}
	}
}

func TestThrottleFailModesWithRedisDown(t *testing.T) {
	rd := edgetest.StartRedis(t)
	clock := edgetest.NewClock(t0)
	r, err := ratelimit.NewRedis(ratelimit.RedisOptions{Addr: rd.Addr, Now: clock.Now, Backoff: time.Second})
	edgetest.Must(t, err)
	defer r.Close()
	closed := startThrottle(t, r, `{"rate":100,"burst":100}`, "")
	open := startThrottle(t, r, `{"rate":100,"burst":100,"redisFailure":"open"}`, "")
	if st, _, _ := edgetest.Get(t, closed+"/a"); st != 200 {
		t.Fatalf("Redis up: %d", st)
	}
	rd.Stop()
	st, h, body := edgetest.Get(t, closed+"/a")
	if st != 503 || h.Get("Retry-After") == "" || !strings.Contains(body, "cannot be checked") {
		t.Fatalf("fail closed: %d %s", st, body)
	}
	if st, _, _ := edgetest.Get(t, open+"/a"); st != 200 {
		t.Fatalf("fail open: %d", st)
	}
	// Within the backoff, Redis is not even asked: the answer is immediate.
	if _, err := r.Allow(context.Background(), "x", 1, 1, 1); err == nil || !strings.Contains(err.Error(), "backing off") {
		t.Fatalf("within backoff: %v", err)
	}
}

func TestThrottleConfigErrors(t *testing.T) {
	f, err := ratelimit.NewThrottleFactory(ratelimit.ThrottleOptions{Limiter: ratelimit.NewMemory(ratelimit.MemoryOptions{})})
	edgetest.Must(t, err)
	for _, c := range []string{`{}`, `{"rate":5}`, `{"rate":5,"burst":5,"per":"moon"}`, `{"rate":5,"burst":5,"redisFailure":"x"}`, `{"rate":5,"burst":5,"brust":1}`} {
		if _, err := f.New(context.Background(), config.PolicySpec{Type: "throttle", Config: json.RawMessage(c)}, plugins.Scope{}); err == nil {
			t.Errorf("config %s accepted", c)
		}
	}
}
