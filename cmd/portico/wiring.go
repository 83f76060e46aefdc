package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/portico-edge/portico/config"
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
	maxModuleBytes   int
}

func (n *nodeFlags) register(fs *flag.FlagSet) {
	fs.StringVar(&n.redisAddr, "redis", "", "Redis host:port holding rate limits and quotas shared by every edge (password from PORTICO_REDIS_PASSWORD); empty keeps counters in this process")
	fs.IntVar(&n.redisDB, "redis-db", 0, "Redis database number")
	fs.IntVar(&n.authFailures, "auth-failures", 10, "failed authentications a client address may make per --auth-failure-window before it gets 429")
	fs.DurationVar(&n.authWindow, "auth-failure-window", time.Minute, "window for --auth-failures")
	fs.IntVar(&n.authCacheEntries, "auth-cache-entries", 10000, "most authorizer results (JWT, signatures, WASM) kept in the cache")
	fs.StringVar(&n.trustedProxies, "trusted-proxies", "", "comma-separated CIDRs of proxies in front of this node whose X-Forwarded-For is believed; empty trusts none")
	fs.IntVar(&n.maxModuleBytes, "wasm-max-module-bytes", runtime.DefaultMaxModuleBytes, "largest WASM plugin module accepted (uploads on the origin, downloads and compiles on edges); keep it equal on the origin and every edge")
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
	// WASM runs the node's plugins; it outlives snapshots and is closed
	// with the node.
	WASM       *wasm.Host
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
	out := &node{Metrics: reg, Keys: &apikey.Live{}, AccessKeys: &sigv4.Live{}, Usage: apikey.NewUsage()}
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
	cache, err := authcache.New(authcache.Options{Name: "authorizers", MaxEntries: n.authCacheEntries, Registerer: reg})
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
	jwtf, err := jwt.NewFactory(jwt.Options{Cache: cache, Guard: guard, AllowPrivateJWKS: n.allowPrivateJWKS, Registerer: reg, Logger: log})
	if err != nil {
		return nil, err
	}
	sig, err := sigv4.NewFactory(sigv4.Options{Keys: out.AccessKeys, Cache: cache, Guard: guard, Registerer: reg, Logger: log})
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
	if env.modules == nil {
		return nil, errors.New("node: no WASM module source")
	}
	host, err := wasm.NewHost(context.Background(), wasm.HostConfig{DataDir: env.dataDir, Source: env.modules, Logger: log, Registerer: reg, MaxModuleBytes: n.maxModuleBytes})
	if err != nil {
		return nil, err
	}
	out.WASM = host
	out.Policies, err = plugins.NewRegistry(throttle, keys, jwtf, sig, ipf, corsf, host.Authorizer(), host.Transform())
	if err != nil {
		_ = host.Close(context.Background())
		return nil, err
	}
	return out, nil
}

// Close stops what the node runs beside requests: its WASM plugins. Call
// it once the listeners have drained.
func (n *node) Close(ctx context.Context) error {
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	return n.WASM.Close(ctx)
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
// installs them once the snapshot has been accepted.
func (n *node) prepare(s *config.Snapshot) (func(), error) {
	keys, err := apikey.NewTable(s.APIKeys, s.UsagePlans)
	if err != nil {
		return nil, err
	}
	aks, err := sigv4.NewTable(s.AccessKeys)
	if err != nil {
		return nil, err
	}
	return func() {
		n.Keys.Store(keys)
		n.AccessKeys.Store(aks)
	}, nil
}
