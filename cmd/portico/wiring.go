package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"math"
	"net/netip"
	"os"
	"runtime/debug"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/cache"
	"github.com/portico-edge/portico/edge/wsrelay"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/importer"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/apikey"
	"github.com/portico-edge/portico/plugins/authcache"
	"github.com/portico-edge/portico/plugins/authfail"
	"github.com/portico-edge/portico/plugins/cors"
	"github.com/portico-edge/portico/plugins/ipfilter"
	"github.com/portico-edge/portico/plugins/jwt"
	"github.com/portico-edge/portico/plugins/ratelimit"
	"github.com/portico-edge/portico/plugins/sigv4"
	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/runtime"
)

// importDocument adapts the OpenAPI importer to the control plane.
func importDocument(ctx context.Context, doc []byte, o control.ImportOptions) (*config.API, error) {
	res, err := importer.Import(ctx, doc, importer.Options{
		Name:           o.Name,
		DefaultBackend: o.DefaultBackend,
		IgnoreSecurity: o.IgnoreSecurity,
		BasePath:       o.BasePath,
	})
	if err != nil {
		return nil, err
	}
	return &res.API, nil
}

// nodeFlags are the policy settings shared by every role that runs the
// pipeline (edge, origin for regional endpoints and admission, dev).
type nodeFlags struct {
	redisAddr        string
	redisDB          int
	authFailures     int
	authWindow       time.Duration
	authCacheEntries int
	trustedProxies   string
	allowPrivateJWKS bool
	cacheBytes       byteSize
	maxModuleBytes   int
	wsIdle           time.Duration
	wsMaxMessage     byteSize
}

// defaultCacheBytes is the response cache's memory budget when
// --cache-bytes is not given.
const defaultCacheBytes = 256 << 20

func (n *nodeFlags) register(fs *flag.FlagSet) {
	fs.DurationVar(&n.wsIdle, "ws-idle-timeout", wsrelay.DefaultIdleTimeout, "close a relayed WebSocket (1001) after this long without a frame either way")
	n.wsMaxMessage = wsrelay.DefaultMaxMessageBytes
	fs.Var(&n.wsMaxMessage, "ws-max-message", "largest WebSocket message relayed, such as 1MiB; larger ones close the WebSocket with 1009")
	fs.StringVar(&n.redisAddr, "redis", "", "Redis host:port holding rate limits and quotas shared by every edge (password from PORTICO_REDIS_PASSWORD); empty keeps counters in this process")
	fs.IntVar(&n.redisDB, "redis-db", 0, "Redis database number")
	fs.IntVar(&n.authFailures, "auth-failures", 10, "failed authentications a client address may make per --auth-failure-window before it gets 429")
	fs.DurationVar(&n.authWindow, "auth-failure-window", time.Minute, "window for --auth-failures")
	fs.IntVar(&n.authCacheEntries, "auth-cache-entries", 10000, "most authorizer results (JWT, signatures, WASM) kept in the cache")
	fs.StringVar(&n.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs of proxies in front of this node whose X-Forwarded-For is believed; empty trusts none")
	n.cacheBytes = defaultCacheBytes
	fs.Var(&n.cacheBytes, "cache-bytes", "memory budget of the response cache, such as 512MiB or 2GiB; 0 turns caching off and refuses cache policies. Unless GOMEMLIMIT is set, a node serving requests sets the Go memory limit to 1.25 times this plus 256MiB (docs/cache.md)")
	fs.IntVar(&n.maxModuleBytes, "wasm-max-module-bytes", runtime.DefaultMaxModuleBytes, "largest WASM plugin module accepted (uploads on the origin, downloads and compiles on edges); keep it equal on the origin and every edge")
}

// byteSize is a flag value of bytes with an optional binary or decimal
// unit (KiB, MiB, GiB, KB, MB, GB, B).
type byteSize int64

func (b *byteSize) String() string {
	switch v := int64(*b); {
	case v != 0 && v%(1<<30) == 0:
		return strconv.FormatInt(v>>30, 10) + "GiB"
	case v != 0 && v%(1<<20) == 0:
		return strconv.FormatInt(v>>20, 10) + "MiB"
	}
	return strconv.FormatInt(int64(*b), 10)
}

func (b *byteSize) Set(s string) error {
	num := strings.TrimRightFunc(s, func(r rune) bool { return r < '0' || r > '9' })
	unit := strings.TrimSpace(s[len(num):])
	mult := map[string]int64{"": 1, "B": 1, "KiB": 1 << 10, "MiB": 1 << 20, "GiB": 1 << 30, "TiB": 1 << 40, "KB": 1e3, "MB": 1e6, "GB": 1e9, "TB": 1e12}[unit]
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || n < 0 || mult == 0 || n > math.MaxInt64/mult {
		return fmt.Errorf("%q is not a size: give bytes, or a number with KiB, MiB, GiB (or KB, MB, GB), such as 256MiB", s)
	}
	*b = byteSize(n * mult)
	return nil
}

// nodeEnv is what differs between the roles that build a node: where the
// node keeps its files, and where its WASM host gets module bytes (the
// origin's store, or the edge's cache of the origin's modules).
type nodeEnv struct {
	dataDir string
	modules wasm.ModuleSource
}

// node holds what the policy factories share for the life of the process:
// counters, caches, the key tables that snapshots refresh, and metrics.
type node struct {
	Policies *plugins.Registry
	// Cache is the response cache's factory; nil when --cache-bytes is 0.
	Cache *cache.Factory
	// WASM runs the node's plugins; it outlives snapshots and is closed
	// with the node.
	WASM       *wasm.Host
	log        *slog.Logger
	Metrics    *prometheus.Registry
	Keys       *apikey.Live
	AccessKeys *sigv4.Live
	Usage      *apikey.Usage
	Trusted    []netip.Prefix
	counters   interface {
		ratelimit.Limiter
		ratelimit.QuotaCounter
	}
}

func newNode(n nodeFlags, env nodeEnv, log *slog.Logger) (*node, error) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	out := &node{Metrics: reg, Keys: &apikey.Live{}, AccessKeys: &sigv4.Live{}, Usage: apikey.NewUsage(), log: log}
	for _, c := range strings.Split(n.trustedProxies, ",") {
		if c = strings.TrimSpace(c); c == "" {
			continue
		}
		p, err := config.CheckCIDR(c)
		if err != nil {
			return nil, usageError{"--trusted-proxies: " + err.Error()}
		}
		out.Trusted = append(out.Trusted, p)
	}
	if n.redisAddr != "" {
		r, err := ratelimit.NewRedis(ratelimit.RedisOptions{Addr: n.redisAddr, Password: os.Getenv("PORTICO_REDIS_PASSWORD"), DB: n.redisDB})
		if err != nil {
			return nil, fmt.Errorf("--redis: %w", err)
		}
		out.counters = r
	} else {
		out.counters = ratelimit.NewMemory(ratelimit.MemoryOptions{})
	}
	guard, err := authfail.New(authfail.Options{Limiter: out.counters, Failures: n.authFailures, Window: n.authWindow, Registerer: reg})
	if err != nil {
		return nil, err
	}
	authc, err := authcache.New(authcache.Options{Name: "authorizers", MaxEntries: n.authCacheEntries, Registerer: reg})
	if err != nil {
		return nil, err
	}
	throttle, err := ratelimit.NewThrottleFactory(ratelimit.ThrottleOptions{Limiter: out.counters, Registerer: reg, Logger: log})
	if err != nil {
		return nil, err
	}
	keys, err := apikey.NewFactory(apikey.Options{Keys: out.Keys, Plans: out.Keys, Limiter: out.counters, Quotas: out.counters, Usage: out.Usage, Guard: guard, Registerer: reg, Logger: log})
	if err != nil {
		return nil, err
	}
	jwtf, err := jwt.NewFactory(jwt.Options{Cache: authc, Guard: guard, AllowPrivateJWKS: n.allowPrivateJWKS, Registerer: reg, Logger: log})
	if err != nil {
		return nil, err
	}
	sig, err := sigv4.NewFactory(sigv4.Options{Keys: out.AccessKeys, Cache: authc, Guard: guard, Registerer: reg, Logger: log})
	if err != nil {
		return nil, err
	}
	ipf, err := ipfilter.NewFactory(reg)
	if err != nil {
		return nil, err
	}
	corsf, err := cors.NewFactory(reg)
	if err != nil {
		return nil, err
	}
	var cachef plugins.Factory = cache.Disabled("this node runs with --cache-bytes 0, so it has no response cache and cannot serve the cache policy; start it with a cache budget (for example --cache-bytes 256MiB) or remove the cache policy")
	if n.cacheBytes > 0 {
		out.Cache, err = cache.NewFactory(cache.Options{MaxBytes: int64(n.cacheBytes), Registerer: reg, Logger: log})
		if err != nil {
			return nil, fmt.Errorf("--cache-bytes: %w", err)
		}
		cachef = out.Cache
	}
	if env.modules == nil {
		return nil, errors.New("node: no WASM module source")
	}
	host, err := wasm.NewHost(context.Background(), wasm.HostConfig{DataDir: env.dataDir, Source: env.modules, Logger: log, Registerer: reg, MaxModuleBytes: n.maxModuleBytes})
	if err != nil {
		out.Close(context.Background())
		return nil, err
	}
	out.WASM = host
	out.Policies, err = plugins.NewRegistry(throttle, keys, jwtf, sig, ipf, corsf, cachef, host.Authorizer(), host.Transform())
	if err != nil {
		_ = host.Close(context.Background())
		return nil, err
	}
	return out, nil
}

// Close stops what the node runs beside requests: its WASM plugins and
// the cache's background work. Call it once the listeners have drained.
func (n *node) Close(ctx context.Context) error {
	if n.Cache != nil {
		n.Cache.Close()
	}
	if n.WASM == nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return n.WASM.Close(ctx)
}

// tuneMemory sets a soft Go memory limit on a node with a cache, unless
// GOMEMLIMIT is set: tuneGC's GOGC=200 assumes little live data, which a
// full cache is not, and without a limit the heap of a node whose cache
// holds B bytes could grow towards three times B between collections. With
// the limit the collector runs when the process nears it instead. The
// store's heap stays within about 1.1 times its budget and churn needs
// some room (docs/cache.md, Memory), hence 1.25 times the budget plus
// 256 MiB for everything else.
func tuneMemory(cacheBytes int64, log *slog.Logger) {
	if cacheBytes <= 0 || os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	limit := cacheBytes + cacheBytes/4 + 256<<20
	debug.SetMemoryLimit(limit)
	log.Info("Go memory limit set from the cache budget (set GOMEMLIMIT to choose another)", "limit_bytes", limit, "cache_bytes", cacheBytes)
}

// deferredModules is the origin's module source handed to its node before
// the origin exists: the node's policy registry is needed to build the
// origin (admission at deploy), and the origin's store holds the modules.
// Nothing asks for a module before the origin is built and set.
type deferredModules struct {
	src atomic.Pointer[wasm.ModuleSource]
}

func (d *deferredModules) set(s wasm.ModuleSource) { d.src.Store(&s) }

func (d *deferredModules) Module(ctx context.Context, digest string) ([]byte, error) {
	s := d.src.Load()
	if s == nil {
		return nil, errors.New("the origin's module store is not open yet")
	}
	return (*s).Module(ctx, digest)
}

// prepare readies the key tables of a snapshot; the returned commit
// installs them once the snapshot has been accepted, and applies the
// snapshot's cache purges that this node has not applied yet.
func (n *node) prepare(s *config.Snapshot) (func(), error) {
	keys, err := apikey.NewTable(s.APIKeys, s.UsagePlans)
	if err != nil {
		return nil, err
	}
	aks, err := sigv4.NewTable(s.AccessKeys)
	if err != nil {
		return nil, err
	}
	purges := s.Purges
	return func() {
		n.Keys.Store(keys)
		n.AccessKeys.Store(aks)
		if n.Cache != nil {
			n.syncPurges(purges)
		}
	}, nil
}

func (n *node) syncPurges(purges []config.PurgeRequest) {
	res, err := n.Cache.Store().SyncPurges(purges)
	switch {
	case err != nil:
		n.log.Error("cache purges from the origin not applied", "err", err)
	case res.Cleared:
		n.log.Warn("cache emptied: this node cannot tell what the purges it missed would have removed", "reason", res.Reason, "last_seq", n.Cache.Store().LastPurgeSeq())
	case res.Applied > 0:
		n.log.Info("cache purges applied", "purges", res.Applied, "removed", res.Removed, "last_seq", n.Cache.Store().LastPurgeSeq())
	}
}

// wsLimits are the WebSocket relay's limits from the flags.
func (n *nodeFlags) wsLimits() (wsrelay.Limits, error) {
	l := wsrelay.Limits{IdleTimeout: n.wsIdle, MaxMessageBytes: int64(n.wsMaxMessage)}
	if n.wsIdle < 0 || n.wsMaxMessage < 0 {
		return l, usageError{"--ws-idle-timeout and --ws-max-message must be positive"}
	}
	return l, nil
}
