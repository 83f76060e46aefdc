// Package jwt is the "jwt" policy: a JWT authorizer in the manner of API
// Gateway's Cognito and JWT authorizers. A bearer token is verified against
// the issuer's keys (inline, or fetched from a JWKS URL), its issuer,
// audience and validity period are checked, the route's required scopes
// are enforced, and chosen claims are passed to the origin as headers.
//
// Built on github.com/go-jose/go-jose/v4: a small, widely used JOSE library
// whose parser takes the list of acceptable algorithms up front, so "none"
// and HMAC algorithms are refused before any key is touched (the class of
// bugs behind algorithm confusion attacks). lestrrat-go/jwx is broader
// (JWE, JWT builders, key fetch helpers) but larger than what an authorizer
// needs, and its JWKS fetching would have to be replaced anyway to keep the
// SSRF and refresh rules below.
package jwt

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/authcache"
	"github.com/portico-edge/portico/plugins/authfail"
)

// Config is the "jwt" policy's config, as the OpenAPI importer writes it
// from an openIdConnect or oauth2 security scheme.
type Config struct {
	// Issuer must equal the token's "iss" claim. Required.
	Issuer string `json:"issuer"`
	// Audiences: the token's "aud" must hold at least one of them.
	// Required: a token minted for another service must not work here.
	Audiences []string `json:"audiences"`
	// JWKSURI is where the issuer publishes its keys; Keys is an inline
	// JWKS document instead. Exactly one is required.
	JWKSURI string          `json:"jwksUri,omitempty"`
	Keys    json.RawMessage `json:"keys,omitempty"`
	// Scopes are required of the token ("scope" claim, space separated,
	// or "scp", a list or a string). ScopeMatch "all" (default, the
	// OpenAPI meaning of a security requirement) needs every one; "any"
	// (API Gateway's meaning) needs one of them.
	Scopes     []string `json:"scopes,omitempty"`
	ScopeMatch string   `json:"scopeMatch,omitempty"`
	// Algorithms accepted, a subset of RS256, ES256 and EdDSA (default:
	// all three).
	Algorithms []string `json:"algorithms,omitempty"`
	// ClockSkew tolerated on exp, nbf and iat; default 60s, at most 5m.
	ClockSkew *config.Duration `json:"clockSkew,omitempty"`
	// ClaimHeaders maps claims to headers sent to the origin; default
	// {"sub": "X-Portico-Principal"}.
	ClaimHeaders map[string]string `json:"claimHeaders,omitempty"`
}

// Options is what the node passes to NewFactory.
type Options struct {
	// Cache holds verified tokens; nil verifies every request.
	Cache *authcache.Cache
	// CacheTTL caps how long a verified token is cached (never past its
	// exp); zero means 5 minutes.
	CacheTTL time.Duration
	// Guard throttles sources that present bad tokens; nil disables that.
	Guard *authfail.Guard
	// JWKSTimeout bounds each JWKS fetch; zero means 5s.
	JWKSTimeout time.Duration
	// JWKSRefresh is how long fetched keys are used before a background
	// refresh; zero means 10 minutes.
	JWKSRefresh time.Duration
	// JWKSMinInterval is the least time between two fetches of one URL;
	// zero means 30s.
	JWKSMinInterval time.Duration
	// AllowPrivateJWKS allows JWKS URLs over plain http and on loopback
	// and private addresses (for development and tests).
	AllowPrivateJWKS bool
	Now              func() time.Time
	Registerer       prometheus.Registerer
	Logger           *slog.Logger
}

// Factory builds "jwt" policies. Fetched key sets are shared by URL across
// policies and snapshots.
type Factory struct {
	o      Options
	client *http.Client
	m      metrics

	mu      sync.Mutex
	remotes map[string]*remoteKeys
}

type metrics struct {
	accepted, missing, invalid, forbidden, unavailable prometheus.Counter
	fetchErrors                                        prometheus.Counter
}

// NewFactory returns the "jwt" factory.
func NewFactory(o Options) (*Factory, error) {
	if o.CacheTTL == 0 {
		o.CacheTTL = 5 * time.Minute
	}
	if o.JWKSTimeout == 0 {
		o.JWKSTimeout = 5 * time.Second
	}
	if o.JWKSRefresh == 0 {
		o.JWKSRefresh = 10 * time.Minute
	}
	if o.JWKSMinInterval == 0 {
		o.JWKSMinInterval = 30 * time.Second
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_jwt_requests_total",
		Help: "Requests seen by jwt policies, by result: accepted, missing, invalid, insufficient_scope, keys_unavailable; and jwks_fetch_error per failed key set fetch.",
	}, []string{"result"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			ex, ok := (*prometheus.CounterVec)(nil), false
			if errors.As(err, &are) {
				ex, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, fmt.Errorf("jwt: register metrics: %w", err)
			}
			vec = ex
		}
	}
	return &Factory{
		o:       o,
		client:  newJWKSClient(o.JWKSTimeout, o.AllowPrivateJWKS),
		remotes: map[string]*remoteKeys{},
		m: metrics{
			accepted:    vec.WithLabelValues("accepted"),
			missing:     vec.WithLabelValues("missing"),
			invalid:     vec.WithLabelValues("invalid"),
			forbidden:   vec.WithLabelValues("insufficient_scope"),
			unavailable: vec.WithLabelValues("keys_unavailable"),
			fetchErrors: vec.WithLabelValues("jwks_fetch_error"),
		},
	}, nil
}

// Type implements plugins.Factory.
func (f *Factory) Type() string { return "jwt" }

// Phase implements plugins.Factory.
func (f *Factory) Phase() plugins.Phase { return plugins.PhaseAuthorize }

var supportedAlgs = []jose.SignatureAlgorithm{jose.RS256, jose.ES256, jose.EdDSA}

// New implements plugins.Factory.
func (f *Factory) New(_ context.Context, spec config.PolicySpec, _ plugins.Scope) (plugins.Policy, error) {
	var c Config
	if err := plugins.DecodeConfig(spec, &c); err != nil {
		return nil, err
	}
	if c.Issuer == "" {
		return nil, errors.New("issuer is required: the exact \"iss\" value of the tokens to accept")
	}
	if len(c.Audiences) == 0 {
		return nil, errors.New("audiences is required: list the \"aud\" values this API accepts (the app client IDs, for Cognito)")
	}
	sum := sha256.Sum256(spec.Config)
	p := &policy{f: f, issuer: c.Issuer, audiences: josejwt.Audience(c.Audiences), scopes: c.Scopes, id: hex.EncodeToString(sum[:16])}
	switch c.ScopeMatch {
	case "", "all":
	case "any":
		p.anyScope = true
	default:
		return nil, fmt.Errorf("scopeMatch %q is not valid: use \"all\" (every listed scope is required) or \"any\" (one is enough)", c.ScopeMatch)
	}
	if len(c.Algorithms) == 0 {
		p.algs = supportedAlgs
	}
	for i, a := range c.Algorithms {
		alg := jose.SignatureAlgorithm(a)
		if !slices.Contains(supportedAlgs, alg) {
			return nil, fmt.Errorf("algorithms[%d] %q is not supported: use RS256, ES256 or EdDSA (HMAC and \"none\" are never accepted)", i, a)
		}
		p.algs = append(p.algs, alg)
	}
	p.skew = 60 * time.Second
	if c.ClockSkew != nil {
		p.skew = c.ClockSkew.Std()
		if p.skew < 0 || p.skew > 5*time.Minute {
			return nil, fmt.Errorf("clockSkew %s is not valid: use 0s to 5m", p.skew)
		}
	}
	if c.ClaimHeaders == nil {
		c.ClaimHeaders = map[string]string{"sub": "X-Portico-Principal"}
	}
	for claim, h := range c.ClaimHeaders {
		if h == "" || strings.ContainsAny(h, " :\t\r\n_") {
			return nil, fmt.Errorf("claimHeaders[%q]: header name %q is not valid: use letters, digits and '-'", claim, h)
		}
		p.claimHeaders = append(p.claimHeaders, claimHeader{claim, textproto.CanonicalMIMEHeaderKey(h)})
	}
	slices.SortFunc(p.claimHeaders, func(a, b claimHeader) int { return strings.Compare(a.claim, b.claim) })
	switch {
	case c.JWKSURI != "" && len(c.Keys) > 0:
		return nil, errors.New("set either jwksUri or keys, not both")
	case len(c.Keys) > 0:
		var set jose.JSONWebKeySet
		if err := json.Unmarshal(c.Keys, &set); err != nil {
			return nil, fmt.Errorf("keys: not a JWKS document ({\"keys\": [...]}): %w", err)
		}
		pub, err := publicKeys(set)
		if err != nil {
			return nil, fmt.Errorf("keys: %w", err)
		}
		p.keys = &staticKeys{pub}
	case c.JWKSURI != "":
		if err := checkJWKSURL(c.JWKSURI, f.o.AllowPrivateJWKS); err != nil {
			return nil, err
		}
		p.keys = f.remote(c.JWKSURI)
	default:
		return nil, errors.New("no keys: set jwksUri to the issuer's JWKS URL, or keys to an inline JWKS document")
	}
	return p, nil
}

func (f *Factory) remote(u string) *remoteKeys {
	f.mu.Lock()
	defer f.mu.Unlock()
	if r, ok := f.remotes[u]; ok {
		return r
	}
	r := &remoteKeys{url: u, client: f.client, now: f.o.Now, ttl: f.o.JWKSRefresh, minInterval: f.o.JWKSMinInterval,
		log: f.o.Logger, fetchErrors: f.m.fetchErrors.Inc}
	f.remotes[u] = r
	r.mu.Lock()
	r.startLocked() // fetch ahead of the first request
	r.mu.Unlock()
	return r
}

type claimHeader struct{ claim, header string }

type policy struct {
	f            *Factory
	id           string
	issuer       string
	audiences    josejwt.Audience
	algs         []jose.SignatureAlgorithm
	skew         time.Duration
	scopes       []string
	anyScope     bool
	claimHeaders []claimHeader
	keys         keySet
}

const maxTokenBytes = 16 << 10

// verified is what a valid token established.
type verified struct {
	principal string
	headers   http.Header
	scopes    []string
	expiry    time.Time
}

func (p *policy) Wrap(next plugins.Handler) plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		p.serve(w, ex, next)
	})
}

func (p *policy) serve(w http.ResponseWriter, ex *plugins.Exchange, next plugins.Handler) {
	f, r := p.f, ex.Request
	if !f.o.Guard.Check(w, r, ex.Client) {
		return
	}
	token, ok := bearer(r.Header.Get("Authorization"))
	if !ok {
		f.m.missing.Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="portico"`)
		plugins.WriteError(w, http.StatusUnauthorized, "Unauthorized: this API requires a bearer token in the Authorization header")
		return
	}
	var res authcache.Result
	var key authcache.CacheKey
	hit := false
	if f.o.Cache != nil {
		key = authcache.Key("jwt", p.id, token)
		res, hit = f.o.Cache.Get(key)
	}
	if !hit {
		v, err := p.verify(r.Context(), token)
		if err != nil {
			if errors.Is(err, errKeysUnavailable) {
				f.m.unavailable.Inc()
				w.Header().Set("Retry-After", "5")
				plugins.WriteError(w, http.StatusServiceUnavailable, "Service Unavailable: the token cannot be verified right now because the issuer's keys cannot be fetched; try again shortly")
				return
			}
			f.m.invalid.Inc()
			f.o.Guard.Fail(r.Context(), ex.Client, "jwt")
			w.Header().Set("WWW-Authenticate", `Bearer realm="portico", error="invalid_token", error_description=`+strconv.Quote(err.Error()))
			plugins.WriteError(w, http.StatusUnauthorized, "Unauthorized: "+err.Error())
			return
		}
		res = authcache.Result{Principal: v.principal, Headers: v.headers, Scopes: v.scopes}
		if f.o.Cache != nil {
			f.o.Cache.Put(key, res, min(f.o.CacheTTL, v.expiry.Sub(f.o.Now())))
		}
	}
	if missing := p.missingScope(res.Scopes); missing != "" {
		f.m.forbidden.Inc()
		w.Header().Set("WWW-Authenticate", `Bearer realm="portico", error="insufficient_scope", scope=`+strconv.Quote(strings.Join(p.scopes, " ")))
		plugins.WriteError(w, http.StatusForbidden, "Forbidden: the token lacks the scope "+missing)
		return
	}
	f.m.accepted.Inc()
	// Claim headers the token does not fill must not arrive from the
	// client either: the origin trusts these names.
	for _, ch := range p.claimHeaders {
		delete(r.Header, ch.header)
	}
	ex.Identity.Principal = res.Principal
	ex.Identity.Source = "jwt"
	for k, v := range res.Headers {
		ex.Identity.SetHeader(k, v[0])
	}
	next.ServeExchange(w, ex)
}

func bearer(h string) (string, bool) {
	const prefix = "bearer "
	if len(h) <= len(prefix) || !strings.EqualFold(h[:len(prefix)], prefix) {
		return "", false
	}
	t := strings.TrimSpace(h[len(prefix):])
	return t, t != ""
}

// missingScope returns a required scope the token lacks ("" if none).
func (p *policy) missingScope(have []string) string {
	if len(p.scopes) == 0 {
		return ""
	}
	if p.anyScope {
		for _, s := range p.scopes {
			if slices.Contains(have, s) {
				return ""
			}
		}
		return strconv.Quote(strings.Join(p.scopes, " or "))
	}
	for _, s := range p.scopes {
		if !slices.Contains(have, s) {
			return strconv.Quote(s)
		}
	}
	return ""
}

// errInvalid carries the reason a token was refused, for the caller.
type errInvalid string

func (e errInvalid) Error() string { return string(e) }

func (p *policy) verify(ctx context.Context, token string) (*verified, error) {
	if len(token) > maxTokenBytes {
		return nil, errInvalid("the token is too large")
	}
	tok, err := josejwt.ParseSigned(token, p.algs)
	if err != nil {
		// Also where "alg": "none", HS256 and anything else not listed
		// in algorithms end up.
		return nil, errInvalid("the token is malformed or uses an algorithm that is not accepted")
	}
	if len(tok.Headers) != 1 {
		return nil, errInvalid("the token must have exactly one signature")
	}
	hdr := tok.Headers[0]
	cands, err := p.keys.keys(ctx, hdr.KeyID)
	if err != nil {
		if errors.Is(err, errKeysUnavailable) {
			return nil, err
		}
		return nil, errInvalid(err.Error())
	}
	var std josejwt.Claims
	var raw map[string]any
	verifiedSig := false
	for i := range cands {
		k := &cands[i]
		if k.Algorithm != "" && k.Algorithm != hdr.Algorithm {
			continue
		}
		if err := tok.Claims(k.Key, &std, &raw); err == nil {
			verifiedSig = true
			break
		}
	}
	if !verifiedSig {
		return nil, errInvalid("the token's signature is not valid")
	}
	now := p.f.o.Now()
	if std.Expiry == nil {
		return nil, errInvalid("the token has no expiry (exp)")
	}
	if len(std.Audience) == 0 {
		// Cognito access tokens carry the app client in client_id and no
		// aud; API Gateway's JWT authorizer accepts either, and so do we.
		if cid, ok := raw["client_id"].(string); ok && cid != "" {
			std.Audience = josejwt.Audience{cid}
		}
	}
	err = std.ValidateWithLeeway(josejwt.Expected{Issuer: p.issuer, AnyAudience: p.audiences, Time: now}, p.skew)
	switch {
	case err == nil:
	case errors.Is(err, josejwt.ErrExpired):
		return nil, errInvalid("the token has expired")
	case errors.Is(err, josejwt.ErrNotValidYet), errors.Is(err, josejwt.ErrIssuedInTheFuture):
		return nil, errInvalid("the token is not valid yet")
	case errors.Is(err, josejwt.ErrInvalidIssuer):
		return nil, errInvalid("the token's issuer is not accepted")
	case errors.Is(err, josejwt.ErrInvalidAudience):
		return nil, errInvalid("the token's audience is not accepted")
	default:
		return nil, errInvalid("the token's claims are not valid")
	}
	v := &verified{principal: std.Subject, scopes: scopesOf(raw), expiry: std.Expiry.Time().Add(p.skew)}
	for _, ch := range p.claimHeaders {
		val, ok := raw[ch.claim]
		if !ok {
			continue
		}
		if s := headerValue(val); s != "" {
			if v.headers == nil {
				v.headers = make(http.Header, len(p.claimHeaders))
			}
			v.headers[ch.header] = []string{s}
		}
	}
	return v, nil
}

func scopesOf(raw map[string]any) []string {
	var out []string
	if s, ok := raw["scope"].(string); ok {
		out = append(out, strings.Fields(s)...)
	}
	switch v := raw["scp"].(type) {
	case string:
		out = append(out, strings.Fields(v)...)
	case []any:
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
	}
	return out
}

// headerValue renders a claim for a header: strings as they are, lists
// comma-joined, anything else as JSON; control characters are removed so
// that a claim can never split a header.
func headerValue(v any) string {
	var s string
	switch x := v.(type) {
	case string:
		s = x
	case []any:
		parts := make([]string, 0, len(x))
		for _, e := range x {
			parts = append(parts, headerValue(e))
		}
		s = strings.Join(parts, ",")
	default:
		b, err := json.Marshal(x)
		if err != nil {
			return ""
		}
		s = string(b)
	}
	return strings.Map(func(r rune) rune {
		if r < 0x20 || r == 0x7f {
			return -1
		}
		return r
	}, s)
}
