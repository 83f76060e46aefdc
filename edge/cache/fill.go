package cache

import (
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portico-edge/portico/plugins"
)

type fillArgs struct {
	k          *reqKey
	stale      *object // the stored object being revalidated or refreshed
	cred       bool    // the request carries credentials the key does not cover
	flight     *flight // set when this fill leads a flight
	background bool
	invalidate bool // a client asked for a fresh answer
}

type fillMode uint8

const (
	modePending fillMode = iota
	// modePass: the origin's response goes to the client as it arrives,
	// and is captured when it may be stored.
	modePass
	// modeNotModified: the origin confirmed the stale object (304).
	modeNotModified
	// modeStaleOnError: the origin failed and the stale object answers.
	modeStaleOnError
)

// sharedErrorLimit bounds the body of an origin error shared with waiters.
const sharedErrorLimit = 16 << 10

// fill sends up to the origin (through the rest of the chain) and stores
// what may be stored. w is nil for a background refresh.
func (h *handler) fill(w http.ResponseWriter, ex *plugins.Exchange, up *http.Request, a fillArgs) {
	epoch := h.store.epoch.Load()
	fw := &fillWriter{
		h:        h,
		a:        &a,
		client:   w,
		head:     ex.Request.Method == http.MethodHead,
		hdr:      make(http.Header),
		reqTime:  h.store.nowNano(),
		validate: a.stale != nil && a.stale.hasValidators(),
	}
	ex2 := *ex
	ex2.Request = up
	h.next.ServeExchange(fw, &ex2)
	if fw.status == 0 {
		fw.WriteHeader(http.StatusOK)
	}
	respTime := h.store.nowNano()
	k := a.k
	if !a.background && up.Context().Err() != nil {
		// The client went away and took the fetch with it: what the chain
		// wrote (a 502 from the proxy, typically) says nothing about the
		// origin, so nothing is stored or shared; waiters fetch themselves.
		if a.flight != nil {
			a.flight.staleServed, a.flight.sharedError = nil, nil
		}
		return
	}

	switch fw.mode {
	case modeNotModified:
		obj := h.revalidated(a.stale, fw.hdr, fw.reqTime, respTime, a.cred)
		if obj != nil {
			h.storeObject(k, up, obj, epoch)
		} else {
			obj = a.stale
			h.store.remove(k.phash, k.primary())
		}
		if w != nil {
			h.store.metrics.count(resRevalidated)
			h.serveObject(w, ex.Request, obj, h.xReval, respTime)
		}
		return
	case modeStaleOnError:
		if a.flight != nil {
			a.flight.staleServed = a.stale
		}
		if w != nil {
			h.store.metrics.count(resStale)
			h.serveObject(w, ex.Request, a.stale, h.xStale, respTime)
		}
		return
	}

	v := fw.v
	complete := !fw.over && (fw.clen < 0 || fw.written == fw.clen)
	switch {
	case v.store && fw.capture && complete:
		obj := h.newObject(fw.status, fw.hdr, fw.body(), v, fw.reqTime, respTime)
		h.storeObject(k, up, obj, epoch)
	case fw.shareErr && complete && a.flight != nil:
		a.flight.sharedError = &object{
			status: fw.status, header: headerFields(fw.hdr), body: fw.body(),
			clen: []string{strconv.Itoa(len(fw.buf))}, stored: respTime,
		}
	case v.hitForMiss && !a.cred:
		h.markHitForMiss(k, epoch)
	case a.invalidate:
		h.store.remove(k.phash, k.primary())
	}
}

func (h *handler) markHitForMiss(k *reqKey, epoch uint64) {
	now := h.store.nowNano()
	key := string(k.primary())
	o := &object{
		kind:     kindHitForMiss,
		hfmUntil: now + int64(h.store.opts.HitForMiss),
		keep:     h.store.opts.HitForMiss,
	}
	o.setKey(key, k)
	o.computeWeight()
	h.store.set(k.phash, o, epoch)
}

// storeObject stores obj under the request's key, or under its variant
// key with a Vary marker at the primary key.
func (h *handler) storeObject(k *reqKey, up *http.Request, obj *object, epoch uint64) {
	if len(obj.vary) == 0 {
		obj.setKey(string(k.primary()), k)
		obj.computeWeight()
		h.store.set(k.phash, obj, epoch)
		return
	}
	marker := &object{kind: kindVary, vary: obj.vary, keep: obj.keep}
	marker.setKey(string(k.primary()), k)
	marker.computeWeight()
	vb := appendVary(slices.Clip(k.primary()), up.Header, obj.vary, k.ks)
	obj.setKey(string(vb), k)
	obj.vary = nil
	obj.computeWeight()
	if h.store.set(k.phash, marker, epoch) {
		h.store.set(hashKey(h.store.seed, vb), obj, epoch)
	}
}

func (o *object) setKey(key string, k *reqKey) {
	p := k.parts
	o.key = key
	o.apiID = key[p.apiStart:p.apiEnd]
	o.stage = key[p.stageStart:p.stageEnd]
	o.host = key[p.hostStart:p.hostEnd]
	o.path = key[p.pathStart:p.pathEnd]
	o.keyedQuery = k.keyedQuery
}

// verdict is what the cache makes of an origin response.
type verdict struct {
	store      bool
	hitForMiss bool // not storable, and later requests should not wait for each other
	dirs       directives
	freshFor   time.Duration
	vary       []string
	shareable  bool
}

// cacheableStatus: the status codes RFC 9110 §15.1 makes cacheable by
// default. Everything else, in particular every other 4xx and all 5xx, is
// never stored, so a request that makes the origin fail cannot make the
// failure everyone's answer (CPDoS).
func cacheableStatus(s int) bool {
	switch s {
	case 200, 203, 204, 300, 301, 308, 404, 405, 410, 414, 501:
		return true
	}
	return false
}

// negativeStatus: the cacheable error statuses. They are stored only with
// explicit freshness from the origin, never with the stage's default TTL,
// so an error the origin did not mean to be cached is not.
func negativeStatus(s int) bool {
	switch s {
	case 404, 405, 410, 414, 501:
		return true
	}
	return false
}

func (h *handler) analyse(status int, hdr http.Header, cred bool) verdict {
	var v verdict
	if !cacheableStatus(status) {
		// 5xx keeps the lock: waiters share the error instead of fanning out.
		v.hitForMiss = status < 500
		return v
	}
	d := parseCacheControl(hdr["Cache-Control"])
	v.dirs = d
	if d.noStore || d.private || len(hdr["Set-Cookie"]) > 0 {
		v.hitForMiss = true
		return v
	}
	vary, star := parseVary(hdr["Vary"])
	if star {
		v.hitForMiss = true
		return v
	}
	v.vary = vary
	// RFC 9111 §3.5: a response to a request with credentials is stored
	// only when the origin says it may be shared.
	v.shareable = d.public || d.sMaxAge >= 0 || d.mustRevalidate
	if cred && !v.shareable {
		return v
	}
	explicit := true
	switch {
	case d.sMaxAge >= 0:
		v.freshFor = d.sMaxAge
	case d.maxAge >= 0:
		v.freshFor = d.maxAge
	case len(hdr["Expires"]) > 0:
		v.freshFor = expiresFreshness(hdr, h.store.now())
	default:
		explicit = false
		v.freshFor = h.set.ttl
	}
	if !explicit && (negativeStatus(status) || h.set.ttl == 0) {
		v.hitForMiss = true
		return v
	}
	validators := len(hdr["Etag"]) > 0 || len(hdr["Last-Modified"]) > 0
	windows := max(d.staleWhileReval, d.staleIfError, 0)
	if !d.noStale() && !(d.sMaxAge >= 0) {
		windows = max(windows, h.set.staleIfError)
	}
	if v.freshFor <= 0 && !validators && windows <= 0 {
		v.hitForMiss = true
		return v
	}
	v.store = true
	return v
}

func (d *directives) noStale() bool {
	return d.mustRevalidate || d.proxyRevalidate || d.noCache
}

// expiresFreshness is Expires minus Date, both from the origin's clock; an
// invalid Expires means already expired (RFC 9111 §5.3).
func expiresFreshness(hdr http.Header, now time.Time) time.Duration {
	exp, err := http.ParseTime(hdr.Get("Expires"))
	if err != nil {
		return 0
	}
	date, err := http.ParseTime(hdr.Get("Date"))
	if err != nil {
		date = now
	}
	return min(exp.Sub(date), maxDelta)
}

// newObject builds the object for a response. Age is taken from the
// origin's Age header plus the time the origin took, not from Date: an
// origin whose clock is behind would otherwise make every response stale
// on arrival.
func (h *handler) newObject(status int, hdr http.Header, body []byte, v verdict, reqTime, respTime int64) *object {
	d := v.dirs
	o := &object{
		kind:             kindResponse,
		status:           status,
		header:           headerFields(hdr),
		body:             body,
		clen:             []string{strconv.Itoa(len(body))},
		etag:             hdr.Get("Etag"),
		lastMod:          hdr.Get("Last-Modified"),
		vary:             v.vary,
		stored:           respTime,
		freshFor:         v.freshFor,
		swr:              d.staleWhileReval,
		sie:              d.staleIfError,
		noStale:          d.noStale(),
		explicitOnly:     d.sMaxAge >= 0,
		alwaysRevalidate: d.noCache,
		shareable:        v.shareable,
	}
	var age time.Duration
	if a := hdr.Get("Age"); a != "" {
		if n, err := strconv.ParseInt(strings.TrimSpace(a), 10, 64); err == nil && n > 0 {
			age = min(time.Duration(n)*time.Second, maxDelta)
		}
	}
	o.initialAge = age + time.Duration(respTime-reqTime)
	for _, sk := range hdr["Surrogate-Key"] {
		o.tags = append(o.tags, strings.Fields(sk)...)
	}
	keep := o.freshFor + max(o.swrWindow(), o.errorWindow(h.set.staleIfError))
	if o.hasValidators() {
		keep += max(o.freshFor, h.set.ttl)
	}
	o.keep = min(max(keep, time.Second), 2*maxTTL)
	return o
}

// revalidated returns the stale object refreshed by a 304's headers (RFC
// 9111 §4.3.4), or nil when the refreshed response may no longer be stored.
func (h *handler) revalidated(stale *object, notMod http.Header, reqTime, respTime int64, cred bool) *object {
	hdr := make(http.Header, len(stale.header)+len(notMod))
	for _, f := range stale.header {
		hdr[f.name] = f.values
	}
	for name, vs := range notMod {
		if storedHeader(name) || name == "Surrogate-Key" {
			hdr[name] = vs
		}
	}
	if len(stale.tags) > 0 && len(notMod["Surrogate-Key"]) == 0 {
		hdr["Surrogate-Key"] = []string{strings.Join(stale.tags, " ")}
	}
	v := h.analyse(stale.status, hdr, cred)
	if !v.store {
		return nil
	}
	v.vary = stale.vary
	if len(hdr["Vary"]) > 0 {
		v.vary, _ = parseVary(hdr["Vary"])
	}
	return h.newObject(stale.status, hdr, stale.body, v, reqTime, respTime)
}

// headerFields copies the storable headers, with value slices clipped so
// that a later Add on a response header map copies instead of writing into
// the stored array.
func headerFields(hdr http.Header) []field {
	fs := make([]field, 0, len(hdr))
	for name, vs := range hdr {
		if !storedHeader(name) || len(vs) == 0 {
			continue
		}
		fs = append(fs, field{name: name, values: slices.Clip(vs)})
	}
	return fs
}

// fillWriter is the ResponseWriter the rest of the chain writes the
// origin's response to during a fill. It decides at WriteHeader whether the
// response goes on to the client (and is captured for the store) or is
// held back (a 304 to the cache's own conditional request, or an error a
// stale object will answer instead).
type fillWriter struct {
	h        *handler
	a        *fillArgs
	client   http.ResponseWriter // nil for a background refresh
	head     bool                // the client asked HEAD: no body to it
	hdr      http.Header
	reqTime  int64
	validate bool // the request carried the stale object's validators

	status   int
	mode     fillMode
	v        verdict
	capture  bool
	shareErr bool
	limit    int64
	buf      []byte
	over     bool
	clen     int64 // Content-Length of the response, -1 unknown
	written  int64
}

func (f *fillWriter) Header() http.Header { return f.hdr }

func (f *fillWriter) WriteHeader(code int) {
	if f.status != 0 {
		return
	}
	if code >= 100 && code < 200 {
		// Informational responses (103 Early Hints) are not passed on:
		// the final response may come from the store.
		clear(f.hdr)
		return
	}
	f.status = code
	f.decide()
}

func (f *fillWriter) decide() {
	h, a := f.h, f.a
	f.clen = -1
	if cl := f.hdr.Get("Content-Length"); cl != "" {
		if n, err := strconv.ParseInt(cl, 10, 64); err == nil && n >= 0 {
			f.clen = n
		}
	}
	switch {
	case f.validate && f.status == http.StatusNotModified:
		f.mode = modeNotModified
		return
	case f.status >= 500 && a.stale != nil &&
		a.stale.staleFor(h.store.nowNano()) < a.stale.errorWindow(h.set.staleIfError):
		f.mode = modeStaleOnError
		return
	}
	f.v = h.analyse(f.status, f.hdr, a.cred)
	f.mode = modePass
	if f.v.store {
		f.capture, f.limit = true, h.set.maxObject
		switch {
		case f.clen > f.limit:
			f.capture, f.v.store, f.v.hitForMiss = false, false, true
		case f.clen >= 0:
			f.buf = make([]byte, 0, f.clen)
		}
	} else if a.flight != nil && (f.status == http.StatusBadGateway || f.status == http.StatusServiceUnavailable || f.status == http.StatusGatewayTimeout) {
		// The origin is failing: the requests waiting for this one get
		// the same answer instead of all trying again.
		f.capture, f.shareErr, f.limit = true, true, sharedErrorLimit
	}
	if f.client == nil {
		return
	}
	ch := f.client.Header()
	for name, vs := range f.hdr {
		if name == "Surrogate-Key" || name == "Surrogate-Control" {
			continue
		}
		ch[name] = vs
	}
	if h.set.xCache {
		ch["X-Cache"] = h.xMiss
	}
	h.store.metrics.count(resMiss)
	f.client.WriteHeader(f.status)
}

func (f *fillWriter) Write(p []byte) (int, error) {
	if f.status == 0 {
		f.WriteHeader(http.StatusOK)
	}
	f.written += int64(len(p))
	if f.capture && !f.over {
		if int64(len(f.buf)+len(p)) > f.limit {
			f.over, f.buf = true, nil
		} else {
			f.buf = append(f.buf, p...)
		}
	}
	if f.mode == modePass && f.client != nil && !f.head {
		return f.client.Write(p)
	}
	return len(p), nil
}

// Flush passes flushes on for responses streamed to the client.
func (f *fillWriter) Flush() {
	if f.mode == modePass && f.client != nil {
		_ = http.NewResponseController(f.client).Flush()
	}
}

// Unwrap gives http.ResponseController the client's writer (for write
// deadlines); it is nil during a background refresh.
func (f *fillWriter) Unwrap() http.ResponseWriter { return f.client }

// body returns the captured body with no spare capacity, so that the
// memory an object holds is what its weight says.
func (f *fillWriter) body() []byte {
	if cap(f.buf) == len(f.buf) {
		return f.buf
	}
	return slices.Clone(f.buf)
}
