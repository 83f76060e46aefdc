// Package certs provides TLS certificates for the configured custom
// domains: issued and renewed over ACME by certmagic (HTTP-01 and
// TLS-ALPN-01), or read from files and reloaded when they change. It
// answers TLS handshakes only for configured domains.
package certs

import (
	"context"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"time"

	"github.com/libdns/libdns"
)

// LetsEncrypt is the default ACME directory.
const LetsEncrypt = "https://acme-v02.api.letsencrypt.org/directory"

// Config configures a Manager.
type Config struct {
	// DataDir is the node's data directory; certificates, keys and ACME
	// accounts live under DataDir/certs, kept across restarts. Required.
	DataDir string
	// ACME configures issuance for managed domains.
	ACME ACMEConfig

	// OnDemandPerMinute limits how many on-demand issuances TLS handshakes
	// may start per minute (default 10). Handshakes for a configured domain
	// that has no certificate yet start one; over the limit they fail at once.
	OnDemandPerMinute int
	// FileCheckInterval is how often certificate files are checked for
	// changes (default 30s).
	FileCheckInterval time.Duration
	// RenewCheckInterval is how often managed certificates are checked for
	// renewal (default 10m).
	RenewCheckInterval time.Duration
	// RenewalWindowRatio is the part of a certificate's lifetime, counted
	// from its end, in which it is renewed (default certmagic's 1/3).
	RenewalWindowRatio float64

	// Logger receives certificate events; nil means slog.Default().
	Logger *slog.Logger
}

// ACMEConfig names the ACME CA and how to answer its challenges.
type ACMEConfig struct {
	// Directory is the CA's directory URL (default Let's Encrypt
	// production). Configuring a CA means accepting its subscriber
	// agreement.
	Directory string
	// Email is the account's contact address; the CA writes to it about
	// expiring certificates and problems. Recommended.
	Email string
	// TrustedRoots, if set, are the only roots trusted when talking to the
	// CA (for a private or test CA such as Pebble).
	TrustedRoots *x509.CertPool

	// HTTPPort is the port of the plain-HTTP listener that serves
	// Manager.HTTPChallengeHandler, where the CA's HTTP-01 requests arrive
	// (default 80). TLSPort is the port of the TLS listener whose handshakes
	// go through Manager.GetCertificate, where TLS-ALPN-01 arrives (default
	// 443). Portico answers challenges only on its own listeners; it never
	// opens a listener of its own on these ports.
	HTTPPort, TLSPort int
	// DisableHTTP01 and DisableTLSALPN01 turn a challenge type off.
	DisableHTTP01, DisableTLSALPN01 bool
	// DNS01, once Portico's DNS server provides it, will answer DNS-01
	// challenges (needed for wildcard names). Setting it now is an error.
	DNS01 DNS01Solver
	// ObtainTimeout bounds one issuance (default 90s).
	ObtainTimeout time.Duration
}

// DNS01Solver publishes and removes the TXT records of ACME's DNS-01
// challenge in a zone. It is libdns's RecordAppender and RecordDeleter, the
// interface certmagic's DNS-01 solver drives, so Portico's authoritative DNS
// server can plug in without an adapter.
type DNS01Solver interface {
	AppendRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error)
	DeleteRecords(ctx context.Context, zone string, recs []libdns.Record) ([]libdns.Record, error)
}

// ErrDNS01NotAvailable is returned when DNS-01 is configured or needed.
var ErrDNS01NotAvailable = errors.New("DNS-01 challenges are not available yet: they arrive with Portico's own DNS server; use HTTP-01 or TLS-ALPN-01 (leave ACME.DNS01 unset) and give wildcard domains a certificate from files")

func (c Config) withDefaults() Config {
	if c.ACME.Directory == "" {
		c.ACME.Directory = LetsEncrypt
	}
	if c.ACME.HTTPPort == 0 {
		c.ACME.HTTPPort = 80
	}
	if c.ACME.TLSPort == 0 {
		c.ACME.TLSPort = 443
	}
	if c.ACME.ObtainTimeout == 0 {
		c.ACME.ObtainTimeout = 90 * time.Second
	}
	if c.OnDemandPerMinute == 0 {
		c.OnDemandPerMinute = 10
	}
	if c.FileCheckInterval == 0 {
		c.FileCheckInterval = 30 * time.Second
	}
	if c.RenewCheckInterval == 0 {
		c.RenewCheckInterval = 10 * time.Minute
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

func (c Config) validate() error {
	var errs []error
	if c.DataDir == "" {
		errs = append(errs, errors.New("certs: DataDir is empty: set the node's data directory (certificates are kept under DataDir/certs)"))
	} else if !filepath.IsAbs(c.DataDir) {
		errs = append(errs, fmt.Errorf("certs: DataDir %q is relative: give an absolute path so restarts find the same certificates", c.DataDir))
	}
	if c.ACME.DNS01 != nil {
		errs = append(errs, fmt.Errorf("certs: %w", ErrDNS01NotAvailable))
	}
	if c.ACME.DisableHTTP01 && c.ACME.DisableTLSALPN01 {
		errs = append(errs, errors.New("certs: both HTTP-01 and TLS-ALPN-01 are disabled, and DNS-01 is not available yet: enable at least one"))
	}
	if c.RenewalWindowRatio < 0 || c.RenewalWindowRatio > 1 {
		errs = append(errs, fmt.Errorf("certs: RenewalWindowRatio %v is outside 0..1", c.RenewalWindowRatio))
	}
	if c.OnDemandPerMinute < 0 {
		errs = append(errs, errors.New("certs: OnDemandPerMinute cannot be negative"))
	}
	return errors.Join(errs...)
}
