package control

import (
	"context"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/store"
	"github.com/portico-edge/portico/plugins/apikey"
)

// accessControl is a control plane with API "pets" (stages prod and test)
// and a settable clock.
func accessControl(t *testing.T) (*Control, *store.Store, *time.Time) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)
	c, err := New(context.Background(), Options{Store: st, Importer: realImporter, Now: func() time.Time { return now }})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.ImportAPI(ctx, doc("one"), ImportOptions{Name: "pets"}, false); err != nil {
		t.Fatal(err)
	}
	for _, s := range []string{"prod", "test"} {
		if _, _, err := c.PutStage(ctx, "pets", s, StageInput{Variables: map[string]string{"backend": "h:1"}}); err != nil {
			t.Fatal(err)
		}
	}
	return c, st, &now
}

func wantKind(t *testing.T, what string, err error, k Kind, contains string) {
	t.Helper()
	if KindOf(err) != k || err == nil || !strings.Contains(err.Error(), contains) {
		t.Errorf("%s: %v (kind %d), want kind %d containing %q", what, err, KindOf(err), k, contains)
	}
}

func TestAPIKeyLifecycle(t *testing.T) {
	ctx := context.Background()
	c, _, now := accessControl(t)
	v0 := c.Snapshot().Version
	nk, err := c.CreateAPIKey(ctx, APIKeyInput{Name: "mobile app"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(nk.Key, config.APIKeyPrefix) || len(nk.Key) != 44 || !strings.HasPrefix(nk.ID, "k") || !nk.Enabled {
		t.Errorf("created key: %+v", nk)
	}
	snap := c.Snapshot()
	if snap.Version == v0 || len(snap.APIKeys) != 1 {
		t.Fatal("creating a key did not publish a snapshot with it")
	}
	// Only the hash is stored and shipped.
	if got := snap.APIKeys[0]; got.Hash != config.HashAPIKeyHex(nk.Key) || strings.Contains(fmt.Sprint(got), nk.Key) {
		t.Errorf("snapshot key: %+v", got)
	}
	table, err := apikey.NewTable(snap.APIKeys, snap.UsagePlans)
	if err != nil {
		t.Fatal(err)
	}
	if k, ok := table.Lookup(config.HashAPIKey(nk.Key)); !ok || k.ID != nk.ID {
		t.Error("the edge's table does not find the created key")
	}

	// Import: validated, and the same value only once.
	wantKind(t, "import a short key", func() error { _, err := c.ImportAPIKey(ctx, APIKeyInput{Name: "x", Value: "short"}); return err }(), Invalid, "20 to 128 characters")
	wantKind(t, "import without value", func() error { _, err := c.ImportAPIKey(ctx, APIKeyInput{Name: "x"}); return err }(), Invalid, "give the key")
	wantKind(t, "create with a value", func() error { _, err := c.CreateAPIKey(ctx, APIKeyInput{Name: "x", Value: "abc"}); return err }(), Invalid, "import it")
	*now = now.Add(time.Second)
	imp, err := c.ImportAPIKey(ctx, APIKeyInput{Name: "from aws", Value: "AbCdEfGhIjKlMnOpQrStUvWx0123"})
	if err != nil {
		t.Fatal(err)
	}
	wantKind(t, "import twice", func() error {
		_, err := c.ImportAPIKey(ctx, APIKeyInput{Name: "again", Value: "AbCdEfGhIjKlMnOpQrStUvWx0123"})
		return err
	}(), Conflict, "already stored as API key \""+imp.ID+"\"")
	wantKind(t, "import the created key", func() error { _, err := c.ImportAPIKey(ctx, APIKeyInput{Name: "y", Value: nk.Key}); return err }(), Conflict, nk.ID)
	wantKind(t, "no name", func() error { _, err := c.CreateAPIKey(ctx, APIKeyInput{}); return err }(), Invalid, "API key name")
	wantKind(t, "unknown plan", func() error {
		_, err := c.CreateAPIKey(ctx, APIKeyInput{Name: "z", PlanIDs: []string{"gold"}})
		return err
	}(), NotFound, `usage plan "gold" does not exist`)

	list, err := c.APIKeys(ctx)
	if err != nil || len(list) != 2 || list[0].ID != nk.ID || list[1].ID != imp.ID {
		t.Fatalf("list: %v %+v", err, list)
	}

	// Disable: the snapshot carries it, so edges refuse the key.
	off := false
	if k, err := c.UpdateAPIKey(ctx, nk.ID, APIKeyPatch{Enabled: &off}); err != nil || k.Enabled {
		t.Fatalf("disable: %v %+v", err, k)
	}
	if i := slices.IndexFunc(c.Snapshot().APIKeys, func(k config.APIKey) bool { return k.ID == nk.ID }); i < 0 || c.Snapshot().APIKeys[i].Enabled {
		t.Error("the snapshot does not carry the disabled key")
	}
	name := "renamed"
	if k, err := c.UpdateAPIKey(ctx, nk.ID, APIKeyPatch{Name: &name}); err != nil || k.Name != "renamed" || k.Enabled {
		t.Errorf("rename: %v %+v", err, k)
	}
	wantKind(t, "empty patch", func() error { _, err := c.UpdateAPIKey(ctx, nk.ID, APIKeyPatch{}); return err }(), Invalid, "nothing to change")
	wantKind(t, "patch unknown", func() error { _, err := c.UpdateAPIKey(ctx, "knope", APIKeyPatch{Name: &name}); return err }(), NotFound, `API key "knope" does not exist`)

	if err := c.DeleteAPIKey(ctx, imp.ID); err != nil {
		t.Fatal(err)
	}
	wantKind(t, "get deleted", func() error { _, err := c.APIKey(ctx, imp.ID); return err }(), NotFound, "does not exist")
	// The deleted key's value may be imported again.
	if _, err := c.ImportAPIKey(ctx, APIKeyInput{Name: "back", Value: "AbCdEfGhIjKlMnOpQrStUvWx0123"}); err != nil {
		t.Errorf("re-import after delete: %v", err)
	}
}

func TestUsagePlans(t *testing.T) {
	ctx := context.Background()
	c, _, _ := accessControl(t)
	api, err := c.API(ctx, "pets")
	if err != nil {
		t.Fatal(err)
	}
	gold, err := c.CreateUsagePlan(ctx, UsagePlanInput{ID: "gold", Name: "Gold", Rate: 5, Burst: 5,
		Quota:  &config.Quota{Limit: 1000, Period: config.QuotaDay},
		Stages: []config.PlanStage{{APIID: "pets", Stage: "prod", Methods: map[string]config.Throttle{"GET /v": {Rate: 1, Burst: 1}}}}})
	if err != nil {
		t.Fatal(err)
	}
	if gold.Stages[0].APIID != api.ID {
		t.Errorf("the plan stores the API name, not its ID: %+v", gold.Stages)
	}
	auto, err := c.CreateUsagePlan(ctx, UsagePlanInput{Name: "Free", Stages: []config.PlanStage{{APIID: api.ID, Stage: "test"}}})
	if err != nil || !strings.HasPrefix(auto.ID, "p") {
		t.Fatalf("plan with a generated ID: %v %+v", err, auto)
	}
	for _, tc := range []struct {
		in       UsagePlanInput
		kind     Kind
		contains string
	}{
		{UsagePlanInput{ID: "gold", Name: "Again"}, Conflict, `usage plan "gold" already exists`},
		{UsagePlanInput{Name: "x", Stages: []config.PlanStage{{APIID: "nope", Stage: "prod"}}}, NotFound, `API "nope" does not exist`},
		{UsagePlanInput{Name: "x", Stages: []config.PlanStage{{APIID: "pets", Stage: "staging"}}}, NotFound, `API "pets" has no stage "staging"`},
		{UsagePlanInput{Name: "x", Stages: []config.PlanStage{{Stage: "prod"}}}, Invalid, "has no apiId"},
		{UsagePlanInput{Name: "x", Stages: []config.PlanStage{{APIID: "pets", Stage: "prod"}, {APIID: api.ID, Stage: "prod"}}}, Invalid, "twice"},
		{UsagePlanInput{Name: "x", Stages: []config.PlanStage{{APIID: "pets", Stage: "prod", Methods: map[string]config.Throttle{"GET /cats": {Rate: 1, Burst: 1}}}}}, Invalid, `API "pets" has no such route (its routes: GET /pets, GET /v)`},
		{UsagePlanInput{Name: "x", Stages: []config.PlanStage{{APIID: "pets", Stage: "prod", Methods: map[string]config.Throttle{"get /v": {Rate: 1, Burst: 1}}}}}, Invalid, "route key"},
		{UsagePlanInput{Name: "x", Rate: 5}, Invalid, "burst"},
		{UsagePlanInput{Name: "x", Quota: &config.Quota{Limit: 10, Period: "YEAR"}}, Invalid, "quota period"},
		{UsagePlanInput{ID: "bad id", Name: "x"}, Invalid, "usage plan ID"},
		{UsagePlanInput{}, Invalid, "usage plan name"},
	} {
		_, err := c.CreateUsagePlan(ctx, tc.in)
		wantKind(t, fmt.Sprintf("create %+v", tc.in), err, tc.kind, tc.contains)
	}

	// One plan per stage for a key.
	k, err := c.CreateAPIKey(ctx, APIKeyInput{Name: "app", PlanIDs: []string{"gold"}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.AttachKey(ctx, auto.ID, k.ID); err != nil {
		t.Fatalf("attach to a plan of another stage: %v", err)
	}
	if again, err := c.AttachKey(ctx, "gold", k.ID); err != nil || !slices.Equal(again.PlanIDs, []string{"gold", auto.ID}) {
		t.Errorf("attaching twice: %v %+v", err, again)
	}
	both, err := c.CreateUsagePlan(ctx, UsagePlanInput{ID: "both", Name: "Both", Stages: []config.PlanStage{{APIID: "pets", Stage: "prod"}}})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.AttachKey(ctx, both.ID, k.ID)
	wantKind(t, "attach to a second plan for pets/prod", err, Conflict, "a key may be on only one plan per stage")
	// Updating a plan so that a key would be on two plans for a stage is
	// refused, naming the key.
	_, err = c.UpdateUsagePlan(ctx, auto.ID, UsagePlanInput{Name: "Free", Stages: []config.PlanStage{{APIID: "pets", Stage: "test"}, {APIID: "pets", Stage: "prod"}}})
	wantKind(t, "update into an overlap", err, Conflict, k.ID)
	up, err := c.UpdateUsagePlan(ctx, "gold", UsagePlanInput{Name: "Gold+", Rate: 10, Burst: 20, Stages: gold.Stages})
	if err != nil || up.Rate != 10 || up.Quota != nil || !up.CreatedAt.Equal(gold.CreatedAt) {
		t.Errorf("update replaces the settings: %v %+v", err, up)
	}
	_, err = c.UpdateUsagePlan(ctx, "gold", UsagePlanInput{ID: "silver", Name: "x"})
	wantKind(t, "update with another ID", err, Invalid, "cannot change")
	_, err = c.UpdateUsagePlan(ctx, "nope", UsagePlanInput{Name: "x"})
	wantKind(t, "update unknown", err, NotFound, `usage plan "nope" does not exist`)

	// A plan with keys cannot be deleted; the message names them.
	wantKind(t, "delete a plan in use", c.DeleteUsagePlan(ctx, "gold"), Conflict, `usage plan "gold" still has 1 API key on it (`+k.ID+`)`)
	wantKind(t, "detach a key not on the plan", c.DetachKey(ctx, both.ID, k.ID), NotFound, "is not on usage plan")
	if err := c.DetachKey(ctx, "gold", k.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteUsagePlan(ctx, "gold"); err != nil {
		t.Fatal(err)
	}
	plans, err := c.UsagePlans(ctx)
	if err != nil || len(plans) != 2 || plans[0].Name != "Both" || plans[1].Name != "Free" {
		t.Errorf("plans: %v %+v", err, plans)
	}
	snap := c.Snapshot()
	if len(snap.UsagePlans) != 2 || len(snap.APIKeys) != 1 || !slices.Equal(snap.APIKeys[0].PlanIDs, []string{auto.ID}) {
		t.Errorf("snapshot: plans %+v keys %+v", snap.UsagePlans, snap.APIKeys)
	}
}

func TestAccessKeys(t *testing.T) {
	ctx := context.Background()
	c, _, _ := accessControl(t)
	a, err := c.CreateAccessKey(ctx, AccessKeyInput{Principal: "arn:portico:user/alice"})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(a.ID, "PTK") || len(a.ID) != 20 || len(a.Secret) != 40 || !a.Enabled {
		t.Errorf("created: %+v", a)
	}
	_, err = c.CreateAccessKey(ctx, AccessKeyInput{})
	wantKind(t, "no principal", err, Invalid, "principal")
	_, err = c.CreateAccessKey(ctx, AccessKeyInput{Principal: "a\nb"})
	wantKind(t, "control character", err, Invalid, "control character")
	snap := c.Snapshot()
	if len(snap.AccessKeys) != 1 || snap.AccessKeys[0].Secret != a.Secret {
		t.Fatal("the snapshot lacks the access key and its secret")
	}
	list, err := c.AccessKeys(ctx)
	if err != nil || len(list) != 1 || list[0].Principal != "arn:portico:user/alice" || strings.Contains(fmt.Sprintf("%+v", list), a.Secret) {
		t.Errorf("list: %v %+v", err, list)
	}
	off := false
	if got, err := c.UpdateAccessKey(ctx, a.ID, AccessKeyPatch{Enabled: &off}); err != nil || got.Enabled {
		t.Errorf("disable: %v %+v", err, got)
	}
	if c.Snapshot().AccessKeys[0].Enabled {
		t.Error("the snapshot still has the access key enabled")
	}
	bob := "arn:portico:user/bob"
	if got, err := c.UpdateAccessKey(ctx, a.ID, AccessKeyPatch{Principal: &bob}); err != nil || got.Principal != bob {
		t.Errorf("change principal: %v %+v", err, got)
	}
	wantKind(t, "delete unknown", c.DeleteAccessKey(ctx, "PTKNOPE"), NotFound, `access key "PTKNOPE" does not exist`)
	if err := c.DeleteAccessKey(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if len(c.Snapshot().AccessKeys) != 0 {
		t.Error("deleted access key still in the snapshot")
	}
}

func TestUsageReportsAndQueries(t *testing.T) {
	ctx := context.Background()
	c, _, now := accessControl(t)
	gold, err := c.CreateUsagePlan(ctx, UsagePlanInput{ID: "gold", Name: "Gold", Stages: []config.PlanStage{{APIID: "pets", Stage: "prod"}}})
	if err != nil {
		t.Fatal(err)
	}
	free, err := c.CreateUsagePlan(ctx, UsagePlanInput{ID: "free", Name: "Free", Stages: []config.PlanStage{{APIID: "pets", Stage: "test"}}})
	if err != nil {
		t.Fatal(err)
	}
	a, _ := c.CreateAPIKey(ctx, APIKeyInput{Name: "a", PlanIDs: []string{gold.ID, free.ID}})
	b, _ := c.CreateAPIKey(ctx, APIKeyInput{Name: "b", PlanIDs: []string{gold.ID}})
	idle, _ := c.CreateAPIKey(ctx, APIKeyInput{Name: "idle", PlanIDs: []string{gold.ID}})
	v := c.Snapshot().Version

	rep := UsageReport{ID: "r1", Deltas: []UsageDelta{
		{KeyID: a.ID, PlanID: "gold", Day: "2026-11-24", Count: 3},
		{KeyID: a.ID, PlanID: "gold", Day: "2026-11-25", Count: 4},
		{KeyID: a.ID, PlanID: "free", Day: "2026-11-25", Count: 10},
		{KeyID: b.ID, PlanID: "gold", Day: "2026-11-25", Count: 2},
		{KeyID: "kdeleted", PlanID: "gold", Day: "2026-11-25", Count: 7},
		{KeyID: b.ID, PlanID: "gold", Day: "2026-13-01", Count: 1},
		{KeyID: b.ID, PlanID: "gold", Day: "2024-01-01", Count: 1},
		{KeyID: b.ID, PlanID: "gold", Day: "2026-11-25", Count: -1},
	}}
	res, err := c.RecordUsage(ctx, rep)
	if err != nil || res.Duplicate || res.Counted != 19 || res.Skipped != 4 {
		t.Fatalf("record: %v %+v", err, res)
	}
	// The same report again (an edge retrying after a lost answer) is
	// not counted twice.
	res, err = c.RecordUsage(ctx, rep)
	if err != nil || !res.Duplicate || res.Counted != 0 {
		t.Fatalf("retried report: %v %+v", err, res)
	}
	if c.Snapshot().Version != v {
		t.Error("usage changed the snapshot")
	}
	_, err = c.RecordUsage(ctx, UsageReport{ID: "bad id"})
	wantKind(t, "bad report ID", err, Invalid, "report ID")
	_, err = c.RecordUsage(ctx, UsageReport{ID: "big", Deltas: make([]UsageDelta, MaxUsageDeltas+1)})
	wantKind(t, "too many deltas", err, Invalid, "at most 10000")

	u, err := c.APIKeyUsage(ctx, a.ID, "", "")
	if err != nil {
		t.Fatal(err)
	}
	if u.From != "2026-10-27" || u.To != "2026-11-25" || u.Total != 17 || len(u.Keys) != 1 ||
		!slices.Equal(u.Keys[0].Days, []store.DayCount{{Day: "2026-11-24", Count: 3}, {Day: "2026-11-25", Count: 14}}) {
		t.Errorf("key usage: %+v", u)
	}
	u, err = c.APIKeyUsage(ctx, a.ID, "2026-11-25", "2026-11-25")
	if err != nil || u.Total != 14 {
		t.Errorf("key usage of one day: %v %+v", err, u)
	}

	u, err = c.PlanUsage(ctx, "gold", "", "2026-11-01", "2026-11-30")
	if err != nil {
		t.Fatal(err)
	}
	if u.Total != 9 || len(u.Keys) != 3 {
		t.Fatalf("plan usage: %+v", u)
	}
	byID := map[string]KeyUsage{}
	for _, k := range u.Keys {
		byID[k.KeyID] = k
	}
	if byID[a.ID].Total != 7 || byID[b.ID].Total != 2 || byID[b.ID].Name != "b" || byID[idle.ID].Total != 0 || byID[idle.ID].Days == nil {
		t.Errorf("plan usage per key: %+v", byID)
	}
	u, err = c.PlanUsage(ctx, "gold", b.ID, "2026-11-01", "2026-11-30")
	if err != nil || u.Total != 2 || len(u.Keys) != 1 || u.Keys[0].KeyID != b.ID {
		t.Errorf("plan usage of one key: %v %+v", err, u)
	}
	u, err = c.PlanUsage(ctx, "free", "", "2026-11-25", "")
	if err != nil || u.Total != 10 {
		t.Errorf("free plan: %v %+v", err, u)
	}

	for _, tc := range []struct{ from, to, contains string }{
		{"2026-11-31", "", `from "2026-11-31" is not a date`},
		{"", "25/11/2026", `to "25/11/2026" is not a date`},
		{"2026-11-26", "2026-11-25", "is after"},
		{"2025-01-01", "2026-11-25", "at most 366"},
	} {
		_, err := c.APIKeyUsage(ctx, a.ID, tc.from, tc.to)
		wantKind(t, tc.from+" "+tc.to, err, Invalid, tc.contains)
	}
	_, err = c.PlanUsage(ctx, "nope", "", "", "")
	wantKind(t, "unknown plan", err, NotFound, "does not exist")
	_, err = c.PlanUsage(ctx, "gold", "knope", "", "")
	wantKind(t, "unknown key", err, NotFound, "does not exist")

	// Deleting a key deletes its usage, under every plan.
	if err := c.DetachKey(ctx, "free", a.ID); err != nil {
		t.Fatal(err)
	}
	if err := c.DeleteAPIKey(ctx, a.ID); err != nil {
		t.Fatal(err)
	}
	if u, _ := c.PlanUsage(ctx, "free", "", "2026-11-01", "2026-11-30"); u.Total != 0 || len(u.Keys) != 0 {
		t.Errorf("a deleted key's usage under a plan it had left: %+v", u)
	}
	if u, _ := c.PlanUsage(ctx, "gold", "", "2026-11-01", "2026-11-30"); u.Total != 2 {
		t.Errorf("gold after deleting a key: %+v", u)
	}

	// Report IDs are forgotten after the retention period.
	*now = now.Add(UsageReportRetention + 2*time.Hour)
	if _, err := c.RecordUsage(ctx, UsageReport{ID: "r2"}); err != nil {
		t.Fatal(err)
	}
	res, err = c.RecordUsage(ctx, UsageReport{ID: "r1"})
	if err != nil || res.Duplicate {
		t.Errorf("report r1 should have been forgotten after %v: %v %+v", UsageReportRetention, err, res)
	}
}

// TestConcurrentUsageReports checks that reports from many edges at once
// add up exactly.
func TestConcurrentUsageReports(t *testing.T) {
	ctx := context.Background()
	c, _, _ := accessControl(t)
	k, err := c.CreateAPIKey(ctx, APIKeyInput{Name: "k"})
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 10 {
				id := fmt.Sprintf("e%d-%d", i, j)
				for range 2 { // every report is sent twice
					if _, err := c.RecordUsage(ctx, UsageReport{ID: id, Deltas: []UsageDelta{{KeyID: k.ID, Day: "2026-11-25", Count: 3}}}); err != nil {
						t.Error(err)
					}
				}
			}
		}()
	}
	wg.Wait()
	u, err := c.APIKeyUsage(ctx, k.ID, "2026-11-25", "2026-11-25")
	if err != nil || u.Total != 8*10*3 {
		t.Errorf("total %d, want %d (%v)", u.Total, 8*10*3, err)
	}
}
