package proxywasm

import (
	"context"
	"crypto/tls"
	"fmt"
	"net/http"
	"net/netip"
	"time"

	"github.com/portico-edge/portico/runtime"
)

// StreamInfo is what the host knows about a request, for properties.
type StreamInfo struct {
	Request     *http.Request
	RequestID   string
	Source      netip.AddrPort
	Destination netip.AddrPort
	TLS         *tls.ConnectionState
	// Lazy, when set, answers what is costly to work out for every
	// request and which few plugins read: extra properties by dotted path
	// ("portico.api_id") and the addresses, which then replace Source and
	// Destination. It is asked only when a plugin reads such a property.
	Lazy LazyProperties
}

// LazyProperties is the embedder's side of StreamInfo.Lazy. It may answer
// from request-scoped state (a pooled exchange) if it also implements
// Detacher.
type LazyProperties interface {
	// Property returns an extra property by dotted path. path may be a
	// view of guest memory, valid only during the call: do not keep it.
	Property(path string) (string, bool)
	// Addresses returns the client's and the local address of the
	// connection.
	Addresses() (source, destination netip.AddrPort)
}

// Detacher is implemented by LazyProperties that answer from state which
// ends with the request. When a stream outlives its Close (the plugin
// deferred proxy_done, and reads properties in its log callback later), the
// host calls Detach before Close returns and asks what it returns from then
// on.
type Detacher interface {
	Detach() LazyProperties
}

// LocalResponse is a response the plugin sent instead of the upstream's.
type LocalResponse struct {
	Status  int
	Details string
	Body    []byte
	Headers []Pair
}

// Outcome is what the host must do after a callback.
type Outcome int

// Outcomes of a stream callback.
const (
	// Continue: pass the request (or response) on.
	Continue Outcome = iota
	// Respond: send Stream.Local() instead.
	Respond
	// Reset: the plugin closed the stream; drop the connection.
	Reset
	// Fail: the plugin failed (trap, timeout, unavailable) or the client
	// went away; Stream.Err() says which. Apply the failure policy.
	Fail
)

// Stream is one HTTP request and its response inside a plugin. It is pinned
// to one instance for its whole life. Its methods are called from the
// request's goroutine only.
//
// Streams are pooled: after Close the Stream, and the header map
// RequestHeaderMap returned, belong to the plugin again and may serve
// another request. Copy out anything that must outlive the request first.
type Stream struct {
	p       *Plugin
	in      *instance
	id      uint32
	slot    int // in in.streams
	ctx     context.Context
	info    StreamInfo
	hasInfo bool

	holding bool // holds the instance's pool slot
	closed  bool

	req, resp                 *HeaderMap
	reqTrailers, respTrailers *HeaderMap
	reqBody, respBody         []byte
	reqBodyAvail              bool
	respBodyAvail             bool
	reqBodyChanged            bool
	respBodyChanged           bool
	respStatus                int

	// Written by host functions with the instance's lock held.
	paused      bool
	local       *LocalResponse
	reset       bool
	gone        bool
	pendingDone bool
	away        bool // at the upstream: no other context may reach it (Upstream)
	doneCalled  bool
	props       propSet

	err    error
	events chan *httpResult
	wake   chan struct{}

	// Storage for RequestHeaderMap, reused with the stream.
	reqMap HeaderMap
	pseudo [4]Pair
}

// takeStream returns the instance's spare stream, or a new one; the caller
// holds in.mu.
func (in *instance) takeStream() *Stream {
	s := in.spare
	if s == nil {
		return new(Stream)
	}
	in.spare = nil
	return s
}

// recycle makes a stream the instance's spare, for its next request; the
// caller holds in.mu and makes sure nothing refers to the stream any more:
// its owner has closed it, and the instance has run its delete callback
// (or is gone). A stream that made an http call is left to the collector
// (the call's goroutine holds it until the response comes), as is one when
// the instance already has a spare: an instance serves one request at a
// time unless streams wait (paused, or upstream), so one spare is nearly
// always enough, and it stays warm in the cache with its instance, where a
// sync.Pool handed out whichever stream it had.
func (in *instance) recycle(s *Stream) {
	if s.events != nil || in.spare != nil {
		return
	}
	clear(s.props)
	clear(s.reqMap.Touched)
	clear(s.reqMap.Removed)
	*s = Stream{
		props:  s.props[:0],
		reqMap: HeaderMap{Touched: s.reqMap.Touched[:0], Removed: s.reqMap.Removed[:0]},
	}
	in.spare = s
}

// NewStream starts a stream: it waits for a free instance (giving up when
// ctx is done, so a cancelled request never runs the plugin) and creates
// the stream's context in it. The stream keeps a copy of *info.
func (p *Plugin) NewStream(ctx context.Context, info *StreamInfo) (*Stream, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if p.closed.Load() {
		return nil, runtime.ErrPoolClosed
	}
	for attempt := 0; ; attempt++ {
		in, err := p.pool.Acquire(ctx)
		if err != nil {
			if ctx.Err() == nil {
				p.metrics.Rejected.Add(1)
			}
			return nil, err
		}
		if err := ctx.Err(); err != nil {
			p.pool.Release(in)
			return nil, err
		}
		in.mu.Lock()
		if in.dead() {
			in.mu.Unlock()
			p.pool.Discard(in)
			if attempt < 2 {
				continue
			}
			return nil, runtime.ErrUnavailable
		}
		s := in.takeStream()
		s.p, s.in, s.ctx, s.holding = p, in, ctx, true
		if info != nil {
			s.info, s.hasInfo = *info, true
		}
		s.id = in.nextID
		in.nextID++
		if in.nextID == 0 {
			in.nextID = rootID + 1
		}
		in.streams.add(s)
		p.metrics.Streams.Add(1)
		in.effective = s
		_, err = in.call(runtime.PhaseDone, in.fn.contextCreate, uint64(s.id), rootID)
		in.effective = nil
		in.mu.Unlock()
		if err != nil {
			s.err = err
			s.Close()
			return nil, err
		}
		return s, nil
	}
}

// Err explains a Fail outcome.
func (s *Stream) Err() error { return s.err }

// Local is the plugin's own response after a Respond outcome.
func (s *Stream) Local() *LocalResponse { return s.local }

// Property returns a property the guest set with proxy_set_property.
func (s *Stream) Property(path string) (string, bool) {
	return s.props.get(path)
}

// RequestBody returns the request body after the body callback, and whether
// the guest changed it.
func (s *Stream) RequestBody() ([]byte, bool) { return s.reqBody, s.reqBodyChanged }

// ResponseBody returns the response body after the body callback, and
// whether the guest changed it.
func (s *Stream) ResponseBody() ([]byte, bool) { return s.respBody, s.respBodyChanged }

func b2u(b bool) uint64 {
	if b {
		return 1
	}
	return 0
}

// RequestHeaderMap returns a header map of r that the stream owns: r's
// pseudo fields, with scheme as ":scheme", and r.Header, which the guest
// changes in place. It is valid until Close.
func (s *Stream) RequestHeaderMap(r *http.Request, scheme string) *HeaderMap {
	m := &s.reqMap
	m.Header = r.Header
	// The pseudo fields are filled in when first read, from r, which does
	// not change while the request is in the plugin; before it goes on
	// (Yield, or a Close that outlives the request) they are, so that a
	// later read sees the request as it was.
	m.Pseudo = s.pseudo[:0]
	m.req, m.scheme = r, scheme
	return m
}

// RequestHeaders runs proxy_on_request_headers over h, which the guest may
// change in place.
func (s *Stream) RequestHeaders(h *HeaderMap, endOfStream bool) Outcome {
	s.req = h
	return s.run(runtime.PhaseRequestHeaders, s.in.fn.reqHeaders, uint64(h.size()), b2u(endOfStream))
}

// RequestBody runs proxy_on_request_body once with the whole (bounded)
// body.
func (s *Stream) RequestBodyCallback(body []byte, endOfStream bool) Outcome {
	s.reqBody = body
	s.reqBodyAvail = true
	return s.run(runtime.PhaseRequestBody, s.in.fn.reqBody, uint64(len(body)), b2u(endOfStream))
}

// RequestTrailers runs proxy_on_request_trailers.
func (s *Stream) RequestTrailers(h *HeaderMap) Outcome {
	s.reqTrailers = h
	return s.run(runtime.PhaseRequestTrailers, s.in.fn.reqTrailers, uint64(h.size()))
}

// ResponseHeaders runs proxy_on_response_headers; h carries ":status".
func (s *Stream) ResponseHeaders(h *HeaderMap, status int, endOfStream bool) Outcome {
	s.in.mu.Lock()
	s.away = false // back from the upstream: reachable again
	s.resp, s.respStatus = h, status
	s.in.mu.Unlock()
	return s.run(runtime.PhaseResponseHeaders, s.in.fn.respHeaders, uint64(h.size()), b2u(endOfStream))
}

// ResponseBodyCallback runs proxy_on_response_body once with the whole
// (bounded) body.
func (s *Stream) ResponseBodyCallback(body []byte, endOfStream bool) Outcome {
	s.respBody = body
	s.respBodyAvail = true
	return s.run(runtime.PhaseResponseBody, s.in.fn.respBody, uint64(len(body)), b2u(endOfStream))
}

// ResponseTrailers runs proxy_on_response_trailers.
func (s *Stream) ResponseTrailers(h *HeaderMap) Outcome {
	s.respTrailers = h
	return s.run(runtime.PhaseResponseTrailers, s.in.fn.respTrailers, uint64(h.size()))
}

// Yield gives the instance's pool slot back while the request is away (at
// the upstream, or paused), so that other requests can use the instance;
// the stream stays pinned to it.
func (s *Stream) Yield() { s.yield(false) }

// Upstream is Yield for a request that goes on to the upstream: until the
// stream's response comes back (ResponseHeaders), the request and its
// header maps belong to the forwarder, which changes them, so other
// contexts of the plugin (a tick, a queue, another stream's callback) may
// not make the stream their effective context: reading a header map while
// the forwarder writes it would be a concurrent map access, which ends
// the process. A paused stream (Yield) stays reachable: its request waits.
func (s *Stream) Upstream() { s.yield(true) }

func (s *Stream) yield(upstream bool) {
	if !s.holding {
		return
	}
	s.holding = false
	in := s.in
	in.mu.Lock()
	// The request goes on and may change: fill in what a later read
	// expects of it now, under the lock, as another context may be
	// reading the same fields.
	s.reqMap.resolvePath()
	s.away = upstream
	dead := in.dead()
	in.mu.Unlock()
	if dead {
		s.p.pool.Discard(in)
		return
	}
	s.p.pool.Release(in)
}

func (s *Stream) outcome() Outcome {
	switch {
	case s.err != nil:
		return Fail
	case s.local != nil:
		return Respond
	case s.reset:
		return Reset
	}
	return Continue
}

// lock takes the instance for a callback, failing if it is gone.
func (s *Stream) lock() bool {
	s.in.mu.Lock()
	if s.in.failed() || s.gone {
		s.in.mu.Unlock()
		s.setErr(errInstanceBroken)
		return false
	}
	return true
}

func (s *Stream) setErr(err error) {
	if s.err != nil {
		return
	}
	if s.in.guard.TimedOut() {
		err = fmt.Errorf("%w (%s): %v", ErrTimeout, s.p.cfg.CallbackTimeout, err)
	}
	s.err = err
}

func (s *Stream) run(phase runtime.Phase, f export, args ...uint64) Outcome {
	if o := s.outcome(); o != Continue {
		return o
	}
	if f.Function == nil {
		return Continue
	}
	if err := s.ctx.Err(); err != nil {
		// The client is gone: run nothing more for it.
		s.setErr(err)
		return Fail
	}
	if !s.lock() {
		return Fail
	}
	in := s.in
	in.effective = s
	var a [3]uint64 // not an append: that allocated on every callback
	a[0] = uint64(s.id)
	n := 1 + copy(a[1:], args)
	r, err := in.call(phase, f, a[:n]...)
	in.effective = nil
	in.finalizePending()
	if err != nil {
		s.setErr(err)
		in.mu.Unlock()
		s.p.instanceFailed(in, s.holding)
		return Fail
	}
	if s.local != nil || s.reset {
		in.mu.Unlock()
		return s.outcome()
	}
	if uint32(r) == ActionContinue {
		in.mu.Unlock()
		return Continue
	}
	s.paused = true
	if s.wake == nil {
		s.wake = make(chan struct{}, 1)
	}
	in.mu.Unlock()
	return s.waitPaused()
}

// waitPaused holds the request until the plugin continues it, answers it or
// closes it, from a later callback (an http call response, a tick, a queue).
func (s *Stream) waitPaused() Outcome {
	s.Yield()
	timer := time.NewTimer(s.p.cfg.PauseTimeout)
	defer timer.Stop()
	for {
		s.in.mu.Lock()
		paused := s.paused && !s.gone && s.local == nil && !s.reset
		gone := s.gone || s.in.dead()
		s.in.mu.Unlock()
		if !paused {
			if gone && s.local == nil && !s.reset {
				s.setErr(errInstanceBroken)
			}
			return s.outcome()
		}
		select {
		case ev := <-s.events:
			s.dispatch(ev)
			if s.err != nil {
				return Fail
			}
		case <-s.wake:
		case <-s.ctx.Done():
			s.setErr(s.ctx.Err())
			return Fail
		case <-timer.C:
			s.setErr(fmt.Errorf("plugin paused the request and did not resume it within %s", s.p.cfg.PauseTimeout))
			return Fail
		}
	}
}

// dispatch delivers an http call's result to the root context of the
// stream's instance.
func (s *Stream) dispatch(ev *httpResult) {
	if !s.lock() {
		return
	}
	in := s.in
	err := in.deliver(ev)
	in.mu.Unlock()
	if err != nil {
		s.setErr(err)
		s.p.instanceFailed(in, s.holding)
	}
}

// deliver runs proxy_on_http_call_response; the caller holds in.mu.
func (in *instance) deliver(ev *httpResult) error {
	in.callResp = ev
	in.effective = nil
	nh := 0
	if ev.err == nil {
		nh = ev.headers.size()
	}
	_, err := in.call(runtime.PhaseAsync, in.fn.httpCallResponse, rootID, uint64(ev.token), uint64(nh), uint64(len(ev.body)), uint64(ev.trailers.size()))
	in.callResp = nil
	in.effective = nil
	in.finalizePending()
	return err
}

// resume, sendLocal and closeStream are called from host functions with the
// instance's lock held.
func (s *Stream) resume() {
	s.paused = false
	s.signal()
}

func (s *Stream) sendLocal(l *LocalResponse) {
	s.local = l
	s.paused = false
	s.signal()
}

func (s *Stream) closeStream() {
	s.reset = true
	s.paused = false
	s.signal()
}

func (s *Stream) signal() {
	if s.wake == nil {
		return
	}
	select {
	case s.wake <- struct{}{}:
	default:
	}
}

func (s *Stream) instanceGone() {
	s.gone = true
	s.signal()
}

// Close ends the stream: proxy_on_done, then proxy_on_log and
// proxy_on_delete (at once, or when the plugin calls proxy_done), and gives
// the instance back. Always call it once, whatever the outcome; the stream
// must not be used after it.
func (s *Stream) Close() {
	if s.closed {
		return
	}
	in, p := s.in, s.p
	in.mu.Lock()
	s.closed = true
	s.away = false // the request is back; a deferred stream is detached below
	pending := false
	if !in.dead() && !s.gone {
		in.effective = s
		r, err := in.call(runtime.PhaseDone, in.fn.done, uint64(s.id))
		if err == nil && in.fn.done.Function != nil && uint32(r) == 0 {
			s.pendingDone = true
			pending = true
			s.detach()
			in.pending = append(in.pending, s)
			if len(in.pending) > maxPendingDone {
				// A plugin that never calls proxy_done must not hold
				// contexts for ever.
				in.pending[0].doneCalled = true
			}
		} else if err == nil {
			in.effective = s
			if _, err = in.call(runtime.PhaseDone, in.fn.log, uint64(s.id)); err == nil {
				_, err = in.call(runtime.PhaseDone, in.fn.delete, uint64(s.id))
			}
			in.streams.remove(s)
		}
		in.effective = nil
		in.finalizePending()
		if err != nil && !pending && s.err == nil {
			s.setErr(err)
		}
	}
	if !pending {
		// Also when a callback above failed, or the instance is gone.
		in.streams.remove(s)
	}
	dead := in.dead()
	holding := s.holding
	if pending {
		s.holding = false
		s.reqBody, s.respBody = nil, nil
		// A pending stream is not touched after this: once the lock is
		// free, another request's callback may finish it and recycle it.
	} else {
		in.recycle(s)
	}
	in.mu.Unlock()
	if holding {
		if dead {
			p.pool.Discard(in)
		} else {
			p.pool.Release(in)
		}
	} else if dead {
		p.instanceFailed(in, false)
	}
}

// detach readies a stream that outlives Close: what it refers to of the
// request must not change or go away under a later callback.
//
// The request itself goes on after Close: the forwarder rewrites its
// headers and URL while sending it, and net/http reads the response's
// header map as it finishes. A later on_log that read them through the
// originals would race with that (a concurrent map access ends the
// process), so the stream keeps copies as they were at Close.
func (s *Stream) detach() {
	if d, ok := s.info.Lazy.(Detacher); ok {
		s.info.Lazy = d.Detach()
	}
	s.reqMap.resolvePath()
	if r := s.info.Request; r != nil {
		c := *r
		if r.URL != nil {
			u := *r.URL
			c.URL = &u
		}
		c.Header = r.Header.Clone()
		s.info.Request = &c
	}
	for _, m := range [...]*HeaderMap{s.req, s.reqTrailers, s.resp, s.respTrailers} {
		if m != nil {
			m.Header = m.Header.Clone()
		}
	}
}

const maxPendingDone = 1024

// finalizePending runs on_log and on_delete for streams whose plugin has
// called proxy_done; the caller holds in.mu.
func (in *instance) finalizePending() {
	if len(in.pending) == 0 {
		return
	}
	keep := in.pending[:0]
	for _, s := range in.pending {
		if !s.doneCalled {
			keep = append(keep, s)
			continue
		}
		in.effective = s
		if _, err := in.call(runtime.PhaseDone, in.fn.log, uint64(s.id)); err == nil {
			_, _ = in.call(runtime.PhaseDone, in.fn.delete, uint64(s.id))
		}
		in.effective = nil
		in.streams.remove(s)
		// Its owner closed it (only Close makes a stream pending).
		in.recycle(s)
	}
	in.pending = keep
}

// instanceFailed takes a failed instance out of service. When the caller
// holds the pool slot, Close (or Yield) discards it instead.
func (p *Plugin) instanceFailed(in *instance, holding bool) {
	if holding {
		return
	}
	if p.pool.Remove(in) {
		p.pool.Discard(in)
	}
}
