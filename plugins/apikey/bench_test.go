package apikey_test

import (
	"encoding/json"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/apikey"
	"github.com/portico-edge/portico/plugins/authfail"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/ratelimit"
)

// BenchmarkAPIKey is the hot path of an accepted key on a plan with a
// throttle and a quota, with the failed-auth guard on.
func BenchmarkAPIKey(b *testing.B) {
	key, hash, _ := config.GenerateAPIKey()
	plans := []config.UsagePlan{{ID: "gold", Name: "Gold", Rate: 1e6, Burst: 1e6,
		Quota:  &config.Quota{Limit: 1 << 62, Period: config.QuotaMonth},
		Stages: []config.PlanStage{{APIID: "pets", Stage: "prod"}}}}
	table, err := apikey.NewTable([]config.APIKey{{ID: "k1", Name: "k", Hash: hash, Enabled: true, PlanIDs: []string{"gold"}}}, plans)
	edgetest.Must(b, err)
	mem := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	g, _ := authfail.New(authfail.Options{})
	f, err := apikey.NewFactory(apikey.Options{Keys: table, Plans: table, Limiter: mem, Quotas: mem, Usage: apikey.NewUsage(), Guard: g})
	edgetest.Must(b, err)
	p, err := f.New(b.Context(), config.PolicySpec{Type: "api-key", Config: json.RawMessage(`{}`)}, plugins.Scope{APIID: "pets"})
	edgetest.Must(b, err)
	h := p.Wrap(edgetest.OK)
	r := httptest.NewRequest("GET", "/pets", nil)
	r.Header.Set("X-Api-Key", key)
	ex := &plugins.Exchange{Request: r, API: &config.SnapshotAPI{ID: "pets"}, Stage: &config.Stage{Name: "prod"},
		Route: &config.Route{Method: "GET", Path: "/pets"}, Start: time.Now()}
	w := edgetest.NewDiscard()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		ex.Identity = plugins.Identity{}
		h.ServeExchange(w, ex)
		if w.Status != 200 {
			b.Fatal(w.Status)
		}
	}
}
