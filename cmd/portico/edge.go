package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
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
	"github.com/portico-edge/portico/edge/heartbeat"
	"github.com/portico-edge/portico/edge/hygiene"
	"github.com/portico-edge/portico/edge/listen"
	"github.com/portico-edge/portico/edge/modules"
	edgeusage "github.com/portico-edge/portico/edge/usage"
	"github.com/portico-edge/portico/origin/fleet"
)

func runEdge(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("edge", stderr)
	originURL := fs.String("origin", "", "the origin's data-plane URL, e.g. http://origin.internal:9901 (required)")
	token := fs.String("token", "", "edge token (or set PORTICO_EDGE_TOKEN, or use --token-file)")
	tokenFile := fs.String("token-file", "", "file holding the edge token")
	originCA := fs.String("origin-ca", "", "PEM file of the roots that sign an https origin's certificate (default: the system's)")
	originHTTP3 := fs.Bool("origin-http3", false, "forward to an https origin over HTTP/3 (QUIC) instead of HTTP/1.1")
	dataDir := fs.String("data-dir", envOr("PORTICO_DATA_DIR", "portico-edge-data"), "directory for the last good snapshot and caches")
	httpsListen := fs.String("https-listen", ":443", "HTTPS address")
	httpListen := fs.String("http-listen", ":80", "plain-HTTP address (redirects to HTTPS unless a domain says serve); empty disables it")
	httpsPort := fs.Int("https-port", 0, "public HTTPS port used in redirects (default: the port of --https-listen)")
	certFile := fs.String("tls-cert", "", "default certificate (PEM) for names without their own")
	keyFile := fs.String("tls-key", "", "key of --tls-cert")
	devCA := fs.Bool("dev-ca", false, "issue certificates from a local development CA kept in the data dir (not for production)")
	var tf tlsFlags
	tf.register(fs)
	nodeName := fs.String("node-name", hostname(), "this edge's name in the origin's node list")
	site := fs.String("site", "", "the edge site this node belongs to")
	opsListen := fs.String("ops-listen", "127.0.0.1:9902", "address for /healthz, /readyz and /metrics; empty disables it")
	drain := fs.Duration("drain", 15*time.Second, "how long requests in flight may take to finish at shutdown")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	usageInterval := fs.Duration("usage-interval", 10*time.Second, "how often API key usage is reported to the origin (also at shutdown)")
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
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		// "http://http://host:port" parses as host "http" and path
		// "//host:port"; an origin is reached at its root, so anything
		// beyond scheme, host and port is a mistake worth naming.
		return usageError{fmt.Sprintf("--origin %q: give only the scheme, host and port of the origin's data plane, such as http://127.0.0.1:9901 (no path, query or user)", *originURL)}
	}
	tok, err := edgeToken(*token, *tokenFile)
	if err != nil {
		return err
	}
	if *usageInterval < 100*time.Millisecond {
		return usageError{fmt.Sprintf("--usage-interval %v: give at least 100ms (the default is 10s)", *usageInterval)}
	}
	tuneGC()
	oc, err := originClient(u, *originCA, *originHTTP3)
	if err != nil {
		return err
	}
	mods, err := modules.New(modules.Options{Origin: u, Token: tok, Client: oc.client, Dir: filepath.Join(*dataDir, "modules"), MaxBytes: nf.maxModuleBytes, Logger: log})
	if err != nil {
		return err
	}
	n, err := newNode(nf, nodeEnv{dataDir: *dataDir, modules: mods}, log)
	if err != nil {
		return err
	}
	defer n.Close(context.Background())
	tuneMemory(int64(nf.cacheBytes), log)
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
	ws, err := nf.wsLimits()
	if err != nil {
		return err
	}
	e, err := edge.New(edge.Config{WebSocket: ws, Origin: u, Token: tok, DataDir: *dataDir, Policies: n.Policies, Prepare: certs.prepare(n.prepare, config.EndpointEdge, log), TrustedProxies: n.Trusted, HTTPSPort: port, Logger: log,
		OriginTLS: oc.tls, OriginTransport: oc.forward, OriginClient: oc.client})
	if err != nil {
		return err
	}
	hsts, err := tf.hsts(*devCA)
	if err != nil {
		return err
	}
	hb := &heartbeat.Reporter{Origin: u, Token: tok, Client: oc.client, Log: log, State: edgeState(e, certs, *nodeName, *site, "edge")}
	stopUsage, err := startUsageReporter(u, tok, oc.client, n, *usageInterval, log)
	if err != nil {
		return err
	}
	err = serveEdge(ctx, e, n, edgeListeners{HTTPS: *httpsListen, HTTP: *httpListen, Ops: *opsListen, Certs: certs, Drain: *drain, HTTP3: !tf.noHTTP3, HSTS: hsts, Allow0RTT: tf.allow0RTT, Heartbeat: hb}, log)
	stopUsage()
	return err
}

// startUsageReporter reports the node's API key usage to the origin every
// interval. The returned stop ends it and makes a last report (bounded to
// 5 seconds); call it once the listeners stopped taking requests, so that
// requests served while draining are counted too.
func startUsageReporter(origin *url.URL, token string, client *http.Client, n *node, interval time.Duration, log *slog.Logger) (stop func(), err error) {
	rep, err := edgeusage.New(edgeusage.Options{Origin: origin, Token: token, Client: client, Source: n.Usage, Interval: interval, Logger: log, Registerer: n.Metrics})
	if err != nil {
		return nil, err
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		rep.Run(ctx)
	}()
	return func() {
		cancel()
		<-done
		fctx, fcancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer fcancel()
		if err := rep.Close(fctx); err == nil {
			log.Info("usage reported at shutdown")
		}
	}, nil
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
	// Allow0RTT accepts QUIC 0-RTT requests for routes that opt in.
	Allow0RTT bool
	// Name is what the listeners serve, for the log ("edge" by default).
	Name string
	// Heartbeat, when set, reports to the origin while serving.
	Heartbeat *heartbeat.Reporter
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
		TLSAddr:         l.HTTPS,
		HTTPAddr:        l.HTTP,
		Certificates:    l.Certs,
		PlainHandler:    plain,
		DisableHTTP3:    !l.HTTP3,
		HSTS:            l.HSTS,
		Allow0RTT:       l.Allow0RTT,
		AcceptEarlyData: e.AcceptEarlyData,
		DrainTimeout:    l.Drain,
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
	if l.Heartbeat != nil {
		go l.Heartbeat.Run(runCtx)
	}
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

// edgeState returns what a node's heartbeats report.
func edgeState(e *edge.Edge, certs *certificateSource, name, site, role string) func() fleet.Heartbeat {
	started := time.Now().UTC()
	typ := config.EndpointEdge
	if role == "regional" {
		typ = config.EndpointRegional
	}
	return func() fleet.Heartbeat {
		return fleet.Heartbeat{Node: name, Site: site, Role: role, Version: e.Version(), Build: version, StartedAt: started, Certificates: certs.statuses(e.Snapshot(), typ)}
	}
}

func hostname() string {
	h, err := os.Hostname()
	if err != nil || h == "" {
		return "edge"
	}
	return h
}

// originConn is how an edge reaches its origin.
type originConn struct {
	tls     *tls.Config       // for an https origin
	forward http.RoundTripper // forwarded requests; nil means the forwarder's HTTP/1.1 pool
	client  *http.Client      // snapshots, heartbeats, reports
}

func originClient(u *url.URL, caFile string, h3 bool) (*originConn, error) {
	oc := &originConn{client: &http.Client{}}
	if u.Scheme != "https" {
		if h3 {
			return nil, usageError{"--origin-http3 needs an https:// origin (the origin serves TLS with --data-tls-cert)"}
		}
		if caFile != "" {
			return nil, usageError{"--origin-ca applies to an https:// origin"}
		}
		return oc, nil
	}
	oc.tls = &tls.Config{MinVersion: tls.VersionTLS12}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, fmt.Errorf("--origin-ca: %w", err)
		}
		pool := x509.NewCertPool()
		if !pool.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("--origin-ca %s holds no PEM certificate", caFile)
		}
		oc.tls.RootCAs = pool
	}
	// Each user gets its own copy: net/http's HTTP/2 set-up edits the
	// config it is given.
	oc.client = &http.Client{Transport: &http.Transport{TLSClientConfig: oc.tls.Clone(), ForceAttemptHTTP2: true, Proxy: nil}}
	if h3 {
		oc.forward = listen.NewHTTP3Transport(oc.tls.Clone())
	}
	return oc, nil
}
