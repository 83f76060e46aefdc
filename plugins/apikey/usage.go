package apikey

import (
	"slices"
	"strings"
	"sync"
	"time"
)

// UsageRecorder receives the requests each key made, per plan and UTC day.
// The node ships what it collects to the origin, which answers the "get
// usage" admin call from it.
type UsageRecorder interface {
	Record(keyID, planID string, at time.Time, n int64)
}

// UsageDelta is a count of requests to add to a key's usage on a day.
type UsageDelta struct {
	KeyID  string `json:"keyId"`
	PlanID string `json:"planId"`
	Day    string `json:"day"` // YYYY-MM-DD, UTC
	Count  int64  `json:"count"`
}

type usageKey struct {
	keyID, planID string
	day           int64 // days since the Unix epoch, UTC
}

// Usage is an in-memory UsageRecorder that aggregates counts until they are
// flushed, so shipping usage costs one small message per interval, not one
// per request.
type Usage struct {
	mu sync.Mutex
	m  map[usageKey]int64
}

// NewUsage returns an empty aggregator.
func NewUsage() *Usage { return &Usage{m: make(map[usageKey]int64)} }

// Record implements UsageRecorder.
func (u *Usage) Record(keyID, planID string, at time.Time, n int64) {
	k := usageKey{keyID, planID, floorDiv(at.Unix(), 86400)}
	u.mu.Lock()
	u.m[k] += n
	u.mu.Unlock()
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

// Flush returns the counts collected since the last Flush, sorted, and
// starts collecting afresh. If shipping them fails, hand them back with
// Restore so they are sent next time.
func (u *Usage) Flush() []UsageDelta {
	u.mu.Lock()
	m := u.m
	u.m = make(map[usageKey]int64, len(m))
	u.mu.Unlock()
	out := make([]UsageDelta, 0, len(m))
	for k, c := range m {
		out = append(out, UsageDelta{KeyID: k.keyID, PlanID: k.planID, Day: time.Unix(k.day*86400, 0).UTC().Format(time.DateOnly), Count: c})
	}
	slices.SortFunc(out, func(a, b UsageDelta) int {
		if c := strings.Compare(a.KeyID, b.KeyID); c != 0 {
			return c
		}
		if c := strings.Compare(a.PlanID, b.PlanID); c != 0 {
			return c
		}
		return strings.Compare(a.Day, b.Day)
	})
	return out
}

// Restore adds deltas back, for a flush that could not be shipped.
func (u *Usage) Restore(ds []UsageDelta) {
	u.mu.Lock()
	defer u.mu.Unlock()
	for _, d := range ds {
		t, err := time.Parse(time.DateOnly, d.Day)
		if err != nil {
			continue
		}
		u.m[usageKey{d.KeyID, d.PlanID, floorDiv(t.Unix(), 86400)}] += d.Count
	}
}
