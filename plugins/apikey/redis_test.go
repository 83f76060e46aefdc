package apikey_test

import (
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins/apikey"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/ratelimit"
)

// Two edges share one real Redis: the burst and the quota hold across both,
// and when Redis stops each edge applies its configured failure mode.
func TestLimitsHoldAcrossEdgesSharingRedis(t *testing.T) {
	rd := edgetest.StartRedis(t)
	clock := edgetest.NewClock(time.Date(2026, 11, 25, 23, 59, 30, 0, time.UTC))
	plans := []config.UsagePlan{{ID: "gold", Name: "Gold", Rate: 5, Burst: 5,
		Quota:  &config.Quota{Limit: 8, Period: config.QuotaDay},
		Stages: []config.PlanStage{{APIID: "pets", Stage: "prod"}}}}
	key, hash, err := config.GenerateAPIKey()
	edgetest.Must(t, err)
	keys := func() []config.APIKey {
		return []config.APIKey{{ID: "k1", Name: "one", Enabled: true, PlanIDs: []string{"gold"}, Hash: hash}}
	}
	newStore := func() *ratelimit.Redis {
		r, err := ratelimit.NewRedis(ratelimit.RedisOptions{Addr: rd.Addr, Now: clock.Now, KeyPrefix: "test:", Backoff: time.Millisecond})
		edgetest.Must(t, err)
		t.Cleanup(func() { _ = r.Close() })
		return r
	}
	usage := apikey.NewUsage()
	a := start(t, setup{plans: plans, keys: keys(), limiter: newStore(), clock: clock, usage: usage})
	b := start(t, setup{plans: plans, keys: keys(), limiter: newStore(), clock: clock, usage: usage, policy: `{"redisFailure":"open"}`})

	ok, limited := 0, 0
	for i := range 12 {
		u := a.url
		if i%2 == 1 {
			u = b.url
		}
		st, h, body := edgetest.Get(t, u+"/pets", "x-api-key: "+key)
		switch {
		case st == 200:
			ok++
		case st == 429 && h.Get("Retry-After") == "1":
			limited++
		default:
			t.Fatalf("request %d: %d Retry-After %q %s", i, st, h.Get("Retry-After"), body)
		}
	}
	if ok != 5 || limited != 7 {
		t.Fatalf("across two edges: %d allowed, %d throttled; want 5 and 7 (one shared burst of 5)", ok, limited)
	}
	// Three more tokens; the quota of 8 is then used up on both edges.
	clock.Advance(time.Second)
	for i := range 3 {
		if st, _, body := edgetest.Get(t, []string{a.url, b.url}[i%2]+"/pets", "x-api-key: "+key); st != 200 {
			t.Fatalf("refill request %d: %d %s", i, st, body)
		}
	}
	for _, u := range []string{a.url, b.url} {
		st, h, body := edgetest.Get(t, u+"/pets", "x-api-key: "+key)
		if st != 429 || !strings.Contains(body, "quota") || !strings.Contains(body, "2026-11-26T00:00:00Z") || h.Get("Retry-After") != "29" {
			t.Fatalf("quota: %d Retry-After %q %s; want 429, 29, reset time", st, h.Get("Retry-After"), body)
		}
	}
	clock.Advance(30 * time.Second) // a new UTC day
	if st, _, body := edgetest.Get(t, a.url+"/pets", "x-api-key: "+key); st != 200 {
		t.Fatalf("after midnight: %d %s", st, body)
	}
	var total int64
	for _, d := range usage.Flush() {
		total += d.Count
	}
	if total != 9 {
		t.Fatalf("usage %d, want 9", total)
	}

	rd.Stop()
	clock.Advance(time.Minute)
	if st, _, body := edgetest.Get(t, a.url+"/pets", "x-api-key: "+key); st != 503 || !strings.Contains(body, "cannot be checked") {
		t.Fatalf("Redis down, fail closed: %d %s, want 503", st, body)
	}
	if st, _, body := edgetest.Get(t, b.url+"/pets", "x-api-key: "+key); st != 200 {
		t.Fatalf("Redis down, fail open: %d %s, want 200", st, body)
	}
}
