package authcache_test

import (
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"

	"github.com/portico-edge/portico/plugins/authcache"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
)

func counter(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	edgetest.Must(t, err)
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			if label(m, "result") == result {
				return m.GetCounter().GetValue()
			}
		}
	}
	return 0
}

func label(m *dto.Metric, name string) string {
	for _, l := range m.Label {
		if l.GetName() == name {
			return l.GetValue()
		}
	}
	return ""
}

func TestTTLAndLRU(t *testing.T) {
	clock := edgetest.NewClock(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC))
	reg := prometheus.NewRegistry()
	c, err := authcache.New(authcache.Options{MaxEntries: 3, Now: clock.Now, Registerer: reg})
	edgetest.Must(t, err)
	k := func(i int) authcache.CacheKey { return authcache.Key("test", fmt.Sprint(i)) }
	for i := range 3 {
		c.Put(k(i), authcache.Result{Principal: fmt.Sprint("p", i)}, time.Minute)
	}
	if r, ok := c.Get(k(0)); !ok || r.Principal != "p0" { // 0 is now most recent
		t.Fatalf("get 0: %v %v", r, ok)
	}
	c.Put(k(3), authcache.Result{Principal: "p3"}, time.Minute) // evicts 1, the least recent
	if _, ok := c.Get(k(1)); ok {
		t.Fatal("1 should have been evicted")
	}
	for _, i := range []int{0, 2, 3} {
		if _, ok := c.Get(k(i)); !ok {
			t.Fatalf("%d missing", i)
		}
	}
	if c.Len() != 3 {
		t.Fatalf("len %d", c.Len())
	}
	clock.Advance(time.Minute)
	if _, ok := c.Get(k(0)); ok {
		t.Fatal("expired entry returned")
	}
	c.Put(k(9), authcache.Result{}, 0) // zero TTL stores nothing
	if _, ok := c.Get(k(9)); ok {
		t.Fatal("zero TTL stored")
	}
	if h, m, e := counter(t, reg, "hit"), counter(t, reg, "miss"), counter(t, reg, "evicted"); h != 4 || m != 3 || e != 1 {
		t.Fatalf("hits %v misses %v evicted %v; want 4, 3, 1", h, m, e)
	}
}

func TestKeyIsUnambiguous(t *testing.T) {
	if authcache.Key("ab", "c") == authcache.Key("a", "bc") {
		t.Fatal("parts are not separated")
	}
}

func TestConcurrentUse(t *testing.T) {
	c, err := authcache.New(authcache.Options{MaxEntries: 100})
	edgetest.Must(t, err)
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				k := authcache.Key(fmt.Sprint(g, i%150))
				if _, ok := c.Get(k); !ok {
					c.Put(k, authcache.Result{Principal: "x"}, time.Minute)
				}
			}
		}()
	}
	wg.Wait()
	if c.Len() > 100 {
		t.Fatalf("cache grew to %d entries past its cap of 100", c.Len())
	}
}
