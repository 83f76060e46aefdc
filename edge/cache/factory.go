package cache

import (
	"context"
	"errors"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

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
// handler with the configs of both as layers (the narrower one's fields
// win), instead of two caches in a row.
func (p *policy) Wrap(next plugins.Handler) plugins.Handler {
	layers := []Config{p.cfg}
	if inner, ok := next.(*handler); ok && inner.store == p.store {
		layers = append(layers, inner.layers...)
		next = inner.next
	}
	h := p.newHandler(layers, next, nil)
	// Route overrides (Config.Routes): one handler per route key with
	// the settings of every layer and of every layer's entry for it.
	var keys []string
	for _, l := range layers {
		for k := range l.Routes {
			if !slices.Contains(keys, k) {
				keys = append(keys, k)
			}
		}
	}
	slices.Sort(keys)
	for _, k := range keys {
		method, path, _ := strings.Cut(k, " ")
		rh := p.newHandler(layers, next, func(c *Config) *Config {
			if rc, ok := c.Routes[k]; ok {
				return &rc
			}
			return nil
		})
		h.overrides = append(h.overrides, routeOverride{method: method, path: path, h: rh})
	}
	return h
}

// newHandler builds a handler whose settings are the defaults overlaid
// with each layer, outer first; extra gives what else to overlay after a
// layer (its entry for a route), or nil.
func (p *policy) newHandler(layers []Config, next plugins.Handler, extra func(*Config) *Config) *handler {
	set := defaultSettings()
	for i := range layers {
		set = layers[i].apply(set)
		if extra == nil {
			continue
		}
		if e := extra(&layers[i]); e != nil {
			set = e.apply(set)
		}
	}
	// The default object limit may be more than a small store can take.
	set.maxObject = min(set.maxObject, objectLimit(p.store.budget))
	return &handler{
		store:  p.store,
		layers: layers,
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
	store  *Store
	layers []Config // API, stage, route configs, outer first
	set    settings
	scope  plugins.Scope
	next   plugins.Handler
	// overrides are the handlers of routes with their own settings.
	overrides []routeOverride
	checked   atomic.Bool // the override keys were checked against a deployment
	// keySpecs caches the parsed CacheKeyParameters per route; routes are
	// immutable within the snapshot this handler was built for.
	keySpecs sync.Map // *config.Route -> *keySpec
	// X-Cache values, shared read-only by every response.
	xHit, xMiss, xStale, xReval []string
}

type routeOverride struct {
	method, path string
	h            *handler
}

// forRoute returns the handler with the route's own settings, or h. It
// compares the route's method and path with each override (there are
// few), which allocates nothing.
func (h *handler) forRoute(ex *plugins.Exchange) *handler {
	r := ex.Route
	if r == nil {
		return h
	}
	if !h.checked.Load() && h.checked.CompareAndSwap(false, true) {
		h.checkOverrides(ex.Deployment)
	}
	for i := range h.overrides {
		if o := &h.overrides[i]; o.method == r.Method && o.path == r.Path {
			return o.h
		}
	}
	return h
}

// checkOverrides warns about route keys that name no route of the
// deployment: a misspelt key would otherwise be silently ignored.
func (h *handler) checkOverrides(d *config.Deployment) {
	if d == nil {
		return
	}
	for _, o := range h.overrides {
		if !slices.ContainsFunc(d.API.Routes, func(r config.Route) bool { return r.Method == o.method && r.Path == o.path }) {
			h.store.warnOnce(d.ID+" "+o.method+" "+o.path, "cache config: routes names a route the API does not have; the entry is ignored",
				"api", d.API.Name, "deployment", d.ID, "route", o.method+" "+o.path)
		}
	}
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

// Disabled returns the "cache" factory of a node that runs without a
// cache: it refuses every cache policy with reason, so a deployment that
// asks for caching fails loudly instead of being served uncached.
func Disabled(reason string) plugins.Factory { return disabledFactory{reason} }

type disabledFactory struct{ reason string }

func (disabledFactory) Type() string         { return Type }
func (disabledFactory) Phase() plugins.Phase { return plugins.PhaseCache }
func (d disabledFactory) New(context.Context, config.PolicySpec, plugins.Scope) (plugins.Policy, error) {
	return nil, errors.New(d.reason)
}
