package ipfilter_test

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"testing"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/ipfilter"
)

// BenchmarkIP checks an address against 1,000 denied and 1,000 allowed networks.
func BenchmarkIP(b *testing.B) {
	var allow, deny []string
	for i := range 1000 {
		allow = append(allow, fmt.Sprintf("10.%d.%d.0/24", i/256, i%256))
		deny = append(deny, fmt.Sprintf("172.16.%d.%d/32", i/256, i%256))
	}
	cfg, _ := json.Marshal(ipfilter.Config{Allow: allow, Deny: deny})
	f, _ := ipfilter.NewFactory(nil)
	p, err := f.New(b.Context(), config.PolicySpec{Type: "ip", Config: cfg}, plugins.Scope{})
	edgetest.Must(b, err)
	h := p.Wrap(edgetest.OK)
	ex := &plugins.Exchange{Request: httptest.NewRequest("GET", "/", nil), Client: netip.MustParseAddr("10.3.200.7")}
	w := edgetest.NewDiscard()
	b.ReportAllocs()
	for b.Loop() {
		w.Reset()
		h.ServeExchange(w, ex)
		if w.Status != 200 {
			b.Fatal(w.Status)
		}
	}
}

func BenchmarkClientAddr(b *testing.B) {
	r := httptest.NewRequest("GET", "/", nil)
	r.RemoteAddr = "10.0.0.1:5555"
	r.Header.Set("X-Forwarded-For", "6.6.6.6, 198.51.100.7, 10.1.1.1")
	trusted := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	b.ReportAllocs()
	for b.Loop() {
		_ = ipfilter.ClientAddr(r, trusted)
	}
}
