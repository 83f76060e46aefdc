package main

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portico-edge/portico/edge"
	"github.com/portico-edge/portico/edge/devca"
	"github.com/portico-edge/portico/edge/hygiene"
)

func runEdge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("edge", stderr)
	originURL := fs.String("origin", "", "the origin's data-plane URL, e.g. http://origin.internal:9901 (required)")
	token := fs.String("token", "", "edge token (or set PORTICO_EDGE_TOKEN, or use --token-file)")
	tokenFile := fs.String("token-file", "", "file holding the edge token")
	dataDir := fs.String("data-dir", envOr("PORTICO_DATA_DIR", "portico-edge-data"), "directory for the last good snapshot and caches")
	httpsListen := fs.String("https-listen", ":443", "HTTPS address")
	httpListen := fs.String("http-listen", ":80", "plain-HTTP address (redirects to HTTPS unless a domain says serve); empty disables it")
	httpsPort := fs.Int("https-port", 0, "public HTTPS port used in redirects (default: the port of --https-listen)")
	certFile := fs.String("tls-cert", "", "default certificate (PEM) for names without their own")
	keyFile := fs.String("tls-key", "", "key of --tls-cert")
	devCA := fs.Bool("dev-ca", false, "issue certificates from a local development CA kept in the data dir (not for production)")
	opsListen := fs.String("ops-listen", "127.0.0.1:9902", "address for /healthz, /readyz and /metrics; empty disables it")
	drain := fs.Duration("drain", 15*time.Second, "how long requests in flight may take to finish at shutdown")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var nf nodeFlags
	nf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	if *originURL == "" {
		return usageError{"--origin is required: the origin's data-plane URL, such as http://127.0.0.1:9901"}
	}
	u, err := url.Parse(*originURL)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return usageError{fmt.Sprintf("--origin %q is not an http:// or https:// URL", *originURL)}
	}
	tok, err := edgeToken(*token, *tokenFile)
	if err != nil {
		return err
	}
	tuneGC()
	n, err := newNode(nf, log)
	if err != nil {
		return err
	}
	defer n.Close()
	tuneMemory(int64(nf.cacheBytes), log)
	port := *httpsPort
	if port == 0 {
		port = portOf(*httpsListen)
	}
	e, err := edge.New(edge.Config{Origin: u, Token: tok, DataDir: *dataDir, Policies: n.Policies, Prepare: n.prepare, TrustedProxies: n.Trusted, HTTPSPort: port, Logger: log})
	if err != nil {
		return err
	}
	certs, err := loadCertificates(*certFile, *keyFile, *devCA, *dataDir)
	if err != nil {
		return err
	}
	return serveEdge(ctx, e, n, edgeListeners{HTTPS: *httpsListen, HTTP: *httpListen, Ops: *opsListen, Certs: certs, Drain: *drain}, log)
}

func edgeToken(flagVal, file string) (string, error) {
	if flagVal != "" {
		return flagVal, nil
	}
	if file != "" {
		b, err := os.ReadFile(file)
		if err != nil {
			return "", fmt.Errorf("--token-file: %w", err)
		}
		return strings.TrimSpace(string(b)), nil
	}
	if v := os.Getenv("PORTICO_EDGE_TOKEN"); v != "" {
		return v, nil
	}
	return "", usageError{"no edge token: pass --token, --token-file or set PORTICO_EDGE_TOKEN (the origin printed one at its first start; `portico ctl tokens create --kind edge` makes more)"}
}

func portOf(addr string) int {
	_, p, err := net.SplitHostPort(addr)
	if err != nil {
		return 0
	}
	n, _ := strconv.Atoi(p)
	return n
}

// certificateSource picks the certificate for a TLS handshake.
type certificateSource struct {
	def *tls.Certificate
	ca  *devca.CA

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
	if cs.def == nil {
		return nil, usageError{"no certificate: pass --tls-cert and --tls-key, or --dev-ca on a development machine"}
	}
	return cs, nil
}

func (cs *certificateSource) get(hello *tls.ClientHelloInfo) (*tls.Certificate, error) {
	name := strings.ToLower(hello.ServerName)
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

// tlsConfig is the edge's TLS posture: TLS 1.2 or newer, and under 1.2
// only ECDHE with AEAD ciphers (Go's defaults still offer CBC suites).
func tlsConfig(cs *certificateSource) *tls.Config {
	return &tls.Config{
		MinVersion:     tls.VersionTLS12,
		GetCertificate: cs.get,
		NextProtos:     []string{"h2", "http/1.1"},
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
	}
}

type edgeListeners struct {
	HTTPS, HTTP, Ops string
	Certs            *certificateSource
	Drain            time.Duration
	// Ready is called once every listener is bound.
	Ready func(httpsAddr, httpAddr string)
}

// serveEdge runs the edge's listeners and its follower until ctx ends.
func serveEdge(ctx context.Context, e *edge.Edge, n *node, l edgeListeners, log *slog.Logger) error {
	var servers []*http.Server
	var lns []net.Listener
	closeAll := func() {
		for _, ln := range lns {
			ln.Close()
		}
	}
	add := func(addr string, s *http.Server) error {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			closeAll()
			return err
		}
		if s.TLSConfig != nil {
			ln = tls.NewListener(ln, s.TLSConfig)
		}
		servers = append(servers, s)
		lns = append(lns, ln)
		return nil
	}
	base := func(h http.Handler) *http.Server {
		return &http.Server{
			Handler:           h,
			ReadHeaderTimeout: 10 * time.Second,
			IdleTimeout:       2 * time.Minute,
			// Above the edge's own 32 KiB limit, so that most oversized
			// headers get the edge's JSON 431; Go answers beyond this.
			MaxHeaderBytes: 64 << 10,
			// Every request, OPTIONS * included, goes through hygiene.
			DisableGeneralOptionsHandler: true,
			ConnContext:                  hygiene.ConnContext,
			ErrorLog:                     slog.NewLogLogger(log.Handler(), slog.LevelDebug),
		}
	}
	hs := base(e)
	hs.TLSConfig = tlsConfig(l.Certs)
	if err := add(l.HTTPS, hs); err != nil {
		return fmt.Errorf("HTTPS listener: %w", err)
	}
	httpsAddr, httpAddr := lns[0].Addr().String(), ""
	if l.HTTP != "" {
		if err := add(l.HTTP, base(e)); err != nil {
			return fmt.Errorf("HTTP listener: %w", err)
		}
		// The framing guard sees plaintext HTTP/1 request heads before
		// Go's parser drops the evidence of smuggling attempts.
		lns[len(lns)-1] = hygiene.Listener(lns[len(lns)-1])
		httpAddr = lns[len(lns)-1].Addr().String()
	}
	if l.Ops != "" {
		mux := http.NewServeMux()
		mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "ok") })
		mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
			if !e.Ready() {
				http.Error(w, "no configuration yet", http.StatusServiceUnavailable)
				return
			}
			fmt.Fprintln(w, "ready", e.Version())
		})
		mux.Handle("GET /metrics", promhttp.HandlerFor(n.Metrics, promhttp.HandlerOpts{}))
		if err := add(l.Ops, base(mux)); err != nil {
			return fmt.Errorf("ops listener: %w", err)
		}
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go e.Run(runCtx)
	errc := make(chan error, len(servers))
	for i, s := range servers {
		go func() { errc <- s.Serve(lns[i]) }()
	}
	log.Info("edge serving", "https", httpsAddr, "http", httpAddr, "ops", l.Ops)
	if l.Ready != nil {
		l.Ready(httpsAddr, httpAddr)
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	e.Drain()
	sctx, scancel := context.WithTimeout(context.Background(), l.Drain)
	defer scancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
