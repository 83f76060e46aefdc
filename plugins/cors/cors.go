// Package cors is the "cors" policy: it answers CORS preflight requests at
// the edge and adds the CORS response headers to actual requests, per API
// and route, following the Fetch standard's CORS protocol.
package cors

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// Config is the "cors" policy's config.
type Config struct {
	// AllowOrigins lists origins: exact ("https://app.example.com"), "*",
	// or a wildcard subdomain pattern ("https://*.example.com", matching
	// any depth of subdomain but not example.com itself).
	AllowOrigins []string `json:"allowOrigins"`
	// AllowMethods defaults to GET, HEAD and POST.
	AllowMethods []string `json:"allowMethods,omitempty"`
	// AllowHeaders lists request headers a browser may send; "*" allows
	// any (not with credentials).
	AllowHeaders  []string `json:"allowHeaders,omitempty"`
	ExposeHeaders []string `json:"exposeHeaders,omitempty"`
	// AllowCredentials lets browsers send cookies and HTTP auth; it cannot
	// be combined with "*" anywhere, which the standard forbids.
	AllowCredentials bool `json:"allowCredentials,omitempty"`
	// MaxAge is how long, in seconds, a browser may cache a preflight;
	// zero sends no Access-Control-Max-Age.
	MaxAge int `json:"maxAge,omitempty"`
}

// Factory builds "cors" policies.
type Factory struct {
	preflightOK, preflightDenied, actual prometheus.Counter
}

// NewFactory returns the "cors" factory.
func NewFactory(reg prometheus.Registerer) (*Factory, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_cors_requests_total",
		Help: "Requests seen by cors policies: preflight_allowed, preflight_denied, actual (cross-origin requests passed on).",
	}, []string{"result"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			ex, ok := (*prometheus.CounterVec)(nil), false
			if errors.As(err, &are) {
				ex, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, fmt.Errorf("cors: register metrics: %w", err)
			}
			vec = ex
		}
	}
	return &Factory{
		preflightOK:     vec.WithLabelValues("preflight_allowed"),
		preflightDenied: vec.WithLabelValues("preflight_denied"),
		actual:          vec.WithLabelValues("actual"),
	}, nil
}

// Type implements plugins.Factory.
func (f *Factory) Type() string { return "cors" }

// Phase implements plugins.Factory.
func (f *Factory) Phase() plugins.Phase { return plugins.PhaseCORS }

type pattern struct {
	scheme, suffix string // "https://", ".example.com"
}

type policy struct {
	f             *Factory
	anyOrigin     bool
	exact         map[string]bool
	patterns      []pattern
	methods       []string
	methodsHeader string
	anyHeader     bool
	headers       map[string]bool // lower-case
	headersHeader string
	expose        string
	credentials   bool
	maxAge        string
}

// New implements plugins.Factory.
func (f *Factory) New(_ context.Context, spec config.PolicySpec, _ plugins.Scope) (plugins.Policy, error) {
	var c Config
	if err := plugins.DecodeConfig(spec, &c); err != nil {
		return nil, err
	}
	if len(c.AllowOrigins) == 0 {
		return nil, errors.New("allowOrigins is empty; list the origins allowed, such as [\"https://app.example.com\"]")
	}
	p := &policy{f: f, exact: map[string]bool{}, headers: map[string]bool{}, credentials: c.AllowCredentials}
	for i, o := range c.AllowOrigins {
		switch {
		case o == "*":
			p.anyOrigin = true
		case strings.Contains(o, "*"):
			scheme, rest, ok := strings.Cut(o, "://")
			if !ok || !strings.HasPrefix(rest, "*.") || strings.Count(rest, "*") != 1 || len(rest) < 4 || (scheme != "http" && scheme != "https") {
				return nil, fmt.Errorf("allowOrigins[%d] %q is not valid: a wildcard must be the first label, as in \"https://*.example.com\"", i, o)
			}
			p.patterns = append(p.patterns, pattern{scheme + "://", strings.ToLower(rest[1:])})
		default:
			scheme, host, ok := strings.Cut(o, "://")
			if !ok || host == "" || strings.ContainsAny(host, "/?#") || (scheme != "http" && scheme != "https") {
				return nil, fmt.Errorf("allowOrigins[%d] %q is not valid: write an origin as scheme://host[:port] without a path, as in \"https://app.example.com\"", i, o)
			}
			p.exact[strings.ToLower(o)] = true
		}
	}
	if p.anyOrigin && c.AllowCredentials {
		return nil, errors.New("allowCredentials cannot be used with allowOrigins \"*\": browsers refuse it; list the origins instead")
	}
	if len(c.AllowMethods) == 0 {
		c.AllowMethods = []string{"GET", "HEAD", "POST"}
	}
	for i, m := range c.AllowMethods {
		if m == "*" {
			return nil, fmt.Errorf("allowMethods[%d]: list the methods (for example [\"GET\", \"POST\", \"PUT\"]); \"*\" is not supported", i)
		}
		if m != strings.ToUpper(m) || m == "" {
			return nil, fmt.Errorf("allowMethods[%d] %q is not valid: write methods in upper case, as in \"GET\"", i, m)
		}
		p.methods = append(p.methods, m)
	}
	p.methodsHeader = strings.Join(p.methods, ", ")
	var hs []string
	for _, h := range c.AllowHeaders {
		if h == "*" {
			if c.AllowCredentials {
				return nil, errors.New("allowHeaders \"*\" cannot be used with allowCredentials: browsers take it literally then; list the headers")
			}
			p.anyHeader = true
			continue
		}
		p.headers[strings.ToLower(h)] = true
		hs = append(hs, strings.ToLower(h))
	}
	p.headersHeader = strings.Join(hs, ", ")
	p.expose = strings.Join(c.ExposeHeaders, ", ")
	if c.MaxAge < 0 || c.MaxAge > 86400 {
		return nil, fmt.Errorf("maxAge %d is not valid: use 0 to 86400 seconds", c.MaxAge)
	}
	if c.MaxAge > 0 {
		p.maxAge = strconv.Itoa(c.MaxAge)
	}
	return p, nil
}

func (p *policy) originAllowed(o string) bool {
	if p.anyOrigin {
		return true
	}
	if p.exact[o] {
		return true
	}
	lo := strings.ToLower(o)
	if lo != o && p.exact[lo] {
		return true
	}
	for _, pt := range p.patterns {
		if host, ok := strings.CutPrefix(lo, pt.scheme); ok && len(host) > len(pt.suffix) &&
			strings.HasSuffix(host, pt.suffix) && !strings.ContainsAny(host, "/?#@:") {
			return true
		}
	}
	return false
}

func (p *policy) Wrap(next plugins.Handler) plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		r := ex.Request
		h := w.Header()
		// Responses differ by Origin whatever it is, so caches must key
		// on it.
		h.Add("Vary", "Origin")
		origin := r.Header.Get("Origin")
		if r.Method == http.MethodOptions && origin != "" && r.Header.Get("Access-Control-Request-Method") != "" {
			p.preflight(w, r, origin)
			return
		}
		if origin != "" && p.originAllowed(origin) {
			p.f.actual.Inc()
			p.allowOrigin(h, origin)
			if p.expose != "" {
				h.Set("Access-Control-Expose-Headers", p.expose)
			}
		}
		next.ServeExchange(w, ex)
	})
}

func (p *policy) allowOrigin(h http.Header, origin string) {
	if p.anyOrigin && !p.credentials {
		h.Set("Access-Control-Allow-Origin", "*")
		return
	}
	h.Set("Access-Control-Allow-Origin", origin)
	if p.credentials {
		h.Set("Access-Control-Allow-Credentials", "true")
	}
}

func (p *policy) preflight(w http.ResponseWriter, r *http.Request, origin string) {
	method := r.Header.Get("Access-Control-Request-Method")
	deny := func(why string) {
		p.f.preflightDenied.Inc()
		plugins.WriteError(w, http.StatusForbidden, "Forbidden: CORS preflight refused: "+why)
	}
	if !p.originAllowed(origin) {
		deny("origin " + strconv.Quote(origin) + " is not allowed")
		return
	}
	if !slices.Contains(p.methods, method) {
		deny("method " + strconv.Quote(method) + " is not allowed")
		return
	}
	requested := r.Header.Values("Access-Control-Request-Headers")
	var allowHeaders string
	for _, line := range requested {
		for _, name := range strings.Split(line, ",") {
			name = strings.ToLower(strings.TrimSpace(name))
			if name == "" || p.anyHeader || p.headers[name] {
				continue
			}
			deny("header " + strconv.Quote(name) + " is not allowed")
			return
		}
	}
	if p.anyHeader {
		allowHeaders = strings.Join(requested, ", ")
	} else {
		allowHeaders = p.headersHeader
	}
	p.f.preflightOK.Inc()
	h := w.Header()
	h.Add("Vary", "Access-Control-Request-Method")
	h.Add("Vary", "Access-Control-Request-Headers")
	p.allowOrigin(h, origin)
	h.Set("Access-Control-Allow-Methods", p.methodsHeader)
	if allowHeaders != "" {
		h.Set("Access-Control-Allow-Headers", allowHeaders)
	}
	if p.maxAge != "" {
		h.Set("Access-Control-Max-Age", p.maxAge)
	}
	w.WriteHeader(http.StatusNoContent)
}
