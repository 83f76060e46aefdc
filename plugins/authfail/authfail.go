// Package authfail throttles failed authentications per source address, so
// that API keys, tokens and signatures cannot be guessed quickly. One Guard
// is shared by the api-key, jwt and sigv4 policies of a node: a source that
// has failed Failures times within Window gets 429 with Retry-After before
// any credential it sends is even looked at.
//
// The failures are counted in a ratelimit.Limiter (a token bucket of size
// Failures refilled at Failures per Window), so a node that shares its
// limiter through Redis shares the failure counts too. If that store cannot
// answer, the guard lets requests through to the credential check: the
// check itself still holds, and an outage of the counter store should not
// lock every caller out.
package authfail

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/plugins/ratelimit"
)

// Options configures a Guard.
type Options struct {
	// Limiter holds the failure counts. Nil means a private in-memory one.
	Limiter ratelimit.Limiter
	// Failures allowed per Window before a source is refused; zero means 10.
	Failures int
	// Window is the period Failures are counted over; zero means 1 minute.
	Window time.Duration
	// Now is the clock of the private in-memory limiter; nil means time.Now.
	Now        func() time.Time
	Registerer prometheus.Registerer
}

// Guard counts failed authentications per source.
type Guard struct {
	lim      ratelimit.Limiter
	rate     float64
	burst    int
	blocked  prometheus.Counter
	failures *prometheus.CounterVec
}

// New returns a Guard.
func New(o Options) (*Guard, error) {
	if o.Failures == 0 {
		o.Failures = 10
	}
	if o.Window == 0 {
		o.Window = time.Minute
	}
	if o.Failures < 1 || o.Window < time.Second {
		return nil, fmt.Errorf("authfail: %d failures per %s is not valid: allow at least 1 failure per at least 1s", o.Failures, o.Window)
	}
	if o.Limiter == nil {
		o.Limiter = ratelimit.NewMemory(ratelimit.MemoryOptions{Now: o.Now, MaxKeys: 200_000})
	}
	g := &Guard{lim: o.Limiter, rate: float64(o.Failures) / o.Window.Seconds(), burst: o.Failures}
	bl := prometheus.NewCounter(prometheus.CounterOpts{
		Name: "portico_authfail_blocked_total",
		Help: "Requests refused with 429 because their source failed authentication too often.",
	})
	fv := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_authfail_failures_total",
		Help: "Failed authentications counted against their source, by policy type.",
	}, []string{"policy"})
	var err error
	if g.blocked, err = register(o.Registerer, bl); err != nil {
		return nil, err
	}
	if g.failures, err = register(o.Registerer, fv); err != nil {
		return nil, err
	}
	return g, nil
}

func register[T prometheus.Collector](reg prometheus.Registerer, c T) (T, error) {
	if reg == nil {
		return c, nil
	}
	if err := reg.Register(c); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(T); ok {
				return ex, nil
			}
		}
		return c, fmt.Errorf("authfail: register metric: %w", err)
	}
	return c, nil
}

func key(a netip.Addr) string { return "af:" + ratelimit.ClientKey(a) }

// Blocked reports whether src has used up its failures, and when it may try
// again.
func (g *Guard) Blocked(ctx context.Context, src netip.Addr) (bool, time.Duration) {
	d, err := g.lim.Allow(ctx, key(src), g.rate, g.burst, 0)
	if err != nil || d.Allowed {
		return false, 0
	}
	return true, d.RetryAfter
}

// Fail records a failed authentication from src by a policy of the given
// type ("api-key", "jwt", "sigv4").
func (g *Guard) Fail(ctx context.Context, src netip.Addr, policy string) {
	if g == nil {
		return
	}
	g.failures.WithLabelValues(policy).Inc()
	_, _ = g.lim.Allow(ctx, key(src), g.rate, g.burst, 1)
}

// Check answers 429 and returns false when src is blocked. Policies call it
// before looking at any credential.
func (g *Guard) Check(w http.ResponseWriter, r *http.Request, src netip.Addr) bool {
	if g == nil {
		return true
	}
	blocked, retry := g.Blocked(r.Context(), src)
	if !blocked {
		return true
	}
	g.blocked.Inc()
	ratelimit.WriteTooMany(w, retry, "Too many failed authentication attempts from your address; try again later")
	return false
}
