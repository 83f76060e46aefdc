package listen

import (
	"net/http"
	"strconv"
	"sync/atomic"
	"time"
)

// HSTS wraps next so that every response to a TLS request carries the
// policy's Strict-Transport-Security header. Plain-HTTP responses never do
// (RFC 6797 §7.2: browsers ignore it there).
func HSTS(next http.Handler, p HSTSPolicy) http.Handler {
	if p.Disabled {
		return next
	}
	v := p.Header()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS != nil {
			w.Header()["Strict-Transport-Security"] = []string{v}
		}
		next.ServeHTTP(w, r)
	})
}

// Header is the Strict-Transport-Security value of the policy.
func (p HSTSPolicy) Header() string {
	v := "max-age=" + strconv.FormatInt(int64(p.MaxAge/time.Second), 10)
	if p.IncludeSubDomains {
		v += "; includeSubDomains"
	}
	if p.Preload {
		v += "; preload"
	}
	return v
}

// altSvc advertises HTTP/3 on responses over TCP TLS while the QUIC
// listener is up. A client that follows an Alt-Svc to a port where nothing
// answers UDP waits for a timeout before falling back, so the header is
// withdrawn the moment the listener goes down.
type altSvc struct {
	next  http.Handler
	value atomic.Pointer[string] // nil while HTTP/3 is down
}

func (a *altSvc) up(port int, maxAge time.Duration) {
	v := `h3=":` + strconv.Itoa(port) + `"; ma=` + strconv.FormatInt(int64(maxAge/time.Second), 10)
	a.value.Store(&v)
}

func (a *altSvc) down() { a.value.Store(nil) }

func (a *altSvc) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if v := a.value.Load(); v != nil && r.TLS != nil && r.ProtoMajor < 3 {
		w.Header()["Alt-Svc"] = []string{*v}
	}
	a.next.ServeHTTP(w, r)
}

// EarlyData reports whether r arrived in TLS 1.3 early data (0-RTT), which
// an attacker can replay. Only HTTP/3 accepts early data here; a request is
// early when it is being handled before the client finished the handshake,
// which every replayed request is (a replay never finishes it).
func EarlyData(r *http.Request) bool {
	return r.ProtoMajor == 3 && r.TLS != nil && !r.TLS.HandshakeComplete
}

// TooEarly answers 425 Too Early (RFC 8470): the client should retry after
// its handshake completes.
func TooEarly(w http.ResponseWriter) {
	http.Error(w, "425 Too Early: retry after the TLS handshake completes", http.StatusTooEarly)
}

// earlyDataGuard lets a 0-RTT request through only when its method is safe
// and accept says yes; everything else gets 425.
func earlyDataGuard(next http.Handler, accept func(*http.Request) bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if EarlyData(r) {
			safe := r.Method == http.MethodGet || r.Method == http.MethodHead || r.Method == http.MethodOptions
			if !safe || accept == nil || !accept(r) {
				TooEarly(w)
				return
			}
		}
		next.ServeHTTP(w, r)
	})
}
