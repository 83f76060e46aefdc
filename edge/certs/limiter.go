package certs

import (
	"sync"
	"time"
)

// bucket is a token bucket: n tokens per period, at most n at once.
type bucket struct {
	mu     sync.Mutex
	n      float64
	per    time.Duration
	tokens float64
	last   time.Time
}

func newBucket(n int, per time.Duration) *bucket {
	return &bucket{n: float64(n), per: per, tokens: float64(n), last: time.Now()}
}

func (b *bucket) allow() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	now := time.Now()
	b.tokens = min(b.n, b.tokens+now.Sub(b.last).Seconds()/b.per.Seconds()*b.n)
	b.last = now
	if b.tokens < 1 {
		return false
	}
	b.tokens--
	return true
}
