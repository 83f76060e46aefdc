// Package wasm makes proxy-wasm modules Portico policies: wasm-authorizer
// (phase authorize) and wasm-transform (phase transform).
//
// A Host owns the WASM engine and every running plugin. Its two factories
// share it, and it outlives snapshots: a plugin is keyed by its module digest
// and its runtime settings, so a new snapshot that keeps a plugin reuses the
// compiled module and the warm instances of the old one.
//
// A wasm-authorizer may cache its decisions by identity (Config.CacheTTL):
// denials and allows with the headers and principal they set. An allow that
// changed the request's ":path", ":method" or ":authority" is not cached,
// since a rewrite usually depends on the request and not only on who sent
// it; such a plugin runs on every request it rewrites.
package wasm

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/runtime"
	"github.com/portico-edge/portico/runtime/proxywasm"
)

// Policy types.
const (
	TypeAuthorizer = "wasm-authorizer"
	TypeTransform  = "wasm-transform"
)

// ModuleSource returns the bytes of a module by digest ("sha256:<hex>"). The
// node supplies it: the origin stores modules by content hash and edges
// fetch and cache them. The host verifies the digest of what it returns.
type ModuleSource interface {
	Module(ctx context.Context, digest string) ([]byte, error)
}

// HostConfig configures a Host.
type HostConfig struct {
	// DataDir holds the compiled-code cache (DataDir/wasm-cache).
	DataDir string
	// Source provides module bytes.
	Source ModuleSource
	// Logger gets plugin logs; nil means slog.Default().
	Logger *slog.Logger
	// Registerer gets the WASM metrics; nil exports none.
	Registerer prometheus.Registerer
	// MaxModuleBytes caps module size; zero means runtime.DefaultMaxModuleBytes.
	MaxModuleBytes int
}

// Host runs the plugins of one node.
type Host struct {
	engine *runtime.Engine
	source ModuleSource
	logger *slog.Logger

	mu      sync.Mutex
	plugins map[string]*entry
	loading map[string]*loadCall
	closed  bool
}

type entry struct {
	key    string
	plugin *proxywasm.Plugin
	refs   int
	caches map[string]*decisionCache
}

type loadCall struct {
	done chan struct{}
	e    *entry
	err  error
}

// NewHost starts the engine. Close it when the node stops.
func NewHost(ctx context.Context, cfg HostConfig) (*Host, error) {
	if cfg.Source == nil {
		return nil, errors.New("wasm host: no module source")
	}
	logger := cfg.Logger
	if logger == nil {
		logger = slog.Default()
	}
	e, err := runtime.NewEngine(ctx, runtime.Config{
		DataDir: cfg.DataDir, MaxModuleBytes: cfg.MaxModuleBytes, Logger: logger, Registerer: cfg.Registerer,
	})
	if err != nil {
		return nil, err
	}
	return &Host{
		engine:  e,
		source:  cfg.Source,
		logger:  logger,
		plugins: make(map[string]*entry),
		loading: make(map[string]*loadCall),
	}, nil
}

// Authorizer returns the wasm-authorizer factory.
func (h *Host) Authorizer() plugins.Factory { return &factory{h: h, typ: TypeAuthorizer} }

// Transform returns the wasm-transform factory.
func (h *Host) Transform() plugins.Factory { return &factory{h: h, typ: TypeTransform} }

// Validate admits a policy spec the way a deploy must: the config is checked,
// the module fetched, verified, compiled and started with its configuration,
// then stopped again (the compiled code stays in the cache). The origin calls
// it before accepting a deployment.
func (h *Host) Validate(ctx context.Context, spec config.PolicySpec) error {
	if spec.Type != TypeAuthorizer && spec.Type != TypeTransform {
		return fmt.Errorf("policy type %q is not a WASM policy", spec.Type)
	}
	c, err := ParseConfig(spec)
	if err != nil {
		return err
	}
	e, err := h.acquire(ctx, c)
	if err != nil {
		return err
	}
	h.release(e)
	return nil
}

// acquire returns the running plugin for a config, loading it when no
// policy uses it yet. Concurrent loads of the same plugin share one.
func (h *Host) acquire(ctx context.Context, c *Config) (*entry, error) {
	key := c.pluginKey()
	for {
		h.mu.Lock()
		if h.closed {
			h.mu.Unlock()
			return nil, errors.New("wasm host is closed")
		}
		if e, ok := h.plugins[key]; ok {
			e.refs++
			h.mu.Unlock()
			return e, nil
		}
		if l, ok := h.loading[key]; ok {
			h.mu.Unlock()
			select {
			case <-l.done:
			case <-ctx.Done():
				return nil, ctx.Err()
			}
			if l.err != nil {
				return nil, l.err
			}
			continue
		}
		l := &loadCall{done: make(chan struct{})}
		h.loading[key] = l
		h.mu.Unlock()

		p, err := h.load(ctx, c, key)
		h.mu.Lock()
		delete(h.loading, key)
		if err == nil {
			if h.closed {
				err = errors.New("wasm host is closed")
				go p.Close(context.Background())
			} else {
				l.e = &entry{key: key, plugin: p, refs: 1, caches: make(map[string]*decisionCache)}
				h.plugins[key] = l.e
			}
		}
		l.err = err
		close(l.done)
		h.mu.Unlock()
		return l.e, err
	}
}

func (h *Host) load(ctx context.Context, c *Config, key string) (*proxywasm.Plugin, error) {
	mod, err := h.source.Module(ctx, c.Module)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", c.Module, err)
	}
	sum := sha256.Sum256(mod)
	if got := "sha256:" + hex.EncodeToString(sum[:]); got != c.Module {
		return nil, fmt.Errorf("module %s: the module source returned bytes whose digest is %s; refusing a module that is not the one configured", c.Module, got)
	}
	name := c.Module[len("sha256:"):][:12] + "/" + key[:8]
	pc, err := c.proxyConfig(name, mod)
	if err != nil {
		return nil, err
	}
	pc.Logger = h.logger
	p, err := proxywasm.NewPlugin(ctx, h.engine, pc)
	if err != nil {
		return nil, fmt.Errorf("module %s: %w", c.Module, err)
	}
	return p, nil
}

func (h *Host) release(e *entry) {
	h.mu.Lock()
	e.refs--
	last := e.refs == 0
	if last {
		delete(h.plugins, e.key)
	}
	h.mu.Unlock()
	if last {
		// Requests still inside the plugin finish first (bounded).
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		_ = e.plugin.Close(ctx)
	}
}

// Plugins returns the number of running plugins.
func (h *Host) Plugins() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return len(h.plugins)
}

// Close stops every plugin and the engine.
func (h *Host) Close(ctx context.Context) error {
	h.mu.Lock()
	if h.closed {
		h.mu.Unlock()
		return nil
	}
	h.closed = true
	ps := h.plugins
	h.plugins = map[string]*entry{}
	h.mu.Unlock()
	for _, e := range ps {
		_ = e.plugin.Close(ctx)
	}
	return h.engine.Close(ctx)
}

type factory struct {
	h   *Host
	typ string
}

func (f *factory) Type() string { return f.typ }

func (f *factory) Phase() plugins.Phase {
	if f.typ == TypeAuthorizer {
		return plugins.PhaseAuthorize
	}
	return plugins.PhaseTransform
}

func (f *factory) New(ctx context.Context, spec config.PolicySpec, scope plugins.Scope) (plugins.Policy, error) {
	spec.Type = f.typ
	c, err := ParseConfig(spec)
	if err != nil {
		return nil, err
	}
	e, err := f.h.acquire(ctx, c)
	if err != nil {
		return nil, err
	}
	failOpen := c.FailurePolicy == "open"
	if f.typ == TypeTransform {
		return &transform{base: base{h: f.h, e: e, p: e.plugin, failOpen: failOpen, typ: f.typ}}, nil
	}
	a := &authorizer{base: base{h: f.h, e: e, p: e.plugin, failOpen: failOpen, typ: f.typ}}
	for _, s := range c.IdentitySources {
		src, _ := parseSource(s)
		a.sources = append(a.sources, src)
	}
	if c.CacheTTL > 0 {
		max := c.CacheMaxEntries
		if max == 0 {
			max = defaultCacheMax
		}
		ck := fmt.Sprintf("%s|%v|%d|%d", scope, c.IdentitySources, c.CacheTTL, max)
		f.h.mu.Lock()
		a.cache = e.caches[ck]
		if a.cache == nil {
			a.cache = newDecisionCache(max, time.Duration(c.CacheTTL))
			e.caches[ck] = a.cache
		}
		f.h.mu.Unlock()
	}
	return a, nil
}

// base is what both policy types share.
type base struct {
	h        *Host
	e        *entry
	p        *proxywasm.Plugin
	failOpen bool
	typ      string
	once     sync.Once
}

// Close releases the policy's hold on its plugin.
func (b *base) Close() error {
	b.once.Do(func() { b.h.release(b.e) })
	return nil
}

// Stats sums the counters of every running plugin (for tests and status).
func (h *Host) Stats() runtime.Snapshot {
	h.mu.Lock()
	defer h.mu.Unlock()
	var s runtime.Snapshot
	for _, e := range h.plugins {
		p := e.plugin.Metrics().Snapshot()
		s.Calls += p.Calls
		s.Streams += p.Streams
		s.Errors += p.Errors
		s.Traps += p.Traps
		s.Timeouts += p.Timeouts
		s.Rejected += p.Rejected
		s.Instances += p.Instances
	}
	return s
}
