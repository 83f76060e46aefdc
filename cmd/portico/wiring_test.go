package main

import (
	"context"
	"encoding/json"
	"flag"
	"log/slog"
	"net/http"
	"strings"
	"testing"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

func TestByteSizeFlag(t *testing.T) {
	for in, want := range map[string]int64{"0": 0, "1024": 1024, "256MiB": 256 << 20, "2GiB": 2 << 30, "10KB": 10000, "1 MiB": 1 << 20, "5B": 5} {
		var b byteSize
		if err := b.Set(in); err != nil || int64(b) != want {
			t.Errorf("%q: %d %v, want %d", in, b, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "12XB", "-1", "1.5GiB", "99999999999TiB"} {
		var b byteSize
		if err := b.Set(in); err == nil {
			t.Errorf("%q accepted as %d", in, b)
		}
	}
	var nf nodeFlags
	fs := flag.NewFlagSet("t", flag.ContinueOnError)
	nf.register(fs)
	if f := fs.Lookup("cache-bytes"); f == nil || f.DefValue != "256MiB" || int64(nf.cacheBytes) != defaultCacheBytes {
		t.Fatalf("--cache-bytes default: %+v", f)
	}
}

func cachePolicy(cfg string) []plugins.Attached {
	return []plugins.Attached{{Spec: config.PolicySpec{Type: "cache", Config: json.RawMessage(cfg)}, Scope: plugins.Scope{APIID: "a", Stage: "prod"}}}
}

var nothing = plugins.HandlerFunc(func(http.ResponseWriter, *plugins.Exchange) {})

func TestNodeCache(t *testing.T) {
	ctx := context.Background()
	log := slog.New(slog.DiscardHandler)

	// Without a budget, a cache policy is refused, and says why.
	env := nodeEnv{dataDir: t.TempDir(), modules: &deferredModules{}}
	off, err := newNode(nodeFlags{}, env, log)
	if err != nil {
		t.Fatal(err)
	}
	defer off.Close(ctx)
	if off.Cache != nil {
		t.Fatal("a node with --cache-bytes 0 has a cache")
	}
	_, _, err = off.Policies.Build(ctx, cachePolicy(`{}`), nothing)
	if err == nil || !strings.Contains(err.Error(), "--cache-bytes 0") {
		t.Fatalf("cache policy on a node without a cache: %v", err)
	}

	on, err := newNode(nodeFlags{cacheBytes: 4 << 20}, env, log)
	if err != nil {
		t.Fatal(err)
	}
	defer on.Close(ctx)
	if _, _, err := on.Policies.Build(ctx, cachePolicy(`{"ttl":"60s"}`), nothing); err != nil {
		t.Fatalf("cache policy: %v", err)
	}
	// The budget bounds objects: a quarter of 4 MiB.
	if _, _, err := on.Policies.Build(ctx, cachePolicy(`{"maxObjectBytes":2097152}`), nothing); err == nil || !strings.Contains(err.Error(), "larger cache budget") {
		t.Fatalf("object larger than the budget allows: %v", err)
	}
	if _, err := on.Metrics.Gather(); err != nil {
		t.Fatal(err)
	}

	// Purges in a snapshot are applied when it is installed, once.
	snap := &config.Snapshot{Purges: []config.PurgeRequest{
		{Seq: 1, Kind: config.PurgeKindTag, Tag: "a"},
		{Seq: 2, Kind: config.PurgeKindURL, Host: "x.test", Path: "/a"},
	}}
	commit, err := on.prepare(snap)
	if err != nil {
		t.Fatal(err)
	}
	if on.Cache.Store().LastPurgeSeq() != 0 {
		t.Fatal("purges applied before the snapshot was accepted")
	}
	commit()
	if got := on.Cache.Store().LastPurgeSeq(); got != 2 {
		t.Fatalf("last purge seq %d after commit, want 2", got)
	}
}
