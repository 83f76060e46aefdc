package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/certs"
	"github.com/portico-edge/portico/edge/devca"
	"github.com/portico-edge/portico/edge/listen"
	"github.com/portico-edge/portico/origin/fleet"
)

// tlsFlags configure certificates and TLS policy of a node that serves
// custom domains (edges, and origins serving regional endpoints).
type tlsFlags struct {
	acme          bool
	acmeDirectory string
	acmeEmail     string
	acmeCARoot    string
	acmeHTTPPort  int
	acmeTLSPort   int
	noHTTP3       bool
	hstsMaxAge    time.Duration
	hstsSubdomain bool
	hstsPreload   bool
}

func (t *tlsFlags) register(fs *flag.FlagSet) {
	fs.BoolVar(&t.acme, "acme", false, "obtain and renew certificates with ACME for custom domains without certificate files")
	fs.StringVar(&t.acmeDirectory, "acme-directory", "", "ACME directory URL (default Let's Encrypt); configuring a CA accepts its subscriber agreement")
	fs.StringVar(&t.acmeEmail, "acme-email", "", "contact address for the ACME account")
	fs.StringVar(&t.acmeCARoot, "acme-ca-root", "", "PEM file of the only roots trusted when talking to the ACME CA (a private or test CA)")
	fs.IntVar(&t.acmeHTTPPort, "acme-http-port", 80, "public port where the CA reaches the plain-HTTP listener (HTTP-01)")
	fs.IntVar(&t.acmeTLSPort, "acme-tls-port", 443, "public port where the CA reaches the HTTPS listener (TLS-ALPN-01)")
	fs.BoolVar(&t.noHTTP3, "no-http3", false, "serve no HTTP/3 (QUIC on the HTTPS port number over UDP)")
	fs.DurationVar(&t.hstsMaxAge, "hsts-max-age", 365*24*time.Hour, "Strict-Transport-Security max-age on HTTPS responses; 0 sends none")
	fs.BoolVar(&t.hstsSubdomain, "hsts-include-subdomains", false, "add includeSubDomains to HSTS")
	fs.BoolVar(&t.hstsPreload, "hsts-preload", false, "add preload to HSTS (needs --hsts-include-subdomains and a max-age of a year or more)")
}

// hsts returns the HSTS policy; a node on a development CA sends none, so
// that browsers do not pin HTTPS on localhost.
func (t *tlsFlags) hsts(devCA bool) (listen.HSTSPolicy, error) {
	if devCA || t.hstsMaxAge == 0 {
		return listen.HSTSPolicy{Disabled: true}, nil
	}
	if t.hstsPreload && (!t.hstsSubdomain || t.hstsMaxAge < 365*24*time.Hour) {
		return listen.HSTSPolicy{}, usageError{"--hsts-preload needs --hsts-include-subdomains and --hsts-max-age of at least 8760h"}
	}
	return listen.HSTSPolicy{MaxAge: t.hstsMaxAge, IncludeSubDomains: t.hstsSubdomain, Preload: t.hstsPreload}, nil
}

// certificateSource picks the certificate for a TLS handshake: the
// certificate manager's for domains with certificate files or ACME, else
// the node's default certificate, else (on a development node) one from
// the dev CA for the requested name.
type certificateSource struct {
	def  *tls.Certificate
	ca   *devca.CA
	mgr  *certs.Manager
	acme bool

	mu     sync.Mutex
	issued map[string]*tls.Certificate // dev CA certificates by SNI
}

func loadCertificates(certFile, keyFile string, useDevCA bool, dataDir string) (*certificateSource, error) {
	cs := &certificateSource{}
	if (certFile == "") != (keyFile == "") {
		return nil, usageError{"--tls-cert and --tls-key go together"}
	}
	if certFile != "" {
		c, err := tls.LoadX509KeyPair(certFile, keyFile)
		if err != nil {
			return nil, fmt.Errorf("load --tls-cert/--tls-key: %w", err)
		}
		cs.def = &c
	}
	if useDevCA {
		ca, err := devca.Load(dataDir)
		if err != nil {
			return nil, err
		}
		cs.ca = ca
		leaf, err := ca.Leaf([]string{"localhost", "127.0.0.1", "::1"})
		if err != nil {
			return nil, err
		}
		if cs.def == nil {
			cs.def = leaf
		}
	}
	return cs, nil
}

// startManager starts the certificate manager (files per domain, and ACME
// when enabled). Without any certificate at all a node cannot serve TLS.
func (cs *certificateSource) startManager(t tlsFlags, dataDir, httpListen, httpsListen string, log *slog.Logger) error {
	if cs.def == nil && !t.acme {
		return usageError{"no certificate: pass --tls-cert and --tls-key, --acme for automatic certificates, or --dev-ca on a development machine"}
	}
	abs, err := filepath.Abs(dataDir)
	if err != nil {
		return err
	}
	cfg := certs.Config{DataDir: abs, Logger: log}
	cfg.ACME = certs.ACMEConfig{Directory: t.acmeDirectory, Email: t.acmeEmail, HTTPPort: t.acmeHTTPPort, TLSPort: t.acmeTLSPort}
	if t.acmeCARoot != "" {
		pem, err := os.ReadFile(t.acmeCARoot)
		if err != nil {
			return fmt.Errorf("--acme-ca-root: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return fmt.Errorf("--acme-ca-root %s holds no PEM certificate", t.acmeCARoot)
		}
		cfg.ACME.TrustedRoots = pool
	}
	m, err := certs.New(cfg)
	if err != nil {
		return err
	}
	cs.mgr, cs.acme = m, t.acme
	return nil
}

func (cs *certificateSource) stop() {
	if cs.mgr != nil {
		cs.mgr.Stop()
	}
}

// prepare chains the node's snapshot preparation with handing the
// snapshot's domains of the served type to the certificate manager. A
// certificate problem never refuses a snapshot: the manager keeps serving
// what it had and reports the error in the domain's status.
func (cs *certificateSource) prepare(next func(*config.Snapshot) (func(), error), typ config.EndpointType, log *slog.Logger) func(*config.Snapshot) (func(), error) {
	return func(s *config.Snapshot) (func(), error) {
		commit, err := next(s)
		if err != nil || cs.mgr == nil {
			return commit, err
		}
		var ds []config.Domain
		for _, d := range s.Domains {
			if d.EndpointType != typ && !(typ == config.EndpointRegional && d.EndpointType == config.EndpointPrivate) {
				continue
			}
			files := d.Certificate != nil && !d.Certificate.Managed
			if files || cs.acme {
				ds = append(ds, d)
			} else if d.Certificate != nil && d.Certificate.Managed {
				log.Error("domain asks for a managed certificate but ACME is off on this node (--acme); serving the default certificate", "domain", d.Name)
			}
		}
		return func() {
			commit()
			ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
			defer cancel()
			if err := cs.mgr.SetDomains(ctx, ds); err != nil {
				log.Error("certificates", "err", err)
			}
		}, nil
	}
}

// GetCertificate implements listen.CertSource.
func (cs *certificateSource) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.TrimSuffix(strings.ToLower(hello.ServerName), ".")
	if cs.mgr != nil && name != "" && cs.mgr.Has(name) {
		return cs.mgr.GetCertificate(hello)
	}
	if cs.def == nil {
		return nil, fmt.Errorf("no certificate for %q", hello.ServerName)
	}
	if cs.ca == nil || name == "" || cs.def.Leaf == nil || cs.def.Leaf.VerifyHostname(name) == nil {
		return cs.def, nil
	}
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if c := cs.issued[name]; c != nil {
		return c, nil
	}
	if len(cs.issued) >= 1000 {
		return cs.def, nil // a dev node; bound what a scan of names can make it hold
	}
	c, err := cs.ca.Issue(name)
	if err != nil {
		return nil, err
	}
	if cs.issued == nil {
		cs.issued = map[string]*tls.Certificate{}
	}
	cs.issued[name] = c
	return c, nil
}

// ALPNProtocols lets the listener negotiate acme-tls/1 (listen.ALPNSource).
func (cs *certificateSource) ALPNProtocols() []string {
	if cs.mgr == nil || !cs.acme {
		return nil
	}
	return cs.mgr.ALPNProtocols()
}

// statuses reports the certificate of every domain of the given type in a
// snapshot, for heartbeats.
func (cs *certificateSource) statuses(s *config.Snapshot, typ config.EndpointType) []fleet.Certificate {
	if s == nil {
		return nil
	}
	var out []fleet.Certificate
	for _, d := range s.Domains {
		if d.EndpointType != typ && !(typ == config.EndpointRegional && d.EndpointType == config.EndpointPrivate) {
			continue
		}
		c := fleet.Certificate{Domain: d.Name, Source: "default"}
		if cs.mgr != nil && cs.mgr.Has(d.Name) {
			st := cs.mgr.Status(d.Name)
			c.Source = "files"
			if st.Managed {
				c.Source = "acme"
			}
			c.Issuer, c.NotAfter, c.LastError = st.Issuer, st.NotAfter, st.LastError
		} else if cs.def != nil && cs.def.Leaf != nil {
			c.Issuer, c.NotAfter = cs.def.Leaf.Issuer.CommonName, cs.def.Leaf.NotAfter
			if cs.ca == nil && cs.def.Leaf.VerifyHostname(d.Name) != nil {
				c.LastError = "the default certificate does not cover this name; give the domain certificate files or enable --acme"
			}
		}
		out = append(out, c)
	}
	return out
}
