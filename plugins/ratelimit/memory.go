package ratelimit

import (
	"context"
	"hash/maphash"
	"math"
	"sync"
	"time"
)

// Memory is a Limiter and QuotaCounter held in this process. Buckets use
// GCRA (the generic cell rate algorithm): one int64 per key, the bucket's
// "theoretical arrival time", which behaves exactly like a token bucket of
// size burst refilled at rate and is cheaper to store and update.
//
// Memory is bounded: at most MaxKeys buckets and MaxKeys quota counters.
// When a shard is full, buckets that have refilled completely are dropped
// first (forgetting them changes nothing); only if none has, an arbitrary
// one is dropped, which can only let its owner through earlier.
type Memory struct {
	now    func() time.Time
	seed   maphash.Seed
	perCap int
	shards [memShards]memShard
}

const memShards = 64

type memShard struct {
	mu    sync.Mutex
	tat   map[string]int64 // unix nanoseconds
	quota map[string]quotaEntry
}

type quotaEntry struct {
	count   int64
	resetAt int64 // unix seconds; a different resetAt means a new period
}

// MemoryOptions configures NewMemory.
type MemoryOptions struct {
	// Now is the clock; nil means time.Now. Tests inject a fake one.
	Now func() time.Time
	// MaxKeys bounds the buckets (and, separately, the quota counters)
	// held; zero means 1,000,000.
	MaxKeys int
}

// NewMemory returns an in-process limiter and quota counter.
func NewMemory(o MemoryOptions) *Memory {
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.MaxKeys <= 0 {
		o.MaxKeys = 1_000_000
	}
	m := &Memory{now: o.Now, seed: maphash.MakeSeed(), perCap: max(1, o.MaxKeys/memShards)}
	for i := range m.shards {
		m.shards[i].tat = make(map[string]int64)
		m.shards[i].quota = make(map[string]quotaEntry)
	}
	return m
}

func (m *Memory) shard(key string) *memShard {
	return &m.shards[maphash.String(m.seed, key)%memShards]
}

// gcraParams converts rate and burst to the emission interval and the
// bucket's tolerance in nanoseconds, saturating instead of overflowing for
// very slow rates.
func gcraParams(rate float64, burst int) (emission, tolerance int64) {
	e := 1e9 / rate
	if e > float64(math.MaxInt64/4) {
		e = float64(math.MaxInt64 / 4)
	}
	emission = max(int64(e), 1)
	t := float64(emission) * float64(burst)
	if t > float64(math.MaxInt64/4) {
		t = float64(math.MaxInt64 / 4)
	}
	return emission, int64(t)
}

// gcra is the decision shared by Memory and the Redis script (which does
// the same arithmetic in microseconds). It returns the decision and the new
// arrival time to store (or stored unchanged).
func gcra(now, stored, emission, tolerance int64, n int) (Decision, int64) {
	tat := max(stored, now)
	need := int64(max(n, 1))
	newTAT := tat + emission*need
	allowAt := newTAT - tolerance
	if allowAt > now {
		return Decision{RetryAfter: time.Duration(allowAt - now), Remaining: int((tolerance - (tat - now)) / emission)}, stored
	}
	if n == 0 {
		return Decision{Allowed: true, Remaining: int((tolerance - (tat - now)) / emission)}, stored
	}
	return Decision{Allowed: true, Remaining: int((tolerance - (newTAT - now)) / emission)}, newTAT
}

// Allow implements Limiter. It never fails.
func (m *Memory) Allow(_ context.Context, key string, rate float64, burst int, n int) (Decision, error) {
	if rate <= 0 {
		return Decision{Allowed: true, Remaining: burst}, nil
	}
	if n > burst {
		return Decision{RetryAfter: time.Hour}, nil
	}
	emission, tol := gcraParams(rate, burst)
	now := m.now().UnixNano()
	s := m.shard(key)
	s.mu.Lock()
	stored, ok := s.tat[key]
	d, next := gcra(now, stored, emission, tol, n)
	if next != stored {
		if !ok && len(s.tat) >= m.perCap {
			s.evictBuckets(now)
		}
		s.tat[key] = next
	}
	s.mu.Unlock()
	return d, nil
}

// evictBuckets frees room in a full shard. Called with s.mu held.
func (s *memShard) evictBuckets(now int64) {
	for k, tat := range s.tat {
		if tat <= now {
			delete(s.tat, k)
		}
	}
	if len(s.tat) == 0 {
		return
	}
	for k := range s.tat { // no full bucket: drop an arbitrary one
		delete(s.tat, k)
		break
	}
}

// Take implements QuotaCounter. It never fails.
func (m *Memory) Take(_ context.Context, key string, n, limit int64, resetAt time.Time) (QuotaDecision, error) {
	reset := resetAt.Unix()
	s := m.shard(key)
	s.mu.Lock()
	defer s.mu.Unlock()
	e, ok := s.quota[key]
	if !ok || e.resetAt != reset {
		e = quotaEntry{resetAt: reset}
		if !ok && len(s.quota) >= m.perCap {
			now := m.now().Unix()
			for k, q := range s.quota {
				if q.resetAt <= now {
					delete(s.quota, k)
				}
			}
			if len(s.quota) >= m.perCap {
				for k := range s.quota {
					delete(s.quota, k)
					break
				}
			}
		}
	}
	if e.count+n > limit {
		return QuotaDecision{Used: e.count, Remaining: max(0, limit-e.count)}, nil
	}
	e.count += n
	s.quota[key] = e
	return QuotaDecision{Allowed: true, Used: e.count, Remaining: limit - e.count}, nil
}
