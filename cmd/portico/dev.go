package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge"
	"github.com/portico-edge/portico/edge/devca"
	"github.com/portico-edge/portico/edge/heartbeat"
	"github.com/portico-edge/portico/edge/listen"
	"github.com/portico-edge/portico/examples/quickstart/backend"
	"github.com/portico-edge/portico/origin"
	"github.com/portico-edge/portico/origin/store"
)

// runDev runs everything on loopback with the quickstart API: the
// "try it in one command" mode.
func runDev(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("dev", stderr)
	dataDir := fs.String("data-dir", ".data/dev", "directory for the database, dev CA and snapshots")
	configFile := fs.String("config", "examples/quickstart/portico.yaml", "config file applied at start")
	httpsListen := fs.String("https-listen", "127.0.0.1:8443", "edge HTTPS address")
	httpListen := fs.String("http-listen", "127.0.0.1:8080", "edge plain-HTTP address")
	adminListen := fs.String("admin-listen", "127.0.0.1:9900", "admin API address")
	dataListen := fs.String("data-listen", "127.0.0.1:9901", "origin data-plane address")
	opsListen := fs.String("ops-listen", "127.0.0.1:9902", "edge health address")
	backendListen := fs.String("backend-listen", "127.0.0.1:9080", "example backend address; empty starts none")
	logLevel := fs.String("log-level", "warn", "debug, info, warn or error")
	cacheBytes := byteSize(defaultCacheBytes)
	fs.Var(&cacheBytes, "cache-bytes", "memory budget of the edge's response cache; 0 turns caching off")
	usageInterval := fs.Duration("usage-interval", 10*time.Second, "how often the edge reports API key usage to the origin (also at shutdown)")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if *usageInterval < 100*time.Millisecond {
		return usageError{fmt.Sprintf("--usage-interval %v: give at least 100ms (the default is 10s)", *usageInterval)}
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	tuneGC()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()

	var backendAddr string
	backendErr := make(chan error, 1)
	if *backendListen != "" {
		ln, err := net.Listen("tcp", *backendListen)
		if err != nil {
			return fmt.Errorf("example backend: %w (is another portico dev running? use --backend-listen)", err)
		}
		backendAddr = ln.Addr().String()
		bs := &http.Server{Handler: backend.Handler(), ReadHeaderTimeout: 10 * time.Second}
		go func() { backendErr <- bs.Serve(ln) }()
		go func() { <-ctx.Done(); bs.Close() }()
	}

	// Dev fetches JWKS from loopback too: the quickstart's identity
	// provider, if any, runs beside it.
	// One node serves the origin's admission and the edge, so its WASM
	// host reads modules straight from the origin's store.
	mods := &deferredModules{}
	n, err := newNode(nodeFlags{authFailures: 10, authWindow: time.Minute, authCacheEntries: 10000, allowPrivateJWKS: true, cacheBytes: cacheBytes}, nodeEnv{dataDir: filepath.Join(*dataDir, "origin"), modules: mods}, log)
	if err != nil {
		return err
	}
	defer n.Close(context.Background())
	tuneMemory(int64(cacheBytes), log)
	o, _, err := origin.New(ctx, origin.Config{DataDir: filepath.Join(*dataDir, "origin"), AdminListen: *adminListen, DataListen: *dataListen, Importer: importDocument, Policies: n.Policies, Logger: log})
	if err != nil {
		return err
	}
	defer o.Close()
	mods.set(o.Modules)
	adminTok, err := o.ReplaceToken(ctx, store.TokenAdmin, "dev")
	if err != nil {
		return err
	}
	edgeTok, err := o.ReplaceToken(ctx, store.TokenEdge, "dev")
	if err != nil {
		return err
	}
	if *configFile != "" {
		if err := applyFile(ctx, o.Control, *configFile, log); err != nil {
			return err
		}
	}
	if err := o.Listen(); err != nil {
		return fmt.Errorf("%w (is another portico dev running?)", err)
	}
	// The origin outlives the edge: at shutdown the edge drains, then
	// reports its last usage to the origin, and only then does the origin
	// stop.
	originCtx, stopOrigin := context.WithCancel(context.Background())
	defer stopOrigin()
	originDone := make(chan error, 1)
	go func() { originDone <- o.Serve(originCtx, 5*time.Second) }()

	originURL := &url.URL{Scheme: "http", Host: o.DataAddr()}
	certs, err := loadCertificates("", "", true, filepath.Join(*dataDir, "edge"))
	if err != nil {
		return err
	}
	if err := certs.startManager(tlsFlags{}, filepath.Join(*dataDir, "edge"), *httpListen, *httpsListen, log); err != nil {
		return err
	}
	defer certs.stop()
	e, err := edge.New(edge.Config{Origin: originURL, Token: edgeTok, DataDir: filepath.Join(*dataDir, "edge"), Policies: n.Policies, Prepare: certs.prepare(n.prepare, config.EndpointEdge, log), HTTPSPort: portOf(*httpsListen), Logger: log})
	if err != nil {
		return err
	}
	caPath := filepath.Join(*dataDir, "edge", devca.CACertFile)
	ready := func(httpsAddr, httpAddr string) {
		fmt.Fprintf(stdout, `Portico dev is running.
  edge      https://%s  (and http://%s, which redirects)
  admin API http://%s   token: %s
  origin    http://%s (data plane)
  backend   http://%s (example pet store)
  dev CA    %s

Try:
  curl -sk https://%s/v1/pets
  curl --cacert %s https://localhost:%d/v2/pets

Use the admin API with portico ctl:
  export PORTICO_ADMIN_URL=http://%s PORTICO_TOKEN=%s
  bin/portico ctl apis list
`, httpsAddr, httpAddr, o.AdminAddr(), adminTok, o.DataAddr(), backendAddr, caPath, httpsAddr, caPath, portOf(httpsAddr), o.AdminAddr(), adminTok)
		writeDevEnv(*dataDir, o.AdminAddr(), adminTok)
	}
	stopUsage, err := startUsageReporter(originURL, edgeTok, nil, n, *usageInterval, log)
	if err != nil {
		return err
	}
	edgeDone := make(chan error, 1)
	go func() {
		hb := &heartbeat.Reporter{Origin: originURL, Token: edgeTok, Log: log, State: edgeState(e, certs, "dev-edge", "local", "edge")}
		edgeDone <- serveEdge(ctx, e, n, edgeListeners{HTTPS: *httpsListen, HTTP: *httpListen, Ops: *opsListen, Certs: certs, Drain: 5 * time.Second, HTTP3: true, HSTS: listen.HSTSPolicy{Disabled: true}, Ready: ready, Heartbeat: hb}, log)
	}()
	var runErr error
	originStopped := false
	select {
	case <-ctx.Done():
		runErr = <-edgeDone
	case runErr = <-edgeDone:
	case runErr = <-originDone:
		originStopped = true
		cancel()
		<-edgeDone
	case runErr = <-backendErr:
		cancel()
		<-edgeDone
	}
	cancel()
	stopUsage()
	stopOrigin()
	if !originStopped {
		if err := <-originDone; runErr == nil {
			runErr = err
		}
	}
	if errors.Is(runErr, http.ErrServerClosed) {
		return nil
	}
	return runErr
}

// writeDevEnv leaves the admin URL and token where scripts can source them.
func writeDevEnv(dataDir, adminAddr, token string) {
	_ = os.WriteFile(filepath.Join(dataDir, "env"), []byte(fmt.Sprintf("export PORTICO_ADMIN_URL=http://%s\nexport PORTICO_TOKEN=%s\n", adminAddr, token)), 0o600)
}
