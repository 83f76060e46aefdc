package proxywasm

import (
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/runtime"
)

// Shared data, queues and metrics belong to one Plugin: every instance of
// it sees them, and no other plugin does (two tenants attaching the same
// module never share state).

const (
	maxSharedKeys   = 10000
	maxSharedBytes  = 16 << 20
	maxQueues       = 64
	maxQueueItems   = 10000
	maxGuestMetrics = 1000
	maxNameLength   = 256
	minTickPeriod   = 10 * time.Millisecond
	maxSharedValue  = 1 << 20
)

type sharedEntry struct {
	value []byte
	cas   uint32
}

type sharedData struct {
	mu    sync.Mutex
	m     map[string]*sharedEntry
	bytes int
	cas   uint32
}

func (d *sharedData) init() { d.m = make(map[string]*sharedEntry) }

func (in *instance) getSharedData(s []uint64) Status {
	kp, ks, retPtr, retSize, retCas := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3]), u32(s[4])
	key, ok := in.readString(kp, ks)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	d := &in.p.shared
	d.mu.Lock()
	e, found := d.m[key]
	var v []byte
	var cas uint32
	if found {
		v, cas = e.value, e.cas
	}
	d.mu.Unlock()
	if !found {
		return StatusNotFound
	}
	if !in.writeU32(retCas, cas) {
		return StatusInvalidMemoryAccess
	}
	return in.give(v, retPtr, retSize)
}

func (in *instance) setSharedData(s []uint64) Status {
	kp, ks, vp, vs, cas := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3]), u32(s[4])
	key, ok1 := in.readString(kp, ks)
	val, ok2 := in.read(vp, vs)
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	if len(val) > maxSharedValue {
		return StatusBadArgument
	}
	d := &in.p.shared
	d.mu.Lock()
	defer d.mu.Unlock()
	e, found := d.m[key]
	if cas != 0 && (!found || e.cas != cas) {
		return StatusCASMismatch
	}
	old := 0
	if found {
		old = len(e.value) + len(key)
	} else if len(d.m) >= maxSharedKeys {
		return StatusInternalFailure
	}
	if d.bytes-old+len(val)+len(key) > maxSharedBytes {
		return StatusInternalFailure
	}
	d.cas++
	if d.cas == 0 {
		d.cas = 1
	}
	if !found {
		e = &sharedEntry{}
		d.m[key] = e
	}
	e.value = append([]byte(nil), val...)
	e.cas = d.cas
	d.bytes += len(val) + len(key) - old
	return StatusOK
}

type queue struct {
	id        uint32
	name      string
	items     [][]byte
	listeners []*instance
	notifying bool // a proxy_on_queue_ready is on its way
}

type queues struct {
	mu     sync.Mutex
	byName map[string]*queue
	byID   map[uint32]*queue
	next   uint32
}

func (q *queues) init() {
	q.byName = make(map[string]*queue)
	q.byID = make(map[uint32]*queue)
	q.next = 1
}

func (in *instance) registerQueue(s []uint64) Status {
	np, ns, retID := u32(s[0]), u32(s[1]), u32(s[2])
	name, ok := in.readString(np, ns)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	if len(name) > maxNameLength {
		return StatusBadArgument
	}
	qs := &in.p.queues
	qs.mu.Lock()
	q, found := qs.byName[name]
	if !found {
		if len(qs.byName) >= maxQueues {
			qs.mu.Unlock()
			return StatusInternalFailure
		}
		q = &queue{id: qs.next, name: name}
		qs.next++
		qs.byName[name] = q
		qs.byID[q.id] = q
	}
	listening := false
	for _, l := range q.listeners {
		listening = listening || l == in
	}
	if !listening {
		q.listeners = append(q.listeners, in)
	}
	id := q.id
	qs.mu.Unlock()
	if !in.writeU32(retID, id) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

func (in *instance) resolveQueue(s []uint64) Status {
	vp, vs, np, ns, retID := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3]), u32(s[4])
	vm, ok1 := in.readString(vp, vs)
	name, ok2 := in.readString(np, ns)
	if !ok1 || !ok2 {
		return StatusInvalidMemoryAccess
	}
	if vm != "" && vm != in.p.cfg.VMID {
		return StatusNotFound
	}
	qs := &in.p.queues
	qs.mu.Lock()
	q, found := qs.byName[name]
	qs.mu.Unlock()
	if !found {
		return StatusNotFound
	}
	if !in.writeU32(retID, q.id) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

func (in *instance) enqueue(s []uint64) Status {
	id, vp, vs := u32(s[0]), u32(s[1]), u32(s[2])
	val, ok := in.read(vp, vs)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	if len(val) > maxSharedValue {
		return StatusBadArgument
	}
	qs := &in.p.queues
	qs.mu.Lock()
	q, found := qs.byID[id]
	if !found {
		qs.mu.Unlock()
		return StatusNotFound
	}
	if len(q.items) >= maxQueueItems {
		qs.mu.Unlock()
		return StatusInternalFailure
	}
	q.items = append(q.items, append([]byte(nil), val...))
	var target *instance
	if !q.notifying {
		for _, l := range q.listeners {
			if !l.broken {
				target = l
				break
			}
		}
		q.notifying = target != nil
	}
	qs.mu.Unlock()
	if target != nil {
		// Deliver after the current callback: the target may be this very
		// instance, whose lock the caller holds. One notification at a time
		// per queue; the plugin drains the queue when it gets it.
		go target.notifyQueue(q)
	}
	return StatusOK
}

func (in *instance) notifyQueue(q *queue) {
	qs := &in.p.queues
	qs.mu.Lock()
	q.notifying = false
	qs.mu.Unlock()
	in.mu.Lock()
	defer in.mu.Unlock()
	if in.dead() {
		return
	}
	in.effective = nil
	if _, err := in.call(runtime.PhaseAsync, in.fn.queueReady, rootID, uint64(q.id)); err != nil {
		in.mu.Unlock()
		in.p.instanceFailed(in, false)
		in.mu.Lock()
		return
	}
	in.finalizePending()
}

func (in *instance) dequeue(s []uint64) Status {
	id, retPtr, retSize := u32(s[0]), u32(s[1]), u32(s[2])
	qs := &in.p.queues
	qs.mu.Lock()
	q, found := qs.byID[id]
	if !found {
		qs.mu.Unlock()
		return StatusNotFound
	}
	if len(q.items) == 0 {
		qs.mu.Unlock()
		return StatusEmpty
	}
	v := q.items[0]
	q.items[0] = nil
	q.items = q.items[1:]
	qs.mu.Unlock()
	return in.give(v, retPtr, retSize)
}

// --- ticks ---

func (in *instance) setTick(d time.Duration) {
	in.tickMu.Lock()
	defer in.tickMu.Unlock()
	if in.tickStop != nil {
		close(in.tickStop)
		in.tickStop = nil
	}
	in.tickPeriod = d
	if d <= 0 || in.broken {
		return
	}
	d = max(d, minTickPeriod)
	stop := make(chan struct{})
	in.tickStop = stop
	go func() {
		t := time.NewTicker(d)
		defer t.Stop()
		for {
			select {
			case <-stop:
				return
			case <-t.C:
			}
			in.mu.Lock()
			if in.dead() {
				in.mu.Unlock()
				return
			}
			in.effective = nil
			_, err := in.call(runtime.PhaseAsync, in.fn.tick, rootID)
			if err == nil {
				in.finalizePending()
			}
			in.mu.Unlock()
			if err != nil {
				in.p.instanceFailed(in, false)
				return
			}
		}
	}()
}

func (in *instance) stopTicks() {
	in.tickMu.Lock()
	if in.tickStop != nil {
		close(in.tickStop)
		in.tickStop = nil
	}
	in.tickMu.Unlock()
}

// --- guest-defined metrics ---

// guestBuckets are the upper bounds of guest histograms: powers of 4 from
// 1 to 4^11 (about 4 million), wide enough for microseconds or bytes.
var guestBuckets = func() []float64 {
	b := make([]float64, 12)
	v := 1.0
	for i := range b {
		b[i] = v
		v *= 4
	}
	return b
}()

type guestMetric struct {
	name   string
	typ    uint32
	value  uint64 // counter and gauge
	counts [13]uint64
	sum    float64
}

type guestMetrics struct {
	mu     sync.Mutex
	byName map[string]uint32
	list   []*guestMetric
}

func (g *guestMetrics) init() { g.byName = make(map[string]uint32) }

func (in *instance) defineMetric(s []uint64) Status {
	typ, np, ns, retID := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3])
	if typ > metricHistogram {
		return StatusBadArgument
	}
	name, ok := in.readString(np, ns)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	if len(name) == 0 || len(name) > maxNameLength {
		return StatusBadArgument
	}
	g := &in.p.gmetrics
	g.mu.Lock()
	key := string(rune('0'+typ)) + name
	id, found := g.byName[key]
	if !found {
		if len(g.list) >= maxGuestMetrics {
			g.mu.Unlock()
			return StatusInternalFailure
		}
		g.list = append(g.list, &guestMetric{name: name, typ: typ})
		id = uint32(len(g.list)) // ids start at 1
		g.byName[key] = id
	}
	g.mu.Unlock()
	if !in.writeU32(retID, id) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

func (g *guestMetrics) lookup(id uint32) *guestMetric {
	if id == 0 || int(id) > len(g.list) {
		return nil
	}
	return g.list[id-1]
}

func (g *guestMetrics) increment(id uint32, delta int64) Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.lookup(id)
	if m == nil {
		return StatusNotFound
	}
	switch m.typ {
	case metricCounter:
		if delta < 0 {
			return StatusBadArgument
		}
		m.value += uint64(delta)
	case metricGauge:
		m.value = uint64(int64(m.value) + delta)
	default:
		return StatusBadArgument
	}
	return StatusOK
}

func (g *guestMetrics) record(id uint32, v uint64) Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.lookup(id)
	if m == nil {
		return StatusNotFound
	}
	if m.typ == metricHistogram {
		i := 0
		for i < len(guestBuckets) && float64(v) > guestBuckets[i] {
			i++
		}
		m.counts[i]++
		m.sum += float64(v)
		return StatusOK
	}
	m.value = v
	return StatusOK
}

func (g *guestMetrics) get(id uint32) (uint64, Status) {
	g.mu.Lock()
	defer g.mu.Unlock()
	m := g.lookup(id)
	if m == nil {
		return 0, StatusNotFound
	}
	if m.typ == metricHistogram {
		return 0, StatusBadArgument
	}
	return m.value, StatusOK
}

var (
	guestCounterDesc = prometheus.NewDesc("portico_wasm_guest_counter", "Counters defined by WASM plugins.", []string{"plugin", "name"}, nil)
	guestGaugeDesc   = prometheus.NewDesc("portico_wasm_guest_gauge", "Gauges defined by WASM plugins.", []string{"plugin", "name"}, nil)
	guestHistDesc    = prometheus.NewDesc("portico_wasm_guest_histogram", "Histograms defined by WASM plugins.", []string{"plugin", "name"}, nil)
)

func (g *guestMetrics) collect(plugin string) func(ch chan<- prometheus.Metric) {
	return func(ch chan<- prometheus.Metric) {
		g.mu.Lock()
		list := make([]guestMetric, len(g.list))
		for i, m := range g.list {
			list[i] = *m
		}
		g.mu.Unlock()
		for _, m := range list {
			switch m.typ {
			case metricCounter:
				ch <- prometheus.MustNewConstMetric(guestCounterDesc, prometheus.CounterValue, float64(m.value), plugin, m.name)
			case metricGauge:
				ch <- prometheus.MustNewConstMetric(guestGaugeDesc, prometheus.GaugeValue, float64(int64(m.value)), plugin, m.name)
			case metricHistogram:
				buckets := make(map[float64]uint64, len(guestBuckets))
				var cum uint64
				for i, ub := range guestBuckets {
					cum += m.counts[i]
					buckets[ub] = cum
				}
				cum += m.counts[len(guestBuckets)]
				ch <- prometheus.MustNewConstHistogram(guestHistDesc, cum, m.sum, buckets, plugin, m.name)
			}
		}
	}
}
