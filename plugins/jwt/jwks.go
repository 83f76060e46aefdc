package jwt

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"sync"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
)

var (
	// errUnknownKey: the token names a key the issuer does not publish.
	errUnknownKey = errors.New("the token is signed with a key the issuer does not publish")
	// errKeysUnavailable: the issuer's keys could not be fetched, so the
	// token can be neither accepted nor blamed.
	errKeysUnavailable = errors.New("the issuer's signing keys cannot be fetched")
)

// keySet is the set of verification keys for a policy: inline or fetched.
type keySet interface {
	keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error)
}

type staticKeys struct{ set jose.JSONWebKeySet }

func (s *staticKeys) keys(_ context.Context, kid string) ([]jose.JSONWebKey, error) {
	ks := selectKeys(&s.set, kid)
	if len(ks) == 0 {
		return nil, errUnknownKey
	}
	return ks, nil
}

// selectKeys returns the keys a token with this kid may be verified with:
// the keys with that kid, or every key when the token names none.
func selectKeys(set *jose.JSONWebKeySet, kid string) []jose.JSONWebKey {
	if kid == "" {
		return set.Keys
	}
	return set.Key(kid)
}

// publicKeys keeps the keys usable for verifying signatures: public
// asymmetric keys meant for signing. Symmetric keys are dropped, so a JWKS
// can never turn into an HMAC secret; private keys are reduced to their
// public half.
func publicKeys(in jose.JSONWebKeySet) (jose.JSONWebKeySet, error) {
	var out jose.JSONWebKeySet
	for _, k := range in.Keys {
		if k.Use != "" && k.Use != "sig" {
			continue
		}
		if !k.IsPublic() {
			p := k.Public()
			if !p.Valid() {
				continue // symmetric ("oct") keys have no public half
			}
			k = p
		}
		out.Keys = append(out.Keys, k)
	}
	if len(out.Keys) == 0 {
		return out, errors.New("the key set holds no public signing keys (RSA, EC or Ed25519 with \"use\": \"sig\" or no \"use\")")
	}
	return out, nil
}

// remoteKeys is a JWKS fetched from a URL, cached, refreshed in the
// background after ttl, and at once when a token names an unknown kid, but
// never more often than minInterval, so that tokens with made-up kids cannot
// turn the gateway into a load generator against the issuer.
type remoteKeys struct {
	url         string
	client      *http.Client
	now         func() time.Time
	ttl         time.Duration
	minInterval time.Duration
	log         *slog.Logger
	fetchErrors func()

	mu          sync.Mutex
	set         *jose.JSONWebKeySet
	fetchedAt   time.Time
	lastAttempt time.Time
	lastErr     error
	inflight    chan struct{}
}

func (r *remoteKeys) keys(ctx context.Context, kid string) ([]jose.JSONWebKey, error) {
	r.mu.Lock()
	set, fetched := r.set, r.fetchedAt
	var ks []jose.JSONWebKey
	if set != nil {
		ks = selectKeys(set, kid)
	}
	now := r.now()
	if len(ks) > 0 {
		if now.Sub(fetched) > r.ttl && now.Sub(r.lastAttempt) >= r.minInterval && r.inflight == nil {
			r.startLocked()
		}
		r.mu.Unlock()
		return ks, nil
	}
	var wait chan struct{}
	switch {
	case r.inflight != nil:
		wait = r.inflight
	case now.Sub(r.lastAttempt) >= r.minInterval:
		wait = r.startLocked()
	}
	if wait == nil {
		err := r.lastErr
		r.mu.Unlock()
		if err != nil {
			return nil, errKeysUnavailable
		}
		return nil, errUnknownKey
	}
	r.mu.Unlock()
	select {
	case <-wait:
	case <-ctx.Done():
		return nil, errKeysUnavailable
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.set != nil {
		ks = selectKeys(r.set, kid)
	}
	if len(ks) > 0 {
		return ks, nil
	}
	if r.lastErr != nil {
		return nil, errKeysUnavailable
	}
	return nil, errUnknownKey
}

// startLocked starts a fetch; r.mu must be held.
func (r *remoteKeys) startLocked() chan struct{} {
	ch := make(chan struct{})
	r.inflight = ch
	r.lastAttempt = r.now()
	go func() {
		set, err := r.fetch()
		r.mu.Lock()
		if err != nil {
			r.lastErr = err
			r.fetchErrors()
			r.log.Warn("jwt: cannot fetch the issuer's keys", "jwksUri", r.url, "err", err)
		} else {
			r.set, r.fetchedAt, r.lastErr = set, r.now(), nil
		}
		r.inflight = nil
		r.mu.Unlock()
		close(ch)
	}()
	return ch
}

const maxJWKSBytes = 1 << 20

func (r *remoteKeys) fetch() (*jose.JSONWebKeySet, error) {
	ctx, cancel := context.WithTimeout(context.Background(), r.client.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, r.url, nil)
	if err != nil {
		return nil, err
	}
	req.Header.Set("Accept", "application/json")
	resp, err := r.client.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("GET %s: status %d", r.url, resp.StatusCode)
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxJWKSBytes+1))
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", r.url, err)
	}
	if len(body) > maxJWKSBytes {
		return nil, fmt.Errorf("GET %s: the key set is larger than %d bytes", r.url, maxJWKSBytes)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(body, &set); err != nil {
		return nil, fmt.Errorf("GET %s: not a JWKS document: %w", r.url, err)
	}
	pub, err := publicKeys(set)
	if err != nil {
		return nil, fmt.Errorf("GET %s: %w", r.url, err)
	}
	return &pub, nil
}

// newJWKSClient returns the client used for JWKS URLs: a short timeout, at
// most three redirects and only to the same host and scheme, and, unless
// allowPrivate, no connections to loopback, private, link-local (cloud
// metadata) or other non-public addresses, checked on the address actually
// dialled, after DNS resolution, so a name that resolves inward is caught.
func newJWKSClient(timeout time.Duration, allowPrivate bool) *http.Client {
	d := &net.Dialer{Timeout: timeout}
	if !allowPrivate {
		d.Control = func(_, address string, _ syscall.RawConn) error {
			ap, err := netip.ParseAddrPort(address)
			if err != nil {
				return fmt.Errorf("jwks: refusing to connect to %q", address)
			}
			if !publicAddr(ap.Addr()) {
				return fmt.Errorf("jwks: refusing to connect to %s: not a public address (set the node's allowPrivateJWKS to allow it)", ap.Addr())
			}
			return nil
		}
	}
	return &http.Client{
		Timeout: timeout,
		Transport: &http.Transport{
			Proxy:                 nil,
			DialContext:           d.DialContext,
			TLSHandshakeTimeout:   timeout,
			ResponseHeaderTimeout: timeout,
			MaxIdleConnsPerHost:   2,
			IdleConnTimeout:       90 * time.Second,
		},
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 3 {
				return errors.New("jwks: more than 3 redirects")
			}
			first := via[0].URL
			if req.URL.Host != first.Host || req.URL.Scheme != first.Scheme {
				return fmt.Errorf("jwks: refusing redirect from %s to another host or scheme (%s)", first.Host, req.URL.Redacted())
			}
			return nil
		},
	}
}

func publicAddr(a netip.Addr) bool {
	a = a.Unmap()
	if !a.IsGlobalUnicast() || a.IsPrivate() || a.IsLoopback() || a.IsLinkLocalUnicast() {
		return false
	}
	for _, p := range nonPublic {
		if p.Contains(a) {
			return false
		}
	}
	return true
}

// nonPublic are ranges IsGlobalUnicast accepts that are not the public
// internet: carrier-grade NAT, benchmarking, documentation, 6to4 relays and
// NAT64 wrappers of private space, unique-local (IsPrivate covers fc00::/7).
var nonPublic = []netip.Prefix{
	netip.MustParsePrefix("100.64.0.0/10"),
	netip.MustParsePrefix("192.0.0.0/24"),
	netip.MustParsePrefix("192.0.2.0/24"),
	netip.MustParsePrefix("198.18.0.0/15"),
	netip.MustParsePrefix("198.51.100.0/24"),
	netip.MustParsePrefix("203.0.113.0/24"),
	netip.MustParsePrefix("240.0.0.0/4"),
	netip.MustParsePrefix("64:ff9b::/96"),
	netip.MustParsePrefix("2001:db8::/32"),
}

func checkJWKSURL(s string, allowPrivate bool) error {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return fmt.Errorf("jwksUri %q is not a URL; write it like \"https://issuer.example.com/.well-known/jwks.json\"", s)
	}
	if u.Scheme != "https" && !(allowPrivate && u.Scheme == "http") {
		return fmt.Errorf("jwksUri %q must use https: keys fetched over plain HTTP could be replaced on the way", s)
	}
	if u.User != nil {
		return fmt.Errorf("jwksUri %q must not hold credentials", u.Redacted())
	}
	return nil
}
