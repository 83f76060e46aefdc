package runtime

import (
	"context"
	"testing"
	"time"
)

// The first calls of an instance are all timed; after them the histogram
// is an estimate from a sample, fair to every phase whatever the order of
// callbacks, while the call counter stays exact.
func TestCallTimerSamples(t *testing.T) {
	e, err := NewEngine(context.Background(), Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer e.Close(context.Background())
	m := e.NewPluginMetrics("p")
	timer := m.NewCallTimer()
	phases := []Phase{PhaseDone, PhaseRequestHeaders, PhaseDone, PhaseDone}
	run := func(n int) {
		for i := range n {
			timer.Begin()
			timer.End(phases[i%len(phases)])
		}
	}

	run(timedExactly)
	s := m.Snapshot()
	if s.Calls != timedExactly || s.PhaseCalls["lifecycle"] != timedExactly*3/4 || s.PhaseCalls["request_headers"] != timedExactly/4 {
		t.Fatalf("after %d calls, every one timed: calls %d, phases %v", timedExactly, s.Calls, s.PhaseCalls)
	}

	const more = 64000
	run(more)
	s = m.Snapshot()
	if s.Calls != timedExactly+more {
		t.Fatalf("calls %d, want exactly %d", s.Calls, timedExactly+more)
	}
	// Each phase's estimate is within a quarter of the truth: the sample
	// holds about 1000 request_headers calls, so a quarter is about eight
	// standard deviations.
	for name, want := range map[string]float64{"lifecycle": timedExactly*3/4 + more*3/4, "request_headers": timedExactly/4 + more/4} {
		got := float64(s.PhaseCalls[name])
		if got < want*0.75 || got > want*1.25 {
			t.Errorf("phase %s: estimated %.0f calls, want about %.0f", name, got, want)
		}
	}
	var sum time.Duration
	for i := range m.phases {
		sum += time.Duration(m.phases[i].sumNs.Load())
	}
	if sum <= 0 {
		t.Errorf("the sampled calls add up to %v of callback time", sum)
	}
}

func TestHistogramBuckets(t *testing.T) {
	var h histogram
	h.observe(500*time.Nanosecond, 1)  // <= 1 µs
	h.observe(time.Microsecond, 2)     // <= 1 µs: the bounds are inclusive
	h.observe(1500*time.Nanosecond, 1) // <= 2 µs
	h.observe(2*time.Second, 16)       // +Inf
	want := map[int]uint64{0: 3, 1: 1, len(latencyBuckets): 16}
	for i := range h.counts {
		if got := h.counts[i].Load(); got != want[i] {
			t.Errorf("bucket %d: %d, want %d", i, got, want[i])
		}
	}
	if got, want := h.sumNs.Load(), int64(500+2000+1500+32e9); got != want {
		t.Errorf("sum %d ns, want %d", got, want)
	}
}
