package h2

import (
	"context"
	"crypto/tls"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-edge/portico/edge/workpool"
)

// Config holds a Server's limits. A zero field means its default.
type Config struct {
	// MaxConcurrentStreams is advertised and enforced per connection, and
	// caps the handlers running per connection, reset streams whose
	// handler still runs included (default 100).
	MaxConcurrentStreams uint32
	// StreamWindow is the flow-control window of each request body
	// (default 64 KiB); ConnWindow the window of the connection (default
	// 1 MiB). They bound what a connection buffers for its handlers.
	StreamWindow, ConnWindow int32
	// MaxHeaderBytes bounds a request's decoded header list (default 64
	// KiB); a larger one is answered 431.
	MaxHeaderBytes int
	// MaxContinuationFrames limits the CONTINUATION frames of one header
	// block (default 32); more ends the connection (CVE-2023-45288).
	MaxContinuationFrames int
	// ResetBurst and ResetRate are the stream-reset budget of a connection:
	// every RST_STREAM the client sends, and every stream the server
	// resets or refuses because of the client's frames (a stream error,
	// REFUSED_STREAM, a 431 answer), spends one token; ResetRate tokens a
	// second refill it up to ResetBurst (defaults 200 and 50/s). Resets
	// the server decides on its own (a handler's panic, a short response,
	// a deadline) spend nothing. A spent budget ends the connection with
	// ENHANCE_YOUR_CALM (rapid reset, CVE-2023-44487; MadeYouReset,
	// CVE-2025-8671).
	ResetBurst int
	ResetRate  float64

	// PrefaceTimeout bounds the wait for the client's preface and first
	// SETTINGS frame (default 10s).
	PrefaceTimeout time.Duration
	// IdleTimeout closes a connection without streams for this long, with
	// GOAWAY first (default 120s; negative: never).
	IdleTimeout time.Duration
	// ReadTimeout bounds, per stream, reading the request body, from the
	// arrival of the request's header block (as x/net starts it; a
	// stream waiting for a handler slot spends it too). Default: none.
	// Once it passes, Read returns what had arrived and then an error
	// that wraps os.ErrDeadlineExceeded, for good; what the client sends
	// afterwards is dropped (its connection window given back), and the
	// stream is not reset: the handler may still answer. A handler can
	// move the deadline, before it passes, with
	// http.ResponseController.SetReadDeadline.
	ReadTimeout time.Duration
	// WriteTimeout bounds, per stream, writing the response, from the
	// arrival of the request's header block: past it the stream is reset
	// (INTERNAL_ERROR) and the handler's writes fail. It also cuts a
	// connection whose peer accepts no bytes for that long. Default: none.
	WriteTimeout time.Duration

	// Workers is how many long-lived goroutines run handlers (default 256);
	// see edge/workpool for why.
	// When all are busy a handler runs on a goroutine of its own: a request
	// never waits for another connection's.
	Workers int

	// BaseContext, if set, gives the context of a connection's requests;
	// it should carry http.ServerContextKey. The default carries an empty
	// *http.Server under that key and the local address under
	// http.LocalAddrContextKey.
	BaseContext func(net.Conn) context.Context
	// OnAbusive, if set, is called once for a connection ended with
	// ENHANCE_YOUR_CALM (a spent budget), with the client's address and why.
	OnAbusive func(client, reason string)
	// Logger receives handler panics and connection events; nil means
	// slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.MaxConcurrentStreams == 0 {
		c.MaxConcurrentStreams = 100
	}
	if c.StreamWindow == 0 {
		c.StreamWindow = 64 << 10
	}
	if c.ConnWindow == 0 {
		c.ConnWindow = 1 << 20
	}
	if c.ConnWindow < c.StreamWindow {
		c.ConnWindow = c.StreamWindow
	}
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxContinuationFrames == 0 {
		c.MaxContinuationFrames = 32
	}
	if c.ResetBurst == 0 {
		c.ResetBurst = 200
	}
	if c.ResetRate == 0 {
		c.ResetRate = 50
	}
	if c.PrefaceTimeout <= 0 {
		c.PrefaceTimeout = 10 * time.Second
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 120 * time.Second
	}
	if c.Workers <= 0 {
		c.Workers = 256
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Server serves an http.Handler over HTTP/2 on connections whose TLS
// handshake negotiated "h2". Create it with NewServer.
type Server struct {
	cfg     Config
	handler http.Handler
	log     *slog.Logger
	workers *workpool.Pool
	date    dateCache
	base    *http.Server // the default BaseContext's http.ServerContextKey

	mu       sync.Mutex
	conns    map[*conn]struct{}
	shutdown bool
	connWG   sync.WaitGroup

	streams sync.Pool // *stream
	bufs    sync.Pool // *[]byte write queues

	abusive      atomic.Int64
	serverResets atomic.Int64 // streams reset for the server's own reasons (serverResetLocked)
}

// NewServer returns a server for h with cfg's limits.
func NewServer(cfg Config, h http.Handler) *Server {
	cfg = cfg.withDefaults()
	s := &Server{
		cfg:     cfg,
		handler: h,
		log:     cfg.Logger,
		conns:   make(map[*conn]struct{}),
		base:    &http.Server{},
	}
	s.workers = workpool.New(cfg.Workers, workpool.DefaultIdle)
	return s
}

// Abusive is the number of connections ended for a spent budget.
func (s *Server) Abusive() int64 { return s.abusive.Load() }

// ErrServerClosed is returned by ServeConn after Shutdown or Close.
var ErrServerClosed = errors.New("h2: server closed")

// ServeConn serves HTTP/2 on c, whose TLS handshake is done, and returns
// when the connection has ended. It closes c.
func (s *Server) ServeConn(c net.Conn) error {
	cn := s.newConn(c)
	s.mu.Lock()
	if s.shutdown {
		s.mu.Unlock()
		_ = c.Close()
		return ErrServerClosed
	}
	s.conns[cn] = struct{}{}
	s.connWG.Add(1)
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		delete(s.conns, cn)
		s.mu.Unlock()
		s.connWG.Done()
	}()
	return cn.serve()
}

// Shutdown sends GOAWAY to every connection, lets the streams in flight
// finish, and closes each connection once it has none; connections that
// still have streams when ctx ends are cut, and ctx's error returned. New
// connections are refused from the call on. Idle workers end.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	defer s.workers.Stop()
	for _, c := range conns {
		c.goAway()
	}
	done := make(chan struct{})
	go func() { s.connWG.Wait(); close(done) }()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		s.Close()
		<-done
		return ctx.Err()
	}
}

// Close cuts every connection at once.
func (s *Server) Close() {
	s.mu.Lock()
	s.shutdown = true
	conns := make([]*conn, 0, len(s.conns))
	for c := range s.conns {
		conns = append(conns, c)
	}
	s.mu.Unlock()
	for _, c := range conns {
		c.cut()
	}
	s.workers.Stop()
}

func (s *Server) baseContext(c net.Conn) context.Context {
	if s.cfg.BaseContext != nil {
		if ctx := s.cfg.BaseContext(c); ctx != nil {
			return ctx
		}
	}
	ctx := context.WithValue(context.Background(), http.ServerContextKey, s.base)
	return context.WithValue(ctx, http.LocalAddrContextKey, c.LocalAddr())
}

// tlsState returns the connection's TLS state, if it is a TLS connection
// or wraps one.
func tlsState(c net.Conn) *tls.ConnectionState {
	for c != nil {
		if tc, ok := c.(interface{ ConnectionState() tls.ConnectionState }); ok {
			st := tc.ConnectionState()
			return &st
		}
		nc, ok := c.(interface{ NetConn() net.Conn })
		if !ok {
			return nil
		}
		c = nc.NetConn()
	}
	return nil
}

// dateCache formats the Date header once per second.
type dateCache struct {
	v atomic.Pointer[dateValue]
}

type dateValue struct {
	sec int64
	s   string
}

func (d *dateCache) get() string {
	now := time.Now()
	sec := now.Unix()
	if v := d.v.Load(); v != nil && v.sec == sec {
		return v.s
	}
	v := &dateValue{sec: sec, s: now.UTC().Format(http.TimeFormat)}
	d.v.Store(v)
	return v.s
}
