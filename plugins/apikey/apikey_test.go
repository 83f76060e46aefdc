package apikey_test

import (
	"context"
	"encoding/json"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/apikey"
	"github.com/portico-edge/portico/plugins/authfail"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/ratelimit"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

type fixture struct {
	clock   *edgetest.Clock
	usage   *apikey.Usage
	backend *edgetest.Backend
	url     string
	keys    map[string]string // ID -> key
}

type setup struct {
	plans   []config.UsagePlan
	keys    []config.APIKey // Hash filled from generated keys
	policy  string          // api-key config JSON
	limiter interface {
		ratelimit.Limiter
		ratelimit.QuotaCounter
	}
	guard *authfail.Guard
	clock *edgetest.Clock
	usage *apikey.Usage
}

func start(t *testing.T, s setup) *fixture {
	t.Helper()
	fx := &fixture{clock: s.clock, usage: s.usage, keys: map[string]string{}}
	if fx.clock == nil {
		fx.clock = edgetest.NewClock(t0)
	}
	if fx.usage == nil {
		fx.usage = apikey.NewUsage()
	}
	for i := range s.keys {
		if s.keys[i].Hash == "" {
			k, h, err := config.GenerateAPIKey()
			edgetest.Must(t, err)
			s.keys[i].Hash = h
			fx.keys[s.keys[i].ID] = k
		}
		edgetest.Must(t, config.CheckAPIKey(s.keys[i]))
	}
	for _, p := range s.plans {
		edgetest.Must(t, config.CheckUsagePlan(p))
	}
	table, err := apikey.NewTable(s.keys, s.plans)
	edgetest.Must(t, err)
	var live apikey.Live
	live.Store(table)
	lim := s.limiter
	if lim == nil {
		lim = ratelimit.NewMemory(ratelimit.MemoryOptions{Now: fx.clock.Now})
	}
	f, err := apikey.NewFactory(apikey.Options{Keys: &live, Plans: &live, Limiter: lim, Quotas: lim,
		Usage: fx.usage, Guard: s.guard, Now: fx.clock.Now, Registerer: prometheus.NewRegistry()})
	edgetest.Must(t, err)
	reg, err := plugins.NewRegistry(f)
	edgetest.Must(t, err)
	b, bsrv := edgetest.StartBackend(t)
	fx.backend = b
	pol := s.policy
	if pol == "" {
		pol = `{"source":"header","name":"x-api-key"}`
	}
	srv := edgetest.Start(t, reg, edgetest.Config{
		APIID: "pets", Stage: "prod", Backend: bsrv.URL,
		APIPolicies: []config.PolicySpec{{Type: "api-key", Config: json.RawMessage(pol)}},
		Routes: []config.Route{
			{Method: "GET", Path: "/pets"},
			{Method: "GET", Path: "/slow"},
			{Method: "POST", Path: "/pets"},
		},
	})
	fx.url = srv.URL
	return fx
}

func basicPlans() []config.UsagePlan {
	return []config.UsagePlan{{
		ID: "gold", Name: "Gold", Rate: 5, Burst: 5,
		Stages: []config.PlanStage{{APIID: "pets", Stage: "prod",
			Methods: map[string]config.Throttle{"GET /slow": {Rate: 1, Burst: 1}}}},
	}, {
		ID: "other", Name: "Other", Rate: 100, Burst: 100,
		Stages: []config.PlanStage{{APIID: "pets", Stage: "dev"}},
	}}
}

func TestBurstThenThrottledWithRetryAfter(t *testing.T) {
	fx := start(t, setup{plans: basicPlans(), keys: []config.APIKey{{ID: "k1", Name: "one", Enabled: true, PlanIDs: []string{"gold"}}}})
	key := fx.keys["k1"]
	count := func(n int) (ok, limited int) {
		for range n {
			st, h, body := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+key)
			switch st {
			case 200:
				ok++
			case 429:
				limited++
				if h.Get("Retry-After") != "1" {
					t.Errorf("Retry-After = %q, want 1", h.Get("Retry-After"))
				}
				if !strings.Contains(body, "Too Many Requests") || h.Get("Content-Type") != "application/json" {
					t.Errorf("429 body = %q (%s)", body, h.Get("Content-Type"))
				}
			default:
				t.Fatalf("status %d: %s", st, body)
			}
		}
		return
	}
	if ok, lim := count(12); ok != 5 || lim != 7 {
		t.Fatalf("at one instant: %d allowed, %d throttled; want 5 and 7", ok, lim)
	}
	fx.clock.Advance(200 * time.Millisecond) // one token at 5 rps
	if ok, lim := count(3); ok != 1 || lim != 2 {
		t.Fatalf("after 200ms: %d allowed, %d throttled; want 1 and 2", ok, lim)
	}
	fx.clock.Advance(10 * time.Second) // refills to the burst, no further
	if ok, lim := count(8); ok != 5 || lim != 3 {
		t.Fatalf("after 10s: %d allowed, %d throttled; want 5 and 3", ok, lim)
	}
	// The per-route override: GET /slow allows 1 at a time, in its own bucket.
	fx.clock.Advance(10 * time.Second)
	st1, _, _ := edgetest.Get(t, fx.url+"/slow", "x-api-key: "+key)
	st2, _, _ := edgetest.Get(t, fx.url+"/slow", "x-api-key: "+key)
	st3, _, _ := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+key)
	if st1 != 200 || st2 != 429 || st3 != 200 {
		t.Fatalf("route override: /slow %d then %d, /pets %d; want 200, 429, 200", st1, st2, st3)
	}
	// Usage counts what went through: 5+1+5+1+1.
	var total int64
	for _, d := range fx.usage.Flush() {
		if d.KeyID != "k1" || d.PlanID != "gold" || d.Day != "2026-11-25" {
			t.Errorf("unexpected usage %+v", d)
		}
		total += d.Count
	}
	if total != 13 {
		t.Fatalf("usage = %d, want 13 (the requests that reached the backend)", total)
	}
	if got := len(fx.backend.Requests()); got != 13 {
		t.Fatalf("backend saw %d requests, want 13", got)
	}
	if len(fx.usage.Flush()) != 0 {
		t.Fatal("second Flush returned deltas again")
	}
}

func TestQuotaResetsOnSchedule(t *testing.T) {
	plans := []config.UsagePlan{{ID: "q", Name: "Quota", Quota: &config.Quota{Limit: 3, Period: config.QuotaDay},
		Stages: []config.PlanStage{{APIID: "pets", Stage: "prod"}}}}
	clock := edgetest.NewClock(time.Date(2026, 11, 25, 23, 59, 0, 0, time.UTC))
	fx := start(t, setup{plans: plans, clock: clock, keys: []config.APIKey{{ID: "k1", Name: "one", Enabled: true, PlanIDs: []string{"q"}}}})
	key := fx.keys["k1"]
	for i := range 3 {
		if st, _, body := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+key); st != 200 {
			t.Fatalf("request %d: %d %s", i, st, body)
		}
	}
	st, h, body := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+key)
	if st != 429 || h.Get("Retry-After") != "60" || !strings.Contains(body, "2026-11-26T00:00:00Z") {
		t.Fatalf("over quota: %d Retry-After %q %s; want 429, 60, reset time", st, h.Get("Retry-After"), body)
	}
	clock.Advance(59 * time.Second)
	if st, _, _ := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+key); st != 429 {
		t.Fatalf("one second before the reset: %d, want 429", st)
	}
	clock.Advance(time.Second)
	for i := range 3 {
		if st, _, body := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+key); st != 200 {
			t.Fatalf("after the reset, request %d: %d %s", i, st, body)
		}
	}
	if st, _, _ := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+key); st != 429 {
		t.Fatalf("new day over quota: %d, want 429", st)
	}
	days := map[string]int64{}
	for _, d := range fx.usage.Flush() {
		days[d.Day] += d.Count
	}
	if days["2026-11-25"] != 3 || days["2026-11-26"] != 3 || len(days) != 2 {
		t.Fatalf("usage per day = %v, want 3 on each day", days)
	}
}

func TestRefusals(t *testing.T) {
	fx := start(t, setup{plans: basicPlans(), keys: []config.APIKey{
		{ID: "on", Name: "on", Enabled: true, PlanIDs: []string{"gold"}},
		{ID: "off", Name: "off", Enabled: false, PlanIDs: []string{"gold"}},
		{ID: "noplan", Name: "no plan", Enabled: true},
		{ID: "wrongstage", Name: "dev only", Enabled: true, PlanIDs: []string{"other"}},
	}})
	cases := []struct {
		name   string
		header string
		status int
		msg    string
	}{
		{"missing", "", 403, "requires an API key in the x-api-key header"},
		{"unknown", "x-api-key: ptk_thisisnotakeythatexists000000", 403, "not valid"},
		{"disabled", "x-api-key: " + fx.keys["off"], 403, "not valid"},
		{"no plan", "x-api-key: " + fx.keys["noplan"], 403, "not on a usage plan"},
		{"plan for another stage", "x-api-key: " + fx.keys["wrongstage"], 403, "not on a usage plan"},
		{"enabled", "x-api-key: " + fx.keys["on"], 200, ""},
	}
	for _, c := range cases {
		var hs []string
		if c.header != "" {
			hs = append(hs, c.header)
		}
		st, _, body := edgetest.Get(t, fx.url+"/pets", hs...)
		if st != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %q; want %d containing %q", c.name, st, body, c.status, c.msg)
		}
	}
	reqs := fx.backend.Requests()
	if len(reqs) != 1 {
		t.Fatalf("backend saw %d requests, want only the accepted one", len(reqs))
	}
	if got := reqs[0].Header.Get(apikey.IdentityHeader); got != "on" {
		t.Fatalf("backend got %s = %q, want the key ID", apikey.IdentityHeader, got)
	}
}

func TestClientCannotForgeIdentityHeader(t *testing.T) {
	fx := start(t, setup{plans: basicPlans(), keys: []config.APIKey{{ID: "on", Name: "on", Enabled: true, PlanIDs: []string{"gold"}}}})
	st, _, _ := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+fx.keys["on"], apikey.IdentityHeader+": admin")
	if st != 200 {
		t.Fatal(st)
	}
	if got := fx.backend.Requests()[0].Header.Values(apikey.IdentityHeader); len(got) != 1 || got[0] != "on" {
		t.Fatalf("backend got %v, want only the verified key ID", got)
	}
}

func TestQuerySourceAndImportedKey(t *testing.T) {
	imported := "imported-key-with-enough-length-123"
	edgetest.Must(t, config.CheckAPIKeyValue(imported))
	fx := start(t, setup{plans: basicPlans(), policy: `{"source":"query","name":"api_key"}`,
		keys: []config.APIKey{{ID: "imp", Name: "imported", Enabled: true, PlanIDs: []string{"gold"}, Hash: config.HashAPIKeyHex(imported)}}})
	if st, _, body := edgetest.Get(t, fx.url+"/pets?a=1&api_key="+url.QueryEscape(imported)); st != 200 {
		t.Fatalf("query key: %d %s", st, body)
	}
	if st, _, _ := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+imported); st != 403 {
		t.Fatalf("header key on a query-configured policy: %d, want 403", st)
	}
}

func TestFailedAttemptsAreThrottledPerSource(t *testing.T) {
	clock := edgetest.NewClock(t0)
	guard, err := authfail.New(authfail.Options{Failures: 3, Window: time.Minute, Now: clock.Now})
	edgetest.Must(t, err)
	fx := start(t, setup{plans: basicPlans(), guard: guard, clock: clock,
		keys: []config.APIKey{{ID: "on", Name: "on", Enabled: true, PlanIDs: []string{"gold"}}}})
	for i := range 3 {
		if st, _, _ := edgetest.Get(t, fx.url+"/pets", "x-api-key: ptk_guess0000000000000000000000"+string(rune('a'+i))); st != 403 {
			t.Fatalf("guess %d: %d, want 403", i, st)
		}
	}
	// Blocked now, even with the right key: the check comes first.
	st, h, body := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+fx.keys["on"])
	if st != 429 || h.Get("Retry-After") != "20" || !strings.Contains(body, "failed authentication") {
		t.Fatalf("after 3 failures: %d Retry-After %q %s; want 429 with Retry-After 20", st, h.Get("Retry-After"), body)
	}
	clock.Advance(20 * time.Second)
	if st, _, _ := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+fx.keys["on"]); st != 200 {
		t.Fatalf("after Retry-After: %d, want 200", st)
	}
	// Missing keys are not guesses and do not count.
	for range 5 {
		edgetest.Get(t, fx.url+"/pets")
	}
	if st, _, _ := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+fx.keys["on"]); st != 200 {
		t.Fatalf("after requests without a key: %d, want 200", st)
	}
}

func TestStoreFailureModes(t *testing.T) {
	for _, mode := range []string{"closed", "open"} {
		t.Run(mode, func(t *testing.T) {
			fx := start(t, setup{plans: basicPlans(), limiter: brokenStore{}, policy: `{"redisFailure":"` + mode + `"}`,
				keys: []config.APIKey{{ID: "on", Name: "on", Enabled: true, PlanIDs: []string{"gold"}}}})
			st, _, body := edgetest.Get(t, fx.url+"/pets", "x-api-key: "+fx.keys["on"])
			want := map[string]int{"closed": 503, "open": 200}[mode]
			if st != want {
				t.Fatalf("%s: %d %s, want %d", mode, st, body, want)
			}
		})
	}
}

type brokenStore struct{}

func (brokenStore) Allow(context.Context, string, float64, int, int) (ratelimit.Decision, error) {
	return ratelimit.Decision{}, ratelimit.ErrUnavailable
}

func (brokenStore) Take(context.Context, string, int64, int64, time.Time) (ratelimit.QuotaDecision, error) {
	return ratelimit.QuotaDecision{}, ratelimit.ErrUnavailable
}

func TestConfigErrors(t *testing.T) {
	f, err := apikey.NewFactory(apikey.Options{Keys: &apikey.Live{}, Plans: &apikey.Live{}, Limiter: ratelimit.NewMemory(ratelimit.MemoryOptions{}), Quotas: ratelimit.NewMemory(ratelimit.MemoryOptions{})})
	edgetest.Must(t, err)
	for _, c := range []string{`{"source":"body"}`, `{"nmae":"x"}`, `{"redisFailure":"maybe"}`, `{"name":"x_api_key"}`} {
		if _, err := f.New(t.Context(), config.PolicySpec{Type: "api-key", Config: json.RawMessage(c)}, plugins.Scope{}); err == nil {
			t.Errorf("config %s accepted", c)
		}
	}
}
