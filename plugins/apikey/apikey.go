// Package apikey is the "api-key" policy: callers present a key (header or
// query parameter), the key is looked up by its SHA-256, and the usage plan
// it is attached to for the API stage is enforced: throttle (rate, burst;
// per stage and per route overrides) and quota (per day, week or month).
package apikey

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/textproto"
	"net/url"
	"strings"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/authfail"
	"github.com/portico-edge/portico/plugins/ratelimit"
)

// Config is the "api-key" policy's config, as the OpenAPI importer writes
// it from an apiKey security scheme.
type Config struct {
	// Source is "header" (default) or "query".
	Source string `json:"source,omitempty"`
	// Name is the header or query parameter; default "x-api-key".
	Name string `json:"name,omitempty"`
	// RequirePlan, true by default as in API Gateway, refuses keys that
	// are not on a usage plan covering the API stage. Set it to false to
	// accept any enabled key on stages without plans (no limits apply).
	RequirePlan *bool `json:"requirePlan,omitempty"`
	// RedisFailure is "closed" (default) or "open": what happens while the
	// shared counter store is unreachable.
	RedisFailure string `json:"redisFailure,omitempty"`
}

// IdentityHeader carries the accepted key's ID to the origin.
const IdentityHeader = "X-Portico-Api-Key-Id"

// Options is what the node passes to NewFactory.
type Options struct {
	Keys  KeySet  // required
	Plans PlanSet // required
	// Limiter and Quotas hold the usage plans' counters: the same
	// *ratelimit.Memory or *ratelimit.Redis for both. Required.
	Limiter ratelimit.Limiter
	Quotas  ratelimit.QuotaCounter
	// Usage receives accepted requests per key; nil records nothing.
	Usage UsageRecorder
	// Guard throttles failed attempts per source; nil disables that.
	Guard      *authfail.Guard
	Now        func() time.Time
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// Factory builds "api-key" policies.
type Factory struct {
	o Options
	m metrics
	// windows caches the current quota period per period kind: every
	// plan's periods share UTC boundaries, so the calendar arithmetic is
	// done once per period, not per request.
	windows [3]atomic.Pointer[window]
}

type window struct{ start, end time.Time }

func (f *Factory) window(q *config.Quota, now time.Time) time.Time {
	i := 0
	switch q.Period {
	case config.QuotaWeek:
		i = 1
	case config.QuotaMonth:
		i = 2
	}
	if w := f.windows[i].Load(); w != nil && !now.Before(w.start) && now.Before(w.end) {
		return w.end
	}
	start, end := q.Window(now)
	f.windows[i].Store(&window{start, end})
	return end
}

type metrics struct {
	accepted, missing, invalid, notOnPlan, throttled, quota, storeOpen, storeClosed prometheus.Counter
}

// NewFactory returns the "api-key" factory.
func NewFactory(o Options) (*Factory, error) {
	if o.Keys == nil || o.Plans == nil || o.Limiter == nil || o.Quotas == nil {
		return nil, errors.New("api-key: Keys, Plans, Limiter and Quotas are required")
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_apikey_requests_total",
		Help: "Requests seen by api-key policies, by result.",
	}, []string{"result"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			ex, ok := (*prometheus.CounterVec)(nil), false
			if errors.As(err, &are) {
				ex, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, fmt.Errorf("api-key: register metrics: %w", err)
			}
			vec = ex
		}
	}
	return &Factory{o: o, m: metrics{
		accepted:    vec.WithLabelValues("accepted"),
		missing:     vec.WithLabelValues("missing"),
		invalid:     vec.WithLabelValues("invalid"),
		notOnPlan:   vec.WithLabelValues("not_on_plan"),
		throttled:   vec.WithLabelValues("throttled"),
		quota:       vec.WithLabelValues("quota_exceeded"),
		storeOpen:   vec.WithLabelValues("store_error_open"),
		storeClosed: vec.WithLabelValues("store_error_closed"),
	}}, nil
}

// Type implements plugins.Factory.
func (f *Factory) Type() string { return "api-key" }

// Phase implements plugins.Factory.
func (f *Factory) Phase() plugins.Phase { return plugins.PhaseAPIKey }

// New implements plugins.Factory.
func (f *Factory) New(_ context.Context, spec config.PolicySpec, _ plugins.Scope) (plugins.Policy, error) {
	var c Config
	if err := plugins.DecodeConfig(spec, &c); err != nil {
		return nil, err
	}
	p := &policy{f: f, requirePlan: c.RequirePlan == nil || *c.RequirePlan}
	if c.Name == "" {
		c.Name = "x-api-key"
	}
	switch c.Source {
	case "", "header":
		if strings.ContainsAny(c.Name, " :\t\r\n_") {
			return nil, fmt.Errorf("header name %q is not valid: use letters, digits and '-' (for example \"x-api-key\")", c.Name)
		}
		p.header = textproto.CanonicalMIMEHeaderKey(c.Name)
		p.where = "the " + c.Name + " header"
	case "query":
		p.query = c.Name
		p.where = "the " + c.Name + " query parameter"
	case "cookie":
		return nil, errors.New("source \"cookie\" is not supported yet: send the key in a header or a query parameter")
	default:
		return nil, fmt.Errorf("source %q is not valid: use \"header\" or \"query\"", c.Source)
	}
	mode, err := ratelimit.ParseFailMode(c.RedisFailure)
	if err != nil {
		return nil, err
	}
	p.mode = mode
	return p, nil
}

type policy struct {
	f           *Factory
	header      string
	query       string
	where       string
	requirePlan bool
	mode        ratelimit.FailMode
}

func (p *policy) Wrap(next plugins.Handler) plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		p.serve(w, ex, next)
	})
}

func (p *policy) presented(r *http.Request) string {
	if p.header != "" {
		if v := r.Header[p.header]; len(v) > 0 {
			return v[0]
		}
		return ""
	}
	return queryValue(r.URL.RawQuery, p.query)
}

func (p *policy) serve(w http.ResponseWriter, ex *plugins.Exchange, next plugins.Handler) {
	f, r := p.f, ex.Request
	ctx := r.Context()
	if !f.o.Guard.Check(w, r, ex.Client) {
		return
	}
	presented := p.presented(r)
	if presented == "" {
		f.m.missing.Inc()
		plugins.WriteError(w, http.StatusForbidden, "Forbidden: this API requires an API key in "+p.where)
		return
	}
	hash := sha256.Sum256([]byte(presented))
	key, found := f.o.Keys.Lookup(hash)
	// The map lookup above is by hash, so its timing can tell an attacker
	// nothing about the stored keys; the constant-time comparison makes
	// the final equality check explicit and independent of the store.
	if found {
		stored, err := config.ParseAPIKeyHash(key.Hash)
		found = err == nil && subtle.ConstantTimeCompare(stored[:], hash[:]) == 1
	}
	if !found || !key.Enabled {
		f.m.invalid.Inc()
		f.o.Guard.Fail(ctx, ex.Client, "api-key")
		plugins.WriteError(w, http.StatusForbidden, "Forbidden: the API key is not valid")
		return
	}
	plan := p.planFor(&key, ex)
	if plan == nil {
		if p.requirePlan {
			f.m.notOnPlan.Inc()
			plugins.WriteError(w, http.StatusForbidden, "Forbidden: this API key is not on a usage plan for this API stage")
			return
		}
	} else if !p.enforce(w, ex, &key, plan) {
		return
	}
	f.m.accepted.Inc()
	delete(r.Header, IdentityHeader) // the origin trusts this name
	ex.Identity.Principal = key.ID
	ex.Identity.Source = "api-key"
	ex.Identity.APIKeyID = key.ID
	ex.Identity.SetHeader(IdentityHeader, key.ID)
	next.ServeExchange(w, ex)
}

// planFor returns the key's plan that covers the exchange's API stage.
func (p *policy) planFor(key *config.APIKey, ex *plugins.Exchange) *config.UsagePlan {
	if ex.API == nil || ex.Stage == nil {
		return nil
	}
	for _, id := range key.PlanIDs {
		plan, ok := p.f.o.Plans.Plan(id)
		if !ok {
			continue
		}
		for i := range plan.Stages {
			if s := &plan.Stages[i]; s.APIID == ex.API.ID && s.Stage == ex.Stage.Name {
				return plan
			}
		}
	}
	return nil
}

// enforce applies the plan's throttle and quota; false means it answered.
func (p *policy) enforce(w http.ResponseWriter, ex *plugins.Exchange, key *config.APIKey, plan *config.UsagePlan) bool {
	f := p.f
	ctx := ex.Request.Context()
	rate, burst := plan.Rate, plan.Burst
	bucket := "k:" + plan.ID + ":" + key.ID
	for i := range plan.Stages {
		s := &plan.Stages[i]
		if s.APIID != ex.API.ID || s.Stage != ex.Stage.Name {
			continue
		}
		if ex.Route != nil && len(s.Methods) > 0 {
			if t, ok := s.Methods[ex.Route.Key()]; ok {
				rate, burst = t.Rate, t.Burst
				bucket += ":" + s.APIID + "/" + s.Stage + ":" + ex.Route.Key()
				break
			}
		}
		if s.Throttle != nil {
			rate, burst = s.Throttle.Rate, s.Throttle.Burst
			bucket += ":" + s.APIID + "/" + s.Stage
		}
		break
	}
	if rate > 0 {
		d, err := f.o.Limiter.Allow(ctx, bucket, rate, burst, 1)
		if err != nil {
			return p.storeFailed(w, ex, err)
		}
		if !d.Allowed {
			f.m.throttled.Inc()
			ratelimit.WriteTooMany(w, d.RetryAfter, "Too Many Requests")
			return false
		}
	}
	now := f.o.Now()
	if q := plan.Quota; q != nil {
		end := f.window(q, now)
		d, err := f.o.Quotas.Take(ctx, "q:"+plan.ID+":"+key.ID, 1, q.Limit, end)
		if err != nil {
			return p.storeFailed(w, ex, err)
		}
		if !d.Allowed {
			f.m.quota.Inc()
			ratelimit.WriteTooMany(w, end.Sub(now), fmt.Sprintf("Limit Exceeded: the quota of %d requests per %s for this API key is used up; it resets at %s", q.Limit, q.Period, end.Format(time.RFC3339)))
			return false
		}
	}
	if f.o.Usage != nil {
		f.o.Usage.Record(key.ID, plan.ID, now, 1)
	}
	return true
}

func (p *policy) storeFailed(w http.ResponseWriter, ex *plugins.Exchange, err error) bool {
	if p.mode == ratelimit.FailOpen {
		p.f.m.storeOpen.Inc()
		return true
	}
	p.f.m.storeClosed.Inc()
	p.f.o.Logger.Warn("api-key: counter store unavailable, refusing (redisFailure: closed)", "err", err, "request_id", ex.RequestID)
	ratelimit.WriteUnavailable(w)
	return false
}

// queryValue returns the first value of name in a raw query string without
// building a url.Values map.
func queryValue(raw, name string) string {
	for raw != "" {
		var kv string
		kv, raw, _ = strings.Cut(raw, "&")
		k, v, _ := strings.Cut(kv, "=")
		if strings.ContainsAny(k, "%+") {
			dk, err := url.QueryUnescape(k)
			if err != nil {
				continue
			}
			k = dk
		}
		if k != name {
			continue
		}
		if strings.ContainsAny(v, "%+") {
			dv, err := url.QueryUnescape(v)
			if err != nil {
				return ""
			}
			return dv
		}
		return v
	}
	return ""
}
