// Package origin assembles the origin gateway: the store, the control
// plane, the admin API on its (loopback) listener, and the data plane that
// edges call on theirs.
package origin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/listen"
	"github.com/portico-edge/portico/edge/wsrelay"
	"github.com/portico-edge/portico/origin/admin"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/dataplane"
	"github.com/portico-edge/portico/origin/fleet"
	"github.com/portico-edge/portico/origin/integration"
	"github.com/portico-edge/portico/origin/modules"
	"github.com/portico-edge/portico/origin/store"
	"github.com/portico-edge/portico/plugins"
)

// Config configures an origin.
type Config struct {
	DataDir     string
	AdminListen string // default 127.0.0.1:9900
	DataListen  string // default 127.0.0.1:9901
	Importer    control.Importer
	Policies    *plugins.Registry
	Logger      *slog.Logger
	// DataCertificates, when set, serves the data plane over TLS (HTTP/1.1,
	// HTTP/2 and HTTP/3, through edge/listen) instead of plain HTTP: for
	// edges that reach the origin across networks, and for HTTP/3 toward
	// the origin.
	DataCertificates listen.CertSource
	// MaxModuleBytes caps uploaded WASM modules; zero means the engine's
	// default. Edges must accept at least as much.
	MaxModuleBytes int
	// WebSocket bounds WebSockets relayed to backends.
	WebSocket wsrelay.Limits
}

// Origin is a running origin gateway.
type Origin struct {
	cfg     Config
	log     *slog.Logger
	Store   *store.Store
	Control *control.Control
	Admin   *admin.Server
	Data    *dataplane.Server
	// Fleet holds the nodes' heartbeats.
	Fleet *fleet.Registry
	// Modules stores WASM plugin modules; it is also the origin's module
	// source (admission at deploy, regional endpoints).
	Modules *modules.Service
	checker *modules.Checker
	invoker *integration.Invoker

	adminLn, dataLn net.Listener
	dataTLS         *listen.Server
}

// FirstStart holds the tokens created when an origin starts on an empty
// data dir. They are shown once and stored only as hashes.
type FirstStart struct {
	AdminToken string
	EdgeToken  string
}

// New opens the store and builds the origin. On an empty data dir it
// creates an admin token and an edge token and returns them.
func New(ctx context.Context, cfg Config) (*Origin, *FirstStart, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.AdminListen == "" {
		cfg.AdminListen = "127.0.0.1:9900"
	}
	if cfg.DataListen == "" {
		cfg.DataListen = "127.0.0.1:9901"
	}
	st, err := store.Open(cfg.DataDir)
	if err != nil {
		return nil, nil, err
	}
	o := &Origin{cfg: cfg, log: cfg.Logger, Store: st}
	fail := func(err error) (*Origin, *FirstStart, error) {
		if o.checker != nil {
			_ = o.checker.Close(context.Background())
		}
		st.Close()
		return nil, nil, err
	}
	first, err := ensureTokens(ctx, st)
	if err != nil {
		return fail(err)
	}
	o.Control, err = control.New(ctx, control.Options{Store: st, Importer: cfg.Importer, Policies: cfg.Policies, Logger: cfg.Logger})
	if err != nil {
		return fail(err)
	}
	if err := cfg.WebSocket.Validate(); err != nil {
		return fail(err)
	}
	o.invoker = integration.New(integration.Options{Logger: cfg.Logger, WebSocket: cfg.WebSocket})
	o.Data, err = dataplane.New(ctx, o.Control, st, o.invoker, cfg.Logger)
	if err != nil {
		return fail(err)
	}
	o.Data.HandleEdgeCall("POST "+control.UsageReportPath, o.serveUsage)
	o.Admin, err = admin.New(ctx, o.Control, st, cfg.Logger)
	if err != nil {
		return fail(err)
	}
	o.Fleet = fleet.New(nil)
	o.registerFleet()
	// Uploads compile into the data dir's compilation cache, which the
	// node's WASM host shares, so a deploy after an upload compiles nothing.
	o.checker, err = modules.NewChecker(ctx, cfg.DataDir, cfg.MaxModuleBytes, cfg.Logger)
	if err != nil {
		return fail(err)
	}
	o.Modules, err = modules.New(modules.Options{Store: st, Check: o.checker.Check, MaxBytes: cfg.MaxModuleBytes, Logger: cfg.Logger})
	if err != nil {
		return fail(err)
	}
	o.Modules.Register(o.Admin)
	o.Data.HandleEdgeCall(modules.EdgePath, o.Modules.ServeEdge)
	return o, first, nil
}

func ensureTokens(ctx context.Context, st *store.Store) (*FirstStart, error) {
	var first *FirstStart
	err := st.Update(ctx, func(tx *store.Tx) error {
		toks, err := tx.Tokens()
		if err != nil || len(toks) > 0 {
			return err
		}
		first = &FirstStart{AdminToken: store.NewTokenSecret(store.TokenAdmin), EdgeToken: store.NewTokenSecret(store.TokenEdge)}
		now := time.Now().UTC()
		if err := tx.PutToken(first.AdminToken, store.Token{Kind: store.TokenAdmin, Name: "initial", CreatedAt: now}); err != nil {
			return err
		}
		return tx.PutToken(first.EdgeToken, store.Token{Kind: store.TokenEdge, Name: "initial", CreatedAt: now})
	})
	return first, err
}

// ReplaceToken revokes the tokens of a kind with a name and creates a new
// one, returning its secret. `portico dev` uses it to hand out fresh
// tokens at every start.
func (o *Origin) ReplaceToken(ctx context.Context, kind, name string) (string, error) {
	secret := store.NewTokenSecret(kind)
	err := o.Store.Update(ctx, func(tx *store.Tx) error {
		if err := tx.DeleteTokens(kind, name); err != nil {
			return err
		}
		return tx.PutToken(secret, store.Token{Kind: kind, Name: name, CreatedAt: time.Now().UTC()})
	})
	if err != nil {
		return "", err
	}
	if err := o.Data.ReloadTokens(ctx); err != nil {
		return "", err
	}
	return secret, o.Admin.ReloadTokens(ctx)
}

// Listen binds the admin and data-plane listeners, so that a caller knows
// the addresses (with port 0 resolved) before serving.
func (o *Origin) Listen() error {
	var err error
	if o.adminLn, err = net.Listen("tcp", o.cfg.AdminListen); err != nil {
		return fmt.Errorf("admin listener: %w", err)
	}
	if o.cfg.DataCertificates != nil {
		o.dataTLS, err = listen.New(listen.Config{
			TLSAddr:      o.cfg.DataListen,
			Certificates: o.cfg.DataCertificates,
			HSTS:         listen.HSTSPolicy{Disabled: true},
			// A snapshot long-poll and the longest integration must fit.
			WriteTimeout: config.MaxIntegrationTimeout + 30*time.Second,
			ReadTimeout:  config.MaxIntegrationTimeout + 30*time.Second,
			// Edges multiplex many requests; their connections are few.
			MaxConnsPerIP: 4096,
			Logger:        o.log,
		}, o.Data)
		if err == nil {
			err = o.dataTLS.Listen()
		}
		if err != nil {
			o.adminLn.Close()
			return fmt.Errorf("data-plane listener: %w", err)
		}
		return nil
	}
	if o.dataLn, err = net.Listen("tcp", o.cfg.DataListen); err != nil {
		o.adminLn.Close()
		return fmt.Errorf("data-plane listener: %w", err)
	}
	return nil
}

// AdminAddr and DataAddr return the bound addresses.
func (o *Origin) AdminAddr() string { return o.adminLn.Addr().String() }

// DataAddr returns the data-plane listener's address.
func (o *Origin) DataAddr() string {
	if o.dataTLS != nil {
		return o.dataTLS.TLSAddr().String()
	}
	return o.dataLn.Addr().String()
}

// DataScheme is "https" when the data plane serves TLS, else "http".
func (o *Origin) DataScheme() string {
	if o.cfg.DataCertificates != nil {
		return "https"
	}
	return "http"
}

// Serve serves both listeners until ctx ends, then shuts down gracefully:
// requests in flight get up to drain to finish.
func (o *Origin) Serve(ctx context.Context, drain time.Duration) error {
	if o.adminLn == nil {
		if err := o.Listen(); err != nil {
			return err
		}
	}
	servers := []*http.Server{
		{Handler: o.Admin, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 2 * time.Minute, MaxHeaderBytes: 64 << 10},
	}
	lns := []net.Listener{o.adminLn}
	if o.dataTLS == nil {
		servers = append(servers, &http.Server{Handler: o.Data, ReadHeaderTimeout: 10 * time.Second, IdleTimeout: 5 * time.Minute, MaxHeaderBytes: 64 << 10})
		lns = append(lns, o.dataLn)
	}
	errc := make(chan error, len(servers)+1)
	for i, s := range servers {
		go func() { errc <- s.Serve(lns[i]) }()
	}
	dataCtx, stopData := context.WithCancel(context.Background())
	defer stopData()
	if o.dataTLS != nil {
		go func() { errc <- o.dataTLS.Serve(dataCtx) }()
	}
	var err error
	select {
	case <-ctx.Done():
	case err = <-errc:
	}
	sctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	for _, s := range servers {
		_ = s.Shutdown(sctx)
	}
	if o.dataTLS != nil {
		_ = o.dataTLS.Shutdown(sctx)
	}
	o.invoker.Close()
	if errors.Is(err, http.ErrServerClosed) {
		err = nil
	}
	return err
}

// Close closes the store and the module checker's engine.
func (o *Origin) Close() error {
	_ = o.checker.Close(context.Background())
	return o.Store.Close()
}

// Terminal runs integrations for exchanges routed in this process: the
// regional and private endpoints the origin serves itself, with the same
// pipeline an edge runs, minus the hop to an origin.
func (o *Origin) Terminal() plugins.Handler {
	return plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		r := ex.Request
		r.URL.Path, r.URL.RawPath = ex.RoutePath, ex.RoutePath
		if u, err := url.PathUnescape(ex.RoutePath); err == nil {
			r.URL.Path = u
		}
		h := r.Header
		h.Set(plugins.RequestIDHeader, ex.RequestID)
		proto := "http"
		if ex.TLS {
			proto = "https"
		}
		client := ex.Client.String()
		h["X-Forwarded-For"] = []string{client}
		h["X-Forwarded-Host"] = []string{ex.Host}
		h["X-Forwarded-Proto"] = []string{proto}
		h["Forwarded"] = []string{"for=" + forwardedFor(client) + ";host=\"" + ex.Host + "\";proto=" + proto}
		for k, v := range ex.Identity.Headers() {
			h[k] = []string{v}
		}
		r.Trailer = nil
		o.invoker.Serve(w, r, &integration.Call{Route: ex.Route, Variables: ex.Stage.Variables, Params: ex.PathParams, RequestID: ex.RequestID})
	})
}

func forwardedFor(client string) string {
	if strings.Contains(client, ":") {
		return "\"[" + client + "]\""
	}
	return client
}

// Follow feeds snapshots to apply (a regional endpoint's pipeline) as the
// control plane publishes them, until ctx ends.
func (o *Origin) Follow(ctx context.Context, apply func(*config.Snapshot) error) {
	version := ""
	for ctx.Err() == nil {
		snap := o.Control.Wait(ctx, version)
		if snap == nil {
			return
		}
		if err := apply(snap); err != nil {
			o.log.Error("regional endpoints refused the snapshot; serving the previous one", "version", snap.Version, "err", err)
		}
		version = snap.Version
	}
}
