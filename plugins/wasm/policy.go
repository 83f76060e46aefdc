package wasm

import (
	"errors"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	goruntime "runtime"
	"strconv"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/runtime"
	"github.com/portico-edge/portico/runtime/proxywasm"
)

// principalProperty is the property a plugin sets to name the caller it
// authenticated (proxy_set_property("portico.principal", "alice")).
const principalProperty = "portico.principal"

// enter reports whether a request may enter the plugin: its client must
// still be there. For HTTP/2 and later it first yields the processor once:
// a client that opens and at once resets streams has its reset sitting right
// behind the HEADERS frame, and the yield lets the connection's frame reader
// deliver it before the plugin runs. In the test harness (two cores, race
// detector) a reset flood made the plugin run for 4–19% of the reset streams
// without it and 6–13% with it: a handler running beside the frame loop on
// another core can still start first.
// The yield costs up to a few microseconds of scheduler work, so HTTP/1,
// which has no stream resets to flood with, skips it.
func enter(r *http.Request) bool {
	if r.ProtoMajor >= 2 {
		goruntime.Gosched()
	}
	return r.Context().Err() == nil
}

// streamInfo describes a request to a stream. Addresses and the portico.*
// properties are worked out only when a plugin reads them: parsing the
// peer address and building a map for every request cost more than the
// rest of a small authorizer's setup. They are answered from the exchange,
// which is pooled; a stream that outlives the request (a plugin that delays
// its log callback reads properties after it) detaches a copy.
func streamInfo(ex *plugins.Exchange) proxywasm.StreamInfo {
	r := ex.Request
	return proxywasm.StreamInfo{Request: r, RequestID: ex.RequestID, TLS: r.TLS, Lazy: (*exchangeView)(ex)}
}

// exchangeView answers a stream's lazy properties from its exchange while
// the request lasts.
type exchangeView plugins.Exchange

func (v *exchangeView) props() exchangeProperties {
	return exchangeProperties{request: v.Request, client: v.Client, api: v.API, stage: v.Stage, route: v.Route}
}

func (v *exchangeView) Property(path string) (string, bool) {
	p := v.props()
	return p.Property(path)
}

func (v *exchangeView) Addresses() (source, destination netip.AddrPort) {
	p := v.props()
	return p.Addresses()
}

func (v *exchangeView) Detach() proxywasm.LazyProperties {
	p := v.props()
	return &p
}

// exchangeProperties answers a stream's lazy properties.
type exchangeProperties struct {
	request *http.Request
	client  netip.Addr
	api     *config.SnapshotAPI
	stage   *config.Stage
	route   *config.Route
}

func (p *exchangeProperties) Property(path string) (string, bool) {
	switch path {
	case "portico.api_id":
		if p.api != nil {
			return p.api.ID, true
		}
	case "portico.stage":
		if p.stage != nil {
			return p.stage.Name, true
		}
	case "portico.route":
		if p.route != nil {
			return p.route.Key(), true
		}
	}
	return "", false
}

func (p *exchangeProperties) Addresses() (source, destination netip.AddrPort) {
	r := p.request
	if ap, err := netip.ParseAddrPort(r.RemoteAddr); err == nil {
		source = ap
		if p.client.IsValid() && p.client != ap.Addr() {
			// A trusted proxy forwarded the request: the client is the
			// address it named, whose port is unknown.
			source = netip.AddrPortFrom(p.client, 0)
		}
	} else if p.client.IsValid() {
		source = netip.AddrPortFrom(p.client, 0)
	}
	if a, ok := r.Context().Value(http.LocalAddrContextKey).(*net.TCPAddr); ok {
		destination = a.AddrPort()
	}
	return source, destination
}

func scheme(r *http.Request, tls bool) string {
	if tls || r.TLS != nil {
		return "https"
	}
	return "http"
}

// applyPseudo carries a guest's changes to ":path", ":method" and
// ":authority" back to the request.
func applyPseudo(r *http.Request, h *proxywasm.HeaderMap) error {
	if !h.PseudoChanged {
		return nil
	}
	if m, ok := h.PseudoValue(":method"); ok && m != r.Method {
		r.Method = m
	}
	if a, ok := h.PseudoValue(":authority"); ok && a != r.Host {
		r.Host = a
	}
	if p, ok := h.PseudoValue(":path"); ok && p != r.URL.RequestURI() {
		u, err := url.ParseRequestURI(p)
		if err != nil || u.Host != "" {
			return errors.New("plugin set an invalid :path")
		}
		r.URL.Path, r.URL.RawPath, r.URL.RawQuery = u.Path, u.RawPath, u.RawQuery
	}
	return nil
}

func writeLocal(w http.ResponseWriter, l *proxywasm.LocalResponse) {
	h := w.Header()
	for _, p := range l.Headers {
		if len(p.Key) > 0 && p.Key[0] == ':' {
			continue
		}
		h.Add(p.Key, p.Value)
	}
	if h.Get("Content-Type") == "" && len(l.Body) > 0 {
		h.Set("Content-Type", "text/plain; charset=utf-8")
	}
	h.Set("Content-Length", strconv.Itoa(len(l.Body)))
	w.WriteHeader(l.Status)
	_, _ = w.Write(l.Body)
}

// fail applies the failure policy. It reports whether the request may go on
// (fail open). A request whose client has gone gets nothing.
func (b *base) fail(w http.ResponseWriter, r *http.Request, err error) bool {
	if r.Context().Err() != nil {
		return false
	}
	b.p.Metrics().Errors.Add(1)
	if b.failOpen {
		return true
	}
	what := "Authorizer"
	if b.typ == TypeTransform {
		what = "Transform"
	}
	switch {
	case errors.Is(err, runtime.ErrBusy), errors.Is(err, runtime.ErrUnavailable), errors.Is(err, runtime.ErrPoolClosed):
		plugins.WriteError(w, http.StatusServiceUnavailable, what+" unavailable")
	default:
		plugins.WriteError(w, http.StatusInternalServerError, what+" error")
	}
	return false
}
