package cache

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"log/slog"
	"net/http"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/maypok86/otter/v2"
)

type objKind uint8

const (
	// kindResponse is a stored response.
	kindResponse objKind = iota
	// kindVary sits at a primary key whose response varies on request
	// headers; the responses are stored under variant keys.
	kindVary
	// kindHitForMiss says the last answer for the key could not be stored:
	// requests go to the origin at once instead of waiting behind each
	// other, and a cacheable answer replaces the marker.
	kindHitForMiss
)

// object is one entry of the store. Everything in it is immutable once it
// is in the store: a refresh stores a new object.
type object struct {
	key string // the full key, compared on every lookup
	// Substrings of key, for purges.
	apiID, stage, host, path string
	// keyedQuery holds name, "\x00"-joined values pairs of the keyed query
	// parameters, for PurgeURL.
	keyedQuery []string
	kind       objKind

	status  int
	header  []field
	body    []byte
	clen    []string // Content-Length value
	etag    string
	lastMod string
	tags    []string
	vary    []string // kindVary: the Vary'd header names

	// Times are in the store's clock, unix nanoseconds.
	stored     int64         // when the response arrived
	initialAge time.Duration // Age from the origin plus the time the origin took
	freshFor   time.Duration
	swr, sie   time.Duration // stale-while-revalidate / stale-if-error; -1 when absent
	// noStale: must-revalidate, proxy-revalidate or no-cache forbid
	// serving the object stale in any case.
	noStale bool
	// explicitOnly: s-maxage implies proxy-revalidate, so the stage's
	// default stale-if-error window does not apply; the response's own
	// stale directives still do.
	explicitOnly bool
	// alwaysRevalidate: no-cache; every use is validated with the origin.
	alwaysRevalidate bool
	// shareable: public, s-maxage or must-revalidate (RFC 9111 §3.5), so
	// the object may answer requests carrying credentials.
	shareable bool
	hfmUntil  int64
	keep      time.Duration // how long the store keeps it
	weight    uint32
	// ageHdr caches the last Age value sent, so that the hits of one
	// second share one allocation.
	ageHdr atomic.Pointer[ageValue]
}

type ageValue struct {
	secs int64
	v    []string
}

// ageHeader returns the Age header value for now.
func (o *object) ageHeader(now int64) []string {
	secs := int64(o.age(now) / time.Second)
	if a := o.ageHdr.Load(); a != nil && a.secs == secs {
		return a.v
	}
	a := &ageValue{secs: secs, v: []string{strconv.FormatInt(secs, 10)}}
	o.ageHdr.Store(a)
	return a.v
}

// field is one stored response header.
type field struct {
	name   string
	values []string
}

func (o *object) age(now int64) time.Duration {
	a := o.initialAge + time.Duration(now-o.stored)
	if a < 0 {
		return 0
	}
	return a
}

func (o *object) fresh(now int64) bool {
	return !o.alwaysRevalidate && o.age(now) < o.freshFor
}

// staleFor is how long the object has been stale (negative while fresh).
func (o *object) staleFor(now int64) time.Duration { return o.age(now) - o.freshFor }

// swrWindow is how long after expiry the object may be served while one
// background refresh runs.
func (o *object) swrWindow() time.Duration {
	if o.noStale || o.swr < 0 {
		return 0
	}
	return o.swr
}

// errorWindow is how long after expiry the object may answer an origin
// failure, given the stage's default window.
func (o *object) errorWindow(stageDefault time.Duration) time.Duration {
	switch {
	case o.noStale:
		return 0
	case o.sie >= 0:
		return o.sie
	case o.explicitOnly:
		return 0
	}
	return stageDefault
}

func (o *object) hasValidators() bool { return o.etag != "" || o.lastMod != "" }

// Options configure a Factory and its node-wide store.
type Options struct {
	// MaxBytes is the node's memory budget for the cache: the sum of the
	// weights of all stored objects (body, headers, key and the measured
	// per-object overhead) stays under it. Required.
	MaxBytes int64
	// Registerer receives the cache's metrics; nil registers none.
	Registerer prometheusRegisterer
	// Clock returns the current time; default time.Now. Freshness and
	// stale windows are measured with it.
	Clock func() time.Time
	// Logger; default slog.Default().
	Logger *slog.Logger
	// LockTimeout bounds how long a request waits for another request's
	// fetch of the same key before going to the origin itself; default 5s.
	LockTimeout time.Duration
	// HitForMiss is how long an uncacheable answer stops requests for its
	// key from waiting behind each other; default 10s.
	HitForMiss time.Duration
	// RefreshTimeout bounds a background refresh; default 30s.
	RefreshTimeout time.Duration
	// MaxRefreshes bounds concurrent background refreshes node-wide;
	// default 64. A stale hit that finds them all busy is still served
	// stale; a later one starts the refresh.
	MaxRefreshes int
}

// Store is the node-wide object store shared by every stage's cache
// policies. It outlives snapshots; purges act on it.
type Store struct {
	c       *otter.Cache[uint64, *object]
	seed    uint64
	now     func() time.Time
	budget  int64
	log     *slog.Logger
	opts    Options
	metrics *metrics

	idx     *purgeIndex
	flights [flightShards]flightShard
	// waiting counts requests waiting for another request's fetch.
	waiting atomic.Int64

	refreshSem chan struct{}
	bufs       sync.Pool

	purgeMu sync.Mutex
	// epoch counts purges applied on this node; fills compare it before
	// and after talking to the origin.
	epoch   atomic.Uint64
	recent  [recentPurges]epochPurge
	lastSeq uint64 // highest PurgeRequest.Seq applied
	synced  bool   // SyncPurges ran once

	warnMu sync.Mutex
	warned map[string]bool // configuration warnings already logged
}

// warnOnce logs a configuration warning once per key (bounded, so that a
// stream of deployments cannot grow it without end).
func (s *Store) warnOnce(key, msg string, args ...any) {
	s.warnMu.Lock()
	seen := s.warned[key]
	if !seen {
		if s.warned == nil || len(s.warned) >= 1024 {
			s.warned = map[string]bool{}
		}
		s.warned[key] = true
	}
	s.warnMu.Unlock()
	if !seen {
		s.log.Warn(msg, args...)
	}
}

type epochPurge struct {
	epoch uint64
	p     purge
}

const (
	flightShards = 64
	recentPurges = 64
)

type flightShard struct {
	mu sync.Mutex
	m  map[uint64]*flight
}

// flight is one fetch from the origin that other requests for the same key
// may wait for.
type flight struct {
	done chan struct{}
	// Set before done is closed:
	staleServed *object // the fetch failed and this stale object answered it
	sharedError *object // 502/503/504 from the origin, shared with the waiters (never stored)
}

// NewStore returns a store with the given options.
func NewStore(o Options) (*Store, error) {
	if o.MaxBytes <= 0 {
		return nil, fmt.Errorf("cache: the memory budget (MaxBytes) must be positive, got %d", o.MaxBytes)
	}
	if o.Clock == nil {
		o.Clock = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	if o.LockTimeout <= 0 {
		o.LockTimeout = 5 * time.Second
	}
	if o.HitForMiss <= 0 {
		o.HitForMiss = 10 * time.Second
	}
	if o.RefreshTimeout <= 0 {
		o.RefreshTimeout = 30 * time.Second
	}
	if o.MaxRefreshes <= 0 {
		o.MaxRefreshes = 64
	}
	var seed [8]byte
	if _, err := rand.Read(seed[:]); err != nil {
		return nil, fmt.Errorf("cache: seeding the key hash: %w", err)
	}
	s := &Store{
		seed:       binary.LittleEndian.Uint64(seed[:]),
		now:        o.Clock,
		budget:     o.MaxBytes,
		log:        o.Logger,
		opts:       o,
		refreshSem: make(chan struct{}, o.MaxRefreshes),
	}
	for i := range s.flights {
		s.flights[i].m = make(map[uint64]*flight)
	}
	s.idx = newPurgeIndex(s.seed)
	s.bufs.New = func() any { b := make([]byte, 0, 512); return &b }
	s.metrics = newMetrics(s)
	c, err := otter.New(&otter.Options[uint64, *object]{
		MaximumWeight: uint64(o.MaxBytes),
		Weigher:       func(_ uint64, v *object) uint32 { return v.weight },
		ExpiryCalculator: otter.ExpiryWritingFunc(func(e otter.Entry[uint64, *object]) time.Duration {
			return e.Value.keep
		}),
		OnAtomicDeletion: func(e otter.DeletionEvent[uint64, *object]) {
			if e.Cause == otter.CauseOverflow {
				s.metrics.evictions.Inc()
			}
			s.idx.remove(e.Key, e.Value)
		},
		Logger: slogLogger{o.Logger},
	})
	if err != nil {
		return nil, fmt.Errorf("cache: creating the store: %w", err)
	}
	s.c = c
	if o.Registerer != nil {
		if err := s.metrics.register(o.Registerer); err != nil {
			return nil, err
		}
	}
	return s, nil
}

// Close stops the store's background goroutines.
func (s *Store) Close() { s.c.StopAllGoroutines() }

func (s *Store) nowNano() int64 { return s.now().UnixNano() }

func (s *Store) getBuf() *[]byte { return s.bufs.Get().(*[]byte) }

func (s *Store) putBuf(b *[]byte) {
	if cap(*b) > 64<<10 {
		return
	}
	*b = (*b)[:0]
	s.bufs.Put(b)
}

// get returns the entry stored under key, or nil.
func (s *Store) get(hash uint64, key []byte) *object {
	o, ok := s.c.GetIfPresent(hash)
	if !ok || o.key != string(key) {
		return nil
	}
	return o
}

// set stores o unless a purge that matches it was applied after epoch (the
// epoch when the fetch that produced o started): a response fetched before
// a purge must not outlive it.
func (s *Store) set(hash uint64, o *object, epoch uint64) bool {
	if s.epoch.Load() != epoch && s.purgedSince(epoch, o) {
		return false
	}
	s.c.Set(hash, o)
	s.idx.add(hash, o)
	// The store may have evicted o between the Set and the add (its
	// maintenance runs concurrently), and the eviction's index removal then
	// came before the add: take the entry out again, or it would stay.
	if _, ok := s.c.GetEntryQuietly(hash); !ok {
		s.idx.remove(hash, o)
	}
	// A purge may have run between the check and the Set.
	if s.epoch.Load() != epoch && s.purgedSince(epoch, o) {
		s.c.Invalidate(hash)
		return false
	}
	return true
}

func (s *Store) remove(hash uint64, key []byte) {
	if o, ok := s.c.GetIfPresent(hash); ok && o.key == string(key) {
		s.c.Invalidate(hash)
	}
}

// purgedSince reports whether a purge applied after epoch matches o, or
// whether too many purges happened to tell.
func (s *Store) purgedSince(epoch uint64, o *object) bool {
	s.purgeMu.Lock()
	defer s.purgeMu.Unlock()
	cur := s.epoch.Load()
	if cur-epoch > recentPurges {
		return true
	}
	for e := epoch + 1; e <= cur; e++ {
		p := s.recent[e%recentPurges]
		if p.epoch == e && p.p.matches(o) {
			return true
		}
	}
	return false
}

// join returns the flight for hash, and whether the caller leads it (and
// must call finish).
func (s *Store) join(hash uint64) (*flight, bool) {
	sh := &s.flights[hash%flightShards]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	if f, ok := sh.m[hash]; ok {
		return f, false
	}
	f := &flight{done: make(chan struct{})}
	sh.m[hash] = f
	return f, true
}

func (s *Store) finish(hash uint64, f *flight) {
	sh := &s.flights[hash%flightShards]
	sh.mu.Lock()
	if sh.m[hash] == f {
		delete(sh.m, hash)
	}
	sh.mu.Unlock()
	close(f.done)
}

// Objects returns how many entries the store holds (responses and
// markers). It first runs the store's pending maintenance, so it is for
// metrics and tests, not the request path.
func (s *Store) Objects() int {
	s.c.CleanUp()
	return s.c.EstimatedSize()
}

// Bytes returns the summed weight of the stored entries, after pending
// maintenance.
func (s *Store) Bytes() int64 {
	s.c.CleanUp()
	return int64(s.c.WeightedSize())
}

// Budget returns the store's memory budget.
func (s *Store) Budget() int64 { return s.budget }

// headerWeight estimates the memory a stored header takes: the strings,
// the slice headers and the field.
func headerWeight(hs []field) int {
	n := 24 // the slice header
	for _, f := range hs {
		n += 40 + len(f.name)
		for _, v := range f.values {
			n += 16 + len(v)
		}
	}
	return n
}

// objectOverhead is the measured memory of an entry beyond its key, body,
// headers and tags: the object struct, otter's node and its share of
// otter's hash table and eviction structures, the entry's place in the
// purge index, and the cached Age value of an object that is being hit. TestMemoryBudget100k and TestMemoryBudget1M check it (an
// object's heap must not exceed its weight by more than 25%);
// docs/cache.md states it.
const objectOverhead = 560

func (o *object) computeWeight() {
	w := objectOverhead + len(o.key) + len(o.body) + headerWeight(o.header)
	for _, t := range o.tags {
		w += 16 + len(t)
	}
	for _, q := range o.keyedQuery {
		w += 16 + len(q)
	}
	for _, v := range o.vary {
		w += 16 + len(v)
	}
	w += 3 * 16 // clen slice and its string
	o.weight = uint32(w)
}

// slogLogger adapts slog to otter's logger.
type slogLogger struct{ l *slog.Logger }

func (s slogLogger) Warn(ctx context.Context, msg string, err error) {
	s.l.WarnContext(ctx, "cache store: "+msg, "err", err)
}

func (s slogLogger) Error(ctx context.Context, msg string, err error) {
	s.l.ErrorContext(ctx, "cache store: "+msg, "err", err)
}

// hopHeaders are never stored: they describe one connection or one
// response, or are recomputed on every answer.
func storedHeader(name string) bool {
	switch name {
	case "Connection", "Keep-Alive", "Proxy-Connection", "Transfer-Encoding",
		"Upgrade", "Te", "Trailer", "Content-Length", "Age", "X-Cache",
		"Set-Cookie", "Surrogate-Key", "Surrogate-Control", "Proxy-Authenticate",
		http.CanonicalHeaderKey("X-Request-Id"):
		return false
	}
	return true
}
