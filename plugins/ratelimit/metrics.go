package ratelimit

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/prometheus/client_golang/prometheus"
)

// registerCounterVec registers a counter vector on reg, or returns the one
// already registered under the same name, so that two factories sharing a
// registry share their metrics. A nil reg keeps the metric unregistered.
func registerCounterVec(reg prometheus.Registerer, o prometheus.CounterOpts, labels ...string) (*prometheus.CounterVec, error) {
	v := prometheus.NewCounterVec(o, labels)
	if reg == nil {
		return v, nil
	}
	if err := reg.Register(v); err != nil {
		var are prometheus.AlreadyRegisteredError
		if errors.As(err, &are) {
			if ex, ok := are.ExistingCollector.(*prometheus.CounterVec); ok {
				return ex, nil
			}
		}
		return nil, fmt.Errorf("register metric %s: %w", o.Name, err)
	}
	return v, nil
}

// ClientKey is the bucket key for a client address: the address itself for
// IPv4, its /64 for IPv6, because one IPv6 host usually holds a whole /64
// and could otherwise spread its requests over 2^64 buckets.
func ClientKey(a netip.Addr) string {
	a = a.Unmap()
	if a.Is6() {
		p, _ := a.Prefix(64)
		return p.String()
	}
	return a.String()
}
