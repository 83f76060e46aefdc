package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge"
	"github.com/portico-edge/portico/edge/hygiene"
	"github.com/portico-edge/portico/edge/listen"
	"github.com/portico-edge/portico/edge/modules"
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
	var tf tlsFlags
	tf.register(fs)
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
	mods, err := modules.New(modules.Options{Origin: u, Token: tok, Dir: filepath.Join(*dataDir, "modules"), MaxBytes: nf.maxModuleBytes, Logger: log})
	if err != nil {
		return err
	}
	n, err := newNode(nf, nodeEnv{dataDir: *dataDir, modules: mods}, log)
	if err != nil {
		return err
	}
	defer n.Close(context.Background())
	port := *httpsPort
	if port == 0 {
		port = portOf(*httpsListen)
	}
	certs, err := loadCertificates(*certFile, *keyFile, *devCA, *dataDir)
	if err != nil {
		return err
	}
	if err := certs.startManager(tf, *dataDir, *httpListen, *httpsListen, log); err != nil {
		return err
	}
	defer certs.stop()
	e, err := edge.New(edge.Config{Origin: u, Token: tok, DataDir: *dataDir, Policies: n.Policies, Prepare: certs.prepare(n.prepare, config.EndpointEdge, log), TrustedProxies: n.Trusted, HTTPSPort: port, Logger: log})
	if err != nil {
		return err
	}
	hsts, err := tf.hsts(*devCA)
	if err != nil {
		return err
	}
	return serveEdge(ctx, e, n, edgeListeners{HTTPS: *httpsListen, HTTP: *httpListen, Ops: *opsListen, Certs: certs, Drain: *drain, HTTP3: !tf.noHTTP3, HSTS: hsts}, log)
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

type edgeListeners struct {
	HTTPS, HTTP, Ops string
	Certs            *certificateSource
	Drain            time.Duration
	HTTP3            bool
	HSTS             listen.HSTSPolicy
	// Name is what the listeners serve, for the log ("edge" by default).
	Name string
	// Ready is called once every listener is bound.
	Ready func(httpsAddr, httpAddr string)
}

// serveEdge runs the edge's listeners (edge/listen: HTTP/1.1, HTTP/2,
// HTTP/3 and plain HTTP, hardened), its ops listener and its follower
// until ctx ends, then drains.
func serveEdge(ctx context.Context, e *edge.Edge, n *node, l edgeListeners, log *slog.Logger) error {
	plain := http.Handler(e)
	if l.Certs.mgr != nil {
		plain = l.Certs.mgr.HTTPChallengeHandler(e)
	}
	srv, err := listen.New(listen.Config{
		TLSAddr:      l.HTTPS,
		HTTPAddr:     l.HTTP,
		Certificates: l.Certs,
		PlainHandler: plain,
		DisableHTTP3: !l.HTTP3,
		HSTS:         l.HSTS,
		DrainTimeout: l.Drain,
		// Responses may take as long as the longest integration timeout.
		WriteTimeout: config.MaxIntegrationTimeout + 30*time.Second,
		// The framing guard sees every HTTP/1 request head, over TLS
		// too, before Go's parser drops the evidence of smuggling.
		HTTP1Conn:   func(c net.Conn) net.Conn { return hygiene.NewConn(c) },
		ConnContext: hygiene.ConnContext,
		Logger:      log,
	}, e)
	if err != nil {
		return err
	}
	if err := srv.Listen(); err != nil {
		return err
	}
	httpsAddr, httpAddr := "", ""
	if a := srv.TLSAddr(); a != nil {
		httpsAddr = a.String()
	}
	if a := srv.HTTPAddr(); a != nil {
		httpAddr = a.String()
	}
	var ops *http.Server
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
		ln, err := net.Listen("tcp", l.Ops)
		if err != nil {
			_ = srv.Shutdown(context.Background())
			return fmt.Errorf("ops listener: %w", err)
		}
		ops = &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
		go ops.Serve(ln)
	}
	runCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	go e.Run(runCtx)
	go func() {
		<-ctx.Done()
		e.Drain() // WebSockets get 1001; the listener drains the rest
	}()
	name := l.Name
	if name == "" {
		name = "edge"
	}
	log.Info(name+" serving", "https", httpsAddr, "http", httpAddr, "ops", l.Ops, "http3", l.HTTP3)
	if l.Ready != nil {
		l.Ready(httpsAddr, httpAddr)
	}
	err = srv.Serve(ctx)
	if ops != nil {
		_ = ops.Close()
	}
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}
