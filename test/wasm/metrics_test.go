package wasmtest

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/harness"
	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// TestMetricsExported checks that the node's own registry gets the plugin
// metrics, with values that follow the requests.
func TestMetricsExported(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := &harness.MemSource{}
	host, err := wasm.NewHost(context.Background(), wasm.HostConfig{DataDir: t.TempDir(), Source: src, Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(context.Background())
	b, err := harness.NewBackend(false)
	if err != nil {
		t.Fatal(err)
	}
	defer b.Close()
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}
	defer client.CloseIdleConnections()
	e := &env{t: t, src: src, host: host, backend: b, client: client}
	ed := e.edge(spec(wasm.TypeAuthorizer, map[string]any{"module": src.Add(wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c")), "config": "s3cr3t=alice", "instances": 1}))
	for i := 0; i < 3; i++ {
		e.do("GET", ed.URL+"/", map[string]string{"Authorization": "Bearer s3cr3t"}, "")
	}
	families, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range families {
		for _, m := range f.GetMetric() {
			switch {
			case m.GetCounter() != nil:
				got[f.GetName()] += m.GetCounter().GetValue()
			case m.GetGauge() != nil:
				got[f.GetName()] += m.GetGauge().GetValue()
			case m.GetHistogram() != nil:
				got[f.GetName()] += float64(m.GetHistogram().GetSampleCount())
			}
		}
	}
	if got["portico_wasm_streams_total"] != 3 || got["portico_wasm_instances"] != 1 || got["portico_wasm_calls_total"] < 9 || got["portico_wasm_callback_seconds"] < 9 {
		t.Fatalf("metrics: %v", got)
	}
}
