package wasm

import (
	"container/list"
	"crypto/sha256"
	"fmt"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/runtime/proxywasm"
)

// authorizer runs proxy_on_request_headers and turns the outcome into a
// decision: continue (with the identity the plugin established) or the
// plugin's own response. It never sees the request body; plugins that must
// inspect bodies run as wasm-transform, which may answer early too.
type authorizer struct {
	base
	sources []identitySource
	cache   *decisionCache
}

func (a *authorizer) Wrap(next plugins.Handler) plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		a.serve(w, ex, next)
	})
}

func (a *authorizer) serve(w http.ResponseWriter, ex *plugins.Exchange, next plugins.Handler) {
	r := ex.Request
	if !enter(r) {
		return
	}
	var key [32]byte
	cacheable := a.cache != nil && a.cacheKey(r, &key)
	if cacheable {
		if d, ok := a.cache.get(key); ok {
			a.apply(w, ex, next, d)
			return
		}
	}
	info := streamInfo(ex)
	st, err := a.p.NewStream(r.Context(), &info)
	if err != nil {
		if a.fail(w, r, err) {
			next.ServeExchange(w, ex)
		}
		return
	}
	h := st.RequestHeaderMap(r, scheme(r, ex.TLS))
	outcome := st.RequestHeaders(h, r.Body == nil || r.Body == http.NoBody)
	if outcome == proxywasm.Continue && !cacheable && !h.PseudoChanged {
		// The common case, kept short: what runs on every request is
		// what the node's instruction cache has to hold.
		a.identify(ex, st, h, nil)
		st.Close()
		next.ServeExchange(w, ex)
		return
	}
	a.finish(w, ex, next, st, h, outcome, cacheable, &key)
}

// identify records the identity the plugin established: its principal,
// which it returns, and the headers it set, which are already on the
// request. With headers set, it also appends them there, for a cached
// decision.
func (a *authorizer) identify(ex *plugins.Exchange, st *proxywasm.Stream, h *proxywasm.HeaderMap, headers *[][2]string) (principal string) {
	ex.Identity.Source = TypeAuthorizer
	if v, ok := st.Property(principalProperty); ok && v != "" {
		ex.Identity.Principal = v
		principal = v
	}
	r := ex.Request
	for _, name := range h.Touched {
		// The plugin's value is the last one: a value it added comes
		// after any the client sent, and the client's never counts.
		if v := r.Header[name]; len(v) > 0 { // Touched names are canonical
			last := v[len(v)-1]
			ex.Identity.SetCanonicalHeader(name, last)
			if headers != nil {
				*headers = append(*headers, [2]string{name, last})
			}
			if len(v) > 1 {
				r.Header.Set(name, last)
			}
		}
	}
	return principal
}

// finish handles every outcome but the common one: a plugin that changed
// the request's pseudo-headers, decisions to cache, local responses,
// resets and failures.
//
// An allow that changed a pseudo-header (":path", ":method",
// ":authority") is not cached. A cached decision is keyed by the identity
// sources alone, while a rewrite usually depends on the request itself (a
// tenant prefix on its path): replaying the rewritten values would send
// another request of the same identity to the first one's path, and
// replaying the allow without them would drop the rewrite. So such a
// plugin runs on every request, and its denials are still cached.
func (a *authorizer) finish(w http.ResponseWriter, ex *plugins.Exchange, next plugins.Handler, st *proxywasm.Stream,
	h *proxywasm.HeaderMap, outcome proxywasm.Outcome, cacheable bool, key *[32]byte) {
	r := ex.Request
	switch outcome {
	case proxywasm.Continue:
		if err := applyPseudo(r, h); err != nil {
			st.Close()
			a.fail(w, r, err)
			return
		}
		if !cacheable || h.PseudoChanged {
			a.identify(ex, st, h, nil)
			st.Close()
			next.ServeExchange(w, ex)
			return
		}
		var headers [][2]string
		principal := a.identify(ex, st, h, &headers)
		// h.Removed is the stream's, reused after Close.
		a.cache.put(*key, &decision{allow: true, principal: principal, headers: headers, removed: slices.Clone(h.Removed)})
		st.Close()
		next.ServeExchange(w, ex)
	case proxywasm.Respond:
		l := st.Local()
		st.Close()
		if cacheable {
			a.cache.put(*key, &decision{local: l})
		}
		writeLocal(w, l)
	case proxywasm.Reset:
		st.Close()
		panic(http.ErrAbortHandler)
	default:
		err := st.Err()
		st.Close()
		if a.fail(w, r, err) {
			next.ServeExchange(w, ex)
		}
	}
}

// replayIdentity records a cached decision's identity.
func (a *authorizer) replayIdentity(ex *plugins.Exchange, d *decision) {
	ex.Identity.Source = TypeAuthorizer
	if d.principal != "" {
		ex.Identity.Principal = d.principal
	}
	for _, hv := range d.headers {
		ex.Identity.SetCanonicalHeader(hv[0], hv[1]) // names from Touched
	}
}

// apply replays a cached decision.
func (a *authorizer) apply(w http.ResponseWriter, ex *plugins.Exchange, next plugins.Handler, d *decision) {
	if !d.allow {
		writeLocal(w, d.local)
		return
	}
	for _, name := range d.removed {
		ex.Request.Header.Del(name)
	}
	for _, hv := range d.headers {
		ex.Request.Header.Set(hv[0], hv[1])
	}
	a.replayIdentity(ex, d)
	next.ServeExchange(w, ex)
}

// decision is an authorizer's answer for one identity.
type decision struct {
	allow     bool
	principal string
	headers   [][2]string
	removed   []string
	local     *proxywasm.LocalResponse
	expires   time.Time
	key       [32]byte
}

// identitySource is a request part a decision depends on.
type identitySource struct {
	header bool // else query
	name   string
}

// parseSource accepts "header.NAME" and "query.NAME", and API Gateway's
// "method.request.header.NAME" and "method.request.querystring.NAME".
func parseSource(s string) (identitySource, error) {
	s2 := strings.TrimPrefix(s, "method.request.")
	switch {
	case strings.HasPrefix(s2, "header.") && len(s2) > len("header."):
		return identitySource{header: true, name: http.CanonicalHeaderKey(s2[len("header."):])}, nil
	case strings.HasPrefix(s2, "query.") && len(s2) > len("query."):
		return identitySource{name: s2[len("query."):]}, nil
	case strings.HasPrefix(s2, "querystring.") && len(s2) > len("querystring."):
		return identitySource{name: s2[len("querystring."):]}, nil
	}
	return identitySource{}, fmt.Errorf("identity source %q must be \"header.NAME\" or \"query.NAME\"", s)
}

// cacheKey hashes the identity sources' values. A request missing one is
// not cached: the plugin decides it every time.
func (a *authorizer) cacheKey(r *http.Request, key *[32]byte) bool {
	h := sha256.New()
	var q map[string][]string
	for _, s := range a.sources {
		var vs []string
		if s.header {
			vs = r.Header[s.name]
		} else {
			if q == nil {
				q = r.URL.Query()
			}
			vs = q[s.name]
		}
		if len(vs) == 0 {
			return false
		}
		for _, v := range vs {
			h.Write([]byte(v))
			h.Write([]byte{0})
		}
		h.Write([]byte{1})
	}
	h.Sum(key[:0])
	return true
}

// decisionCache is a bounded LRU of decisions with a TTL.
type decisionCache struct {
	mu  sync.Mutex
	ttl time.Duration
	max int
	m   map[[32]byte]*list.Element
	lru *list.List
}

func newDecisionCache(max int, ttl time.Duration) *decisionCache {
	return &decisionCache{ttl: ttl, max: max, m: make(map[[32]byte]*list.Element), lru: list.New()}
}

func (c *decisionCache) get(k [32]byte) (*decision, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	el, ok := c.m[k]
	if !ok {
		return nil, false
	}
	d := el.Value.(*decision)
	if time.Now().After(d.expires) {
		c.lru.Remove(el)
		delete(c.m, k)
		return nil, false
	}
	c.lru.MoveToFront(el)
	return d, true
}

func (c *decisionCache) put(k [32]byte, d *decision) {
	d.expires = time.Now().Add(c.ttl)
	d.key = k
	c.mu.Lock()
	defer c.mu.Unlock()
	if el, ok := c.m[k]; ok {
		el.Value = d
		c.lru.MoveToFront(el)
		return
	}
	for c.lru.Len() >= c.max {
		old := c.lru.Back()
		c.lru.Remove(old)
		delete(c.m, old.Value.(*decision).key)
	}
	c.m[k] = c.lru.PushFront(d)
}

// Len returns the number of cached decisions.
func (c *decisionCache) Len() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.lru.Len()
}
