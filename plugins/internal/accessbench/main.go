// Command accessbench serves the access policy chain for test/bench/access.sh:
// a backend answering 1 KiB, or a stand-in edge (plugins/internal/edgetest)
// whose route runs either no policy or api-key (usage plan with throttle
// and quota) + jwt (RS256, cached), forwarding to the backend.
package main

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"runtime/pprof"
	"syscall"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/apikey"
	"github.com/portico-edge/portico/plugins/authcache"
	"github.com/portico-edge/portico/plugins/authfail"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/jwt"
	"github.com/portico-edge/portico/plugins/ratelimit"
)

func main() {
	role := flag.String("role", "edge", "backend or edge")
	addr := flag.String("addr", "127.0.0.1:0", "listen address")
	backend := flag.String("backend", "", "backend URL (edge)")
	chain := flag.String("chain", "none", "none or access (edge)")
	creds := flag.String("creds", "", "file to write the API key and bearer token to (edge)")
	flag.StringVar(&addrFile, "addr-file", "", "file to write the address listened on to, once listening")
	cpuprofile := flag.String("cpuprofile", "", "write a CPU profile to this file until SIGINT or SIGTERM")
	flag.Parse()
	if *cpuprofile != "" {
		stop, err := profile(*cpuprofile)
		if err != nil {
			log.Fatal(err)
		}
		defer stop()
	}
	if err := run(*role, *addr, *backend, *chain, *creds); err != nil {
		log.Fatal(err)
	}
}

func run(role, addr, backend, chain, credsFile string) error {
	if role == "backend" {
		return serve(addr, edgetest.NewBackend(false))
	}
	a, err := newAccess()
	if err != nil {
		return err
	}
	if credsFile != "" {
		if err := os.WriteFile(credsFile, []byte(a.key+"\n"+a.token+"\n"), 0o600); err != nil {
			return err
		}
	}
	route := config.Route{Method: "GET", Path: "/pets"}
	switch chain {
	case "access":
		route.Policies = a.specs
	case "none":
	default:
		return fmt.Errorf("chain %q: use none or access", chain)
	}
	h, err := edgetest.New(context.Background(), a.reg, edgetest.Config{APIID: "pets", Stage: "prod", Backend: backend, Routes: []config.Route{route}})
	if err != nil {
		return err
	}
	return serve(addr, h)
}

// access is the policy setup measured: its registry, the route's policy
// specs, and a valid API key and bearer token.
type access struct {
	reg        *plugins.Registry
	specs      []config.PolicySpec
	key, token string
}

func newAccess() (*access, error) {
	key, hash, err := config.GenerateAPIKey()
	if err != nil {
		return nil, err
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return nil, err
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: rk}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return nil, err
	}
	now := time.Now()
	token, err := josejwt.Signed(sg).Claims(map[string]any{
		"iss": "https://issuer.bench", "aud": "bench", "sub": "bench-user", "scope": "pets:read",
		"exp": now.Add(24 * time.Hour).Unix(), "iat": now.Unix(),
	}).Serialize()
	if err != nil {
		return nil, err
	}
	plans := []config.UsagePlan{{ID: "bench", Name: "bench", Rate: 1e6, Burst: 1e6,
		Quota:  &config.Quota{Limit: 1 << 50, Period: config.QuotaMonth},
		Stages: []config.PlanStage{{APIID: "pets", Stage: "prod"}}}}
	table, err := apikey.NewTable([]config.APIKey{{ID: "bench", Name: "bench", Hash: hash, Enabled: true, PlanIDs: []string{"bench"}}}, plans)
	if err != nil {
		return nil, err
	}
	mem := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	guard, err := authfail.New(authfail.Options{Limiter: mem})
	if err != nil {
		return nil, err
	}
	cache, err := authcache.New(authcache.Options{})
	if err != nil {
		return nil, err
	}
	akf, err := apikey.NewFactory(apikey.Options{Keys: table, Plans: table, Limiter: mem, Quotas: mem, Usage: apikey.NewUsage(), Guard: guard})
	if err != nil {
		return nil, err
	}
	jf, err := jwt.NewFactory(jwt.Options{Cache: cache, Guard: guard})
	if err != nil {
		return nil, err
	}
	reg, err := plugins.NewRegistry(akf, jf)
	if err != nil {
		return nil, err
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rk.PublicKey, KeyID: "bench", Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		return nil, err
	}
	return &access{reg: reg, key: key, token: token, specs: []config.PolicySpec{
		{Type: "api-key", Config: json.RawMessage(`{"source":"header","name":"x-api-key"}`)},
		{Type: "jwt", Config: json.RawMessage(`{"issuer":"https://issuer.bench","audiences":["bench"],"keys":` + string(set) + `,"scopes":["pets:read"]}`)},
	}}, nil
}

var addrFile string

// profile writes a CPU profile until the process is told to stop.
func profile(path string) (func(), error) {
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		return nil, err
	}
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, os.Interrupt, syscall.SIGTERM)
	go func() {
		<-sig
		pprof.StopCPUProfile()
		_ = f.Close()
		os.Exit(0)
	}()
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

func serve(addr string, h http.Handler) error {
	l, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	if addrFile != "" {
		if err := os.WriteFile(addrFile, []byte(l.Addr().String()), 0o600); err != nil {
			return err
		}
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	return srv.Serve(l)
}
