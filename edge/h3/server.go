package h3

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"

	"github.com/portico-edge/portico/edge/workpool"
)

// NextProto is the ALPN protocol of HTTP/3.
const NextProto = "h3"

// Config configures a Server. Zero fields take the defaults given.
type Config struct {
	// Handler serves every request. Required.
	Handler http.Handler
	// MaxFieldSectionSize bounds a request's header section, and its
	// trailer section, as decoded (names, values and 32 bytes per field,
	// RFC 9114 §4.2.2). It is announced in SETTINGS. A larger header
	// section gets 431 and the handler never runs; larger trailers reset
	// the stream. Default 64 KiB.
	MaxFieldSectionSize int
	// ReadHeaderTimeout bounds the wait for a request's HEADERS frame once
	// its stream is open; the stream is then reset with
	// H3_REQUEST_INCOMPLETE. Default 10 s; negative turns it off.
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included, from the
	// moment its stream was accepted. Zero or negative: no limit.
	ReadTimeout time.Duration
	// WriteTimeout bounds a response that has to wait for the client's
	// flow control, from the moment its stream was accepted. Zero or
	// negative: no limit.
	WriteTimeout time.Duration
	// IdleTimeout closes a connection that has had no request in flight
	// for this long, gracefully: GOAWAY, then H3_NO_ERROR. QUIC's own idle
	// timeout still applies to a silent peer. Zero or negative: never.
	IdleTimeout time.Duration
	// BaseContext, when set, is called once per connection; every request
	// on it sees the values of the context it returns (edge/listen puts
	// http.ServerContextKey there, as net/http does for HTTP/1.1 and
	// HTTP/2, which tells a handler that panicking with
	// http.ErrAbortHandler aborts the response). Only its values are
	// used: a request's context is the stream's (see requestContext).
	BaseContext func(*quic.Conn) context.Context
	// Workers is how many long-lived goroutines serve request streams
	// (default 256); see edge/workpool for why.
	Workers int
	// Logger receives handler panics (Error) and protocol errors of
	// clients (Debug). Nil means slog.Default().
	Logger *slog.Logger
}

// ErrServerClosed is returned by ServeListener and ServeConn after
// Shutdown or Close.
var ErrServerClosed = http.ErrServerClosed

// Server is an HTTP/3 server (RFC 9114) over quic-go connections.
type Server struct {
	cfg           Config
	log           *slog.Logger
	handler       http.Handler
	settings      []byte // the control stream's opening bytes
	continueFrame []byte
	names         *fieldNames
	decoder       *qpack.Decoder
	workers       *workpool.Pool
	dates         dateCache
	streams       sync.Pool // *stream

	mu       sync.Mutex
	conns    map[*conn]struct{}
	draining bool          // Shutdown started: no new requests
	closed   bool          // Close called (or Shutdown ran out of time)
	drain    chan struct{} // closed when Shutdown starts
	kill     chan struct{} // closed when Close starts
	connsWG  sync.WaitGroup
}

// New checks cfg and returns a server. Serve it with ServeListener or
// ServeConn.
func New(cfg Config) (*Server, error) {
	if cfg.Handler == nil {
		return nil, errors.New("h3: Config.Handler is nil: give the handler to serve")
	}
	if cfg.MaxFieldSectionSize == 0 {
		cfg.MaxFieldSectionSize = 64 << 10
	}
	if cfg.MaxFieldSectionSize < 1<<10 || cfg.MaxFieldSectionSize > 16<<20 {
		return nil, fmt.Errorf("h3: MaxFieldSectionSize %d is outside 1 KiB..16 MiB", cfg.MaxFieldSectionSize)
	}
	if cfg.ReadHeaderTimeout == 0 {
		cfg.ReadHeaderTimeout = 10 * time.Second
	}
	if cfg.Workers == 0 {
		cfg.Workers = 256
	}
	if cfg.Workers < 0 {
		return nil, fmt.Errorf("h3: Workers %d is negative: give 0 for the default (256)", cfg.Workers)
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	s := &Server{
		cfg:     cfg,
		log:     cfg.Logger,
		handler: cfg.Handler,
		names:   newFieldNames(),
		decoder: qpack.NewDecoder(),
		conns:   make(map[*conn]struct{}),
		drain:   make(chan struct{}),
		kill:    make(chan struct{}),
	}
	s.settings = controlStreamPreface(uint64(cfg.MaxFieldSectionSize))
	s.continueFrame = continueFrame()
	s.workers = workpool.New(cfg.Workers, workpool.DefaultIdle)
	return s, nil
}

// controlStreamPreface is what the server's control stream opens with: its
// type and SETTINGS. The QPACK dynamic table keeps its default capacity of
// zero (so no encoder instruction of the client's can be valid, and no
// request stream can ever block); one reserved setting is sent so that
// clients keep ignoring unknown ones (RFC 9114 §7.2.4.1).
func controlStreamPreface(maxFieldSection uint64) []byte {
	var p []byte
	p = quicvarint.Append(p, settingMaxFieldSectionSize)
	p = quicvarint.Append(p, maxFieldSection)
	p = quicvarint.Append(p, 0x1f*7+0x21) // reserved ("GREASE") setting
	p = quicvarint.Append(p, 0)
	b := quicvarint.Append(nil, streamControl)
	b = appendFrameHeader(b, frameSettings, uint64(len(p)))
	return append(b, p...)
}

// ConfigureTLSConfig returns a copy of tc for a QUIC listener serving
// HTTP/3: ALPN h3 only. Session ticket keys are set up before the copy
// (golang/go#60506), so that every connection's copy shares them and
// resumption, and with it 0-RTT, works.
func ConfigureTLSConfig(tc *tls.Config) *tls.Config {
	_, _ = tc.DecryptTicket(nil, tls.ConnectionState{})
	c := tc.Clone()
	c.NextProtos = []string{NextProto}
	return c
}

// QUICConfig returns a quic.Config for this server's listeners:
// RequireStreamCreditRelease, so that the client may open a new request
// stream only when a handler has returned (a client that resets its
// streams cannot pile up running handlers), and MaxIncomingStreams as the
// cap on concurrent requests per connection.
func QUICConfig(base *quic.Config, maxConcurrentRequests int64) *quic.Config {
	c := base.Clone()
	c.RequireStreamCreditRelease = true
	c.MaxIncomingStreams = maxConcurrentRequests
	return c
}

// ServeListener serves the connections ln accepts until ln fails or is
// closed, or the server is shut down; then it returns ErrServerClosed
// (after Shutdown or Close) or ln's error. Closing ln is the caller's
// business.
func (s *Server) ServeListener(ln *quic.EarlyListener) error {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go func() {
		select {
		case <-s.drain:
		case <-s.kill:
		case <-ctx.Done():
		}
		cancel()
	}()
	for {
		qc, err := ln.Accept(ctx)
		if err != nil {
			if s.isDraining() || errors.Is(err, quic.ErrServerClosed) {
				return ErrServerClosed
			}
			return err
		}
		go func() { _ = s.ServeConn(qc) }()
	}
}

func (s *Server) isDraining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining || s.closed
}

// ServeConn serves one QUIC connection (its handshake may still be going
// on: requests in 0-RTT are served, see EarlyData) until it ends, and
// returns when the connection is closed and, after a graceful close,
// every request on it was answered.
func (s *Server) ServeConn(qc *quic.Conn) error {
	c := s.newConn(qc)
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		_ = qc.CloseWithError(appCode(ErrNoError), "server closed")
		return ErrServerClosed
	}
	s.conns[c] = struct{}{}
	s.connsWG.Add(1)
	draining := s.draining
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, c)
		s.mu.Unlock()
		s.connsWG.Done()
	}()
	if draining {
		c.goAway()
	}
	return c.serve()
}

// Shutdown stops the server gracefully: every connection gets GOAWAY, new
// requests are refused (H3_REQUEST_REJECTED, which clients retry
// elsewhere), requests in flight run to their end, and each connection is
// closed (H3_NO_ERROR) once it has none. If ctx ends first, the remaining
// connections are closed at once and ctx's error is returned. Closing the
// listeners is the caller's business; ServeListener returns.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if !s.draining {
		s.draining = true
		close(s.drain)
	}
	for c := range s.conns {
		c.goAway()
	}
	s.mu.Unlock()
	done := make(chan struct{})
	go func() { s.connsWG.Wait(); close(done) }()
	select {
	case <-done:
		s.workers.Stop()
		return nil
	case <-ctx.Done():
		_ = s.Close()
		return ctx.Err()
	}
}

// Close closes every connection at once (H3_NO_ERROR); running handlers
// see their request's context cancelled. It does not wait for them.
func (s *Server) Close() error {
	s.mu.Lock()
	if !s.closed {
		s.closed = true
		close(s.kill)
		if !s.draining {
			s.draining = true
			close(s.drain)
		}
	}
	for c := range s.conns {
		_ = c.qc.CloseWithError(appCode(ErrNoError), "server closed")
	}
	s.mu.Unlock()
	s.connsWG.Wait()
	s.workers.Stop()
	return nil
}

// conn is one HTTP/3 connection.
type conn struct {
	srv        *Server
	qc         *quic.Conn
	remoteAddr string
	localAddr  net.Addr
	base       context.Context                     // Config.BaseContext's, or nil
	tlsState   atomic.Pointer[tls.ConnectionState] // once the handshake is complete

	ctrl      *quic.SendStream // our control stream, once ctrlReady is closed (nil if it could not be opened)
	ctrlReady chan struct{}

	// the client's critical streams, each allowed once
	peerControl, peerEncoder, peerDecoder atomic.Bool

	acceptCtx    context.Context // cancelled at GOAWAY: stop accepting
	stopAccept   context.CancelFunc
	goingAway    atomic.Bool
	nextStreamID atomic.Int64 // first request stream not accepted yet
	requests     sync.WaitGroup
	inFlight     atomic.Int64
	idleSince    atomic.Int64 // unix nanoseconds; 0 while requests run
	idleTimer    *time.Timer
}

func (s *Server) newConn(qc *quic.Conn) *conn {
	c := &conn{srv: s, qc: qc, remoteAddr: qc.RemoteAddr().String(), localAddr: qc.LocalAddr()}
	if s.cfg.BaseContext != nil {
		c.base = s.cfg.BaseContext(qc)
	}
	c.acceptCtx, c.stopAccept = context.WithCancel(qc.Context())
	return c
}

// tls is the connection's TLS state for r.TLS: shared by every request
// once the handshake is complete; a fresh copy (HandshakeComplete false)
// for each request served in 0-RTT before that.
func (c *conn) tls() *tls.ConnectionState {
	if st := c.tlsState.Load(); st != nil {
		return st
	}
	st := c.qc.ConnectionState().TLS
	if st.HandshakeComplete {
		c.tlsState.Store(&st)
	}
	return &st
}

// close closes the connection with a connection error.
func (c *conn) close(err *connError) {
	c.srv.log.Debug("h3: closing connection", "client", c.remoteAddr, "code", err.code.String(), "reason", err.reason)
	_ = c.qc.CloseWithError(appCode(err.code), err.reason)
}

func (c *conn) serve() error {
	defer c.stopAccept()
	// The idle timer starts first: nothing below waits on the client.
	if d := c.srv.cfg.IdleTimeout; d > 0 {
		c.idleSince.Store(time.Now().UnixNano())
		c.idleTimer = time.AfterFunc(d, c.checkIdle)
		defer c.idleTimer.Stop()
	}
	c.ctrlReady = make(chan struct{})
	go c.openControl()
	go c.acceptUniStreams()

	for {
		qs, err := c.qc.AcceptStream(c.acceptCtx)
		if err != nil {
			if c.qc.Context().Err() != nil {
				break // the connection is gone
			}
			// GOAWAY was sent: refuse what still comes until the
			// requests in flight are done and the connection closes.
			go c.closeWhenDone()
			c.rejectStreams()
			break
		}
		c.nextStreamID.Store(int64(qs.StreamID()) + 4)
		if c.inFlight.Add(1) == 1 {
			c.idleSince.Store(0)
		}
		c.requests.Add(1)
		c.srv.workers.Go(c.srv.newStream(c, qs))
	}
	// Wait for the handlers still running (their requests' contexts are
	// cancelled if the connection is gone), but not past Close.
	done := make(chan struct{})
	go func() { c.requests.Wait(); close(done) }()
	select {
	case <-done:
	case <-c.srv.kill:
	}
	return nil
}

// requestDone is called when a request's stream is finished with.
func (c *conn) requestDone() {
	if c.inFlight.Add(-1) == 0 && c.idleTimer != nil {
		c.idleSince.Store(time.Now().UnixNano())
	}
	c.requests.Done()
}

// checkIdle runs from the idle timer: when no request ran for
// IdleTimeout it starts the graceful close (GOAWAY, RFC 9114 §5.1: later
// streams refused, the connection closed with H3_NO_ERROR once nothing is
// in flight), and otherwise looks again when that could next be true.
// Requests touch only two atomics, never the timer; the two are not
// updated together, so idleSince may be stale while a request runs, and
// inFlight is what decides.
func (c *conn) checkIdle() {
	if c.qc.Context().Err() != nil || c.goingAway.Load() {
		return // closed or closing already: the timer is not needed any more
	}
	d := c.srv.cfg.IdleTimeout
	since := c.idleSince.Load()
	if since == 0 || c.inFlight.Load() > 0 {
		c.idleTimer.Reset(d)
		return
	}
	if idle := time.Since(time.Unix(0, since)); idle < d {
		c.idleTimer.Reset(d - idle)
		return
	}
	c.srv.log.Debug("h3: connection idle; sending GOAWAY", "client", c.remoteAddr, "idleTimeout", d)
	c.goAway()
}

// goAway starts the graceful close: GOAWAY names the first request stream
// that will not be served, and the accept loop stops.
func (c *conn) goAway() {
	if c.goingAway.Swap(true) {
		return
	}
	c.stopAccept()
}

// rejectStreams sends GOAWAY and resets every request stream that arrives
// afterwards with H3_REQUEST_REJECTED, until the connection closes.
func (c *conn) rejectStreams() {
	id := uint64(c.nextStreamID.Load())
	b := appendFrameHeader(nil, frameGoAway, uint64(quicvarint.Len(id)))
	b = quicvarint.Append(b, id)
	// GOAWAY follows SETTINGS on the control stream, and a Write that
	// waits for the client's flow control must not hold up the refusals
	// below; it returns when the connection closes.
	go func() {
		<-c.ctrlReady
		if c.ctrl != nil {
			_, _ = c.ctrl.Write(b)
		}
	}()
	for {
		qs, err := c.qc.AcceptStream(context.Background())
		if err != nil {
			return
		}
		qs.CancelRead(strCode(ErrRequestRejected))
		qs.CancelWrite(strCode(ErrRequestRejected))
		qs.ReleaseStreamCredit()
	}
}

// openControl opens the server's control stream and sends SETTINGS
// (RFC 9114 §6.2.1), apart from the accept loop: requests are served
// meanwhile, and a client that lets the server open no unidirectional
// stream, or grants its control stream no flow control, cannot hold the
// connection outside IdleTimeout. It gets ReadHeaderTimeout (10 s when
// that is off) for both, then H3_GENERAL_PROTOCOL_ERROR: an HTTP/3 server
// must send SETTINGS. A client that stops reading the control stream
// (STOP_SENDING) closes a critical stream: H3_CLOSED_CRITICAL_STREAM.
func (c *conn) openControl() {
	defer close(c.ctrlReady)
	d := c.srv.cfg.ReadHeaderTimeout
	if d <= 0 {
		d = 10 * time.Second
	}
	ctx, cancel := context.WithTimeout(c.qc.Context(), d)
	defer cancel()
	ctrl, err := c.qc.OpenUniStreamSync(ctx)
	if err == nil {
		if err = ctrl.TryWriteAll(c.srv.settings); err == quic.ErrWouldBlock {
			_ = ctrl.SetWriteDeadline(time.Now().Add(d))
			_, err = ctrl.Write(c.srv.settings)
			_ = ctrl.SetWriteDeadline(time.Time{})
		}
	}
	if err != nil {
		if c.qc.Context().Err() == nil {
			c.close(&connError{code: ErrGeneralProtocolError, reason: fmt.Sprintf("the server could not open its control stream and send SETTINGS within %v (the client allows no unidirectional stream, or no flow control for it): %v", d, err)})
		}
		return
	}
	c.ctrl = ctrl
	context.AfterFunc(ctrl.Context(), func() {
		var se *quic.StreamError
		if errors.As(context.Cause(ctrl.Context()), &se) && se.Remote && c.qc.Context().Err() == nil {
			c.close(&connError{code: ErrClosedCriticalStream, reason: "the client stopped reading the server's control stream (STOP_SENDING)"})
		}
	})
}

// closeWhenDone closes the connection once its last request is answered
// and the answer had time to arrive. A client that got GOAWAY closes the
// connection itself when it has its answers, which ends the wait early;
// CONNECTION_CLOSE sent while the last answer is still in flight would
// lose it.
func (c *conn) closeWhenDone() {
	c.requests.Wait()
	t := time.NewTimer(closeGrace(c.qc.ConnectionStats()))
	defer t.Stop()
	select {
	case <-t.C:
	case <-c.qc.Context().Done():
	case <-c.srv.kill:
	}
	_ = c.qc.CloseWithError(appCode(ErrNoError), "")
}

// closeGrace is how long a drained connection stays open after its last
// response: three probe timeouts' worth of round trips (enough for a lost
// packet to be sent again), at least 50 ms and at most 2 s.
func closeGrace(st quic.ConnectionStats) time.Duration {
	return min(max(3*(st.SmoothedRTT+4*st.MeanDeviation), 50*time.Millisecond), 2*time.Second)
}
