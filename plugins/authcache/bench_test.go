package authcache_test

import (
	"testing"
	"time"

	"github.com/portico-edge/portico/plugins/authcache"
)

func BenchmarkKeyAndGet(b *testing.B) {
	c, _ := authcache.New(authcache.Options{})
	token := "eyJhbGciOiJSUzI1NiJ9.eyJzdWIiOiJ1c2VyIn0.c2lnbmF0dXJlc2lnbmF0dXJlc2lnbmF0dXJl"
	c.Put(authcache.Key("jwt", "policy", token), authcache.Result{Principal: "u"}, time.Hour)
	b.ReportAllocs()
	for b.Loop() {
		if _, ok := c.Get(authcache.Key("jwt", "policy", token)); !ok {
			b.Fatal("miss")
		}
	}
}
