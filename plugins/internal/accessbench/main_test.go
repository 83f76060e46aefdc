package main

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
)

// BenchmarkChain is the CPU cost per request of the measured chain
// (api-key with a usage plan's throttle and quota, then jwt with a cached
// token) against an empty chain, in process, without network or proxying:
// what the access policies add to every request at the edge.
func BenchmarkChain(b *testing.B) {
	a, err := newAccess()
	edgetest.Must(b, err)
	for _, c := range []struct {
		name  string
		specs []config.PolicySpec
	}{{"none", nil}, {"access", a.specs}} {
		b.Run(c.name, func(b *testing.B) {
			var att []plugins.Attached
			for _, s := range c.specs {
				att = append(att, plugins.Attached{Spec: s, Scope: plugins.Scope{APIID: "pets", Stage: "prod", Route: "GET /pets"}})
			}
			h, _, err := a.reg.Build(context.Background(), att, edgetest.OK)
			edgetest.Must(b, err)
			r := httptest.NewRequest("GET", "/pets", nil)
			r.Header.Set("X-Api-Key", a.key)
			r.Header.Set("Authorization", "Bearer "+a.token)
			ex := &plugins.Exchange{Request: r, API: &config.SnapshotAPI{ID: "pets"}, Stage: &config.Stage{APIID: "pets", Name: "prod"},
				Route: &config.Route{Method: "GET", Path: "/pets"}}
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
		})
	}
}
