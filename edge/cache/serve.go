package cache

import (
	"context"
	"encoding/binary"
	"net/http"
	"slices"
	"strings"
	"time"

	"github.com/portico-edge/portico/plugins"
)

// reqKey is a request's primary key and what was read to build it.
type reqKey struct {
	ks    *keySpec
	buf   []byte // the primary key, possibly followed by a variant part
	plen  int    // length of the primary key in buf
	phash uint64
	parts keyParts
	// keyedQuery: name, "\x00"-joined values, per keyed query parameter.
	keyedQuery []string
	// keyedRaw is the query sent to the origin: the keyed parameters only.
	keyedRaw string
}

func (k *reqKey) primary() []byte { return k.buf[:k.plen] }

// onHeap returns a copy of k for the paths that go to the origin, so that
// the hit path's key stays on the stack.
func (k reqKey) onHeap() *reqKey { return &k }

// ServeExchange implements plugins.Handler.
func (h *handler) ServeExchange(w http.ResponseWriter, ex *plugins.Exchange) {
	if h.overrides != nil {
		h = h.forRoute(ex)
	}
	if !h.set.enabled {
		h.next.ServeExchange(w, ex)
		return
	}
	r := ex.Request
	switch r.Method {
	case http.MethodGet:
		if !h.set.get {
			h.pass(w, ex)
			return
		}
	case http.MethodHead:
		if !h.set.head {
			h.pass(w, ex)
			return
		}
	case http.MethodOptions, http.MethodTrace, http.MethodConnect:
		h.pass(w, ex)
		return
	default:
		h.serveUnsafe(w, ex)
		return
	}
	// A GET with a body could get an answer that depends on the body,
	// which is not in the key: neither stored nor answered from the store.
	// Upgrades and ranges go straight through as well.
	if r.ContentLength != 0 || r.Header["Upgrade"] != nil || r.Header["Range"] != nil {
		h.pass(w, ex)
		return
	}
	ks := h.keySpec(ex.Route)
	if ks.err != nil {
		h.pass(w, ex)
		return
	}
	bp := h.store.getBuf()
	defer h.store.putBuf(bp)
	k, ok := h.primaryKey(*bp, ex, ks)
	if !ok {
		h.pass(w, ex)
		return
	}
	defer func() { *bp = k.buf }()

	cred := credentialed(r, ex, ks)
	if requestWantsFresh(r.Header) && h.mayInvalidate(ex) {
		h.fetch(w, ex, k.onHeap(), nil, cred, false, true)
		return
	}
	obj, hfm := h.lookup(&k, r)
	if obj == nil {
		h.fetch(w, ex, k.onHeap(), nil, cred, !hfm && !cred, false)
		return
	}
	if cred && !obj.shareable {
		// Stored for anonymous callers; this caller presented credentials
		// the key does not cover, so the origin answers it.
		h.fetch(w, ex, k.onHeap(), nil, cred, false, false)
		return
	}
	now := h.store.nowNano()
	if obj.fresh(now) {
		h.store.metrics.count(resHit)
		h.serveObject(w, r, obj, h.xHit, now)
		return
	}
	if sf := obj.staleFor(now); sf >= 0 && sf < obj.swrWindow() && !obj.alwaysRevalidate {
		h.store.metrics.count(resStale)
		h.refresh(ex, k.onHeap(), obj)
		h.serveObject(w, r, obj, h.xStale, now)
		return
	}
	h.fetch(w, ex, k.onHeap(), obj, cred, !cred, false)
}

// pass sends a request the cache does not consider straight on.
func (h *handler) pass(w http.ResponseWriter, ex *plugins.Exchange) {
	h.store.metrics.count(resBypass)
	h.next.ServeExchange(w, ex)
}

// serveUnsafe forwards a request with an unsafe method and then drops the
// stored response for the same URL (RFC 9111 §4.4), so a PUT or DELETE is
// not followed by a stale GET from this node.
func (h *handler) serveUnsafe(w http.ResponseWriter, ex *plugins.Exchange) {
	h.store.metrics.count(resBypass)
	h.next.ServeExchange(w, ex)
	ks := h.keySpec(ex.Route)
	if ks.err != nil {
		return
	}
	bp := h.store.getBuf()
	defer h.store.putBuf(bp)
	k, ok := h.primaryKey(*bp, ex, ks)
	if !ok {
		return
	}
	*bp = k.buf
	h.store.remove(k.phash, k.primary())
}

func (h *handler) mayInvalidate(ex *plugins.Exchange) bool {
	switch h.set.invalidation {
	case invAllow:
		return true
	case invRequireAuth:
		return ex.Identity.Principal != ""
	}
	return false
}

// credentialed reports whether the request carries credentials that the
// route's key does not cover: then it is answered only from shareable
// objects, and its answer is stored only when the origin marks it public.
func credentialed(r *http.Request, ex *plugins.Exchange, ks *keySpec) bool {
	h := r.Header
	hasAuth := len(h["Authorization"]) > 0
	hasCookie := len(h["Cookie"]) > 0
	hasKey := len(h["X-Api-Key"]) > 0 || ex.Identity.APIKeyID != ""
	switch {
	case hasAuth && !ks.hasHeader("Authorization"),
		hasCookie && !ks.hasHeader("Cookie"),
		hasKey && !ks.hasHeader("X-Api-Key"):
		return true
	}
	// An identity established some other way (a client certificate, say)
	// is never covered by the key.
	return ex.Identity.Principal != "" && !hasAuth && !hasKey && !hasCookie
}

func (h *handler) stageOf(ex *plugins.Exchange) (apiID, stage string) {
	if ex.Stage != nil {
		apiID, stage = ex.Stage.APIID, ex.Stage.Name
	}
	if apiID == "" && ex.API != nil {
		apiID = ex.API.ID
	}
	if apiID == "" {
		apiID = h.scope.APIID
	}
	if stage == "" {
		stage = h.scope.Stage
	}
	return apiID, stage
}

// primaryKey builds the request's key into b (see the layout in key.go).
func (h *handler) primaryKey(b []byte, ex *plugins.Exchange, ks *keySpec) (reqKey, bool) {
	r := ex.Request
	k := reqKey{ks: ks}
	var qvals [][]string
	if r.URL.RawQuery != "" {
		var err error
		qvals, k.keyedRaw, err = queryValues(r.URL.RawQuery, ks)
		if err != nil {
			return k, false
		}
	}
	host, path := ex.Host, ex.Path
	if host == "" {
		host = canonicalHost(r.Host)
	}
	if path == "" {
		path = r.URL.Path
	}
	apiID, stage := h.stageOf(ex)
	p := &k.parts
	b = append(b[:0], keyVersion)
	b = appendField(b, apiID)
	p.apiStart, p.apiEnd = len(b)-len(apiID), len(b)
	b = appendField(b, stage)
	p.stageStart, p.stageEnd = len(b)-len(stage), len(b)
	b = appendField(b, host)
	p.hostStart, p.hostEnd = len(b)-len(host), len(b)
	b = appendField(b, path)
	p.pathStart, p.pathEnd = len(b)-len(path), len(b)
	if len(ks.query) > 0 {
		b = append(b, 'Q')
		k.keyedQuery = make([]string, 0, 2*len(ks.query))
		for i, name := range ks.query {
			var vs []string
			if qvals != nil {
				vs = qvals[i]
			}
			b = appendField(b, name)
			b = binary.AppendUvarint(b, uint64(len(vs)))
			for _, v := range vs {
				b = appendField(b, v)
			}
			k.keyedQuery = append(k.keyedQuery, name, strings.Join(vs, "\x00"))
		}
	}
	if len(ks.headers) > 0 {
		b = append(b, 'H')
		for _, name := range ks.headers {
			vs := r.Header[name]
			b = appendField(b, name)
			b = binary.AppendUvarint(b, uint64(len(vs)))
			for _, v := range vs {
				b = appendField(b, v)
			}
		}
	}
	if len(ks.path) > 0 {
		b = append(b, 'P')
		for _, name := range ks.path {
			b = appendField(b, name)
			b = appendField(b, ex.PathParam(name))
		}
	}
	k.buf, k.plen = b, len(b)
	k.phash = hashKey(h.store.seed, b)
	return k, true
}

// lookup returns the stored response for the request, resolving Vary, and
// whether a hit-for-miss marker says not to wait for other requests.
func (h *handler) lookup(k *reqKey, r *http.Request) (obj *object, hitForMiss bool) {
	o := h.store.get(k.phash, k.primary())
	if o == nil {
		return nil, false
	}
	switch o.kind {
	case kindResponse:
		return o, false
	case kindHitForMiss:
		return nil, h.store.nowNano() < o.hfmUntil
	case kindVary:
		k.buf = appendVary(k.buf[:k.plen], r.Header, o.vary, k.ks)
		return h.store.get(hashKey(h.store.seed, k.buf), k.buf), false
	}
	return nil, false
}

// serveObject answers from a stored object.
func (h *handler) serveObject(w http.ResponseWriter, r *http.Request, o *object, x []string, now int64) {
	hd := w.Header()
	for _, f := range o.header {
		hd[f.name] = f.values
	}
	hd["Age"] = o.ageHeader(now)
	if h.set.xCache {
		hd["X-Cache"] = x
	}
	if o.status == http.StatusOK && notModified(r, o) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	if o.status != http.StatusNoContent {
		hd["Content-Length"] = o.clen
	}
	w.WriteHeader(o.status)
	if r.Method != http.MethodHead && len(o.body) > 0 {
		_, _ = w.Write(o.body)
	}
}

// notModified evaluates the client's conditional headers against a stored
// 200 response (RFC 9110 §13.2.2).
func notModified(r *http.Request, o *object) bool {
	if inm := r.Header["If-None-Match"]; len(inm) > 0 {
		if o.etag == "" {
			return false
		}
		for _, v := range inm {
			for t := range strings.SplitSeq(v, ",") {
				t = strings.TrimSpace(t)
				if t == "*" || weakEqual(t, o.etag) {
					return true
				}
			}
		}
		return false
	}
	if ims := r.Header["If-Modified-Since"]; len(ims) > 0 && o.lastMod != "" {
		t, err1 := http.ParseTime(ims[0])
		lm, err2 := http.ParseTime(o.lastMod)
		return err1 == nil && err2 == nil && !lm.After(t)
	}
	return false
}

func weakEqual(a, b string) bool {
	return strings.TrimPrefix(a, "W/") == strings.TrimPrefix(b, "W/")
}

// fetch asks the origin for the request's key: as the leader of a flight
// that concurrent requests for the key wait for (coalesce), or alone.
// stale is the stored object being revalidated, if any.
func (h *handler) fetch(w http.ResponseWriter, ex *plugins.Exchange, k *reqKey, stale *object, cred, coalesce, invalidate bool) {
	if coalesce {
		fl, leader := h.store.join(k.phash)
		if leader {
			defer h.store.finish(k.phash, fl)
			h.fill(w, ex, h.upstream(ex.Request.Context(), ex.Request, k, stale), fillArgs{k: k, stale: stale, flight: fl})
			return
		}
		if h.wait(w, ex, k, fl, stale) {
			return
		}
	}
	h.fill(w, ex, h.upstream(ex.Request.Context(), ex.Request, k, stale), fillArgs{k: k, stale: stale, cred: cred, invalidate: invalidate})
}

// wait waits, bounded, for another request's fetch of the key and answers
// from its result. It returns false when the caller must go to the origin
// itself: the wait timed out, or the fetch produced nothing this request
// may be answered with.
func (h *handler) wait(w http.ResponseWriter, ex *plugins.Exchange, k *reqKey, fl *flight, stale *object) bool {
	start := h.store.nowNano()
	h.store.waiting.Add(1)
	t := time.NewTimer(h.store.opts.LockTimeout)
	select {
	case <-fl.done:
	case <-t.C:
		h.store.waiting.Add(-1)
		return false
	case <-ex.Request.Context().Done():
		t.Stop()
		h.store.waiting.Add(-1)
		return true // the client is gone: nothing to answer
	}
	t.Stop()
	h.store.waiting.Add(-1)
	h.store.metrics.coalesced.Inc()
	r := ex.Request
	now := h.store.nowNano()
	if o, _ := h.lookup(k, r); o != nil && (o.fresh(now) || o.stored >= start) {
		h.store.metrics.count(resHit)
		h.serveObject(w, r, o, h.xHit, now)
		return true
	}
	if fl.sharedError != nil {
		h.store.metrics.count(resMiss)
		h.serveObject(w, r, fl.sharedError, h.xMiss, now)
		return true
	}
	if stale != nil && fl.staleServed == stale {
		h.store.metrics.count(resStale)
		h.serveObject(w, r, stale, h.xStale, now)
		return true
	}
	return false
}

// refresh starts the one background refresh of a stale object
// (stale-while-revalidate), unless one is running or too many are.
func (h *handler) refresh(ex *plugins.Exchange, k *reqKey, stale *object) {
	fl, leader := h.store.join(k.phash)
	if !leader {
		return
	}
	// A refresh that finished between this request's lookup and the join
	// above has already replaced the stale object: one refresh is enough.
	if cur := h.store.get(hashKey(h.store.seed, k.buf), k.buf); cur != stale {
		h.store.finish(k.phash, fl)
		return
	}
	select {
	case h.store.refreshSem <- struct{}{}:
	default:
		h.store.finish(k.phash, fl)
		return
	}
	h.store.metrics.refreshes.Inc()
	// Detached from the client: the refresh outlives this request, within
	// its own timeout.
	ctx, cancel := context.WithTimeout(context.WithoutCancel(ex.Request.Context()), h.store.opts.RefreshTimeout)
	kc := *k
	kc.buf = slices.Clone(k.buf)
	up := h.upstream(ctx, ex.Request, &kc, stale)
	exc := *ex
	go func() {
		defer func() {
			if p := recover(); p != nil && p != http.ErrAbortHandler {
				h.store.log.Error("cache background refresh panicked", "panic", p)
			}
			cancel()
			<-h.store.refreshSem
			h.store.finish(kc.phash, fl)
		}()
		h.fill(nil, &exc, up, fillArgs{k: &kc, stale: stale, flight: fl, background: true})
	}()
}

// upstream is the request the cache sends to the origin for a key: GET
// (HEAD is answered from GET's object), only the keyed query parameters,
// without the headers in unkeyedRequestHeaders, with the stored object's
// validators when revalidating.
func (h *handler) upstream(ctx context.Context, r *http.Request, k *reqKey, stale *object) *http.Request {
	up := r.Clone(ctx)
	up.Method = http.MethodGet
	up.Body = http.NoBody
	up.ContentLength = 0
	up.URL.RawQuery = k.keyedRaw
	up.URL.ForceQuery = false
	up.RequestURI = up.URL.RequestURI()
	for _, name := range unkeyedRequestHeaders {
		if !k.ks.hasHeader(name) {
			delete(up.Header, name)
		}
	}
	if stale != nil {
		if stale.etag != "" {
			up.Header["If-None-Match"] = []string{stale.etag}
		}
		if stale.lastMod != "" {
			up.Header["If-Modified-Since"] = []string{stale.lastMod}
		}
	}
	return up
}
