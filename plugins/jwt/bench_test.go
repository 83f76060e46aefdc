package jwt_test

import (
	"encoding/json"
	"net/http/httptest"
	"testing"

	"github.com/go-jose/go-jose/v4"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/authcache"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/jwt"
)

func benchJWT(b *testing.B, cached bool) {
	t := &testing.T{}
	key := newRSA(t, "k1")
	set, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.public()}})
	clock := edgetest.NewClock(t0)
	o := jwt.Options{Now: clock.Now}
	if cached {
		o.Cache, _ = authcache.New(authcache.Options{Now: clock.Now})
	}
	f, err := jwt.NewFactory(o)
	edgetest.Must(b, err)
	p, err := f.New(b.Context(), config.PolicySpec{Type: "jwt", Config: json.RawMessage(
		`{"issuer":"` + issuer + `","audiences":["app"],"keys":` + string(set) + `,"scopes":["pets:read"]}`)}, plugins.Scope{})
	edgetest.Must(b, err)
	h := p.Wrap(edgetest.OK)
	r := httptest.NewRequest("GET", "/pets", nil)
	r.Header.Set("Authorization", "Bearer "+key.sign(t, good(t0)))
	ex := &plugins.Exchange{Request: r}
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

// BenchmarkJWTCached is a token already verified (the common case).
func BenchmarkJWTCached(b *testing.B) { benchJWT(b, true) }

// BenchmarkJWTVerify verifies an RS256 token on every request.
func BenchmarkJWTVerify(b *testing.B) { benchJWT(b, false) }
