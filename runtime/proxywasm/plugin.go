package proxywasm

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/url"
	goruntime "runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"
	"github.com/tetratelabs/wazero/imports/wasi_snapshot_preview1"

	"github.com/portico-edge/portico/runtime"
)

// Upstream is a destination a plugin may call with proxy_http_call, by name.
type Upstream struct {
	URL     *url.URL
	Timeout time.Duration
}

// Config describes one plugin: a module and its configuration.
type Config struct {
	// Name labels the plugin's metrics and logs and is its plugin_name
	// property.
	Name string
	// RootID is the plugin_root_id property (SDKs use it to pick a root
	// context); empty means Name. VMID is plugin_vm_id; empty means Name.
	RootID, VMID string

	Module       []byte
	PluginConfig []byte // handed to proxy_on_configure
	VMConfig     []byte // handed to proxy_on_vm_start

	// Instances is the most instances kept; zero means one per CPU.
	Instances int
	// MemoryPages caps each instance's memory (64 KiB pages).
	MemoryPages uint32
	// CallbackTimeout is the deadline of each callback.
	CallbackTimeout time.Duration
	// StartTimeout is the deadline of start-up (_initialize, on_vm_start,
	// on_configure); zero means 10 s, enough for a heavy WAF rule set.
	StartTimeout time.Duration
	// MaxBodyBytes caps a body (request, response, http call response)
	// the host buffers for the guest, and what a guest may grow one to.
	MaxBodyBytes int
	// MaxConcurrentCalls caps the plugin's outbound http calls in flight.
	MaxConcurrentCalls int
	// PauseTimeout bounds how long a stream may stay paused; zero means
	// the longest upstream timeout plus one second, at least 5 s.
	PauseTimeout time.Duration
	// Upstreams are the only destinations of proxy_http_call.
	Upstreams map[string]Upstream
	// Env is the whole environment the guest sees through WASI.
	Env map[string]string
	// Logger receives the guest's logs and the host's notes about it.
	Logger *slog.Logger
	// LogLevel is what proxy_get_log_level reports; guests skip logs
	// below it. Zero value is info.
	LogLevel int
	// HTTPClient, if set, replaces the client used for http calls.
	HTTPClient *http.Client
}

// Defaults for Config fields left zero.
const (
	DefaultMaxBodyBytes       = 1 << 20
	DefaultMaxConcurrentCalls = 64
	DefaultCallbackTimeout    = 100 * time.Millisecond
	maxLogMessage             = 4 << 10
)

// Plugin is a loaded, started plugin: compiled code, a pool of instances and
// their shared state. It is safe for concurrent use.
type Plugin struct {
	cfg      Config
	engine   *runtime.Engine
	rt       *runtime.Runtime
	compiled wazero.CompiledModule
	pool     *runtime.Pool[*instance]
	metrics  *runtime.PluginMetrics
	logger   *slog.Logger
	exports  map[string]bool
	client   *http.Client
	calls    chan struct{}

	shared   sharedData
	queues   queues
	gmetrics guestMetrics

	closed  atomic.Bool
	refused atomic.Uint64 // host calls refused because their instance was dead
	closeMu sync.Mutex
	live    map[*instance]struct{}
}

// hostImports are the env functions the host provides, with their
// signatures; any other env import is stubbed.
var requiredExports = []string{"proxy_on_context_create"}

// NewPlugin compiles and admits a module: size cap, compile, imports and
// exports checked, one instance started with on_vm_start and on_configure.
// Any failure is returned with what to fix, and nothing is left running.
func NewPlugin(ctx context.Context, engine *runtime.Engine, cfg Config) (*Plugin, error) {
	if cfg.Name == "" {
		cfg.Name = "plugin"
	}
	if cfg.RootID == "" {
		cfg.RootID = cfg.Name
	}
	if cfg.VMID == "" {
		cfg.VMID = cfg.Name
	}
	if cfg.Instances <= 0 {
		cfg.Instances = goruntime.GOMAXPROCS(0)
	}
	if cfg.CallbackTimeout <= 0 {
		cfg.CallbackTimeout = DefaultCallbackTimeout
	}
	if cfg.StartTimeout <= 0 {
		cfg.StartTimeout = 10 * time.Second
	}
	if cfg.MaxBodyBytes <= 0 {
		cfg.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if cfg.MaxConcurrentCalls <= 0 {
		cfg.MaxConcurrentCalls = DefaultMaxConcurrentCalls
	}
	if cfg.PauseTimeout <= 0 {
		cfg.PauseTimeout = 5 * time.Second
		for _, u := range cfg.Upstreams {
			cfg.PauseTimeout = max(cfg.PauseTimeout, u.Timeout+time.Second)
		}
	}
	if cfg.LogLevel == 0 {
		cfg.LogLevel = LogInfo
	}
	if cfg.Logger == nil {
		cfg.Logger = engine.Logger()
	}
	p := &Plugin{
		cfg:    cfg,
		engine: engine,
		logger: cfg.Logger.With("plugin", cfg.Name),
		calls:  make(chan struct{}, cfg.MaxConcurrentCalls),
		live:   make(map[*instance]struct{}),
	}
	p.client = cfg.HTTPClient
	if p.client == nil {
		p.client = &http.Client{
			// No proxy from the environment, no redirects: a plugin
			// reaches exactly the upstream it was allowed.
			Transport: &http.Transport{
				MaxIdleConnsPerHost: 16,
				IdleConnTimeout:     30 * time.Second,
			},
			CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
		}
	}
	p.shared.init()
	p.queues.init()
	p.gmetrics.init()

	rt, err := engine.NewRuntime(ctx, runtime.Limits{MemoryPages: cfg.MemoryPages})
	if err != nil {
		return nil, err
	}
	p.rt = rt
	fail := func(err error) (*Plugin, error) {
		_ = rt.Close(context.Background())
		return nil, err
	}
	cm, err := rt.Compile(ctx, cfg.Module)
	if err != nil {
		return fail(err)
	}
	p.compiled = cm
	if err := p.checkModule(cm); err != nil {
		return fail(err)
	}
	if _, err := wasi_snapshot_preview1.Instantiate(ctx, rt); err != nil {
		return fail(fmt.Errorf("instantiating WASI: %w", err))
	}
	if err := p.instantiateHost(ctx, cm); err != nil {
		return fail(err)
	}
	p.metrics = engine.NewPluginMetrics(cfg.Name)
	p.metrics.Extra = p.gmetrics.collect(cfg.Name)
	pool, err := runtime.NewPool(ctx, runtime.PoolConfig[*instance]{
		Size:    cfg.Instances,
		New:     p.newInstance,
		Destroy: p.destroyInstance,
		OnFailure: func(err error) {
			p.logger.Error("wasm plugin: replacing a failed instance failed", "err", err)
		},
		OnCount: func(n int) { p.metrics.Instances.Store(int64(n)) },
	})
	if err != nil {
		engine.UnregisterPluginMetrics(p.metrics)
		return fail(err)
	}
	p.pool = pool
	return p, nil
}

func (p *Plugin) checkModule(cm wazero.CompiledModule) error {
	ex := cm.ExportedFunctions()
	p.exports = make(map[string]bool, len(ex))
	for name := range ex {
		p.exports[name] = true
	}
	if _, ok := cm.ExportedMemories()["memory"]; !ok {
		return errors.New("module exports no memory named \"memory\"; proxy-wasm plugins must export their linear memory")
	}
	if !p.exports["proxy_abi_version_0_2_1"] && !p.exports["proxy_abi_version_0_2_0"] {
		var found []string
		for name := range ex {
			if strings.HasPrefix(name, "proxy_abi_version_") {
				found = append(found, name)
			}
		}
		if len(found) > 0 {
			return fmt.Errorf("module is built for proxy-wasm ABI %v; this host runs 0.2.1 and 0.2.0: rebuild it with a current SDK", found)
		}
		return errors.New("module exports no proxy_abi_version_0_2_1 (or _0_2_0) marker: it is not a proxy-wasm plugin, or was built without a proxy-wasm SDK")
	}
	for _, name := range requiredExports {
		if !p.exports[name] {
			return fmt.Errorf("module does not export %s, which every proxy-wasm plugin needs", name)
		}
	}
	if !p.exports["proxy_on_memory_allocate"] && !p.exports["malloc"] {
		return errors.New("module exports neither proxy_on_memory_allocate nor malloc, so the host cannot hand it any data")
	}
	if !p.exports["_initialize"] && p.exports["_start"] {
		p.logger.Warn("wasm plugin: module is a WASI command (_start) rather than a reactor (_initialize); it will be started with _start, which must return without exiting")
	}
	for _, m := range cm.ImportedMemories() {
		mod, name, _ := m.Import()
		return fmt.Errorf("module imports memory %s.%s; a plugin must define its own memory", mod, name)
	}
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		switch mod {
		case "env", wasi_snapshot_preview1.ModuleName:
		default:
			return fmt.Errorf("module imports %s.%s; plugins may only import proxy-wasm (env) and WASI preview 1 functions", mod, name)
		}
	}
	return nil
}

// instantiateHost builds the env module: every v0.2.1 host function, and a
// stub answering UNIMPLEMENTED for each other env import the module has.
func (p *Plugin) instantiateHost(ctx context.Context, cm wazero.CompiledModule) error {
	b := p.rt.NewHostModuleBuilder("env")
	defined := p.defineHostFunctions(b)
	for _, f := range cm.ImportedFunctions() {
		mod, name, _ := f.Import()
		if mod != "env" || defined[name] {
			continue
		}
		results := f.ResultTypes()
		if len(results) > 1 {
			return fmt.Errorf("module imports env.%s with %d results; no host function has that shape", name, len(results))
		}
		p.logger.Warn("wasm plugin imports a function this host does not provide; it will answer UNIMPLEMENTED", "import", "env."+name)
		defined[name] = true
		stubName := name
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, stack []uint64) {
			p.logger.Debug("wasm plugin called an unimplemented host function", "import", "env."+stubName)
			if len(results) == 1 {
				stack[0] = uint64(StatusUnimplemented)
			}
		}), f.ParamTypes(), results).Export(name)
	}
	if _, err := b.Instantiate(ctx); err != nil {
		return fmt.Errorf("instantiating the proxy-wasm host functions: %w", err)
	}
	return nil
}

// Metrics returns the plugin's counters.
func (p *Plugin) Metrics() *runtime.PluginMetrics { return p.metrics }

// Live returns the number of live instances.
func (p *Plugin) Live() int { return p.pool.Live() }

// Refused counts host function calls refused because their instance had
// already failed or been closed.
func (p *Plugin) Refused() uint64 { return p.refused.Load() }

// MaxBodyBytes is the body cap in force.
func (p *Plugin) MaxBodyBytes() int { return p.cfg.MaxBodyBytes }

// Close stops the plugin: idle instances are closed now, instances serving a
// request when that request ends. Close waits at most until ctx is done
// for the busy ones, then kills them.
func (p *Plugin) Close(ctx context.Context) error {
	if p.closed.Swap(true) {
		return nil
	}
	p.pool.Close()
	for {
		p.closeMu.Lock()
		n := len(p.live)
		p.closeMu.Unlock()
		if n == 0 {
			break
		}
		select {
		case <-ctx.Done():
			p.closeMu.Lock()
			for in := range p.live {
				in.guard.Kill()
			}
			p.closeMu.Unlock()
			goto done
		case <-time.After(5 * time.Millisecond):
		}
	}
done:
	p.engine.UnregisterPluginMetrics(p.metrics)
	if t, ok := p.client.Transport.(*http.Transport); ok && p.cfg.HTTPClient == nil {
		t.CloseIdleConnections()
	}
	return p.rt.Close(context.Background())
}

func (p *Plugin) moduleConfig(in *instance) wazero.ModuleConfig {
	mc := wazero.NewModuleConfig().
		WithName("").
		WithStartFunctions().
		WithStdout(&logWriter{in: in, level: slog.LevelInfo}).
		WithStderr(&logWriter{in: in, level: slog.LevelError}).
		WithSysWalltime().
		WithSysNanotime().
		WithRandSource(rand.Reader)
	keys := make([]string, 0, len(p.cfg.Env))
	for k := range p.cfg.Env {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		mc = mc.WithEnv(k, p.cfg.Env[k])
	}
	return mc
}
