package cache

import (
	"fmt"
	"math"
	"net/http"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// Config is the JSON config of a "cache" policy. Every field is optional;
// a route-level policy overrides only the fields it sets, on top of the
// stage-level (and API-level) policy.
//
//	{"enabled":true,"ttl":"300s","maxObjectBytes":1048576,"methods":["GET","HEAD"],
//	 "staleIfError":"60s","invalidation":"require-authorization","xCacheHeader":true}
type Config struct {
	// Enabled turns caching on or off for the scope; default true.
	Enabled *bool `json:"enabled,omitempty"`
	// TTL is the freshness lifetime of a response whose origin gave none
	// (no max-age, s-maxage or Expires); default 300s, 0 stores only
	// responses with explicit freshness.
	TTL *config.Duration `json:"ttl,omitempty"`
	// MaxObjectBytes is the largest body stored; larger responses pass
	// through. Default 1 MiB.
	MaxObjectBytes *int64 `json:"maxObjectBytes,omitempty"`
	// Methods are the cached methods, a subset of GET and HEAD; HEAD is
	// answered from GET's object. Default both.
	Methods []string `json:"methods,omitempty"`
	// StaleIfError is how long after expiry a stored response is served
	// when the origin fails (5xx, timeout, unreachable) and the response
	// carries no stale-if-error of its own. Default 0.
	StaleIfError *config.Duration `json:"staleIfError,omitempty"`
	// Invalidation says who may make the cache refetch with
	// Cache-Control: max-age=0 (or no-cache): "ignore", "require-authorization"
	// (callers with an authenticated identity; the default) or "allow".
	Invalidation *string `json:"invalidation,omitempty"`
	// XCacheHeader adds X-Cache: Hit|Miss|Stale|Revalidated to responses;
	// default true.
	XCacheHeader *bool `json:"xCacheHeader,omitempty"`
	// Routes overrides fields for single routes of the scope, keyed by
	// the route's method and path template as the API defines them
	// ("GET /items/{id}"), the way API Gateway's stage method settings
	// do. An entry sets only the fields it names, on top of this config.
	Routes map[string]Config `json:"routes,omitempty"`
}

// Invalidation modes.
const (
	InvalidationIgnore               = "ignore"
	InvalidationRequireAuthorization = "require-authorization"
	InvalidationAllow                = "allow"
)

type invalidationMode uint8

const (
	invIgnore invalidationMode = iota
	invRequireAuth
	invAllow
)

// Defaults of the fields a config leaves out.
const (
	DefaultTTL            = 300 * time.Second
	DefaultMaxObjectBytes = 1 << 20
)

// maxTTL bounds configured durations so that sums of them cannot overflow.
const maxTTL = 365 * 24 * time.Hour

// settings are a config with every field resolved.
type settings struct {
	enabled      bool
	ttl          time.Duration
	maxObject    int64
	get, head    bool
	staleIfError time.Duration
	invalidation invalidationMode
	xCache       bool
}

func defaultSettings() settings {
	return settings{
		enabled:      true,
		ttl:          DefaultTTL,
		maxObject:    DefaultMaxObjectBytes,
		get:          true,
		head:         true,
		invalidation: invRequireAuth,
		xCache:       true,
	}
}

// decodeConfig reads and checks a policy's config. maxObjectLimit is the
// largest object the node's store can hold.
func decodeConfig(spec config.PolicySpec, maxObjectLimit int64) (Config, error) {
	var c Config
	if err := plugins.DecodeConfig(spec, &c); err != nil {
		return Config{}, err
	}
	if err := c.check(maxObjectLimit); err != nil {
		return Config{}, err
	}
	for key, rc := range c.Routes {
		method, path, ok := strings.Cut(key, " ")
		if !ok || !routeMethods[method] || !strings.HasPrefix(path, "/") || strings.ContainsAny(path, " \t") {
			return Config{}, fmt.Errorf("config: routes: %q is not a route key; write the method and the path template as the API defines them, such as \"GET /items/{id}\"", key)
		}
		if rc.Routes != nil {
			return Config{}, fmt.Errorf("config: routes: %q: an entry overrides fields of one route and cannot hold routes itself", key)
		}
		if err := rc.check(maxObjectLimit); err != nil {
			return Config{}, fmt.Errorf("routes: %q: %w", key, err)
		}
	}
	return c, nil
}

// routeMethods are the methods a route key may name (config.MethodAny
// included).
var routeMethods = map[string]bool{
	http.MethodGet: true, http.MethodHead: true, http.MethodPost: true, http.MethodPut: true,
	http.MethodPatch: true, http.MethodDelete: true, http.MethodOptions: true, config.MethodAny: true,
}

// check checks the fields of one config (not its routes).
func (c *Config) check(maxObjectLimit int64) error {
	if c.TTL != nil && (c.TTL.Std() < 0 || c.TTL.Std() > maxTTL) {
		return fmt.Errorf("config: ttl %s is out of range: use a duration from 0s to %s", c.TTL.Std(), maxTTL)
	}
	if c.StaleIfError != nil && (c.StaleIfError.Std() < 0 || c.StaleIfError.Std() > maxTTL) {
		return fmt.Errorf("config: staleIfError %s is out of range: use a duration from 0s to %s", c.StaleIfError.Std(), maxTTL)
	}
	if c.MaxObjectBytes != nil {
		if *c.MaxObjectBytes <= 0 {
			return fmt.Errorf("config: maxObjectBytes %d must be positive (to stop caching a route, set \"enabled\": false)", *c.MaxObjectBytes)
		}
		if *c.MaxObjectBytes > maxObjectLimit {
			return fmt.Errorf("config: maxObjectBytes %d is more than this node's cache can hold in one object (%d bytes, a quarter of its memory budget): lower it or give the node a larger cache budget", *c.MaxObjectBytes, maxObjectLimit)
		}
	}
	if c.Methods != nil {
		var get, head bool
		for _, m := range c.Methods {
			switch strings.ToUpper(m) {
			case http.MethodGet:
				get = true
			case http.MethodHead:
				head = true
			default:
				return fmt.Errorf("config: methods: %q cannot be cached: only GET and HEAD responses are cached (other methods need the request body in the key, which this cache does not do)", m)
			}
		}
		if head && !get {
			return fmt.Errorf("config: methods: HEAD is answered from GET's object, so it needs GET in the list too")
		}
		if !get {
			return fmt.Errorf("config: methods is empty: list GET (and HEAD), or set \"enabled\": false")
		}
	}
	if c.Invalidation != nil {
		switch *c.Invalidation {
		case InvalidationIgnore, InvalidationRequireAuthorization, InvalidationAllow:
		default:
			return fmt.Errorf("config: invalidation %q is not one of %q, %q, %q", *c.Invalidation,
				InvalidationIgnore, InvalidationRequireAuthorization, InvalidationAllow)
		}
	}
	return nil
}

// apply overlays the fields c sets on s.
func (c *Config) apply(s settings) settings {
	if c.Enabled != nil {
		s.enabled = *c.Enabled
	}
	if c.TTL != nil {
		s.ttl = c.TTL.Std()
	}
	if c.MaxObjectBytes != nil {
		s.maxObject = *c.MaxObjectBytes
	}
	if c.Methods != nil {
		s.get, s.head = false, false
		for _, m := range c.Methods {
			switch strings.ToUpper(m) {
			case http.MethodGet:
				s.get = true
			case http.MethodHead:
				s.head = true
			}
		}
	}
	if c.StaleIfError != nil {
		s.staleIfError = c.StaleIfError.Std()
	}
	if c.Invalidation != nil {
		switch *c.Invalidation {
		case InvalidationIgnore:
			s.invalidation = invIgnore
		case InvalidationRequireAuthorization:
			s.invalidation = invRequireAuth
		case InvalidationAllow:
			s.invalidation = invAllow
		}
	}
	if c.XCacheHeader != nil {
		s.xCache = *c.XCacheHeader
	}
	return s
}

// objectLimit is the largest body a store with the given budget accepts:
// a quarter of the budget, and never more than a weight can express.
func objectLimit(budget int64) int64 {
	l := budget / 4
	if l > math.MaxUint32/2 {
		l = math.MaxUint32 / 2
	}
	return l
}
