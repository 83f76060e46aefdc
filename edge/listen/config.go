// Package listen serves one http.Handler over HTTP/1.1, HTTP/2 and HTTP/3
// (TLS), plus an optional plain-HTTP listener, with hardened defaults: TLS
// 1.2+ with AEAD/ECDHE suites only, HSTS, header/idle/write timeouts,
// connection limits, HTTP/2 stream and window limits, a per-connection
// budget for stream resets (rapid reset, MadeYouReset), CONTINUATION-flood
// protection, and graceful shutdown that sends GOAWAY on HTTP/2 and HTTP/3.
//
// The package knows nothing about routing or certificates' origins: the edge
// and the origin's regional/private endpoints both use it, and certificates
// come through a CertSource (certmagic, files, the dev CA).
package listen

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"
)

// CertSource gives the certificate for a TLS handshake. certs.Manager,
// devca and a plain tls.Config's GetCertificate all fit.
type CertSource interface {
	GetCertificate(*tls.ClientHelloInfo) (*tls.Certificate, error)
}

// CertFunc adapts a GetCertificate function to a CertSource.
type CertFunc func(*tls.ClientHelloInfo) (*tls.Certificate, error)

// GetCertificate calls f.
func (f CertFunc) GetCertificate(h *tls.ClientHelloInfo) (*tls.Certificate, error) { return f(h) }

// ALPNSource is implemented by a CertSource that answers extra ALPN
// protocols during the handshake, such as "acme-tls/1" for ACME's
// TLS-ALPN-01 challenge. Connections that negotiate one of them are closed
// after the handshake: the certificate was the whole answer.
type ALPNSource interface {
	ALPNProtocols() []string
}

// Config says what to listen on and how hard to defend it. A zero field
// means its default (see Defaults); a negative limit or timeout means "off".
type Config struct {
	// TLSAddr is the host:port for HTTPS (HTTP/1.1 and HTTP/2 over TCP) and,
	// unless DisableHTTP3, HTTP/3 over UDP on the same port number. Empty
	// means no TLS listener. Port 0 picks a free port (tests).
	TLSAddr string
	// HTTPAddr is the host:port for plain HTTP (ACME HTTP-01, redirects).
	// Empty means no plain-HTTP listener.
	HTTPAddr string
	// Certificates answers TLS handshakes. Required with TLSAddr.
	Certificates CertSource
	// PlainHandler serves the plain-HTTP listener; nil means the same
	// handler as TLS.
	PlainHandler http.Handler

	// DisableHTTP3 turns the QUIC listener off; Alt-Svc is then never sent.
	DisableHTTP3 bool
	// Allow0RTT accepts TLS 1.3 early data on HTTP/3. Off by default: early
	// data can be replayed. Even when on, a 0-RTT request reaches the
	// handler only if its method is safe (GET, HEAD, OPTIONS) and
	// AcceptEarlyData says yes; every other one gets 425 Too Early and the
	// client retries after the handshake.
	Allow0RTT bool
	// AcceptEarlyData decides, per request, whether a safe 0-RTT request
	// may be served (a route opting in). Nil rejects every 0-RTT request.
	AcceptEarlyData func(*http.Request) bool
	// AltSvcMaxAge is the ma= of the Alt-Svc header that advertises HTTP/3.
	AltSvcMaxAge time.Duration

	// HSTS is the Strict-Transport-Security header sent on TLS responses.
	HSTS HSTSPolicy

	// HandshakeTimeout bounds a TLS handshake (default 10s).
	HandshakeTimeout time.Duration
	// ReadHeaderTimeout bounds reading a request's headers (default 10s).
	ReadHeaderTimeout time.Duration
	// ReadTimeout bounds reading a whole request, body included (default 60s).
	ReadTimeout time.Duration
	// WriteTimeout bounds writing a response (default 60s); on HTTP/2 it
	// also closes a connection whose peer accepts no bytes for that long.
	WriteTimeout time.Duration
	// IdleTimeout closes keep-alive connections idle this long (default 120s).
	IdleTimeout time.Duration
	// DrainTimeout bounds graceful shutdown: requests still running after
	// it are cut (default 30s).
	DrainTimeout time.Duration

	// MaxHeaderBytes limits a request's header block (default 64 KiB, at
	// most 16 MiB); larger gets 431 on HTTP/1.1, HTTP/2 and HTTP/3. HTTP/2
	// and HTTP/3 announce it (SETTINGS_MAX_HEADER_LIST_SIZE,
	// SETTINGS_MAX_FIELD_SECTION_SIZE), and a client may refuse to send
	// more itself.
	MaxHeaderBytes int
	// MaxConns limits open TCP connections per listener (default 10000).
	// Connections over the limit are accepted and closed at once.
	MaxConns int
	// MaxConnsPerIP limits open TCP connections from one client address
	// per listener (default 256).
	MaxConnsPerIP int

	// HTTP2 holds the HTTP/2 (and, where they apply, HTTP/3) limits.
	HTTP2 HTTP2Limits

	// HTTP1Conn, when set, wraps every connection Go's HTTP/1 server
	// reads, plaintext and (decrypted) TLS alike: the edge's framing guard
	// (hygiene.NewConn) sees request heads before Go's parser does. A
	// wrapper must implement NetConn() net.Conn so that the TLS state can
	// still be found; the server restores r.TLS for wrapped TLS
	// connections.
	HTTP1Conn func(net.Conn) net.Conn
	// ConnContext, when set, is the HTTP/1 servers' ConnContext (for
	// example hygiene.ConnContext); it receives the wrapped connection.
	ConnContext func(context.Context, net.Conn) context.Context

	// Logger receives connection-level events; nil means slog.Default().
	Logger *slog.Logger
}

// HTTP2Limits are the per-connection limits of HTTP/2. MaxConcurrentStreams
// also bounds HTTP/3's concurrent request streams.
type HTTP2Limits struct {
	// MaxConcurrentStreams advertised and enforced per connection, also as
	// a cap on handlers running per connection (default 100).
	MaxConcurrentStreams uint32
	// StreamWindow is the initial flow-control window per stream (default 64 KiB).
	StreamWindow int32
	// ConnWindow is the flow-control window per connection (default 1 MiB).
	ConnWindow int32
	// ResetBurst is how many stream resets (sent by the client, or sent by
	// the server because the client broke a rule) a connection may cause at
	// once before it gets GOAWAY ENHANCE_YOUR_CALM (default 200).
	ResetBurst int
	// ResetRate is how many resets per second refill that budget (default 50).
	ResetRate float64
	// MaxContinuationFrames limits CONTINUATION frames in one header block
	// (default 32); more ends the connection.
	MaxContinuationFrames int
}

// HSTSPolicy is a Strict-Transport-Security header.
type HSTSPolicy struct {
	// Disabled sends no header (for example for a dev CA on localhost).
	Disabled bool
	// MaxAge is how long browsers remember to use HTTPS (default 365 days).
	MaxAge time.Duration
	// IncludeSubDomains extends the policy to every subdomain.
	IncludeSubDomains bool
	// Preload asks for inclusion in browsers' preload lists; it needs
	// IncludeSubDomains and MaxAge of at least one year.
	Preload bool
}

// Defaults fills zero fields with the defaults and returns the result.
func (c Config) Defaults() Config {
	def := func(d *time.Duration, v time.Duration) {
		if *d == 0 {
			*d = v
		}
	}
	def(&c.HandshakeTimeout, 10*time.Second)
	def(&c.ReadHeaderTimeout, 10*time.Second)
	def(&c.ReadTimeout, 60*time.Second)
	def(&c.WriteTimeout, 60*time.Second)
	def(&c.IdleTimeout, 120*time.Second)
	def(&c.DrainTimeout, 30*time.Second)
	def(&c.AltSvcMaxAge, 24*time.Hour)
	def(&c.HSTS.MaxAge, 365*24*time.Hour)
	if c.MaxHeaderBytes == 0 {
		c.MaxHeaderBytes = 64 << 10
	}
	if c.MaxConns == 0 {
		c.MaxConns = 10000
	}
	if c.MaxConnsPerIP == 0 {
		c.MaxConnsPerIP = 256
	}
	h := &c.HTTP2
	if h.MaxConcurrentStreams == 0 {
		h.MaxConcurrentStreams = 100
	}
	if h.StreamWindow == 0 {
		h.StreamWindow = 64 << 10
	}
	if h.ConnWindow == 0 {
		h.ConnWindow = 1 << 20
	}
	if h.ResetBurst == 0 {
		h.ResetBurst = 200
	}
	if h.ResetRate == 0 {
		h.ResetRate = 50
	}
	if h.MaxContinuationFrames == 0 {
		h.MaxContinuationFrames = 32
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

// Validate reports every mistake in c (after Defaults), each saying what to
// change.
func (c Config) Validate() error {
	var errs []error
	bad := func(format string, a ...any) { errs = append(errs, fmt.Errorf(format, a...)) }
	if c.TLSAddr == "" && c.HTTPAddr == "" {
		bad("listen: neither TLSAddr nor HTTPAddr is set: set at least one (for example TLSAddr \":443\")")
	}
	for _, a := range []struct{ name, v string }{{"TLSAddr", c.TLSAddr}, {"HTTPAddr", c.HTTPAddr}} {
		if a.v == "" {
			continue
		}
		if _, _, err := net.SplitHostPort(a.v); err != nil {
			bad("listen: %s %q is not host:port: %v (for example \":443\" or \"127.0.0.1:8443\")", a.name, a.v, err)
		}
	}
	if c.TLSAddr != "" && c.Certificates == nil {
		bad("listen: TLSAddr %q is set but Certificates is nil: give a certificate source (certs.Manager, the dev CA, or listen.CertFunc)", c.TLSAddr)
	}
	if c.TLSAddr == "" && c.Allow0RTT {
		bad("listen: Allow0RTT needs the HTTP/3 listener: set TLSAddr or drop Allow0RTT")
	}
	if c.Allow0RTT && c.DisableHTTP3 {
		bad("listen: Allow0RTT is set but HTTP/3 is disabled: 0-RTT exists only on HTTP/3 here; drop one of them")
	}
	if c.HTTP2.MaxConcurrentStreams > 1000 {
		bad("listen: HTTP2.MaxConcurrentStreams %d is above 1000: each stream can hold a handler and buffers; use at most 1000 (default 100)", c.HTTP2.MaxConcurrentStreams)
	}
	if c.HTTP2.StreamWindow < 16<<10 || c.HTTP2.StreamWindow > 16<<20 {
		bad("listen: HTTP2.StreamWindow %d is outside 16 KiB..16 MiB", c.HTTP2.StreamWindow)
	}
	if c.HTTP2.ConnWindow < c.HTTP2.StreamWindow {
		bad("listen: HTTP2.ConnWindow %d is smaller than StreamWindow %d: make it at least as large", c.HTTP2.ConnWindow, c.HTTP2.StreamWindow)
	}
	if c.HTTP2.ResetRate < 0 || c.HTTP2.ResetBurst < 0 {
		bad("listen: HTTP2.ResetBurst and ResetRate cannot be negative: the reset budget cannot be turned off")
	}
	if c.MaxHeaderBytes < 4<<10 {
		bad("listen: MaxHeaderBytes %d is below 4 KiB: browsers' cookies alone exceed that", c.MaxHeaderBytes)
	}
	if c.MaxHeaderBytes > 16<<20 {
		bad("listen: MaxHeaderBytes %d is above 16 MiB, the most HTTP/3 serves (and far more than any real request needs): use at most %d", c.MaxHeaderBytes, 16<<20)
	}
	if c.HSTS.Preload && (!c.HSTS.IncludeSubDomains || c.HSTS.MaxAge < 365*24*time.Hour) {
		bad("listen: HSTS.Preload needs IncludeSubDomains and MaxAge of at least 365 days (preload lists reject anything less)")
	}
	if c.HSTS.MaxAge < 0 {
		bad("listen: HSTS.MaxAge is negative: set HSTS.Disabled to send no header")
	}
	for _, d := range []struct {
		name string
		v    time.Duration
	}{{"HandshakeTimeout", c.HandshakeTimeout}, {"ReadHeaderTimeout", c.ReadHeaderTimeout}, {"DrainTimeout", c.DrainTimeout}} {
		if d.v < 0 {
			bad("listen: %s cannot be turned off (it is %v): without it one slow client holds a connection forever", d.name, d.v)
		}
	}
	return errors.Join(errs...)
}

// timeout turns the "negative means off" convention into net/http's
// "zero means off".
func timeout(d time.Duration) time.Duration {
	if d < 0 {
		return 0
	}
	return d
}
