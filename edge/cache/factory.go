package cache

import (
	"context"
	"sync"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// Type is the policy type name of the cache.
const Type = "cache"

// Factory builds "cache" policies. A node has one: its Store is shared by
// every stage and outlives snapshot swaps.
type Factory struct {
	store *Store
}

// NewFactory returns a factory with a node-wide store of o.MaxBytes bytes,
// registering the cache's metrics on o.Registerer.
func NewFactory(o Options) (*Factory, error) {
	s, err := NewStore(o)
	if err != nil {
		return nil, err
	}
	return &Factory{store: s}, nil
}

// Type implements plugins.Factory.
func (f *Factory) Type() string { return Type }

// Phase implements plugins.Factory.
func (f *Factory) Phase() plugins.Phase { return plugins.PhaseCache }

// Store returns the node-wide store; it is the Purger for the admin API.
func (f *Factory) Store() *Store { return f.store }

// Close stops the store's background goroutines.
func (f *Factory) Close() { f.store.Close() }

// New implements plugins.Factory: it checks the config; fields a narrower
// attachment leaves out are taken from the wider one when the chain is
// built (see policy.Wrap).
func (f *Factory) New(_ context.Context, spec config.PolicySpec, scope plugins.Scope) (plugins.Policy, error) {
	c, err := decodeConfig(spec, objectLimit(f.store.budget))
	if err != nil {
		return nil, err
	}
	return &policy{store: f.store, cfg: c, scope: scope}, nil
}

type policy struct {
	store *Store
	cfg   Config
	scope plugins.Scope
}

// Wrap implements plugins.Policy. Registry.Build wraps API, then stage,
// then route attachments of one phase from the inside out, so a stage's
// cache policy finds the route's cache handler as next: it then builds one
// handler with the route's fields over its own, instead of two caches in a
// row.
func (p *policy) Wrap(next plugins.Handler) plugins.Handler {
	cfg := p.cfg
	if inner, ok := next.(*handler); ok && inner.store == p.store {
		cfg = merge(p.cfg, inner.cfg)
		next = inner.next
	}
	set := cfg.apply(defaultSettings())
	// The default object limit may be more than a small store can take.
	set.maxObject = min(set.maxObject, objectLimit(p.store.budget))
	return &handler{
		store:  p.store,
		cfg:    cfg,
		set:    set,
		scope:  p.scope,
		next:   next,
		xHit:   []string{"Hit"},
		xMiss:  []string{"Miss"},
		xStale: []string{"Stale"},
		xReval: []string{"Revalidated"},
	}
}

// handler is a cache policy in a chain.
type handler struct {
	store *Store
	cfg   Config
	set   settings
	scope plugins.Scope
	next  plugins.Handler
	// keySpecs caches the parsed CacheKeyParameters per route; routes are
	// immutable within the snapshot this handler was built for.
	keySpecs sync.Map // *config.Route -> *keySpec
	// X-Cache values, shared read-only by every response.
	xHit, xMiss, xStale, xReval []string
}

var emptyKeySpec = &keySpec{}

func (h *handler) keySpec(r *config.Route) *keySpec {
	if r == nil || len(r.CacheKeyParameters) == 0 {
		return emptyKeySpec
	}
	if ks, ok := h.keySpecs.Load(r); ok {
		return ks.(*keySpec)
	}
	ks := parseKeySpec(r.CacheKeyParameters)
	if ks.err != nil {
		h.store.log.Warn("cache disabled for route: bad cache key parameter", "route", r.Key(), "err", ks.err)
	}
	h.keySpecs.Store(r, ks)
	return ks
}
