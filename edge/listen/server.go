package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"syscall"

	"github.com/quic-go/quic-go"

	"github.com/portico-edge/portico/edge/h2"
	"github.com/portico-edge/portico/edge/h3"
)

// Server serves one handler on the configured listeners. Create it with
// New, then call Serve (or Listen first, to learn the bound addresses).
type Server struct {
	cfg     Config
	log     *slog.Logger
	handler http.Handler // the pipeline with HSTS and Alt-Svc, for TCP TLS
	h3h     http.Handler // the pipeline with HSTS and the early-data guard
	plain   http.Handler
	alt     *altSvc

	tlsConf *tls.Config
	alpnEnd []string // protocols answered during the handshake alone

	h1     *http.Server // HTTP/1.1 over TLS; also h2's http.ServerContextKey
	h2     *h2.Server
	h3     *h3.Server
	plain1 *http.Server

	mu        sync.Mutex
	listening bool
	serving   bool
	closing   bool
	tcpTLS    *limitListener
	tcpPlain  *limitListener
	udp       *net.UDPConn
	quicTr    *quic.Transport
	quicLn    *quic.EarlyListener
	h1ln      *connQueue
	serveErrs chan error
	stopped   chan struct{}
	stopOnce  sync.Once

	// counters for tests and metrics
	h2Killed atomic.Int64
}

// New checks cfg (after Defaults) and builds a server for handler h.
func New(cfg Config, h http.Handler) (*Server, error) {
	cfg = cfg.Defaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if h == nil {
		return nil, errors.New("listen: handler is nil: pass the pipeline to serve")
	}
	s := &Server{
		cfg:       cfg,
		log:       cfg.Logger,
		serveErrs: make(chan error, 4),
		stopped:   make(chan struct{}),
	}
	s.alt = &altSvc{next: h}
	s.handler = HSTS(s.alt, cfg.HSTS)
	s.h3h = HSTS(earlyDataGuard(h, cfg.AcceptEarlyData), cfg.HSTS)
	s.plain = cfg.PlainHandler
	if s.plain == nil {
		s.plain = h
	}
	errLog := slog.NewLogLogger(s.log.Handler(), slog.LevelDebug)
	http1Only := new(http.Protocols)
	http1Only.SetHTTP1(true)
	if cfg.TLSAddr != "" {
		s.tlsConf = ServerTLSConfig(cfg.Certificates)
		if a, ok := cfg.Certificates.(ALPNSource); ok {
			s.alpnEnd = a.ALPNProtocols()
		}
		h1handler := s.handler
		if cfg.HTTP1Conn != nil {
			h1handler = restoreTLS(s.handler)
		}
		s.h1 = &http.Server{
			Handler:     h1handler,
			ConnContext: tlsConnContext(cfg.ConnContext, cfg.HTTP1Conn != nil),
			// A gateway routes every request, OPTIONS * included; Go's
			// built-in answer would bypass the pipeline.
			DisableGeneralOptionsHandler: true,
			ReadHeaderTimeout:            timeout(cfg.ReadHeaderTimeout),
			ReadTimeout:                  timeout(cfg.ReadTimeout),
			WriteTimeout:                 timeout(cfg.WriteTimeout),
			IdleTimeout:                  timeout(cfg.IdleTimeout),
			MaxHeaderBytes:               cfg.MaxHeaderBytes,
			ErrorLog:                     errLog,
			Protocols:                    http1Only,
		}
		s.h2 = h2.NewServer(s.h2Config(), s.handler)
		s.h1.TLSNextProto = map[string]func(*http.Server, *tls.Conn, http.Handler){}
		if !cfg.DisableHTTP3 {
			h3base := context.WithValue(context.Background(), http.ServerContextKey, s.h1)
			h3s, err := h3.New(h3.Config{
				Handler:             s.h3h,
				MaxFieldSectionSize: cfg.MaxHeaderBytes,
				ReadHeaderTimeout:   timeout(cfg.ReadHeaderTimeout),
				ReadTimeout:         timeout(cfg.ReadTimeout),
				WriteTimeout:        timeout(cfg.WriteTimeout),
				IdleTimeout:         timeout(cfg.IdleTimeout),
				Logger:              s.log,
				Workers:             handlerWorkers,
				// HTTP/3 requests carry the same http.ServerContextKey as
				// HTTP/1.1 and HTTP/2 ones: edge/forward aborts a response
				// whose upstream body was cut short (panic
				// http.ErrAbortHandler) only under a server that says so.
				BaseContext: func(*quic.Conn) context.Context { return h3base },
			})
			if err != nil {
				return nil, fmt.Errorf("listen: configuring HTTP/3: %w", err)
			}
			s.h3 = h3s
		}
	}
	if cfg.HTTPAddr != "" {
		s.plain1 = &http.Server{
			Handler:                      s.plain,
			ConnContext:                  cfg.ConnContext,
			DisableGeneralOptionsHandler: true,
			ReadHeaderTimeout:            timeout(cfg.ReadHeaderTimeout),
			ReadTimeout:                  timeout(cfg.ReadTimeout),
			WriteTimeout:                 timeout(cfg.WriteTimeout),
			IdleTimeout:                  timeout(cfg.IdleTimeout),
			MaxHeaderBytes:               cfg.MaxHeaderBytes,
			ErrorLog:                     errLog,
			Protocols:                    http1Only, // no h2c: Upgrade: h2c is not honoured
		}
	}
	return s, nil
}

// Listen binds the sockets without serving yet, so that a caller can learn
// the ports (TLSAddr, HTTPAddr) before Serve. Serve calls it if needed.
func (s *Server) Listen() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.listening {
		return nil
	}
	if s.closing {
		return http.ErrServerClosed
	}
	var lc net.ListenConfig
	if s.cfg.TLSAddr != "" {
		tcp, udp, err := listenTCPAndUDP(s.cfg.TLSAddr, !s.cfg.DisableHTTP3)
		if err != nil {
			return err
		}
		s.tcpTLS = newLimitListener(tcp, s.cfg.MaxConns, s.cfg.MaxConnsPerIP, s.log)
		s.udp = udp
	}
	if s.cfg.HTTPAddr != "" {
		ln, err := lc.Listen(context.Background(), "tcp", s.cfg.HTTPAddr)
		if err != nil {
			s.closeListenersLocked()
			return fmt.Errorf("listen: plain HTTP on %s: %w (is another server using the port?)", s.cfg.HTTPAddr, err)
		}
		s.tcpPlain = newLimitListener(ln, s.cfg.MaxConns, s.cfg.MaxConnsPerIP, s.log)
	}
	s.listening = true
	return nil
}

// listenTCPAndUDP binds TCP and, if withUDP, UDP on the same port. With port
// 0 the kernel picks the TCP port and the UDP socket follows it; if that UDP
// port is taken, it tries again with a new TCP port.
func listenTCPAndUDP(addr string, withUDP bool) (net.Listener, *net.UDPConn, error) {
	host, port, _ := net.SplitHostPort(addr)
	var lastErr error
	for range 10 {
		tcp, err := net.Listen("tcp", addr)
		if err != nil {
			return nil, nil, fmt.Errorf("listen: TLS on %s: %w (is another server using the port?)", addr, err)
		}
		if !withUDP {
			return tcp, nil, nil
		}
		p := tcp.Addr().(*net.TCPAddr).Port
		ua, err := net.ResolveUDPAddr("udp", net.JoinHostPort(host, strconv.Itoa(p)))
		if err != nil {
			tcp.Close()
			return nil, nil, fmt.Errorf("listen: HTTP/3 address %s: %w", addr, err)
		}
		udp, err := net.ListenUDP("udp", ua)
		if err == nil {
			return tcp, udp, nil
		}
		tcp.Close()
		lastErr = err
		if port != "0" || !errors.Is(err, syscall.EADDRINUSE) {
			break
		}
	}
	return nil, nil, fmt.Errorf("listen: HTTP/3 (UDP) on %s: %w (free the UDP port or set DisableHTTP3)", addr, lastErr)
}

// TLSAddr is the bound HTTPS address (TCP; HTTP/3 uses the same port over
// UDP), or nil before Listen or without a TLS listener.
func (s *Server) TLSAddr() *net.TCPAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpTLS == nil {
		return nil
	}
	return s.tcpTLS.Addr().(*net.TCPAddr)
}

// HTTPAddr is the bound plain-HTTP address, or nil.
func (s *Server) HTTPAddr() *net.TCPAddr {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.tcpPlain == nil {
		return nil
	}
	return s.tcpPlain.Addr().(*net.TCPAddr)
}

// HTTP3Up reports whether the QUIC listener is serving (and so whether
// Alt-Svc is being sent).
func (s *Server) HTTP3Up() bool { return s.alt.value.Load() != nil }

// Serve serves until ctx is done (then it shuts down gracefully within
// DrainTimeout) or Shutdown is called, and returns nil after a clean stop.
// A listener failing while serving stops the server and is returned.
func (s *Server) Serve(ctx context.Context) error {
	if err := s.Listen(); err != nil {
		return err
	}
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		return http.ErrServerClosed
	}
	if s.serving {
		s.mu.Unlock()
		return errors.New("listen: Serve called twice on one Server")
	}
	s.serving = true
	var n int
	if s.tcpTLS != nil {
		// HTTP/3 first, so that the very first TCP responses already
		// advertise it.
		if s.udp != nil {
			if err := s.startHTTP3(); err != nil {
				s.mu.Unlock()
				_ = s.Shutdown(context.Background())
				return err
			}
			n++
		}
		s.h1ln = newConnQueue(s.tcpTLS.Addr())
		n += 2
		go func() { s.serveErrs <- ignoreClosed(s.h1.Serve(s.h1ln)) }()
		go func() { s.serveErrs <- s.acceptTLS(s.tcpTLS) }()
	}
	if s.tcpPlain != nil {
		n++
		var ln net.Listener = s.tcpPlain
		if s.cfg.HTTP1Conn != nil {
			ln = &wrapListener{Listener: ln, wrap: s.cfg.HTTP1Conn}
		}
		go func() { s.serveErrs <- ignoreClosed(s.plain1.Serve(ln)) }()
	}
	s.mu.Unlock()

	var first error
	done := ctx.Done()
	for n > 0 {
		select {
		case err := <-s.serveErrs:
			n--
			if err != nil && first == nil {
				first = err
				s.log.Error("listener failed; shutting the server down", "error", err)
				go s.shutdownWithDrain()
			}
		case <-done:
			done = nil // keep collecting the listeners' ends
			go s.shutdownWithDrain()
		}
	}
	<-s.stopped
	return first
}

func (s *Server) shutdownWithDrain() {
	ctx, cancel := context.WithTimeout(context.Background(), s.cfg.DrainTimeout)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		s.log.Warn("shutdown did not drain in time; remaining connections were cut", "drainTimeout", s.cfg.DrainTimeout, "error", err)
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) || errors.Is(err, net.ErrClosed) || errors.Is(err, quic.ErrServerClosed) {
		return nil
	}
	return err
}

func (s *Server) startHTTP3() error {
	s.quicTr = &quic.Transport{Conn: s.udp}
	// MaxConcurrentStreams caps the requests running per connection:
	// edge/h3 gives a stream's credit back only when its handler returned.
	qconf := h3.QUICConfig(&quic.Config{
		Allow0RTT:            s.cfg.Allow0RTT,
		HandshakeIdleTimeout: timeout(s.cfg.HandshakeTimeout),
		MaxIdleTimeout:       timeout(s.cfg.IdleTimeout),
	}, int64(s.cfg.HTTP2.MaxConcurrentStreams))
	ln, err := s.quicTr.ListenEarly(h3.ConfigureTLSConfig(quicTLSConfig(s.cfg.Certificates)), qconf)
	if err != nil {
		return fmt.Errorf("listen: HTTP/3 on %s: %w (set DisableHTTP3 to serve without it)", s.udp.LocalAddr(), err)
	}
	s.quicLn = ln
	s.alt.up(s.udp.LocalAddr().(*net.UDPAddr).Port, s.cfg.AltSvcMaxAge)
	go func() {
		err := ignoreClosed(s.h3.ServeListener(ln))
		// HTTP/3 going down alone is not fatal: clients fall back to
		// HTTP/2 once Alt-Svc stops pointing them at UDP.
		s.alt.down()
		if err != nil {
			s.log.Error("HTTP/3 listener failed; serving HTTP/1.1 and HTTP/2 only, Alt-Svc withdrawn", "error", err)
		}
		s.serveErrs <- nil
	}()
	return nil
}

// acceptTLS terminates TLS itself, so that connections that negotiated
// "h2" can be handed to Portico's own HTTP/2 server (edge/h2), and hands
// HTTP/1.1 connections to h1.
func (s *Server) acceptTLS(ln net.Listener) error {
	for {
		c, err := ln.Accept()
		if err != nil {
			return ignoreClosed(err)
		}
		go s.handshake(c)
	}
}

func (s *Server) handshake(c net.Conn) {
	tc := tls.Server(c, s.tlsConf)
	ctx, cancel := context.WithTimeout(context.Background(), timeout(s.cfg.HandshakeTimeout))
	err := tc.HandshakeContext(ctx)
	cancel()
	if err != nil {
		s.log.Debug("TLS handshake failed", "client", c.RemoteAddr().String(), "error", err)
		_ = c.Close()
		return
	}
	proto := tc.ConnectionState().NegotiatedProtocol
	switch {
	case proto == "h2":
		s.serveH2(tc)
	case slices.Contains(s.alpnEnd, proto):
		_ = tc.Close() // e.g. acme-tls/1: the handshake was the answer
	default:
		var c net.Conn = tc
		if s.cfg.HTTP1Conn != nil {
			c = s.cfg.HTTP1Conn(tc)
		}
		if !s.h1ln.push(c) {
			_ = tc.Close()
		}
	}
}

// handlerWorkers is how many long-lived goroutines each of edge/h2 and
// edge/h3 keeps for handlers (edge/workpool says why); more requests at
// once run on goroutines of their own.
const handlerWorkers = 256

// h2Config maps the listener's settings onto edge/h2's: the same limits,
// timeouts and abuse budgets, handlers on long-lived workers.
func (s *Server) h2Config() h2.Config {
	cfg := s.cfg
	idle := cfg.IdleTimeout
	if idle < 0 {
		idle = -1 // h2's "never"
	}
	return h2.Config{
		MaxConcurrentStreams:  cfg.HTTP2.MaxConcurrentStreams,
		StreamWindow:          cfg.HTTP2.StreamWindow,
		ConnWindow:            cfg.HTTP2.ConnWindow,
		MaxHeaderBytes:        cfg.MaxHeaderBytes,
		MaxContinuationFrames: cfg.HTTP2.MaxContinuationFrames,
		ResetBurst:            cfg.HTTP2.ResetBurst,
		ResetRate:             cfg.HTTP2.ResetRate,
		PrefaceTimeout:        timeout(cfg.ReadHeaderTimeout),
		IdleTimeout:           idle,
		ReadTimeout:           timeout(cfg.ReadTimeout),
		WriteTimeout:          timeout(cfg.WriteTimeout),
		Workers:               handlerWorkers,
		BaseContext: func(c net.Conn) context.Context {
			ctx := context.WithValue(context.Background(), http.ServerContextKey, s.h1)
			return context.WithValue(ctx, http.LocalAddrContextKey, c.LocalAddr())
		},
		OnAbusive: func(client, reason string) {
			s.h2Killed.Add(1)
			s.log.Warn("HTTP/2 connection abusive; sending GOAWAY ENHANCE_YOUR_CALM", "client", client, "reason", reason)
		},
		Logger: s.log,
	}
}

func (s *Server) serveH2(tc *tls.Conn) {
	// After Shutdown the server refuses the connection and closes it.
	_ = s.h2.ServeConn(tc)
}

// Shutdown stops accepting connections at once (new connections are
// refused), sends GOAWAY to HTTP/2 and HTTP/3 clients, closes idle
// HTTP/1.1 connections, lets requests in flight finish, and cuts whatever
// still runs when ctx ends, returning ctx's error then.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closing {
		s.mu.Unlock()
		<-s.stopped
		return nil
	}
	s.closing = true
	s.alt.down()
	s.closeListenersLocked()
	s.mu.Unlock()
	defer s.stopOnce.Do(func() { close(s.stopped) })

	var wg sync.WaitGroup
	errs := make([]error, 4)
	run := func(i int, f func() error) {
		wg.Add(1)
		go func() { defer wg.Done(); errs[i] = f() }()
	}
	if s.h1 != nil {
		run(0, func() error {
			// The listeners are closed above; http.Server may close them
			// again before Serve has noticed, and report that.
			err := ignoreClosed(s.h1.Shutdown(ctx))
			if err != nil {
				_ = s.h1.Close()
			}
			return err
		})
		// GOAWAY on every HTTP/2 connection; in-flight streams finish.
		run(1, func() error { return s.h2.Shutdown(ctx) })
	}
	if s.h3 != nil && s.quicLn != nil {
		run(2, func() error {
			err := s.h3.Shutdown(ctx)
			if s.quicTr != nil {
				_ = s.quicTr.Close()
			}
			_ = s.udp.Close() // the transport leaves a socket it did not open
			return err
		})
	} else if s.udp != nil {
		_ = s.udp.Close()
	}
	if s.plain1 != nil {
		run(3, func() error {
			err := ignoreClosed(s.plain1.Shutdown(ctx))
			if err != nil {
				_ = s.plain1.Close()
			}
			return err
		})
	}
	wg.Wait()
	return errors.Join(errs...)
}

func (s *Server) closeListenersLocked() {
	if s.tcpTLS != nil {
		_ = s.tcpTLS.Close()
	}
	if s.tcpPlain != nil {
		_ = s.tcpPlain.Close()
	}
	if s.quicLn != nil {
		_ = s.quicLn.Close()
	}
	if s.h1ln != nil {
		_ = s.h1ln.Close()
	}
}

// connQueue is a net.Listener fed with connections whose TLS handshake is
// done and that negotiated HTTP/1.1, so that http.Server serves them with
// its own keep-alive, timeout and shutdown logic.
type connQueue struct {
	addr   net.Addr
	ch     chan net.Conn
	done   chan struct{}
	closed sync.Once
}

func newConnQueue(addr net.Addr) *connQueue {
	return &connQueue{addr: addr, ch: make(chan net.Conn), done: make(chan struct{})}
}

func (q *connQueue) push(c net.Conn) bool {
	select {
	case q.ch <- c:
		return true
	case <-q.done:
		return false
	}
}

func (q *connQueue) Accept() (net.Conn, error) {
	select {
	case c := <-q.ch:
		return c, nil
	case <-q.done:
		return nil, net.ErrClosed
	}
}

func (q *connQueue) Close() error {
	q.closed.Do(func() { close(q.done) })
	return nil
}

func (q *connQueue) Addr() net.Addr { return q.addr }

// Stats are counters for tests and metrics.
type Stats struct {
	// OpenTLSConns and OpenPlainConns are the TCP connections open now.
	OpenTLSConns, OpenPlainConns int
	// H2Abusive counts HTTP/2 connections ended for spending their reset
	// or CONTINUATION budget.
	H2Abusive int64
}

// Stats returns the server's counters.
func (s *Server) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	var st Stats
	if s.tcpTLS != nil {
		st.OpenTLSConns = s.tcpTLS.open()
	}
	if s.tcpPlain != nil {
		st.OpenPlainConns = s.tcpPlain.open()
	}
	st.H2Abusive = s.h2Killed.Load()
	return st
}

// wrapListener applies Config.HTTP1Conn to accepted plaintext connections.
type wrapListener struct {
	net.Listener
	wrap func(net.Conn) net.Conn
}

func (l *wrapListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	return l.wrap(c), nil
}

type tlsStateKey struct{}

// tlsConnContext records the TLS state of a wrapped TLS connection (Go's
// server fills r.TLS only for a *tls.Conn it was handed itself), then runs
// the configured ConnContext.
func tlsConnContext(next func(context.Context, net.Conn) context.Context, wrapped bool) func(context.Context, net.Conn) context.Context {
	return func(ctx context.Context, c net.Conn) context.Context {
		if wrapped {
			for u := c; u != nil; {
				if tc, ok := u.(*tls.Conn); ok {
					st := tc.ConnectionState()
					ctx = context.WithValue(ctx, tlsStateKey{}, &st)
					break
				}
				nc, ok := u.(interface{ NetConn() net.Conn })
				if !ok {
					break
				}
				u = nc.NetConn()
			}
		}
		if next != nil {
			ctx = next(ctx, c)
		}
		return ctx
	}
}

// restoreTLS sets r.TLS for requests read from a wrapped TLS connection.
func restoreTLS(h http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS == nil {
			if st, ok := r.Context().Value(tlsStateKey{}).(*tls.ConnectionState); ok {
				r.TLS = st
			}
		}
		h.ServeHTTP(w, r)
	})
}
