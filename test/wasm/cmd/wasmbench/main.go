// Command wasmbench serves the edge-like WASM test harness for load tests:
// one listener, an optional WASM policy, a reverse proxy to an in-process
// backend answering 1 KiB. test/bench/wasm.sh runs it with and without a
// plugin, side by side.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"os/signal"
	"syscall"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/harness"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "address to serve on")
	module := flag.String("module", "", "WASM module file; empty serves without a plugin")
	typ := flag.String("type", wasm.TypeAuthorizer, "policy type: wasm-authorizer or wasm-transform")
	pluginConfig := flag.String("config", "s3cr3t=alice", "plugin configuration (passed as a JSON string)")
	instances := flag.Int("instances", 0, "instances (0: one per CPU)")
	dataDir := flag.String("data-dir", "", "compilation cache directory (default: a temporary one)")
	flag.Parse()
	if err := run(*listen, *module, *typ, *pluginConfig, *instances, *dataDir); err != nil {
		fmt.Fprintln(os.Stderr, "wasmbench:", err)
		os.Exit(1)
	}
}

func run(listen, module, typ, pluginConfig string, instances int, dataDir string) error {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	backend, err := harness.NewBackend(false)
	if err != nil {
		return err
	}
	defer backend.Close()
	cfg := harness.EdgeConfig{Backend: backend.URL, Addr: listen}
	if module != "" {
		b, err := os.ReadFile(module)
		if err != nil {
			return err
		}
		if dataDir == "" {
			if dataDir, err = os.MkdirTemp("", "wasmbench"); err != nil {
				return err
			}
			defer os.RemoveAll(dataDir)
		}
		src := &harness.MemSource{}
		host, err := wasm.NewHost(ctx, wasm.HostConfig{DataDir: dataDir, Source: src, Logger: logger})
		if err != nil {
			return err
		}
		defer host.Close(context.Background())
		c, _ := json.Marshal(map[string]any{"module": src.Add(b), "config": pluginConfig, "instances": instances})
		cfg.Host = host
		cfg.Specs = []config.PolicySpec{{Type: typ, Config: c}}
	}
	edge, err := harness.NewEdge(ctx, cfg)
	if err != nil {
		return err
	}
	defer edge.Close()
	fmt.Println("listening on", edge.URL)
	<-ctx.Done()
	return nil
}
