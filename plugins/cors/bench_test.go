package cors_test

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/cors"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
)

func BenchmarkCORSActual(b *testing.B) {
	f, _ := cors.NewFactory(nil)
	p, err := f.New(b.Context(), config.PolicySpec{Type: "cors", Config: json.RawMessage(apiCfg)}, plugins.Scope{})
	edgetest.Must(b, err)
	h := p.Wrap(edgetest.OK)
	r := httptest.NewRequest("GET", "/pets", nil)
	r.Header.Set("Origin", "https://x.example.org")
	ex := &plugins.Exchange{Request: r}
	w := edgetest.NewDiscard()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		h.ServeExchange(w, ex)
	}
}
