package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// ThrottleConfig is the "throttle" policy's config.
type ThrottleConfig struct {
	// Rate is requests per second on average; Burst how many may come at once.
	Rate  float64 `json:"rate"`
	Burst int     `json:"burst"`
	// Per says whose requests share a bucket: "all" (the default: every
	// caller of the stage or route together, like API Gateway's stage and
	// method throttling), "client" (per client IP address, IPv6 per /64),
	// or "principal" (per authenticated caller; anonymous requests share
	// one bucket). "principal" needs the authenticating policy to run
	// before throttle, which only api-key does (PhaseAPIKey).
	Per string `json:"per,omitempty"`
	// RedisFailure is "closed" (default) or "open"; see FailMode.
	RedisFailure string `json:"redisFailure,omitempty"`
}

// ThrottleOptions is what the node passes to NewThrottleFactory.
type ThrottleOptions struct {
	// Limiter holds the buckets: a *Memory for per-node limits, a *Redis
	// for limits shared by every edge. Required.
	Limiter    Limiter
	Registerer prometheus.Registerer
	Logger     *slog.Logger
}

// ThrottleFactory builds "throttle" policies.
type ThrottleFactory struct {
	lim     Limiter
	log     *slog.Logger
	allowed prometheus.Counter
	limited prometheus.Counter
	failOp  prometheus.Counter
	failCl  prometheus.Counter
}

// NewThrottleFactory returns the "throttle" factory.
func NewThrottleFactory(o ThrottleOptions) (*ThrottleFactory, error) {
	if o.Limiter == nil {
		return nil, errors.New("throttle: no Limiter; pass ratelimit.NewMemory or ratelimit.NewRedis")
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	vec, err := registerCounterVec(o.Registerer, prometheus.CounterOpts{
		Name: "portico_throttle_requests_total",
		Help: "Requests seen by throttle policies, by result: allowed, throttled, or store_error_open / store_error_closed when the counter store could not answer.",
	}, "result")
	if err != nil {
		return nil, err
	}
	return &ThrottleFactory{
		lim:     o.Limiter,
		log:     o.Logger,
		allowed: vec.WithLabelValues("allowed"),
		limited: vec.WithLabelValues("throttled"),
		failOp:  vec.WithLabelValues("store_error_open"),
		failCl:  vec.WithLabelValues("store_error_closed"),
	}, nil
}

// Type implements plugins.Factory.
func (f *ThrottleFactory) Type() string { return "throttle" }

// Phase implements plugins.Factory.
func (f *ThrottleFactory) Phase() plugins.Phase { return plugins.PhaseThrottle }

// New implements plugins.Factory.
func (f *ThrottleFactory) New(_ context.Context, spec config.PolicySpec, scope plugins.Scope) (plugins.Policy, error) {
	var c ThrottleConfig
	if err := plugins.DecodeConfig(spec, &c); err != nil {
		return nil, err
	}
	if c.Rate <= 0 {
		return nil, fmt.Errorf("rate must be above 0 requests per second (for example {\"rate\": 100, \"burst\": 200})")
	}
	if err := config.CheckThrottle(config.Throttle{Rate: c.Rate, Burst: c.Burst}); err != nil {
		return nil, err
	}
	mode, err := ParseFailMode(c.RedisFailure)
	if err != nil {
		return nil, err
	}
	p := &throttle{f: f, rate: c.Rate, burst: c.Burst, mode: mode,
		// The bucket is keyed by where the policy is attached, so a
		// stage-level throttle is one bucket for all the stage's routes
		// and survives snapshot swaps.
		key: "t:" + scope.APIID + "/" + scope.Stage + "/" + scope.Route}
	switch c.Per {
	case "", "all":
	case "client":
		p.perClient = true
	case "principal":
		p.perPrincipal = true
	default:
		return nil, fmt.Errorf("per %q is not valid: use \"all\" (one bucket for every caller), \"client\" (per client IP) or \"principal\" (per API key)", c.Per)
	}
	return p, nil
}

type throttle struct {
	f            *ThrottleFactory
	rate         float64
	burst        int
	mode         FailMode
	key          string
	perClient    bool
	perPrincipal bool
}

func (p *throttle) Wrap(next plugins.Handler) plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		key := p.key
		switch {
		case p.perClient:
			key += "|ip:" + ClientKey(ex.Client)
		case p.perPrincipal:
			key += "|p:" + ex.Identity.Source + ":" + ex.Identity.Principal
		}
		d, err := p.f.lim.Allow(ex.Request.Context(), key, p.rate, p.burst, 1)
		if err != nil {
			if p.mode == FailOpen {
				p.f.failOp.Inc()
				next.ServeExchange(w, ex)
				return
			}
			p.f.failCl.Inc()
			p.f.log.Warn("throttle: counter store unavailable, refusing (redisFailure: closed)", "err", err, "request_id", ex.RequestID)
			WriteUnavailable(w)
			return
		}
		if !d.Allowed {
			p.f.limited.Inc()
			WriteTooMany(w, d.RetryAfter, "Too Many Requests")
			return
		}
		p.f.allowed.Inc()
		next.ServeExchange(w, ex)
	})
}
