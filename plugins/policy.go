// Package plugins defines the policy pipeline that every request passes
// through at the edge (and, for regional endpoints, at the origin): the one
// small interface that built-in policies (API keys, throttling, JWT,
// signatures, IP rules, CORS, cache, validation, transforms) and WASM
// plugins all implement, and the fixed order they run in.
//
// A policy is configured by a config.PolicySpec attached to an API, a stage
// or a route. A Factory turns the spec into a Policy once per snapshot; the
// Policy then wraps the next handler, the way net/http middleware does. The
// chain for a route is built when a snapshot is loaded, never per request.
package plugins

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"iter"
	"net/http"
	"net/netip"
	"net/textproto"
	"slices"
	"time"

	"github.com/portico-edge/portico/config"
)

// Phase is a policy's place in the pipeline. The order is fixed and
// documented in docs/policies.md; a policy cannot choose to run earlier than
// its phase, so that, for example, no authorizer ever sees a request that an
// IP rule refused, and no cached response is served to a caller who failed
// authentication.
type Phase int

// Phases, in the order they run. Gaps leave room for later phases.
const (
	// PhaseNetwork: IP allow/deny and resource policies, private endpoints.
	PhaseNetwork Phase = 100
	// PhaseCORS: answers preflight requests, adds CORS headers.
	PhaseCORS Phase = 200
	// PhaseAPIKey: API key check, usage plan throttle and quota.
	PhaseAPIKey Phase = 300
	// PhaseThrottle: stage and route throttling for all callers.
	PhaseThrottle Phase = 400
	// PhaseAuthorize: JWT, signed requests, WASM authorizers.
	PhaseAuthorize Phase = 500
	// PhaseValidate: request validation against the API's schema.
	PhaseValidate Phase = 600
	// PhaseTransform: request and response transforms, declarative then WASM.
	PhaseTransform Phase = 700
	// PhaseCache: response cache; runs last so that it only ever sees
	// requests that every other policy accepted.
	PhaseCache Phase = 800
)

func (p Phase) String() string {
	switch p {
	case PhaseNetwork:
		return "network"
	case PhaseCORS:
		return "cors"
	case PhaseAPIKey:
		return "api-key"
	case PhaseThrottle:
		return "throttle"
	case PhaseAuthorize:
		return "authorize"
	case PhaseValidate:
		return "validate"
	case PhaseTransform:
		return "transform"
	case PhaseCache:
		return "cache"
	}
	return fmt.Sprintf("phase(%d)", int(p))
}

// Exchange is one request on its way through the pipeline. The edge fills in
// the routing fields before the first policy runs; policies add identity.
// It is passed explicitly rather than through the request's context because
// context values cost an allocation per request on the hot path.
type Exchange struct {
	Request   *http.Request
	RequestID string
	// Client is the address the request came from: the TCP peer, or the
	// forwarded address when the peer is a configured trusted proxy.
	Client netip.Addr
	// Host is the canonical, lower-case host without port.
	Host string
	// Path is the normalised request path; RoutePath is the part after the
	// base path, which is what the API's routes are matched against.
	Path      string
	RoutePath string
	// TLS is true when the client connection was TLS (or QUIC).
	TLS bool

	Domain     *config.Domain
	API        *config.SnapshotAPI
	Stage      *config.Stage
	Deployment *config.Deployment
	Route      *config.Route
	// RouteIndex is the route's index in Deployment.API.Routes; the origin
	// uses it to find the same route without matching again.
	RouteIndex int
	PathParams []Param

	// Identity is what authentication established, sent to the origin.
	Identity Identity

	// Start is when the edge began reading the request.
	Start time.Time
}

// Param is one path parameter.
type Param struct{ Name, Value string }

// PathParam returns the value of a path parameter, or "".
func (ex *Exchange) PathParam(name string) string {
	for _, p := range ex.PathParams {
		if p.Name == name {
			return p.Value
		}
	}
	return ""
}

// Identity is the caller as established by the pipeline's policies.
type Identity struct {
	// Principal names the caller: an API key ID, a JWT subject, an access
	// key. Empty means anonymous.
	Principal string
	// Source says which policy established Principal ("api-key", "jwt", ...).
	Source string
	// APIKeyID is set when an API key was presented and accepted.
	APIKeyID string

	// The identity headers (SetHeader), kept in the exchange itself: as an
	// http.Header they cost a WASM authorizer three allocations and a
	// tenth of its request. Policies set one to three; past four they go
	// to more.
	headers [4]Param
	n       int
	more    []Param
}

// SetHeader records an identity header for the origin, replacing one of
// the same name. The edge removes every client-sent header of the same
// name before adding these, so the origin and the backend can trust what
// arrives under these names.
func (id *Identity) SetHeader(name, value string) {
	id.SetCanonicalHeader(textproto.CanonicalMIMEHeaderKey(name), value)
}

// SetCanonicalHeader is SetHeader for a name already in canonical form (a
// key of a header map from net/http): checking that costs a WASM
// authorizer as much as the rest of recording the header.
func (id *Identity) SetCanonicalHeader(name, value string) {
	if p := id.find(name); p != nil {
		p.Value = value
		return
	}
	if id.n < len(id.headers) {
		id.headers[id.n] = Param{name, value}
		id.n++
		return
	}
	id.more = append(id.more, Param{name, value})
}

func (id *Identity) find(name string) *Param {
	for i := range id.n {
		if id.headers[i].Name == name {
			return &id.headers[i]
		}
	}
	for i := range id.more {
		if id.more[i].Name == name {
			return &id.more[i]
		}
	}
	return nil
}

// Header returns an identity header's value, or "".
func (id *Identity) Header(name string) string {
	if p := id.find(textproto.CanonicalMIMEHeaderKey(name)); p != nil {
		return p.Value
	}
	return ""
}

// NumHeaders returns the number of identity headers.
func (id *Identity) NumHeaders() int { return id.n + len(id.more) }

// Headers yields the identity headers, names in canonical form, in the
// order they were first set.
func (id *Identity) Headers() iter.Seq2[string, string] {
	return func(yield func(name, value string) bool) {
		for i := range id.n {
			if !yield(id.headers[i].Name, id.headers[i].Value) {
				return
			}
		}
		for _, p := range id.more {
			if !yield(p.Name, p.Value) {
				return
			}
		}
	}
}

// Handler serves an exchange. It is the type every policy wraps.
type Handler interface {
	ServeExchange(w http.ResponseWriter, ex *Exchange)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(w http.ResponseWriter, ex *Exchange)

// ServeExchange calls f.
func (f HandlerFunc) ServeExchange(w http.ResponseWriter, ex *Exchange) { f(w, ex) }

// Policy is one configured step of the pipeline.
type Policy interface {
	// Wrap returns a handler that applies the policy and calls next when
	// the request may proceed.
	Wrap(next Handler) Handler
}

// Closer is implemented by policies that hold resources. Close is called
// once the snapshot that built the policy has been replaced and the requests
// that were using it have finished.
type Closer interface {
	Close() error
}

// Scope says where a policy is attached; factories use it to keep state
// (counters, caches) that must survive snapshot swaps, keyed by scope.
type Scope struct {
	APIID string
	Stage string // empty for an API-level attachment
	Route string // route key ("GET /pets"); empty above route level
}

func (s Scope) String() string {
	out := "api " + s.APIID
	if s.Stage != "" {
		out += " stage " + s.Stage
	}
	if s.Route != "" {
		out += " route " + s.Route
	}
	return out
}

// Factory builds policies of one type. Factories live as long as the node:
// a policy that must keep state across requests keeps it in its factory,
// keyed by scope, so that loading a new snapshot does not reset it.
type Factory interface {
	// Type is the name used in PolicySpec.Type ("api-key", "jwt", ...).
	Type() string
	// Phase is where policies of this type run.
	Phase() Phase
	// New validates the config and builds a policy. Errors must say what
	// is wrong with the config and how to fix it; they are shown to the
	// person deploying it.
	New(ctx context.Context, spec config.PolicySpec, scope Scope) (Policy, error)
}

// Registry maps policy types to their factories. It is built once when a
// node starts.
type Registry struct {
	factories map[string]Factory
}

// NewRegistry returns a registry holding the given factories.
func NewRegistry(fs ...Factory) (*Registry, error) {
	r := &Registry{factories: make(map[string]Factory, len(fs))}
	for _, f := range fs {
		if _, dup := r.factories[f.Type()]; dup {
			return nil, fmt.Errorf("policy type %q registered twice", f.Type())
		}
		r.factories[f.Type()] = f
	}
	return r, nil
}

// Types lists the registered policy types, sorted.
func (r *Registry) Types() []string {
	out := make([]string, 0, len(r.factories))
	for t := range r.factories {
		out = append(out, t)
	}
	slices.Sort(out)
	return out
}

// Lookup returns the factory for a type.
func (r *Registry) Lookup(typ string) (Factory, bool) {
	f, ok := r.factories[typ]
	return f, ok
}

// Attached is a policy spec together with the scope it was attached at.
type Attached struct {
	Spec  config.PolicySpec
	Scope Scope
}

// Build turns the attached specs of one route into a chain around
// terminal, ordered by phase and, within a phase, API then stage then route
// attachments in the order written. It returns the policies built so the
// caller can close them when the chain is retired.
func (r *Registry) Build(ctx context.Context, attached []Attached, terminal Handler) (Handler, []Policy, error) {
	type built struct {
		phase Phase
		idx   int
		p     Policy
	}
	var bs []built
	var all []Policy
	for i, a := range attached {
		f, ok := r.Lookup(a.Spec.Type)
		if !ok {
			closeAll(all)
			return nil, nil, fmt.Errorf("%s: unknown policy type %q; this node knows: %v", a.Scope, a.Spec.Type, r.Types())
		}
		p, err := f.New(ctx, a.Spec, a.Scope)
		if err != nil {
			closeAll(all)
			return nil, nil, fmt.Errorf("%s: policy %q: %w", a.Scope, a.Spec.Type, err)
		}
		bs = append(bs, built{f.Phase(), i, p})
		all = append(all, p)
	}
	slices.SortStableFunc(bs, func(a, b built) int { return int(a.phase) - int(b.phase) })
	h := terminal
	for i := len(bs) - 1; i >= 0; i-- {
		h = bs[i].p.Wrap(h)
	}
	return h, all, nil
}

func closeAll(ps []Policy) {
	for _, p := range ps {
		if c, ok := p.(Closer); ok {
			_ = c.Close()
		}
	}
}

// CloseAll closes every policy that holds resources.
func CloseAll(ps []Policy) { closeAll(ps) }

// DecodeConfig decodes a policy's JSON config strictly: unknown fields are
// errors, because a misspelt limit silently ignored is a security hole.
func DecodeConfig(spec config.PolicySpec, v any) error {
	if len(spec.Config) == 0 {
		return nil
	}
	dec := json.NewDecoder(bytes.NewReader(spec.Config))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("config: %w", err)
	}
	return nil
}

// Attachments lists the policies that apply to a route of a deployment on
// a stage, in the order Build expects: API, then stage, then route.
func Attachments(d *config.Deployment, st *config.Stage, r *config.Route) []Attached {
	var out []Attached
	for _, p := range d.API.Policies {
		out = append(out, Attached{Spec: p, Scope: Scope{APIID: d.APIID}})
	}
	for _, p := range st.Policies {
		out = append(out, Attached{Spec: p, Scope: Scope{APIID: d.APIID, Stage: st.Name}})
	}
	for _, p := range r.Policies {
		out = append(out, Attached{Spec: p, Scope: Scope{APIID: d.APIID, Stage: st.Name, Route: r.Key()}})
	}
	return out
}
