package main

import (
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"syscall"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge"
	"github.com/portico-edge/portico/edge/listen"
	"github.com/portico-edge/portico/edge/wsrelay"
	"github.com/portico-edge/portico/origin"
	"github.com/portico-edge/portico/origin/control"
)

func runOrigin(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	fs := newFlagSet("origin", stderr)
	dataDir := fs.String("data-dir", envOr("PORTICO_DATA_DIR", "portico-data"), "directory for the database (created if missing)")
	adminListen := fs.String("admin-listen", "127.0.0.1:9900", "admin API address; keep it on loopback or a management network")
	dataListen := fs.String("data-listen", "127.0.0.1:9901", "data-plane address that edges forward to and fetch snapshots from")
	configFile := fs.String("config", "", "declarative config file (YAML or JSON) applied at start and on SIGHUP")
	drain := fs.Duration("drain", 15*time.Second, "how long requests in flight may take to finish at shutdown")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	var nf nodeFlags
	nf.register(fs)
	dataCert := fs.String("data-tls-cert", "", "certificate (PEM) for the data-plane listener: edges then reach it over TLS (HTTP/1.1, HTTP/2 or HTTP/3)")
	dataKey := fs.String("data-tls-key", "", "key of --data-tls-cert")
	regionalHTTPS := fs.String("regional-https-listen", "", "HTTPS address for regional and private endpoints served by this origin; empty serves none")
	regionalHTTP := fs.String("regional-http-listen", "", "plain-HTTP address for regional and private endpoints (ACME HTTP-01, redirects)")
	certFile := fs.String("tls-cert", "", "default certificate (PEM) of regional endpoints")
	keyFile := fs.String("tls-key", "", "key of --tls-cert")
	devCA := fs.Bool("dev-ca", false, "certificates for regional endpoints from a local development CA (not for production)")
	var tf tlsFlags
	tf.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	tuneGC()
	mods := &deferredModules{}
	n, err := newNode(nf, nodeEnv{dataDir: *dataDir, modules: mods}, log)
	if err != nil {
		return err
	}
	defer n.Close(context.Background())
	ws, err := nf.wsLimits()
	if err != nil {
		return err
	}
	ocfg := origin.Config{WebSocket: ws, DataDir: *dataDir, AdminListen: *adminListen, DataListen: *dataListen, Importer: importDocument, Policies: n.Policies, MaxModuleBytes: nf.maxModuleBytes, Logger: log}
	if (*dataCert == "") != (*dataKey == "") {
		return usageError{"--data-tls-cert and --data-tls-key go together"}
	}
	if *dataCert != "" {
		c, err := tls.LoadX509KeyPair(*dataCert, *dataKey)
		if err != nil {
			return fmt.Errorf("load --data-tls-cert/--data-tls-key: %w", err)
		}
		ocfg.DataCertificates = listen.CertFunc(func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &c, nil })
	}
	o, first, err := origin.New(ctx, ocfg)
	if err != nil {
		return err
	}
	defer o.Close()
	mods.set(o.Modules)
	if first != nil {
		fmt.Fprintf(stdout, "First start: created these tokens. They are shown only now; store them safely.\n  admin token (portico ctl, PORTICO_TOKEN): %s\n  edge token (portico edge --token):        %s\n", first.AdminToken, first.EdgeToken)
	}
	if *configFile != "" {
		if err := applyFile(ctx, o.Control, *configFile, log); err != nil {
			return err
		}
		go reloadOnHUP(ctx, o.Control, *configFile, log)
	}
	if err := o.Listen(); err != nil {
		return err
	}
	log.Info("origin serving", "admin", o.AdminAddr(), "data", o.DataScheme()+"://"+o.DataAddr(), "data_dir", *dataDir)
	if *regionalHTTPS == "" {
		return o.Serve(ctx, *drain)
	}
	// Regional endpoints run the pipeline here, cache included.
	tuneMemory(int64(nf.cacheBytes), log)
	errc := make(chan error, 2)
	go func() { errc <- o.Serve(ctx, *drain) }()
	go func() {
		errc <- serveRegional(ctx, o, n, regionalConfig{https: *regionalHTTPS, http: *regionalHTTP, certFile: *certFile, keyFile: *keyFile, devCA: *devCA, tls: tf, dataDir: *dataDir, drain: *drain, ws: ws}, log)
	}()
	err = <-errc
	if err == nil {
		err = <-errc
	}
	return err
}

func applyFile(ctx context.Context, ctl *control.Control, path string, log *slog.Logger) error {
	f, err := config.LoadFile(path)
	if err != nil {
		return err
	}
	docs, err := control.ReadDocuments(f)
	if err != nil {
		return err
	}
	rep, err := ctl.Apply(ctx, f, docs)
	if err != nil {
		return fmt.Errorf("%s: %w", path, err)
	}
	log.Info("config applied", "file", path, "imported", rep.Imported, "deployed", rep.Deployed, "domains", rep.Domains)
	return nil
}

// reloadOnHUP applies the config file again on SIGHUP. A bad file is
// reported and changes nothing: the origin keeps serving what it had.
func reloadOnHUP(ctx context.Context, ctl *control.Control, path string, log *slog.Logger) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	for {
		select {
		case <-ctx.Done():
			return
		case <-hup:
			if err := applyFile(ctx, ctl, path, log); err != nil {
				log.Error("config not applied; still serving the previous configuration", "file", path, "err", err)
			}
		}
	}
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

type regionalConfig struct {
	https, http       string
	certFile, keyFile string
	devCA             bool
	tls               tlsFlags
	dataDir           string
	drain             time.Duration
	ws                wsrelay.Limits
}

// serveRegional serves regional and private endpoints from the origin: the
// same pipeline as an edge (hygiene, routing, policies), with the origin's
// own integrations as its terminal instead of a hop to an origin.
func serveRegional(ctx context.Context, o *origin.Origin, n *node, rc regionalConfig, log *slog.Logger) error {
	certs, err := loadCertificates(rc.certFile, rc.keyFile, rc.devCA, filepath.Join(rc.dataDir, "regional"))
	if err != nil {
		return err
	}
	if err := certs.startManager(rc.tls, filepath.Join(rc.dataDir, "regional"), rc.http, rc.https, log); err != nil {
		return err
	}
	defer certs.stop()
	e, err := edge.New(edge.Config{
		WebSocket:      rc.ws,
		Terminal:       o.Terminal(),
		EndpointTypes:  []config.EndpointType{config.EndpointRegional, config.EndpointPrivate},
		Policies:       n.Policies,
		Prepare:        certs.prepare(n.prepare, config.EndpointRegional, log),
		TrustedProxies: n.Trusted,
		HTTPSPort:      portOf(rc.https),
		Logger:         log,
	})
	if err != nil {
		return err
	}
	go o.Follow(ctx, e.Apply)
	// The regional endpoints report into the origin's own node list.
	state := edgeState(e, certs, hostname()+"/regional", "", "regional")
	go func() {
		t := time.NewTicker(10 * time.Second)
		defer t.Stop()
		for {
			o.Fleet.Record(state(), "")
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
	}()
	hsts, err := rc.tls.hsts(rc.devCA)
	if err != nil {
		return err
	}
	return serveEdge(ctx, e, n, edgeListeners{Name: "regional endpoints", HTTPS: rc.https, HTTP: rc.http, Certs: certs, Drain: rc.drain, HTTP3: !rc.tls.noHTTP3, HSTS: hsts, Allow0RTT: rc.tls.allow0RTT}, log)
}
