package runtime

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Phase names a kind of callback for the per-phase timing metric.
type Phase int

// Phases timed separately.
const (
	PhaseStart Phase = iota // _initialize, on_vm_start, on_configure
	PhaseRequestHeaders
	PhaseRequestBody
	PhaseRequestTrailers
	PhaseResponseHeaders
	PhaseResponseBody
	PhaseResponseTrailers
	PhaseAsync // http call responses, ticks, queue notifications
	PhaseDone  // context create, done, log, delete
	numPhases
)

var phaseNames = [numPhases]string{
	"start", "request_headers", "request_body", "request_trailers",
	"response_headers", "response_body", "response_trailers", "async", "lifecycle",
}

func (p Phase) String() string { return phaseNames[p] }

// Latency buckets in seconds, from 1 µs to 1 s.
var latencyBuckets = [...]float64{1e-6, 2e-6, 5e-6, 1e-5, 2e-5, 5e-5, 1e-4, 2.5e-4, 5e-4, 1e-3, 5e-3, 1e-2, 5e-2, 1e-1, 1}

// latencyBucketsNs are latencyBuckets in nanoseconds, for observe.
var latencyBucketsNs = func() (ns [len(latencyBuckets)]int64) {
	for i, b := range latencyBuckets {
		ns[i] = int64(b * 1e9)
	}
	return ns
}()

type histogram struct {
	counts [len(latencyBuckets) + 1]atomic.Uint64 // the last is +Inf
	sumNs  atomic.Int64
}

// observe records weight observations of d.
func (h *histogram) observe(d time.Duration, weight uint64) {
	ns := int64(d)
	i := 0
	for i < len(latencyBucketsNs) && ns > latencyBucketsNs[i] {
		i++
	}
	h.counts[i].Add(weight)
	h.sumNs.Add(ns * int64(weight))
}

// PluginMetrics are one plugin's counters. The hot path only does atomic
// adds; the engine's collector turns them into Prometheus metrics when
// scraped.
type PluginMetrics struct {
	name string

	Calls     atomic.Uint64 // callbacks into the guest
	Streams   atomic.Uint64 // requests that entered the plugin
	Errors    atomic.Uint64 // requests that got the failure policy
	Traps     atomic.Uint64 // instances lost to a trap
	Timeouts  atomic.Uint64 // instances lost to a deadline
	Instances atomic.Int64  // live instances
	Rejected  atomic.Uint64 // requests refused before reaching an instance (busy, unavailable)

	phases [numPhases]histogram

	// Extra, if set, adds metrics of the plugin's own (guest-defined
	// metrics) when scraped. Called with the collector's lock not held.
	Extra func(ch chan<- prometheus.Metric)
}

// CallTimer counts the callbacks of one instance and times a sample of them
// for the per-phase histogram. It is not safe for concurrent use: each
// instance has its own, used under the instance's lock.
//
// RATIONALE: timing a callback takes two readings of the monotonic clock,
// 35 ns each in a loop and about 90 ns between guest calls on the
// project's machines; a small authorizer's four or five callbacks spent
// more on them than on its guest code. So the first timedExactly calls of
// an instance are all timed (a new or lightly used plugin reports exact
// figures), and after that one call in sampleEvery, picked at random so
// that no phase is favoured by the order of callbacks; each sampled call is
// recorded sampleEvery times. The histogram's counts and sum are then
// estimates whose error shrinks with traffic; portico_wasm_calls_total
// stays an exact count.
type CallTimer struct {
	m     *PluginMetrics
	calls uint64 // calls begun
	rnd   uint32 // xorshift state, never zero
	start int64  // when the call being timed began; 0 when not timed
}

// Sampling of CallTimer.
const (
	timedExactly = 256
	sampleEvery  = 16
)

// NewCallTimer returns a timer for one instance of the plugin.
func (m *PluginMetrics) NewCallTimer() CallTimer {
	return CallTimer{m: m, rnd: uint32(Nanotime()) | 1}
}

// Begin marks the start of a callback.
func (t *CallTimer) Begin() {
	t.calls++
	if t.calls <= timedExactly {
		t.start = Nanotime()
		return
	}
	x := t.rnd
	x ^= x << 13
	x ^= x >> 17
	x ^= x << 5
	t.rnd = x
	if x%sampleEvery == 0 {
		t.start = Nanotime()
	}
}

// End marks the end of the callback Begin started, of phase p.
func (t *CallTimer) End(p Phase) {
	t.m.Calls.Add(1)
	if t.start == 0 {
		return
	}
	weight := uint64(sampleEvery)
	if t.calls <= timedExactly {
		weight = 1
	}
	t.m.phases[p].observe(time.Duration(Nanotime()-t.start), weight)
	t.start = 0
}

// Name is the label the plugin's metrics carry.
func (m *PluginMetrics) Name() string { return m.name }

// Snapshot is a copy of a plugin's counters, for tests and status pages.
type Snapshot struct {
	Calls, Streams, Errors, Traps, Timeouts, Rejected uint64
	Instances                                         int64
	PhaseCalls                                        map[string]uint64
}

// Snapshot copies the counters.
func (m *PluginMetrics) Snapshot() Snapshot {
	s := Snapshot{
		Calls: m.Calls.Load(), Streams: m.Streams.Load(), Errors: m.Errors.Load(), Traps: m.Traps.Load(),
		Timeouts: m.Timeouts.Load(), Rejected: m.Rejected.Load(), Instances: m.Instances.Load(),
		PhaseCalls: make(map[string]uint64, numPhases),
	}
	for i := range m.phases {
		var n uint64
		for j := range m.phases[i].counts {
			n += m.phases[i].counts[j].Load()
		}
		s.PhaseCalls[Phase(i).String()] = n
	}
	return s
}

// NewPluginMetrics returns counters for a plugin, exported by the engine
// until Unregister.
func (e *Engine) NewPluginMetrics(name string) *PluginMetrics {
	m := &PluginMetrics{name: name}
	e.metrics.mu.Lock()
	e.metrics.plugins[m] = struct{}{}
	e.metrics.mu.Unlock()
	return m
}

// UnregisterPluginMetrics stops exporting a plugin's metrics.
func (e *Engine) UnregisterPluginMetrics(m *PluginMetrics) {
	e.metrics.mu.Lock()
	delete(e.metrics.plugins, m)
	e.metrics.mu.Unlock()
}

type collector struct {
	mu      sync.Mutex
	plugins map[*PluginMetrics]struct{}

	calls, streams, errors, traps, timeouts, rejected, instances, latency *prometheus.Desc
}

func newCollector() *collector {
	l := []string{"plugin"}
	return &collector{
		plugins:   make(map[*PluginMetrics]struct{}),
		calls:     prometheus.NewDesc("portico_wasm_calls_total", "Callbacks into WASM plugins.", l, nil),
		streams:   prometheus.NewDesc("portico_wasm_streams_total", "Requests that entered a WASM plugin.", l, nil),
		errors:    prometheus.NewDesc("portico_wasm_errors_total", "Requests that got a WASM plugin's failure policy.", l, nil),
		traps:     prometheus.NewDesc("portico_wasm_traps_total", "WASM instances discarded after a trap.", l, nil),
		timeouts:  prometheus.NewDesc("portico_wasm_timeouts_total", "WASM instances discarded after a callback ran past its deadline.", l, nil),
		rejected:  prometheus.NewDesc("portico_wasm_rejected_total", "Requests refused because no WASM instance was free or healthy.", l, nil),
		instances: prometheus.NewDesc("portico_wasm_instances", "Live WASM instances.", l, nil),
		latency:   prometheus.NewDesc("portico_wasm_callback_seconds", "Time spent in WASM callbacks, by phase.", []string{"plugin", "phase"}, nil),
	}
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.calls, c.streams, c.errors, c.traps, c.timeouts, c.rejected, c.instances, c.latency} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	c.mu.Lock()
	ps := make([]*PluginMetrics, 0, len(c.plugins))
	for m := range c.plugins {
		ps = append(ps, m)
	}
	c.mu.Unlock()
	for _, m := range ps {
		ch <- prometheus.MustNewConstMetric(c.calls, prometheus.CounterValue, float64(m.Calls.Load()), m.name)
		ch <- prometheus.MustNewConstMetric(c.streams, prometheus.CounterValue, float64(m.Streams.Load()), m.name)
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(m.Errors.Load()), m.name)
		ch <- prometheus.MustNewConstMetric(c.traps, prometheus.CounterValue, float64(m.Traps.Load()), m.name)
		ch <- prometheus.MustNewConstMetric(c.timeouts, prometheus.CounterValue, float64(m.Timeouts.Load()), m.name)
		ch <- prometheus.MustNewConstMetric(c.rejected, prometheus.CounterValue, float64(m.Rejected.Load()), m.name)
		ch <- prometheus.MustNewConstMetric(c.instances, prometheus.GaugeValue, float64(m.Instances.Load()), m.name)
		for i := range m.phases {
			h := &m.phases[i]
			buckets := make(map[float64]uint64, len(latencyBuckets))
			var cum uint64
			for j, ub := range latencyBuckets {
				cum += h.counts[j].Load()
				buckets[ub] = cum
			}
			cum += h.counts[len(latencyBuckets)].Load()
			if cum == 0 {
				continue
			}
			ch <- prometheus.MustNewConstHistogram(c.latency, cum, float64(h.sumNs.Load())/1e9, buckets, m.name, Phase(i).String())
		}
		if m.Extra != nil {
			m.Extra(ch)
		}
	}
}
