package config

import (
	"strings"
	"testing"
)

func TestGeneratedKeys(t *testing.T) {
	seen := map[string]bool{}
	for range 200 {
		k, h, err := GenerateAPIKey()
		if err != nil {
			t.Fatal(err)
		}
		if !strings.HasPrefix(k, APIKeyPrefix) || len(k) != len(APIKeyPrefix)+40 || CheckAPIKeyValue(k) != nil {
			t.Fatalf("bad key %q", k)
		}
		hb, err := ParseAPIKeyHash(h)
		if err != nil || !APIKeyMatches(k, hb) || APIKeyMatches(k+"x", hb) {
			t.Fatalf("hash %q does not match key", h)
		}
		if seen[k] {
			t.Fatal("duplicate key")
		}
		seen[k] = true
	}
	id, secret, err := GenerateAccessKey()
	if err != nil {
		t.Fatal(err)
	}
	if err := CheckAccessKey(AccessKey{ID: id, Secret: secret, Principal: "alice", Enabled: true}); err != nil {
		t.Fatal(err)
	}
}

func TestAccessChecks(t *testing.T) {
	plan := func(f func(*UsagePlan)) UsagePlan {
		p := UsagePlan{ID: "gold", Name: "Gold", Rate: 5, Burst: 5, Quota: &Quota{Limit: 10, Period: QuotaDay},
			Stages: []PlanStage{{APIID: "a", Stage: "prod", Methods: map[string]Throttle{"GET /x": {Rate: 1, Burst: 1}}}}}
		f(&p)
		return p
	}
	if err := CheckUsagePlan(plan(func(*UsagePlan) {})); err != nil {
		t.Fatal(err)
	}
	bad := map[string]UsagePlan{
		"burst 0":       plan(func(p *UsagePlan) { p.Burst = 0 }),
		"negative rate": plan(func(p *UsagePlan) { p.Rate = -1 }),
		"period":        plan(func(p *UsagePlan) { p.Quota.Period = "YEAR" }),
		"limit":         plan(func(p *UsagePlan) { p.Quota.Limit = 0 }),
		"route key":     plan(func(p *UsagePlan) { p.Stages[0].Methods = map[string]Throttle{"get /x": {Rate: 1, Burst: 1}} }),
		"dup stage":     plan(func(p *UsagePlan) { p.Stages = append(p.Stages, p.Stages[0]) }),
		"id":            plan(func(p *UsagePlan) { p.ID = "-x" }),
	}
	for name, p := range bad {
		if err := CheckUsagePlan(p); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	a, b := plan(func(*UsagePlan) {}), plan(func(p *UsagePlan) { p.ID = "silver" })
	plans := map[string]*UsagePlan{"gold": &a, "silver": &b}
	err := CheckKeyPlans(APIKey{ID: "k", PlanIDs: []string{"gold", "silver"}}, plans)
	if err == nil || !strings.Contains(err.Error(), "both cover") {
		t.Fatalf("overlapping plans: %v", err)
	}
	if err := CheckKeyPlans(APIKey{ID: "k", PlanIDs: []string{"bronze"}}, plans); err == nil {
		t.Fatal("missing plan accepted")
	}
	if err := CheckAPIKeyValue("short"); err == nil {
		t.Fatal("short imported key accepted")
	}
	if err := CheckAPIKeyValue("has a space in it, long enough"); err == nil {
		t.Fatal("key with spaces accepted")
	}
	if err := CheckAccessKey(AccessKey{ID: "SHORT", Secret: strings.Repeat("s", 40), Principal: "p"}); err == nil {
		t.Fatal("short access key ID accepted")
	}
	if err := CheckAccessKey(AccessKey{ID: "PTKAAAAAAAAAAAAAAAAA", Secret: strings.Repeat("s", 40), Principal: "a\nb"}); err == nil {
		t.Fatal("principal with a newline accepted")
	}
}
