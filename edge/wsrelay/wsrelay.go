// Package wsrelay relays a WebSocket upgrade from a client to an upstream
// (the edge toward the origin, the origin toward the backend) and then relays
// its frames both ways, enforcing an idle timeout, a message size limit and
// RFC 6455's framing rules without ever buffering more than a fixed amount.
//
// A refused upgrade (anything but a valid 101) is answered as an ordinary
// HTTP response and the client connection stays HTTP: its next request is
// parsed and authorised like any other. Only after the upstream has accepted
// the upgrade is the client connection hijacked.
//
// README.md in this directory is the manual: behaviour, limits, close codes
// and the decisions behind them.
package wsrelay

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"sync/atomic"
	"time"

	"github.com/portico-edge/portico/plugins"
)

// Limits bound one relayed WebSocket. The zero value of a field means its
// default; a negative value is an error.
type Limits struct {
	// HandshakeTimeout bounds dialling the upstream, sending the upgrade and
	// reading its answer (a refusal's body included). Default 10s.
	HandshakeTimeout time.Duration
	// IdleTimeout closes the WebSocket with 1001 both ways when no frame has
	// moved in either direction for this long. Default 5m.
	IdleTimeout time.Duration
	// WriteTimeout bounds one write to either peer: a peer that does not read
	// for this long while the relay has data for it loses the connection.
	// Default 30s.
	WriteTimeout time.Duration
	// CloseTimeout is how long the relay waits for the peers' replies once a
	// close frame has been sent, before it closes the TCP connections.
	// Default 5s.
	CloseTimeout time.Duration
	// MaxMessageBytes is the largest message (payload bytes summed over its
	// fragments); a larger one closes the WebSocket with 1009 both ways.
	// A message of exactly MaxMessageBytes passes. Default 1 MiB.
	MaxMessageBytes int64
}

// Defaults used for zero Limits fields.
const (
	DefaultHandshakeTimeout = 10 * time.Second
	DefaultIdleTimeout      = 5 * time.Minute
	DefaultWriteTimeout     = 30 * time.Second
	DefaultCloseTimeout     = 5 * time.Second
	DefaultMaxMessageBytes  = 1 << 20
)

// Validate reports a negative limit. Call it when loading configuration.
func (l Limits) Validate() error {
	for _, f := range []struct {
		name string
		v    int64
	}{
		{"HandshakeTimeout", int64(l.HandshakeTimeout)},
		{"IdleTimeout", int64(l.IdleTimeout)},
		{"WriteTimeout", int64(l.WriteTimeout)},
		{"CloseTimeout", int64(l.CloseTimeout)},
		{"MaxMessageBytes", l.MaxMessageBytes},
	} {
		if f.v < 0 {
			return fmt.Errorf("wsrelay: %s is negative (%d); use 0 for the default or a positive value", f.name, f.v)
		}
	}
	return nil
}

func (l Limits) withDefaults() Limits {
	if l.HandshakeTimeout == 0 {
		l.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if l.IdleTimeout == 0 {
		l.IdleTimeout = DefaultIdleTimeout
	}
	if l.WriteTimeout == 0 {
		l.WriteTimeout = DefaultWriteTimeout
	}
	if l.CloseTimeout == 0 {
		l.CloseTimeout = DefaultCloseTimeout
	}
	if l.MaxMessageBytes == 0 {
		l.MaxMessageBytes = DefaultMaxMessageBytes
	}
	return l
}

// Upstream is where one upgrade is relayed to.
type Upstream struct {
	// Dial opens a TCP or TLS connection to the upstream: the origin's data
	// plane from the edge, the backend from the origin. ctx carries the
	// handshake deadline.
	Dial func(ctx context.Context) (net.Conn, error)
	// Request is the outbound request, already sanitised and extended by the
	// caller (request ID, forwarded headers, identity headers). The relay uses
	// its URL's path and query, its Host (or URL.Host) and its headers, minus
	// hop-by-hop fields; it sets the WebSocket handshake fields itself
	// (Upgrade, Connection, Sec-WebSocket-Key/Version/Protocol) from the
	// client's handshake and never offers Sec-WebSocket-Extensions.
	Request *http.Request
}

// Metrics counts what relays did. All fields are safe to read at any time.
// Byte counts are added when a relay ends.
type Metrics struct {
	Relayed          atomic.Int64 // upgrades accepted by the upstream and relayed
	Active           atomic.Int64 // relays in progress
	BadHandshakes    atomic.Int64 // client handshakes answered 400 or 426
	Refused          atomic.Int64 // upstream answers other than 101, relayed to the client
	UpstreamFailures atomic.Int64 // dial errors, timeouts and invalid 101s (502, 503, 504)
	IdleTimeouts     atomic.Int64 // relays closed with 1001 for inactivity
	TooBig           atomic.Int64 // relays closed with 1009
	ProtocolErrors   atomic.Int64 // relays closed with 1002 or 1007
	Drained          atomic.Int64 // relays closed with 1001 because ctx ended
	Abnormal         atomic.Int64 // relays ended by a peer dropping its connection
	BytesToUpstream  atomic.Int64 // frame bytes written to the upstream
	BytesToClient    atomic.Int64 // frame bytes written to the client
}

// Errors Serve returns, to be tested with errors.Is. Whatever the error, Serve
// has already answered the client: the caller must not write to w.
var (
	ErrBadHandshake    = errors.New("wsrelay: invalid WebSocket handshake from the client")
	ErrRefused         = errors.New("wsrelay: the upstream refused the upgrade")
	ErrUpstream        = errors.New("wsrelay: the upstream handshake failed")
	ErrIdleTimeout     = errors.New("wsrelay: closed after the idle timeout")
	ErrMessageTooBig   = errors.New("wsrelay: closed for a message over the size limit")
	ErrProtocol        = errors.New("wsrelay: closed for a WebSocket protocol violation")
	ErrDrained         = errors.New("wsrelay: closed because the relay's context ended")
	ErrAbnormalClosure = errors.New("wsrelay: a peer dropped its connection without a close handshake")
)

// Relay serves upgrades with fixed limits and optional metrics.
type Relay struct {
	Limits  Limits
	Metrics *Metrics // optional
}

// Serve relays one upgrade with lim and no metrics; see Relay.Serve.
func Serve(ctx context.Context, w http.ResponseWriter, r *http.Request, up Upstream, lim Limits) error {
	return (&Relay{Limits: lim}).Serve(ctx, w, r, up)
}

// Serve validates the client's handshake in r, sends the upgrade to the
// upstream and, when the upstream accepts it with a valid 101, hijacks the
// client connection and relays frames until the WebSocket closes. It returns
// nil after a close handshake started by a peer, and otherwise an error that
// says how the relay ended (see the Err variables).
//
// When ctx ends, Serve sends close 1001 to both peers, waits up to
// Limits.CloseTimeout for their replies and returns: this is the graceful
// drain, since http.Server.Shutdown does not track hijacked connections.
func (rl *Relay) Serve(ctx context.Context, w http.ResponseWriter, r *http.Request, up Upstream) error {
	m := rl.Metrics
	if m == nil {
		m = new(Metrics)
	}
	if err := rl.Limits.Validate(); err != nil {
		plugins.WriteError(w, http.StatusInternalServerError, "the WebSocket relay is misconfigured")
		return err
	}
	lim := rl.Limits.withDefaults()
	if status, msg := checkClientHandshake(r); status != 0 {
		m.BadHandshakes.Add(1)
		if status == http.StatusUpgradeRequired {
			w.Header().Set("Sec-WebSocket-Version", "13")
		}
		plugins.WriteError(w, status, msg)
		return fmt.Errorf("%w: %s", ErrBadHandshake, msg)
	}
	if up.Dial == nil || up.Request == nil {
		plugins.WriteError(w, http.StatusInternalServerError, "the WebSocket relay is misconfigured")
		return errors.New("wsrelay: Upstream.Dial and Upstream.Request must both be set")
	}
	key := r.Header.Get("Sec-WebSocket-Key")
	offered, _ := subprotocols(r.Header)
	reqBytes, err := upstreamRequest(up.Request, key, offered)
	if err != nil {
		plugins.WriteError(w, http.StatusInternalServerError, "the gateway could not build the upstream request")
		return fmt.Errorf("wsrelay: %w", err)
	}

	hctx, cancel := context.WithTimeout(ctx, lim.HandshakeTimeout)
	defer cancel()
	uc, err := up.Dial(hctx)
	if err != nil {
		return upstreamFailed(ctx, w, m, fmt.Errorf("dialling the upstream: %w", err))
	}
	// Ending ctx or the handshake timeout unblocks the handshake's reads and
	// writes at once.
	unwatch := context.AfterFunc(hctx, func() { _ = uc.SetDeadline(time.Unix(1, 0)) })
	deadline, _ := hctx.Deadline()
	_ = uc.SetDeadline(deadline)
	fail := func(err error) error {
		unwatch()
		_ = uc.Close()
		return upstreamFailed(ctx, w, m, err)
	}

	if _, err := uc.Write(reqBytes); err != nil {
		return fail(fmt.Errorf("sending the upgrade request: %w", err))
	}
	cr := &cappedReader{r: uc}
	ubr := bufio.NewReaderSize(cr, readBufferSize)
	resp, err := readResponse(ubr, cr)
	if err != nil {
		return fail(fmt.Errorf("reading the upstream's handshake response: %w", err))
	}
	if resp.StatusCode != http.StatusSwitchingProtocols {
		if resp.StatusCode < 200 {
			return fail(fmt.Errorf("the upstream answered the upgrade with %d", resp.StatusCode))
		}
		// Relaying the refusal reads its body, still under the handshake deadline.
		if err := relayRefusal(w, resp); err != nil {
			return fail(err)
		}
		unwatch()
		_ = uc.Close()
		m.Refused.Add(1)
		return fmt.Errorf("%w with status %d", ErrRefused, resp.StatusCode)
	}
	protocol, err := check101(resp, key, offered)
	if err != nil {
		return fail(err)
	}
	head, err := switchingProtocols(key, protocol, w.Header(), resp.Header)
	if err != nil {
		unwatch()
		_ = uc.Close()
		plugins.WriteError(w, http.StatusInternalServerError, "the gateway could not answer the WebSocket handshake")
		return fmt.Errorf("wsrelay: %w", err)
	}
	if !unwatch() {
		// ctx or the handshake timeout ended just now and poisoned uc's deadline.
		_ = uc.Close()
		return upstreamFailed(ctx, w, m, fmt.Errorf("handshake with the upstream: %w", context.Cause(hctx)))
	}
	_ = uc.SetDeadline(time.Time{})

	cc, brw, err := http.NewResponseController(w).Hijack()
	if err != nil {
		_ = uc.Close()
		plugins.WriteError(w, http.StatusInternalServerError, "this connection cannot carry a WebSocket; use HTTP/1.1")
		return fmt.Errorf("wsrelay: taking over the client connection: %w", err)
	}
	// net/http's read and write deadlines must not outlive the request that
	// set them: the relay manages its own from here.
	_ = cc.SetDeadline(time.Time{})
	_ = cc.SetWriteDeadline(time.Now().Add(lim.WriteTimeout))
	if _, err := cc.Write(head); err != nil {
		_ = cc.Close()
		_ = uc.Close()
		m.Abnormal.Add(1)
		return fmt.Errorf("%w: writing the 101 to the client: %v", ErrAbnormalClosure, err)
	}

	m.Relayed.Add(1)
	m.Active.Add(1)
	defer m.Active.Add(-1)
	s := newSession(lim, cc, brw.Reader, uc, ubr)
	err = s.run(ctx)
	m.BytesToClient.Add(s.client.written)
	m.BytesToUpstream.Add(s.upstream.written)
	switch {
	case errors.Is(err, ErrIdleTimeout):
		m.IdleTimeouts.Add(1)
	case errors.Is(err, ErrMessageTooBig):
		m.TooBig.Add(1)
	case errors.Is(err, ErrProtocol):
		m.ProtocolErrors.Add(1)
	case errors.Is(err, ErrDrained):
		m.Drained.Add(1)
	case errors.Is(err, ErrAbnormalClosure):
		m.Abnormal.Add(1)
	}
	return err
}

// upstreamFailed answers the client when the upstream handshake did not
// produce an answer worth relaying.
func upstreamFailed(ctx context.Context, w http.ResponseWriter, m *Metrics, err error) error {
	m.UpstreamFailures.Add(1)
	var ne net.Error
	switch {
	case ctx.Err() != nil:
		plugins.WriteError(w, http.StatusServiceUnavailable, "the gateway is shutting down")
	case errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()):
		plugins.WriteError(w, http.StatusGatewayTimeout, "the upstream did not complete the WebSocket handshake in time")
	default:
		plugins.WriteError(w, http.StatusBadGateway, "the upstream did not accept the WebSocket connection")
	}
	return fmt.Errorf("%w: %w", ErrUpstream, err)
}
