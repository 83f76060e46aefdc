package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/portico-edge/portico/config"
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
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	log, err := newLogger(stderr, *logLevel)
	if err != nil {
		return err
	}
	tuneGC()
	n, err := newNode(nf, log)
	if err != nil {
		return err
	}
	defer n.Close()
	o, first, err := origin.New(ctx, origin.Config{DataDir: *dataDir, AdminListen: *adminListen, DataListen: *dataListen, Importer: importDocument, Policies: n.Policies, Logger: log})
	if err != nil {
		return err
	}
	defer o.Close()
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
	log.Info("origin serving", "admin", o.AdminAddr(), "data", o.DataAddr(), "data_dir", *dataDir)
	return o.Serve(ctx, *drain)
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
