package cache

import (
	"errors"
	"fmt"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

type prometheusRegisterer = prometheus.Registerer

// metrics are the store's Prometheus collectors. They are node-wide: a
// label per stage would grow with the number of tenants.
type metrics struct {
	requests    *prometheus.CounterVec
	hit         prometheus.Counter
	miss        prometheus.Counter
	stale       prometheus.Counter
	revalidated prometheus.Counter
	bypass      prometheus.Counter
	evictions   prometheus.Counter
	coalesced   prometheus.Counter
	refreshes   prometheus.Counter
	purged      prometheus.Counter
	collectors  []prometheus.Collector
	// counts mirror the request counters for the hit ratio.
	counts [numResults]atomic.Uint64
}

func newMetrics(s *Store) *metrics {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Namespace: "portico", Subsystem: "cache", Name: "requests_total",
			Help: "Requests the cache considered, by result: hit, miss, stale, revalidated, bypass (not eligible: credentials, body, Range, method).",
		}, []string{"result"}),
		evictions: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "portico", Subsystem: "cache", Name: "evictions_total",
			Help: "Objects evicted to stay within the memory budget.",
		}),
		coalesced: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "portico", Subsystem: "cache", Name: "coalesced_total",
			Help: "Requests that waited for another request's fetch of the same key instead of going to the origin.",
		}),
		refreshes: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "portico", Subsystem: "cache", Name: "background_refreshes_total",
			Help: "Background refreshes started for stale-while-revalidate.",
		}),
		purged: prometheus.NewCounter(prometheus.CounterOpts{
			Namespace: "portico", Subsystem: "cache", Name: "purged_total",
			Help: "Objects removed by purges.",
		}),
	}
	m.hit = m.requests.WithLabelValues("hit")
	m.miss = m.requests.WithLabelValues("miss")
	m.stale = m.requests.WithLabelValues("stale")
	m.revalidated = m.requests.WithLabelValues("revalidated")
	m.bypass = m.requests.WithLabelValues("bypass")
	m.collectors = []prometheus.Collector{
		m.requests, m.evictions, m.coalesced, m.refreshes, m.purged,
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "portico", Subsystem: "cache", Name: "bytes",
			Help: "Bytes stored, as the sum of object weights (body, headers, key, per-object overhead).",
		}, func() float64 { return float64(s.Bytes()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "portico", Subsystem: "cache", Name: "budget_bytes",
			Help: "The node's memory budget for the cache.",
		}, func() float64 { return float64(s.budget) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "portico", Subsystem: "cache", Name: "objects",
			Help: "Entries in the store (responses and Vary / hit-for-miss markers).",
		}, func() float64 { return float64(s.Objects()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Namespace: "portico", Subsystem: "cache", Name: "hit_ratio",
			Help: "Share of considered requests answered from the cache (hit, stale, revalidated) since the node started.",
		}, m.hitRatio),
	}
	return m
}

// result is what the cache did with a request, for metrics.
type result uint8

const (
	resHit result = iota
	resMiss
	resStale
	resRevalidated
	resBypass
	numResults
)

func (m *metrics) count(r result) {
	m.counts[r].Add(1)
	switch r {
	case resHit:
		m.hit.Inc()
	case resMiss:
		m.miss.Inc()
	case resStale:
		m.stale.Inc()
	case resRevalidated:
		m.revalidated.Inc()
	case resBypass:
		m.bypass.Inc()
	}
}

func (m *metrics) hitRatio() float64 {
	served := m.counts[resHit].Load() + m.counts[resStale].Load() + m.counts[resRevalidated].Load()
	total := served + m.counts[resMiss].Load() + m.counts[resBypass].Load()
	if total == 0 {
		return 0
	}
	return float64(served) / float64(total)
}

func (m *metrics) register(r prometheus.Registerer) error {
	for _, c := range m.collectors {
		if err := r.Register(c); err != nil {
			var are prometheus.AlreadyRegisteredError
			if errors.As(err, &are) {
				return fmt.Errorf("cache: metrics are already registered on this registry: give each store its own registry or share one store: %w", err)
			}
			return fmt.Errorf("cache: registering metrics: %w", err)
		}
	}
	return nil
}
