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
	flag.Parse()
	if err := run(*role, *addr, *backend, *chain, *creds); err != nil {
		log.Fatal(err)
	}
}

func run(role, addr, backend, chain, credsFile string) error {
	if role == "backend" {
		return serve(addr, edgetest.NewBackend(false))
	}
	key, hash, err := config.GenerateAPIKey()
	if err != nil {
		return err
	}
	rk, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: rk}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return err
	}
	now := time.Now()
	token, err := josejwt.Signed(sg).Claims(map[string]any{
		"iss": "https://issuer.bench", "aud": "bench", "sub": "bench-user", "scope": "pets:read",
		"exp": now.Add(24 * time.Hour).Unix(), "iat": now.Unix(),
	}).Serialize()
	if err != nil {
		return err
	}
	if credsFile != "" {
		if err := os.WriteFile(credsFile, []byte(key+"\n"+token+"\n"), 0o600); err != nil {
			return err
		}
	}
	plans := []config.UsagePlan{{ID: "bench", Name: "bench", Rate: 1e6, Burst: 1e6,
		Quota:  &config.Quota{Limit: 1 << 50, Period: config.QuotaMonth},
		Stages: []config.PlanStage{{APIID: "pets", Stage: "prod"}}}}
	table, err := apikey.NewTable([]config.APIKey{{ID: "bench", Name: "bench", Hash: hash, Enabled: true, PlanIDs: []string{"bench"}}}, plans)
	if err != nil {
		return err
	}
	mem := ratelimit.NewMemory(ratelimit.MemoryOptions{})
	guard, err := authfail.New(authfail.Options{Limiter: mem})
	if err != nil {
		return err
	}
	cache, err := authcache.New(authcache.Options{})
	if err != nil {
		return err
	}
	akf, err := apikey.NewFactory(apikey.Options{Keys: table, Plans: table, Limiter: mem, Quotas: mem, Usage: apikey.NewUsage(), Guard: guard})
	if err != nil {
		return err
	}
	jf, err := jwt.NewFactory(jwt.Options{Cache: cache, Guard: guard})
	if err != nil {
		return err
	}
	reg, err := plugins.NewRegistry(akf, jf)
	if err != nil {
		return err
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &rk.PublicKey, KeyID: "bench", Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		return err
	}
	route := config.Route{Method: "GET", Path: "/pets"}
	if chain == "access" {
		route.Policies = []config.PolicySpec{
			{Type: "api-key", Config: json.RawMessage(`{"source":"header","name":"x-api-key"}`)},
			{Type: "jwt", Config: json.RawMessage(`{"issuer":"https://issuer.bench","audiences":["bench"],"keys":` + string(set) + `,"scopes":["pets:read"]}`)},
		}
	} else if chain != "none" {
		return fmt.Errorf("chain %q: use none or access", chain)
	}
	h, err := edgetest.New(context.Background(), reg, edgetest.Config{APIID: "pets", Stage: "prod", Backend: backend, Routes: []config.Route{route}})
	if err != nil {
		return err
	}
	return serve(addr, h)
}

var addrFile string

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
