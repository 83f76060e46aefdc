package sigv4_test

import (
	"context"
	"net/http/httptest"
	"testing"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/authcache"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/sigv4"
)

func BenchmarkSigV4(b *testing.B) {
	clock := edgetest.NewClock(t0)
	table, _ := sigv4.NewTable([]config.AccessKey{{ID: akid, Secret: secret, Principal: "alice", Enabled: true}})
	cache, _ := authcache.New(authcache.Options{Now: clock.Now})
	f, err := sigv4.NewFactory(sigv4.Options{Keys: table, Cache: cache, Now: clock.Now})
	edgetest.Must(b, err)
	p, err := f.New(b.Context(), config.PolicySpec{Type: "sigv4"}, plugins.Scope{})
	edgetest.Must(b, err)
	h := p.Wrap(edgetest.OK)
	r := httptest.NewRequest("GET", "http://api.example.com/pets?limit=10", nil)
	r.RequestURI = "/pets?limit=10"
	edgetest.Must(b, v4.NewSigner().SignHTTP(context.Background(), aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret}, r, hashOf(nil), "execute-api", "eu-west-1", t0))
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
