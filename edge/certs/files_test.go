package certs

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"math/big"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
)

// writeCert writes a self-signed certificate for names with the given
// serial to dir/cert.pem and dir/key.pem.
func writeCert(t *testing.T, dir string, serial int64, names ...string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(serial),
		Subject:      pkix.Name{CommonName: names[0]},
		DNSNames:     names,
		NotBefore:    time.Now().Add(-time.Hour),
		NotAfter:     time.Now().Add(48 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kb, _ := x509.MarshalECPrivateKey(key)
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb}), 0o600)
	// Make the change visible to a coarse mtime comparison.
	future := time.Now().Add(time.Duration(serial) * time.Second)
	os.Chtimes(certFile, future, future)
	os.Chtimes(keyFile, future, future)
	return certFile, keyFile
}

func newFilesManager(t *testing.T) *Manager {
	t.Helper()
	m, err := New(Config{DataDir: t.TempDir(), FileCheckInterval: 50 * time.Millisecond, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(m.Stop)
	return m
}

func serialFor(t *testing.T, m *Manager, name string) (int64, error) {
	c, err := m.GetCertificate(&tls.ClientHelloInfo{ServerName: name})
	if err != nil {
		return 0, err
	}
	leaf, err := x509.ParseCertificate(c.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return leaf.SerialNumber.Int64(), nil
}

func TestFileCertificatesReload(t *testing.T) {
	m := newFilesManager(t)
	dir := t.TempDir()
	cf, kf := writeCert(t, dir, 1, "files.portico.test")
	d := config.Domain{Name: "Files.Portico.Test.", Certificate: &config.CertificateSource{CertFile: cf, KeyFile: kf}}
	if err := m.SetDomains(context.Background(), []config.Domain{d}); err != nil {
		t.Fatal(err)
	}
	if s, err := serialFor(t, m, "files.portico.test"); err != nil || s != 1 {
		t.Fatalf("serial %d, %v", s, err)
	}
	st := m.Status("files.portico.test")
	if st.Managed || st.Issuer != "files.portico.test" || st.LastError != "" || st.NotAfter.IsZero() {
		t.Fatalf("Status = %+v", st)
	}

	// New files on disk: picked up by the watcher.
	writeCert(t, dir, 2, "files.portico.test")
	if !waitUntil(3*time.Second, func() bool { s, _ := serialFor(t, m, "files.portico.test"); return s == 2 }) {
		t.Fatal("changed files not reloaded")
	}

	// Broken files: the previous certificate stays, the error is reported.
	os.WriteFile(cf, []byte("not a certificate"), 0o600)
	if !waitUntil(3*time.Second, func() bool { return m.Status("files.portico.test").LastError != "" }) {
		t.Fatal("broken files not reported")
	}
	if s, err := serialFor(t, m, "files.portico.test"); err != nil || s != 2 {
		t.Fatalf("after broken files: serial %d, %v; want the previous certificate", s, err)
	}

	// A snapshot that points elsewhere reloads at once.
	dir2 := t.TempDir()
	cf2, kf2 := writeCert(t, dir2, 3, "files.portico.test")
	d.Certificate = &config.CertificateSource{CertFile: cf2, KeyFile: kf2}
	if err := m.SetDomains(context.Background(), []config.Domain{d}); err != nil {
		t.Fatal(err)
	}
	if s, _ := serialFor(t, m, "files.portico.test"); s != 3 {
		t.Fatalf("serial %d after snapshot change, want 3", s)
	}

	// Removed from the snapshot: no longer served.
	if err := m.SetDomains(context.Background(), nil); err != nil {
		t.Fatal(err)
	}
	if _, err := serialFor(t, m, "files.portico.test"); err == nil {
		t.Fatal("removed domain still served")
	}
}

func TestUnknownNamesRefused(t *testing.T) {
	m := newFilesManager(t)
	cf, kf := writeCert(t, t.TempDir(), 1, "*.wild.portico.test")
	err := m.SetDomains(context.Background(), []config.Domain{{Name: "*.wild.portico.test", Certificate: &config.CertificateSource{CertFile: cf, KeyFile: kf}}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := serialFor(t, m, "x.wild.portico.test"); err != nil {
		t.Fatalf("name under a configured wildcard: %v", err)
	}
	for _, name := range []string{"other.portico.test", "a.b.wild.portico.test", "", "127.0.0.1"} {
		start := time.Now()
		_, err := serialFor(t, m, name)
		if err == nil {
			t.Errorf("SNI %q got a certificate", name)
		}
		if time.Since(start) > 100*time.Millisecond {
			t.Errorf("SNI %q refusal took %v", name, time.Since(start))
		}
	}
	if err := m.decide(context.Background(), "other.portico.test"); err == nil {
		t.Error("DecisionFunc allowed an unconfigured name")
	}
}

func TestManagedWildcardNeedsDNS01(t *testing.T) {
	m := newFilesManager(t)
	err := m.SetDomains(context.Background(), []config.Domain{{Name: "*.w.portico.test", Certificate: &config.CertificateSource{Managed: true}}})
	if !errors.Is(err, ErrDNS01NotAvailable) {
		t.Fatalf("managed wildcard: %v", err)
	}
	if st := m.Status("*.w.portico.test"); !strings.Contains(st.LastError, "DNS-01") {
		t.Fatalf("Status = %+v", st)
	}
	_, err = New(Config{DataDir: t.TempDir(), ACME: ACMEConfig{DNS01: dnsStub{}}})
	if !errors.Is(err, ErrDNS01NotAvailable) {
		t.Fatalf("DNS01 configured: %v", err)
	}
	if _, err := New(Config{DataDir: "relative"}); err == nil || !strings.Contains(err.Error(), "absolute") {
		t.Fatalf("relative DataDir: %v", err)
	}
}

type dnsStub struct{ DNS01Solver }

func TestOnDemandRateLimited(t *testing.T) {
	m, err := New(Config{DataDir: t.TempDir(), OnDemandPerMinute: 2, Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer m.Stop()
	m.mu.Lock()
	m.domains["od.portico.test"] = &domainState{managed: true} // as SetDomains would, without starting ACME
	m.mu.Unlock()
	var allowed int
	for range 5 {
		if m.decide(context.Background(), "od.portico.test") == nil {
			allowed++
		}
	}
	if allowed != 2 {
		t.Fatalf("%d of 5 on-demand issuances allowed with a limit of 2/min", allowed)
	}
}

func waitUntil(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for time.Now().Before(deadline) {
		if cond() {
			return true
		}
		time.Sleep(20 * time.Millisecond)
	}
	return cond()
}
