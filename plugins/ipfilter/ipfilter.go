// Package ipfilter is the "ip" policy: allow and deny lists of networks per
// API, stage or route, checked against the client address the edge
// resolved. Deny wins; without an allow list every address not denied is
// allowed; with one, only the addresses it holds are. Attached at several
// levels, every level must let the request through.
//
// It also provides ClientAddr, which the edge uses to find the client
// address behind trusted proxies.
package ipfilter

import (
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// ClientAddr returns the address a request came from. Without trusted
// proxies it is the TCP peer. When the peer is a trusted proxy, the
// X-Forwarded-For entries (all such headers, in order) are walked from the
// right, skipping trusted proxies, and the first untrusted address is the
// client: entries left of it were written by the client itself and prove
// nothing. When every entry is trusted, the left-most one is used; an entry
// that does not parse stops the walk at the last address known good.
func ClientAddr(r *http.Request, trusted []netip.Prefix) netip.Addr {
	peer := parseHostPort(r.RemoteAddr)
	if !peer.IsValid() || !contains(trusted, peer) {
		return peer
	}
	client := peer
	xff := r.Header.Values("X-Forwarded-For")
	for i := len(xff) - 1; i >= 0; i-- {
		entries := xff[i]
		for entries != "" {
			var e string
			if j := strings.LastIndexByte(entries, ','); j >= 0 {
				e, entries = entries[j+1:], entries[:j]
			} else {
				e, entries = entries, ""
			}
			e = strings.TrimSpace(e)
			if e == "" {
				continue
			}
			a := parseForwarded(e)
			if !a.IsValid() {
				return client
			}
			client = a
			if !contains(trusted, a) {
				return a
			}
		}
	}
	return client
}

func parseHostPort(s string) netip.Addr {
	if ap, err := netip.ParseAddrPort(s); err == nil {
		return ap.Addr().Unmap()
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return a.Unmap()
	}
	return netip.Addr{}
}

// parseForwarded reads one X-Forwarded-For entry: an address, optionally
// with a port ("1.2.3.4:5", "[2001:db8::1]:5").
func parseForwarded(e string) netip.Addr {
	if a, err := netip.ParseAddr(e); err == nil {
		return a.Unmap().WithZone("")
	}
	if h, _, err := net.SplitHostPort(e); err == nil {
		if a, err := netip.ParseAddr(h); err == nil {
			return a.Unmap().WithZone("")
		}
	}
	return netip.Addr{}
}

func contains(ps []netip.Prefix, a netip.Addr) bool {
	for _, p := range ps {
		if p.Contains(a) {
			return true
		}
	}
	return false
}

// Config is the "ip" policy's config.
type Config struct {
	Allow []string `json:"allow,omitempty"`
	Deny  []string `json:"deny,omitempty"`
}

// Factory builds "ip" policies.
type Factory struct {
	allowed, denied prometheus.Counter
}

// NewFactory returns the "ip" factory.
func NewFactory(reg prometheus.Registerer) (*Factory, error) {
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_ip_requests_total",
		Help: "Requests seen by ip policies, by result (allowed, denied).",
	}, []string{"result"})
	if reg != nil {
		if err := reg.Register(vec); err != nil {
			var are prometheus.AlreadyRegisteredError
			ex, ok := (*prometheus.CounterVec)(nil), false
			if errors.As(err, &are) {
				ex, ok = are.ExistingCollector.(*prometheus.CounterVec)
			}
			if !ok {
				return nil, fmt.Errorf("ip: register metrics: %w", err)
			}
			vec = ex
		}
	}
	return &Factory{allowed: vec.WithLabelValues("allowed"), denied: vec.WithLabelValues("denied")}, nil
}

// Type implements plugins.Factory.
func (f *Factory) Type() string { return "ip" }

// Phase implements plugins.Factory.
func (f *Factory) Phase() plugins.Phase { return plugins.PhaseNetwork }

// New implements plugins.Factory.
func (f *Factory) New(_ context.Context, spec config.PolicySpec, _ plugins.Scope) (plugins.Policy, error) {
	var c Config
	if err := plugins.DecodeConfig(spec, &c); err != nil {
		return nil, err
	}
	if len(c.Allow) == 0 && len(c.Deny) == 0 {
		return nil, errors.New("neither allow nor deny is set; list networks such as {\"allow\": [\"10.0.0.0/8\"]} or {\"deny\": [\"203.0.113.0/24\"]}")
	}
	p := &policy{f: f}
	var err error
	if p.allow, err = parseSet("allow", c.Allow); err != nil {
		return nil, err
	}
	if p.deny, err = parseSet("deny", c.Deny); err != nil {
		return nil, err
	}
	return p, nil
}

func parseSet(field string, list []string) (*set, error) {
	if len(list) == 0 {
		return nil, nil
	}
	s := &set{}
	for i, n := range list {
		p, err := config.CheckCIDR(n)
		if err != nil {
			return nil, fmt.Errorf("%s[%d]: %w", field, i, err)
		}
		p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-unmapBits(p))
		s.add(p)
	}
	return s, nil
}

// unmapBits is how many bits an IPv4-mapped IPv6 prefix loses when unmapped.
func unmapBits(p netip.Prefix) int {
	if p.Addr().Is4In6() {
		return 96
	}
	return 0
}

type policy struct {
	f           *Factory
	allow, deny *set
}

// Permits says whether a is let through.
func (p *policy) Permits(a netip.Addr) bool {
	a = a.Unmap()
	if p.deny != nil && p.deny.contains(a) {
		return false
	}
	return p.allow == nil || p.allow.contains(a)
}

func (p *policy) Wrap(next plugins.Handler) plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		if !p.Permits(ex.Client) {
			p.f.denied.Inc()
			plugins.WriteError(w, http.StatusForbidden, "Forbidden: requests from your network are not allowed")
			return
		}
		p.f.allowed.Inc()
		next.ServeExchange(w, ex)
	})
}

// set is a set of networks held as a binary trie over address bits, one per
// family, so a lookup costs at most 32 or 128 steps however many networks
// the list holds.
type set struct {
	v4, v6 *node
}

type node struct {
	child [2]*node
	end   bool
}

func (s *set) add(p netip.Prefix) {
	root := &s.v6
	if p.Addr().Is4() {
		root = &s.v4
	}
	if *root == nil {
		*root = &node{}
	}
	n := *root
	b := p.Addr().AsSlice()
	for i := 0; i < p.Bits() && !n.end; i++ {
		bit := b[i/8] >> (7 - i%8) & 1
		if n.child[bit] == nil {
			n.child[bit] = &node{}
		}
		n = n.child[bit]
	}
	n.end = true
	n.child = [2]*node{}
}

func (s *set) contains(a netip.Addr) bool {
	n := s.v6
	if a.Is4() {
		n = s.v4
	}
	if n == nil {
		return false
	}
	b := a.As16()
	off := 0
	if a.Is4() {
		off = 12
	}
	for i := 0; ; i++ {
		if n.end {
			return true
		}
		if i >= (16-off)*8 {
			return false
		}
		n = n.child[b[off+i/8]>>(7-i%8)&1]
		if n == nil {
			return false
		}
	}
}
