// Package authcache caches authorizer results: what verifying a token, a
// signature or (later) a WASM authorizer's call established, keyed by the
// identity source values that were verified, for a TTL. It is bounded: at
// most MaxEntries results, the least recently used evicted first, so that a
// flood of distinct tokens costs a bounded amount of memory.
//
// Keys are hashes (see Key), never the credentials themselves, so the cache
// holds no bearer tokens in memory longer than a request needs them.
package authcache

import (
	"container/list"
	"crypto/sha256"
	"errors"
	"fmt"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Result is what an authorizer established for a caller.
type Result struct {
	// Principal names the caller.
	Principal string
	// Headers are sent to the origin as identity headers.
	Headers http.Header
	// Scopes are the scopes the credential grants, checked per route
	// after a hit, so one cached result serves routes with different
	// scope requirements.
	Scopes []string
	// Data is for the authorizer's own use (a derived signing key, a
	// decision context); the cache does not look at it.
	Data any
}

// CacheKey identifies a cached result: the SHA-256 of the values it was
// computed from.
type CacheKey [32]byte

// Key hashes the parts that identify a result: the authorizer's identity
// (type and a digest of its config, so differently configured policies
// never share results) and the credential values. Parts are length-prefixed
// so that ("ab","c") and ("a","bc") differ.
func Key(parts ...string) CacheKey {
	n := 0
	for _, p := range parts {
		n += 4 + len(p)
	}
	// Small keys are assembled on the stack and hashed in one call.
	buf := make([]byte, 0, 2048)
	if n > cap(buf) {
		buf = make([]byte, 0, n)
	}
	for _, p := range parts {
		l := len(p)
		buf = append(buf, byte(l), byte(l>>8), byte(l>>16), byte(l>>24))
		buf = append(buf, p...)
	}
	return sha256.Sum256(buf)
}

// Options configures New.
type Options struct {
	// Name labels the cache's metrics ("authorizers").
	Name string
	// MaxEntries bounds the cache; zero means 10,000.
	MaxEntries int
	// Now is the clock; nil means time.Now.
	Now        func() time.Time
	Registerer prometheus.Registerer
}

// Cache is a bounded LRU cache of results with per-entry TTLs. It is safe
// for concurrent use.
type Cache struct {
	mu      sync.Mutex
	now     func() time.Time
	max     int
	ll      *list.List // front = most recently used
	items   map[CacheKey]*list.Element
	hits    prometheus.Counter
	misses  prometheus.Counter
	evicted prometheus.Counter
}

type entry struct {
	key     CacheKey
	res     Result
	expires int64
}

// New returns an empty cache.
func New(o Options) (*Cache, error) {
	if o.MaxEntries == 0 {
		o.MaxEntries = 10_000
	}
	if o.MaxEntries < 1 {
		return nil, fmt.Errorf("authcache: MaxEntries %d is not valid; use 1 or more", o.MaxEntries)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Name == "" {
		o.Name = "authorizers"
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_authcache_lookups_total",
		Help: "Authorizer result cache lookups by cache and result (hit, miss), and evictions of live entries (evicted).",
	}, []string{"cache", "result"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			ex, ok := (*prometheus.CounterVec)(nil), false
			if errors.As(err, &are) {
				ex, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, fmt.Errorf("authcache: register metrics: %w", err)
			}
			vec = ex
		}
	}
	return &Cache{
		now: o.Now, max: o.MaxEntries, ll: list.New(), items: make(map[CacheKey]*list.Element),
		hits:    vec.WithLabelValues(o.Name, "hit"),
		misses:  vec.WithLabelValues(o.Name, "miss"),
		evicted: vec.WithLabelValues(o.Name, "evicted"),
	}, nil
}

// Get returns the live result stored under key.
func (c *Cache) Get(key CacheKey) (Result, bool) {
	now := c.now().UnixNano()
	c.mu.Lock()
	el, ok := c.items[key]
	if !ok {
		c.mu.Unlock()
		c.misses.Inc()
		return Result{}, false
	}
	e := el.Value.(*entry)
	if e.expires <= now {
		c.ll.Remove(el)
		delete(c.items, key)
		c.mu.Unlock()
		c.misses.Inc()
		return Result{}, false
	}
	c.ll.MoveToFront(el)
	res := e.res
	c.mu.Unlock()
	c.hits.Inc()
	return res, true
}

// Put stores res under key for ttl. A ttl of zero or less stores nothing.
// Callers must not change res's Headers or Scopes afterwards: hits share them.
func (c *Cache) Put(key CacheKey, res Result, ttl time.Duration) {
	if ttl <= 0 {
		return
	}
	exp := c.now().Add(ttl).UnixNano()
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.items[key]; ok {
		e := el.Value.(*entry)
		e.res, e.expires = res, exp
		c.ll.MoveToFront(el)
		return
	}
	for c.ll.Len() >= c.max {
		old := c.ll.Back()
		e := old.Value.(*entry)
		c.ll.Remove(old)
		delete(c.items, e.key)
		if e.expires > exp-int64(ttl) { // still live when pushed out
			c.evicted.Inc()
		}
	}
	c.items[key] = c.ll.PushFront(&entry{key: key, res: res, expires: exp})
}

// Len returns the number of entries held, live or expired.
func (c *Cache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ll.Len()
}
