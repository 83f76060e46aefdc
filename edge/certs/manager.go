package certs

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/caddyserver/certmagic"
	"github.com/portico-edge/portico/config"
)

// CertStatus is what the admin API shows about a domain's certificate.
type CertStatus struct {
	// Issuer is the issuing CA's common name of the certificate served now.
	Issuer string `json:"issuer,omitempty"`
	// NotAfter is when the certificate served now expires.
	NotAfter time.Time `json:"notAfter,omitzero"`
	// LastError is the last issuance, renewal or load failure, empty after
	// a success. The current certificate keeps being served meanwhile.
	LastError string `json:"lastError,omitempty"`
	// Managed says the certificate comes from ACME (else from files).
	Managed bool `json:"managed"`
}

// Manager provides certificates for the configured domains. Create it with
// New, feed it every snapshot's domains with SetDomains, give its
// GetCertificate to the TLS listener and its HTTPChallengeHandler to the
// plain-HTTP listener, and Stop it at exit.
type Manager struct {
	cfg     Config
	log     *slog.Logger
	cache   *certmagic.Cache
	magic   *certmagic.Config // manages, renews, keeps retrying
	demand  *certmagic.Config // serves handshakes; obtains on demand for configured names only
	issuer  *certmagic.ACMEIssuer
	limiter *bucket

	ctx    context.Context
	cancel context.CancelFunc
	done   chan struct{}

	mu      sync.RWMutex
	domains map[string]*domainState

	// acmeErr holds, per domain, the last ACME failure certmagic reported
	// (cleared by a success). Kept apart from mu because certmagic's
	// events may fire while mu is held.
	acmeErr sync.Map

	// onEvent, if set (tests), sees every certmagic event.
	onEvent func(event string, data map[string]any)
}

type domainState struct {
	managed           bool
	certFile, keyFile string
	stamp             fileStamp
	hash              string             // certmagic cache hash of the loaded file certificate
	stop              context.CancelFunc // managed: ends certmagic's retries
	lastErr           string
}

// New builds a Manager. It starts no ACME work until SetDomains.
func New(cfg Config) (*Manager, error) {
	cfg = cfg.withDefaults()
	if err := cfg.validate(); err != nil {
		return nil, err
	}
	m := &Manager{
		cfg:     cfg,
		log:     cfg.Logger,
		domains: make(map[string]*domainState),
		limiter: newBucket(cfg.OnDemandPerMinute, time.Minute),
		done:    make(chan struct{}),
	}
	m.ctx, m.cancel = context.WithCancel(context.Background())
	zl := newZapLogger(cfg.Logger)
	storage := &certmagic.FileStorage{Path: filepath.Join(cfg.DataDir, "certs")}
	m.cache = certmagic.NewCache(certmagic.CacheOptions{
		GetConfigForCert:   func(certmagic.Certificate) (*certmagic.Config, error) { return m.magic, nil },
		RenewCheckInterval: cfg.RenewCheckInterval,
		Logger:             zl,
	})
	base := certmagic.Config{
		Storage:            storage,
		RenewalWindowRatio: cfg.RenewalWindowRatio,
		OnEvent:            m.event,
		Logger:             zl,
	}
	m.magic = certmagic.New(m.cache, base)
	m.issuer = m.newIssuer(m.magic)
	m.magic.Issuers = []certmagic.Issuer{m.issuer}

	od := base
	od.OnDemand = &certmagic.OnDemandConfig{DecisionFunc: m.decide}
	m.demand = certmagic.New(m.cache, od)
	m.demand.Issuers = []certmagic.Issuer{m.newIssuer(m.demand)}

	go m.watchFiles()
	return m, nil
}

func (m *Manager) newIssuer(cfg *certmagic.Config) *certmagic.ACMEIssuer {
	a := m.cfg.ACME
	return certmagic.NewACMEIssuer(cfg, certmagic.ACMEIssuer{
		CA:                      a.Directory,
		TestCA:                  a.Directory,
		Email:                   a.Email,
		Agreed:                  true,
		TrustedRoots:            a.TrustedRoots,
		AltHTTPPort:             a.HTTPPort,
		AltTLSALPNPort:          a.TLSPort,
		DisableHTTPChallenge:    a.DisableHTTP01,
		DisableTLSALPNChallenge: a.DisableTLSALPN01,
		CertObtainTimeout:       a.ObtainTimeout,
		Logger:                  cfg.Logger,
	})
}

// Stop ends renewals, retries and file watching.
func (m *Manager) Stop() {
	m.cancel()
	<-m.done
	m.cache.Stop()
}

// SetDomains makes the set of served domains exactly ds: new managed
// domains start issuance in the background (or load what storage already
// holds), file certificates are (re)loaded, removed domains stop being
// served. It returns every problem found, one per domain; the other
// domains are applied regardless, and a domain whose new files fail to
// load keeps its previous certificate.
func (m *Manager) SetDomains(ctx context.Context, ds []config.Domain) error {
	var errs []error
	want := make(map[string]config.Domain, len(ds))
	for _, d := range ds {
		name, err := config.NormalizeDomainName(d.Name)
		if err != nil {
			errs = append(errs, fmt.Errorf("certs: %w", err))
			continue
		}
		want[name] = d
	}

	m.mu.Lock()
	defer m.mu.Unlock()
	for name, st := range m.domains {
		if _, ok := want[name]; !ok {
			m.dropLocked(name, st)
		}
	}
	for name, d := range want {
		if err := m.applyLocked(ctx, name, d); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

func (m *Manager) applyLocked(ctx context.Context, name string, d config.Domain) error {
	src := d.Certificate
	managed := src == nil || src.Managed
	old := m.domains[name]
	if old != nil && old.managed != managed {
		m.dropLocked(name, old)
		old = nil
	}
	if !managed {
		if src.CertFile == "" || src.KeyFile == "" {
			err := fmt.Errorf("certs: domain %q: certFile and keyFile go together; set both, or managed: true", name)
			m.setErrLocked(name, old, false, err)
			return err
		}
		st := old
		if st == nil || st.certFile != src.CertFile || st.keyFile != src.KeyFile {
			st = &domainState{certFile: src.CertFile, keyFile: src.KeyFile}
			if old != nil {
				st.hash = old.hash // keep serving the old files until the new ones load
			}
			m.domains[name] = st
		}
		return m.loadFileLocked(ctx, name, st, true)
	}

	if old != nil {
		return nil // already managed: certmagic renews it
	}
	st := &domainState{managed: true}
	m.domains[name] = st
	if strings.HasPrefix(name, "*.") {
		err := fmt.Errorf("certs: domain %q: a wildcard certificate needs ACME's DNS-01 challenge: %w", name, ErrDNS01NotAvailable)
		st.lastErr = err.Error()
		return err
	}
	if _, err := netip.ParseAddr(name); err == nil {
		err := fmt.Errorf("certs: domain %q is an IP address: ACME certificates here are for DNS names; give it certFile and keyFile", name)
		st.lastErr = err.Error()
		return err
	}
	mctx, stop := context.WithCancel(m.ctx)
	st.stop = stop
	if err := m.magic.ManageAsync(mctx, []string{name}); err != nil {
		err = fmt.Errorf("certs: domain %q: starting certificate management: %w", name, err)
		st.lastErr = err.Error()
		return err
	}
	return nil
}

func (m *Manager) dropLocked(name string, st *domainState) {
	if st.stop != nil {
		st.stop()
	}
	m.acmeErr.Delete(name)
	if st.managed {
		m.cache.RemoveManaged([]certmagic.SubjectIssuer{{Subject: name}})
	} else if st.hash != "" {
		m.cache.Remove([]string{st.hash})
	}
	delete(m.domains, name)
}

func (m *Manager) setErrLocked(name string, st *domainState, managed bool, err error) {
	if st == nil {
		st = &domainState{managed: managed}
		m.domains[name] = st
	}
	st.lastErr = err.Error()
}

// loadFileLocked reads a domain's certificate files if they changed (or
// force) and puts them in the cache in place of the previous ones.
func (m *Manager) loadFileLocked(ctx context.Context, name string, st *domainState, force bool) error {
	stamp, err := statFiles(st.certFile, st.keyFile)
	if err == nil && !force && stamp == st.stamp && st.hash != "" {
		return nil
	}
	var certPEM, keyPEM []byte
	if err == nil {
		certPEM, err = os.ReadFile(st.certFile)
	}
	if err == nil {
		keyPEM, err = os.ReadFile(st.keyFile)
	}
	if err == nil {
		_, err = tls.X509KeyPair(certPEM, keyPEM)
	}
	var hash string
	if err == nil {
		// (certmagic's ...AsReplacement variant deadlocks in v0.25.6: it
		// read-locks the cache while holding its write lock.)
		hash, err = m.demand.CacheUnmanagedCertificatePEMBytes(ctx, certPEM, keyPEM, []string{"portico-file"})
	}
	if err != nil {
		err = fmt.Errorf("certs: domain %q: loading certFile %s and keyFile %s: %w (fix the files; the previous certificate, if any, is still served)", name, st.certFile, st.keyFile, err)
		st.lastErr = err.Error()
		st.stamp = stamp // do not retry the same broken files on every check
		return err
	}
	if st.hash != "" && st.hash != hash {
		m.cache.Remove([]string{st.hash})
	}
	st.hash, st.stamp, st.lastErr = hash, stamp, ""
	m.log.Info("certificate loaded from files", "domain", name, "certFile", st.certFile)
	return nil
}

func (m *Manager) watchFiles() {
	defer close(m.done)
	t := time.NewTicker(m.cfg.FileCheckInterval)
	defer t.Stop()
	for {
		select {
		case <-m.ctx.Done():
			return
		case <-t.C:
		}
		m.mu.Lock()
		for name, st := range m.domains {
			if !st.managed {
				_ = m.loadFileLocked(m.ctx, name, st, false) // recorded in lastErr and logged below
				if st.lastErr != "" {
					m.log.Warn("certificate files unusable", "domain", name, "error", st.lastErr)
				}
			}
		}
		m.mu.Unlock()
	}
}

type fileStamp struct {
	certMod, keyMod   time.Time
	certSize, keySize int64
}

func statFiles(cert, key string) (fileStamp, error) {
	c, err := os.Stat(cert)
	if err != nil {
		return fileStamp{}, err
	}
	k, err := os.Stat(key)
	if err != nil {
		return fileStamp{}, err
	}
	return fileStamp{c.ModTime(), k.ModTime(), c.Size(), k.Size()}, nil
}

// configured reports whether name (normalised) may get a certificate:
// a configured domain, or covered by a configured wildcard.
// Has reports whether name (canonical form) is a domain the manager holds a
// certificate source for: the node's other certificates serve the rest.
func (m *Manager) Has(name string) bool { return m.configured(name) }

func (m *Manager) configured(name string) bool {
	m.mu.RLock()
	defer m.mu.RUnlock()
	if _, ok := m.domains[name]; ok {
		return true
	}
	if i := strings.IndexByte(name, '.'); i > 0 {
		_, ok := m.domains["*"+name[i:]]
		return ok
	}
	return false
}

// GetCertificate answers a TLS handshake, for tls.Config and listen.Config.
// A server name that is not a configured domain fails at once: no lookup
// in storage, no ACME order.
func (m *Manager) GetCertificate(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name, err := config.NormalizeDomainName(hello.ServerName)
	if hello.ServerName == "" || err != nil {
		return nil, fmt.Errorf("certs: no certificate without a valid server name (SNI %q)", hello.ServerName)
	}
	if !m.configured(name) {
		return nil, fmt.Errorf("certs: no certificate for %q: it is not a configured domain", name)
	}
	return m.demand.GetCertificate(hello)
}

// ALPNProtocols lists acme-tls/1 when TLS-ALPN-01 is on, so that the
// listener negotiates it (listen.ALPNSource).
func (m *Manager) ALPNProtocols() []string {
	if m.cfg.ACME.DisableTLSALPN01 {
		return nil
	}
	return []string{"acme-tls/1"}
}

// HTTPChallengeHandler answers ACME HTTP-01 requests for pending
// challenges and passes everything else to next. Put it in front of the
// plain-HTTP listener's handler.
func (m *Manager) HTTPChallengeHandler(next http.Handler) http.Handler {
	if m.cfg.ACME.DisableHTTP01 {
		return next
	}
	return m.issuer.HTTPChallengeHandler(next)
}

// decide is certmagic's on-demand DecisionFunc: only configured, managed,
// non-wildcard names, and only as often as the limiter allows.
func (m *Manager) decide(_ context.Context, name string) error {
	m.mu.RLock()
	st := m.domains[name]
	m.mu.RUnlock()
	if st == nil || !st.managed || strings.HasPrefix(name, "*.") {
		return fmt.Errorf("certs: on-demand issuance refused for %q: not a configured managed domain", name)
	}
	if !m.limiter.allow() {
		return fmt.Errorf("certs: on-demand issuance for %q refused: more than %d per minute", name, m.cfg.OnDemandPerMinute)
	}
	return nil
}

// Status reports the certificate of a domain.
func (m *Manager) Status(domain string) CertStatus {
	name, err := config.NormalizeDomainName(domain)
	if err != nil {
		return CertStatus{LastError: err.Error()}
	}
	m.mu.RLock()
	st := m.domains[name]
	var cs CertStatus
	if st != nil {
		cs.Managed, cs.LastError = st.managed, st.lastErr
		if e, ok := m.acmeErr.Load(name); ok && st.managed && cs.LastError == "" {
			cs.LastError = e.(string)
		}
	}
	m.mu.RUnlock()
	if st == nil {
		return CertStatus{LastError: fmt.Sprintf("%q is not a configured domain", name)}
	}
	for _, c := range m.cache.AllMatchingCertificates(name) {
		if c.Leaf != nil && c.Leaf.NotAfter.After(cs.NotAfter) {
			cs.NotAfter, cs.Issuer = c.Leaf.NotAfter, c.Leaf.Issuer.CommonName
		}
	}
	return cs
}

// event follows certmagic's events to keep each domain's LastError.
func (m *Manager) event(ctx context.Context, event string, data map[string]any) error {
	if m.onEvent != nil {
		m.onEvent(event, data)
	}
	id, _ := data["identifier"].(string)
	if id == "" {
		return nil
	}
	switch event {
	case "cert_failed":
		msg := fmt.Sprint(data["error"])
		renewal, _ := data["renewal"].(bool)
		m.log.Warn("certificate issuance failed; the current certificate (if any) is still served and certmagic retries with back-off",
			"domain", id, "renewal", renewal, "error", msg)
		m.acmeErr.Store(id, msg)
	case "cert_obtained":
		renewal, _ := data["renewal"].(bool)
		m.log.Info("certificate obtained", "domain", id, "renewal", renewal, "issuer", data["issuer"])
		m.acmeErr.Delete(id)
	}
	return nil
}
