package wasm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/runtime/proxywasm"
)

// Duration is a time.Duration written as a Go duration string ("50ms").
type Duration time.Duration

// UnmarshalJSON accepts "300s", "50ms", "1m".
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return fmt.Errorf("durations are strings such as \"300s\" or \"50ms\", not %s", b)
	}
	v, err := time.ParseDuration(s)
	if err != nil {
		return fmt.Errorf("%q is not a duration; write it like \"300s\" or \"50ms\"", s)
	}
	*d = Duration(v)
	return nil
}

// MarshalJSON writes the duration string.
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(time.Duration(d).String()) }

// Config is the config of a wasm-authorizer or wasm-transform policy.
type Config struct {
	// Module is the SHA-256 of the module, "sha256:<64 hex digits>".
	Module string `json:"module"`
	// Config is handed to proxy_on_configure: a JSON string as its raw
	// text, any other JSON value as its JSON.
	Config json.RawMessage `json:"config,omitempty"`
	// VMConfig is handed to proxy_on_vm_start the same way.
	VMConfig json.RawMessage `json:"vmConfig,omitempty"`
	// FailurePolicy is "closed" (the default: a failed plugin answers
	// 500/503) or "open" (a failed plugin is skipped).
	FailurePolicy string `json:"failurePolicy,omitempty"`
	// IdentitySources name the request parts an authorizer decision
	// depends on, for caching: "header.Authorization", "query.token".
	IdentitySources []string `json:"identitySources,omitempty"`
	// CacheTTL is how long a decision is reused; zero disables caching.
	// An allow that changed ":path", ":method" or ":authority" is never
	// cached: the plugin runs again for every such request.
	CacheTTL Duration `json:"cacheTTL,omitempty"`
	// CacheMaxEntries caps the decisions kept; default 10000.
	CacheMaxEntries int `json:"cacheMaxEntries,omitempty"`
	// Instances caps the plugin's instances; default one per CPU.
	Instances int    `json:"instances,omitempty"`
	Limits    Limits `json:"limits,omitempty"`
	// Upstreams are the destinations proxy_http_call may reach, by name.
	Upstreams map[string]UpstreamConfig `json:"upstreams,omitempty"`
	// Env is the plugin's whole WASI environment.
	Env map[string]string `json:"env,omitempty"`
}

// Limits bound one plugin.
type Limits struct {
	MemoryPages        uint32   `json:"memoryPages,omitempty"`
	CallbackTimeout    Duration `json:"callbackTimeout,omitempty"`
	MaxBodyBytes       int      `json:"maxBodyBytes,omitempty"`
	MaxConcurrentCalls int      `json:"maxConcurrentCalls,omitempty"`
}

// UpstreamConfig is one allowed http call destination.
type UpstreamConfig struct {
	URL     string   `json:"url"`
	Timeout Duration `json:"timeout,omitempty"`
}

// Bounds on config values.
const (
	maxInstances       = 256
	maxMemoryPages     = 65536
	minCallbackTimeout = time.Millisecond
	maxCallbackTimeout = 10 * time.Second
	maxBodyBytesLimit  = 64 << 20
	maxCalls           = 4096
	maxCacheTTL        = time.Hour
	maxCacheEntries    = 1_000_000
	maxUpstreamTimeout = time.Minute
	maxEnv             = 128
	defaultCacheMax    = 10000
)

// ParseConfig decodes and validates a policy's config. Errors name the field
// and say what to write instead.
func ParseConfig(spec config.PolicySpec) (*Config, error) {
	var c Config
	if len(spec.Config) == 0 {
		return nil, errors.New("config: \"module\" is required: the sha256 digest of an uploaded module")
	}
	if err := plugins.DecodeConfig(spec, &c); err != nil {
		return nil, err
	}
	if err := c.validate(spec.Type); err != nil {
		return nil, fmt.Errorf("config: %w", err)
	}
	return &c, nil
}

func (c *Config) validate(typ string) error {
	hexDigest, ok := strings.CutPrefix(c.Module, "sha256:")
	if !ok || len(hexDigest) != 64 || strings.ToLower(hexDigest) != hexDigest {
		return fmt.Errorf("module %q must be \"sha256:\" followed by the 64 lower-case hex digits of the module's SHA-256", c.Module)
	}
	if _, err := hex.DecodeString(hexDigest); err != nil {
		return fmt.Errorf("module %q: digest is not hex", c.Module)
	}
	switch c.FailurePolicy {
	case "", "closed", "open":
	default:
		return fmt.Errorf("failurePolicy %q must be \"closed\" or \"open\"", c.FailurePolicy)
	}
	if typ == TypeTransform {
		if len(c.IdentitySources) > 0 || c.CacheTTL != 0 || c.CacheMaxEntries != 0 {
			return errors.New("identitySources, cacheTTL and cacheMaxEntries only apply to wasm-authorizer")
		}
	}
	for _, s := range c.IdentitySources {
		if _, err := parseSource(s); err != nil {
			return err
		}
	}
	if c.CacheTTL < 0 || time.Duration(c.CacheTTL) > maxCacheTTL {
		return fmt.Errorf("cacheTTL %s must be between 0 and %s", time.Duration(c.CacheTTL), maxCacheTTL)
	}
	if c.CacheTTL > 0 && len(c.IdentitySources) == 0 {
		return errors.New("cacheTTL needs identitySources: the request parts a decision depends on (for example [\"header.Authorization\"])")
	}
	if c.CacheMaxEntries < 0 || c.CacheMaxEntries > maxCacheEntries {
		return fmt.Errorf("cacheMaxEntries %d must be between 0 and %d", c.CacheMaxEntries, maxCacheEntries)
	}
	if c.Instances < 0 || c.Instances > maxInstances {
		return fmt.Errorf("instances %d must be between 1 and %d (0 means one per CPU)", c.Instances, maxInstances)
	}
	l := c.Limits
	if l.MemoryPages > maxMemoryPages {
		return fmt.Errorf("limits.memoryPages %d is over the %d pages (4 GiB) a module can address", l.MemoryPages, maxMemoryPages)
	}
	if l.CallbackTimeout != 0 && (time.Duration(l.CallbackTimeout) < minCallbackTimeout || time.Duration(l.CallbackTimeout) > maxCallbackTimeout) {
		return fmt.Errorf("limits.callbackTimeout %s must be between %s and %s", time.Duration(l.CallbackTimeout), minCallbackTimeout, maxCallbackTimeout)
	}
	if l.MaxBodyBytes < 0 || l.MaxBodyBytes > maxBodyBytesLimit {
		return fmt.Errorf("limits.maxBodyBytes %d must be between 0 and %d", l.MaxBodyBytes, maxBodyBytesLimit)
	}
	if l.MaxConcurrentCalls < 0 || l.MaxConcurrentCalls > maxCalls {
		return fmt.Errorf("limits.maxConcurrentCalls %d must be between 0 and %d", l.MaxConcurrentCalls, maxCalls)
	}
	for _, name := range sortedKeys(c.Upstreams) {
		u := c.Upstreams[name]
		if name == "" {
			return errors.New("upstreams: a name must not be empty")
		}
		pu, err := url.Parse(u.URL)
		if err != nil || (pu.Scheme != "http" && pu.Scheme != "https") || pu.Host == "" || pu.User != nil || pu.RawQuery != "" || pu.Fragment != "" {
			return fmt.Errorf("upstreams.%s.url %q must be an absolute http or https URL without credentials, query or fragment", name, u.URL)
		}
		if u.Timeout < 0 || time.Duration(u.Timeout) > maxUpstreamTimeout {
			return fmt.Errorf("upstreams.%s.timeout %s must be between 0 and %s", name, time.Duration(u.Timeout), maxUpstreamTimeout)
		}
	}
	if len(c.Env) > maxEnv {
		return fmt.Errorf("env has %d variables; at most %d", len(c.Env), maxEnv)
	}
	for k, v := range c.Env {
		if k == "" || strings.ContainsAny(k, "=\x00") || strings.ContainsRune(v, 0) {
			return fmt.Errorf("env %q: names must be non-empty without '=' or NUL, values without NUL", k)
		}
	}
	return nil
}

// guestBytes turns a JSON config value into what the guest receives: a
// string's text, or any other value's JSON.
func guestBytes(raw json.RawMessage) []byte {
	raw = bytes.TrimSpace(raw)
	if len(raw) == 0 || string(raw) == "null" {
		return nil
	}
	if raw[0] == '"' {
		var s string
		if json.Unmarshal(raw, &s) == nil {
			return []byte(s)
		}
	}
	return append([]byte(nil), raw...)
}

// pluginKey identifies a running plugin: the module and every setting that
// changes how it runs. Policies with equal keys share one plugin (one pool),
// across scopes and snapshots.
func (c *Config) pluginKey() string {
	k := struct {
		Module    string
		Config    []byte
		VMConfig  []byte
		Instances int
		Limits    Limits
		Upstreams map[string]UpstreamConfig
		Env       map[string]string
	}{c.Module, guestBytes(c.Config), guestBytes(c.VMConfig), c.Instances, c.Limits, c.Upstreams, c.Env}
	b, _ := json.Marshal(k) // maps marshal with sorted keys
	sum := sha256.Sum256(b)
	return hex.EncodeToString(sum[:])
}

func (c *Config) proxyConfig(name string, module []byte) (proxywasm.Config, error) {
	ups := make(map[string]proxywasm.Upstream, len(c.Upstreams))
	for n, u := range c.Upstreams {
		pu, err := url.Parse(u.URL)
		if err != nil {
			return proxywasm.Config{}, err
		}
		ups[n] = proxywasm.Upstream{URL: pu, Timeout: time.Duration(u.Timeout)}
	}
	return proxywasm.Config{
		Name:               name,
		Module:             module,
		PluginConfig:       guestBytes(c.Config),
		VMConfig:           guestBytes(c.VMConfig),
		Instances:          c.Instances,
		MemoryPages:        c.Limits.MemoryPages,
		CallbackTimeout:    time.Duration(c.Limits.CallbackTimeout),
		MaxBodyBytes:       c.Limits.MaxBodyBytes,
		MaxConcurrentCalls: c.Limits.MaxConcurrentCalls,
		Upstreams:          ups,
		Env:                c.Env,
	}, nil
}

func sortedKeys[V any](m map[string]V) []string {
	ks := make([]string, 0, len(m))
	for k := range m {
		ks = append(ks, k)
	}
	slices.Sort(ks)
	return ks
}
