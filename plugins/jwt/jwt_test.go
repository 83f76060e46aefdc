package jwt_test

import (
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/authcache"
	"github.com/portico-edge/portico/plugins/authfail"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/jwt"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

const issuer = "https://issuer.example.com"

type signer struct {
	kid string
	alg jose.SignatureAlgorithm
	key any
}

func newRSA(t *testing.T, kid string) signer {
	k, err := rsa.GenerateKey(rand.Reader, 2048)
	edgetest.Must(t, err)
	return signer{kid, jose.RS256, k}
}

func (s signer) public() jose.JSONWebKey {
	var pub any
	switch k := s.key.(type) {
	case *rsa.PrivateKey:
		pub = &k.PublicKey
	case *ecdsa.PrivateKey:
		pub = &k.PublicKey
	case ed25519.PrivateKey:
		pub = k.Public()
	}
	return jose.JSONWebKey{Key: pub, KeyID: s.kid, Algorithm: string(s.alg), Use: "sig"}
}

type claims struct {
	josejwt.Claims
	Scope    string `json:"scope,omitempty"`
	Email    string `json:"email,omitempty"`
	ClientID string `json:"client_id,omitempty"`
}

func (s signer) sign(t *testing.T, c claims) string {
	t.Helper()
	opts := (&jose.SignerOptions{}).WithType("JWT")
	if s.kid != "" {
		opts = opts.WithHeader("kid", s.kid)
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: s.alg, Key: s.key}, opts)
	edgetest.Must(t, err)
	tok, err := josejwt.Signed(sg).Claims(c).Serialize()
	edgetest.Must(t, err)
	return tok
}

func good(now time.Time) claims {
	return claims{Claims: josejwt.Claims{Issuer: issuer, Subject: "user-42", Audience: josejwt.Audience{"app"},
		Expiry: josejwt.NewNumericDate(now.Add(time.Hour)), IssuedAt: josejwt.NewNumericDate(now.Add(-time.Minute))},
		Scope: "pets:read openid", Email: "u@example.com"}
}

// jwksServer serves a key set; it can be switched to failing.
type jwksServer struct {
	mu      sync.Mutex
	set     jose.JSONWebKeySet
	down    bool
	fetches atomic.Int32
	srv     *httptest.Server
}

func startJWKS(t *testing.T, keys ...jose.JSONWebKey) *jwksServer {
	j := &jwksServer{set: jose.JSONWebKeySet{Keys: keys}}
	j.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		j.fetches.Add(1)
		j.mu.Lock()
		defer j.mu.Unlock()
		if j.down {
			http.Error(w, "down", http.StatusServiceUnavailable)
			return
		}
		_ = json.NewEncoder(w).Encode(j.set)
	}))
	t.Cleanup(j.srv.Close)
	return j
}

func (j *jwksServer) setKeys(down bool, keys ...jose.JSONWebKey) {
	j.mu.Lock()
	j.down = down
	if keys != nil {
		j.set.Keys = keys
	}
	j.mu.Unlock()
}

type env struct {
	clock   *edgetest.Clock
	backend *edgetest.Backend
	url     string
	cache   *authcache.Cache
}

func start(t *testing.T, cfg string, o jwt.Options) *env {
	t.Helper()
	e := &env{clock: edgetest.NewClock(t0)}
	if o.Now == nil {
		o.Now = e.clock.Now
	}
	o.Registerer = prometheus.NewRegistry()
	if o.Cache == nil {
		c, err := authcache.New(authcache.Options{Now: o.Now, Registerer: o.Registerer})
		edgetest.Must(t, err)
		o.Cache = c
	}
	e.cache = o.Cache
	f, err := jwt.NewFactory(o)
	edgetest.Must(t, err)
	reg, err := plugins.NewRegistry(f)
	edgetest.Must(t, err)
	b, bsrv := edgetest.StartBackend(t)
	e.backend = b
	e.url = edgetest.Start(t, reg, edgetest.Config{APIID: "pets", Stage: "prod", Backend: bsrv.URL,
		Routes: []config.Route{
			{Method: "GET", Path: "/pets", Policies: []config.PolicySpec{{Type: "jwt", Config: json.RawMessage(cfg)}}},
		}}).URL
	return e
}

func cfgFor(jwksURI string, extra string) string {
	c := `{"issuer":"` + issuer + `","audiences":["app","other"],"jwksUri":"` + jwksURI + `","scopes":["pets:read"]`
	if extra != "" {
		c += "," + extra
	}
	return c + "}"
}

func get(t *testing.T, url, token string) (int, http.Header, string) {
	t.Helper()
	if token == "" {
		return edgetest.Get(t, url)
	}
	return edgetest.Get(t, url, "Authorization: Bearer "+token)
}

func TestTokens(t *testing.T) {
	key := newRSA(t, "k1")
	js := startJWKS(t, key.public())
	e := start(t, cfgFor(js.srv.URL, `"claimHeaders":{"sub":"X-Portico-Principal","email":"X-User-Email"}`), jwt.Options{AllowPrivateJWKS: true})

	st, _, body := get(t, e.url+"/pets", key.sign(t, good(t0)))
	if st != 200 {
		t.Fatalf("valid token: %d %s", st, body)
	}
	h := e.backend.Requests()[0].Header
	if h.Get("X-Portico-Principal") != "user-42" || h.Get("X-User-Email") != "u@example.com" {
		t.Fatalf("claim headers at the backend: %v", h)
	}

	other := newRSA(t, "k1") // same kid, different key: a forged signature
	pubDER, err := x509.MarshalPKIXPublicKey(&key.key.(*rsa.PrivateKey).PublicKey)
	edgetest.Must(t, err)
	pubPEM := pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: pubDER})
	hmacWithPublic := signer{"k1", jose.HS256, pubPEM}
	hmacWithDER := signer{"k1", jose.HS256, pubDER}

	mod := func(f func(*claims)) string {
		c := good(t0)
		f(&c)
		return key.sign(t, c)
	}
	noneTok := func() string {
		enc := base64.RawURLEncoding
		hdr := enc.EncodeToString([]byte(`{"alg":"none","typ":"JWT","kid":"k1"}`))
		pl, _ := json.Marshal(good(t0))
		return hdr + "." + enc.EncodeToString(pl) + "."
	}()
	cases := []struct {
		name   string
		token  string
		status int
		msg    string
	}{
		{"missing", "", 401, "requires a bearer token"},
		{"garbage", "not.a.token", 401, "malformed"},
		{"expired", mod(func(c *claims) { c.Expiry = josejwt.NewNumericDate(t0.Add(-2 * time.Minute)) }), 401, "expired"},
		{"expired within skew", mod(func(c *claims) { c.Expiry = josejwt.NewNumericDate(t0.Add(-30 * time.Second)) }), 200, ""},
		{"not yet valid", mod(func(c *claims) { c.NotBefore = josejwt.NewNumericDate(t0.Add(5 * time.Minute)) }), 401, "not valid yet"},
		{"no exp", mod(func(c *claims) { c.Expiry = nil }), 401, "no expiry"},
		{"wrong issuer", mod(func(c *claims) { c.Issuer = "https://evil.example.com" }), 401, "issuer"},
		{"wrong audience", mod(func(c *claims) { c.Audience = josejwt.Audience{"someone-else"} }), 401, "audience"},
		{"client_id instead of aud (Cognito access token)", mod(func(c *claims) { c.Audience = nil; c.ClientID = "app" }), 200, ""},
		{"client_id not accepted", mod(func(c *claims) { c.Audience = nil; c.ClientID = "nope" }), 401, "audience"},
		{"missing scope", mod(func(c *claims) { c.Scope = "openid" }), 403, "pets:read"},
		{"bad signature", other.sign(t, good(t0)), 401, "signature"},
		{"alg none", noneTok, 401, "algorithm"},
		{"HS256 with the public key (PEM)", hmacWithPublic.sign(t, good(t0)), 401, "algorithm"},
		{"HS256 with the public key (DER)", hmacWithDER.sign(t, good(t0)), 401, "algorithm"},
		{"tampered payload", func() string {
			parts := strings.Split(key.sign(t, good(t0)), ".")
			c := good(t0)
			c.Subject = "admin"
			pl, _ := json.Marshal(c)
			return parts[0] + "." + base64.RawURLEncoding.EncodeToString(pl) + "." + parts[2]
		}(), 401, "signature"},
	}
	for _, c := range cases {
		st, h, body := get(t, e.url+"/pets", c.token)
		if st != c.status || !strings.Contains(body, c.msg) {
			t.Errorf("%s: %d %s; want %d containing %q", c.name, st, body, c.status, c.msg)
			continue
		}
		wa := h.Get("WWW-Authenticate")
		switch {
		case st == 401 && c.token != "" && !strings.Contains(wa, `error="invalid_token"`):
			t.Errorf("%s: WWW-Authenticate %q lacks invalid_token", c.name, wa)
		case st == 403 && !strings.Contains(wa, `error="insufficient_scope"`):
			t.Errorf("%s: WWW-Authenticate %q lacks insufficient_scope", c.name, wa)
		}
	}
	if n := len(e.backend.Requests()); n != 3 {
		t.Fatalf("backend saw %d requests, want 3 (the valid tokens)", n)
	}
}

// A claim header the token does not fill cannot be supplied by the client.
func TestClientCannotForgeClaimHeaders(t *testing.T) {
	key := newRSA(t, "k1")
	js := startJWKS(t, key.public())
	e := start(t, cfgFor(js.srv.URL, `"claimHeaders":{"sub":"X-Portico-Principal","email":"X-User-Email"}`), jwt.Options{AllowPrivateJWKS: true})
	c := good(t0)
	c.Email = ""
	st, _, body := edgetest.Get(t, e.url+"/pets", "Authorization: Bearer "+key.sign(t, c), "X-User-Email: admin@example.com", "X-Portico-Principal: root")
	if st != 200 {
		t.Fatalf("%d %s", st, body)
	}
	h := e.backend.Requests()[0].Header
	if h.Get("X-User-Email") != "" || h.Values("X-Portico-Principal")[0] != "user-42" || len(h.Values("X-Portico-Principal")) != 1 {
		t.Fatalf("backend got X-User-Email %q, X-Portico-Principal %q", h.Get("X-User-Email"), h.Values("X-Portico-Principal"))
	}
}

func TestOtherAlgorithmsAndInlineKeys(t *testing.T) {
	ec, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	edgetest.Must(t, err)
	_, ed, err := ed25519.GenerateKey(rand.Reader)
	edgetest.Must(t, err)
	es := signer{"ec", jose.ES256, ec}
	eddsa := signer{"ed", jose.EdDSA, ed}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{es.public(), eddsa.public()}})
	edgetest.Must(t, err)
	e := start(t, `{"issuer":"`+issuer+`","audiences":["app"],"keys":`+string(set)+`,"algorithms":["ES256","EdDSA"]}`, jwt.Options{})
	for _, s := range []signer{es, eddsa} {
		if st, _, body := get(t, e.url+"/pets", s.sign(t, good(t0))); st != 200 {
			t.Errorf("%s: %d %s", s.alg, st, body)
		}
	}
	// RS256 is not in this policy's algorithms.
	if st, _, _ := get(t, e.url+"/pets", newRSA(t, "ec").sign(t, good(t0))); st != 401 {
		t.Errorf("RS256 on an ES256/EdDSA policy: %d", st)
	}
	// A token without kid is tried against the keys of the set.
	if st, _, body := get(t, e.url+"/pets", signer{"", jose.ES256, ec}.sign(t, good(t0))); st != 200 {
		t.Errorf("no kid: %d %s", st, body)
	}
}

func TestKeyRotationAndJWKSOutage(t *testing.T) {
	k1, k2, k3 := newRSA(t, "k1"), newRSA(t, "k2"), newRSA(t, "k3")
	js := startJWKS(t, k1.public())
	clock := edgetest.NewClock(t0)
	e := start(t, cfgFor(js.srv.URL, ""), jwt.Options{AllowPrivateJWKS: true, Now: clock.Now, JWKSMinInterval: 30 * time.Second})
	if st, _, body := get(t, e.url+"/pets", k1.sign(t, good(t0))); st != 200 {
		t.Fatalf("k1: %d %s", st, body)
	}
	before := js.fetches.Load()
	// The issuer rotates in k2; a token with the new kid triggers a fetch.
	js.setKeys(false, k1.public(), k2.public())
	clock.Advance(31 * time.Second)
	if st, _, body := get(t, e.url+"/pets", k2.sign(t, good(clock.Now()))); st != 200 {
		t.Fatalf("rotated-in k2: %d %s", st, body)
	}
	if got := js.fetches.Load() - before; got != 1 {
		t.Fatalf("%d fetches for the new kid, want 1", got)
	}
	// Made-up kids within the minimum interval cost no fetch.
	for range 5 {
		if st, h, _ := get(t, e.url+"/pets", newRSA(t, "made-up").sign(t, good(clock.Now()))); st != 401 || !strings.Contains(h.Get("WWW-Authenticate"), "invalid_token") {
			t.Fatalf("unknown kid: %d", st)
		}
	}
	if got := js.fetches.Load() - before; got != 1 {
		t.Fatalf("%d fetches after made-up kids, want still 1", got)
	}
	// The endpoint goes down: known keys keep working, an unknown kid
	// cannot be checked (503, not blamed on the caller), nothing crashes.
	js.setKeys(true)
	clock.Advance(31 * time.Second)
	if st, _, body := get(t, e.url+"/pets", k3.sign(t, good(clock.Now()))); st != 503 || !strings.Contains(body, "cannot be fetched") {
		t.Fatalf("unknown kid, JWKS down: %d %s; want 503", st, body)
	}
	if st, _, body := get(t, e.url+"/pets", k1.sign(t, good(clock.Now()))); st != 200 {
		t.Fatalf("known kid, JWKS down: %d %s", st, body)
	}
	js.srv.Close() // connection refused now
	clock.Advance(31 * time.Second)
	if st, _, _ := get(t, e.url+"/pets", k3.sign(t, good(clock.Now()))); st != 503 {
		t.Fatalf("unknown kid, JWKS closed: %d; want 503", st)
	}
}

func TestJWKSFetchIsSSRFSafe(t *testing.T) {
	key := newRSA(t, "k1")
	f, err := jwt.NewFactory(jwt.Options{})
	edgetest.Must(t, err)
	for _, c := range []string{
		cfgFor("http://issuer.example.com/jwks", ""), // plain http
		cfgFor("https://user:pw@issuer.example.com/jwks", ""),
	} {
		if _, err := f.New(t.Context(), config.PolicySpec{Type: "jwt", Config: json.RawMessage(c)}, plugins.Scope{}); err == nil {
			t.Errorf("accepted %s", c)
		}
	}
	// A loopback JWKS is refused at connect time without AllowPrivateJWKS.
	js := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_ = json.NewEncoder(w).Encode(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{key.public()}})
	}))
	defer js.Close()
	e := start(t, cfgFor(js.URL, ""), jwt.Options{})
	if st, _, _ := get(t, e.url+"/pets", key.sign(t, good(t0))); st != 503 {
		t.Fatalf("loopback JWKS without AllowPrivateJWKS: %d, want 503", st)
	}
	// Redirects to another host are not followed.
	target := startJWKS(t, key.public())
	redir := httptest.NewServer(http.RedirectHandler(strings.Replace(target.srv.URL, "127.0.0.1", "localhost", 1), http.StatusFound))
	defer redir.Close()
	e2 := start(t, cfgFor(redir.URL, ""), jwt.Options{AllowPrivateJWKS: true})
	if st, _, _ := get(t, e2.url+"/pets", key.sign(t, good(t0))); st != 503 {
		t.Fatalf("JWKS redirecting to another host: %d, want 503", st)
	}
	if target.fetches.Load() != 0 {
		t.Fatal("the redirect was followed")
	}
}

func TestCacheHonoursExpiry(t *testing.T) {
	key := newRSA(t, "k1")
	js := startJWKS(t, key.public())
	clock := edgetest.NewClock(t0)
	e := start(t, cfgFor(js.srv.URL, `"clockSkew":"0s"`), jwt.Options{AllowPrivateJWKS: true, Now: clock.Now, CacheTTL: time.Hour})
	c := good(t0)
	c.Expiry = josejwt.NewNumericDate(t0.Add(10 * time.Second))
	tok := key.sign(t, c)
	for range 3 {
		if st, _, _ := get(t, e.url+"/pets", tok); st != 200 {
			t.Fatal(st)
		}
	}
	if e.cache.Len() != 1 {
		t.Fatalf("cache holds %d entries, want 1", e.cache.Len())
	}
	clock.Advance(11 * time.Second)
	if st, _, body := get(t, e.url+"/pets", tok); st != 401 || !strings.Contains(body, "expired") {
		t.Fatalf("cached token past its exp: %d %s", st, body)
	}
}

func TestBadTokensAreThrottled(t *testing.T) {
	key := newRSA(t, "k1")
	js := startJWKS(t, key.public())
	clock := edgetest.NewClock(t0)
	g, err := authfail.New(authfail.Options{Failures: 2, Window: time.Minute, Now: clock.Now})
	edgetest.Must(t, err)
	e := start(t, cfgFor(js.srv.URL, ""), jwt.Options{AllowPrivateJWKS: true, Now: clock.Now, Guard: g})
	for range 2 {
		if st, _, _ := get(t, e.url+"/pets", "bad.to.ken"); st != 401 {
			t.Fatal(st)
		}
	}
	st, h, _ := get(t, e.url+"/pets", key.sign(t, good(t0)))
	if st != 429 || h.Get("Retry-After") != "30" {
		t.Fatalf("after 2 bad tokens: %d Retry-After %q; want 429, 30", st, h.Get("Retry-After"))
	}
}

func TestConfigErrors(t *testing.T) {
	f, err := jwt.NewFactory(jwt.Options{})
	edgetest.Must(t, err)
	for _, c := range []string{
		`{}`,
		`{"issuer":"x"}`,
		`{"issuer":"x","audiences":["a"]}`,
		`{"issuer":"x","audiences":["a"],"keys":{"keys":[]}}`,
		`{"issuer":"x","audiences":["a"],"keys":{"keys":[{"kty":"oct","k":"c2VjcmV0"}]}}`,
		`{"issuer":"x","audiences":["a"],"jwksUri":"https://a.example/j","algorithms":["HS256"]}`,
		`{"issuer":"x","audiences":["a"],"jwksUri":"https://a.example/j","algorithms":["none"]}`,
		`{"issuer":"x","audiences":["a"],"jwksUri":"https://a.example/j","scopeMatch":"most"}`,
		`{"issuer":"x","audiences":["a"],"jwksUri":"https://a.example/j","clockSkew":"1h"}`,
		`{"issuer":"x","audiences":["a"],"jwksUri":"https://a.example/j","claimHeaders":{"sub":"Bad Header"}}`,
	} {
		if _, err := f.New(t.Context(), config.PolicySpec{Type: "jwt", Config: json.RawMessage(c)}, plugins.Scope{}); err == nil {
			t.Errorf("config accepted: %s", c)
		}
	}
	// What the OpenAPI importer writes is accepted.
	imp := `{"issuer":"https://cognito-idp.eu-west-1.amazonaws.com/pool","audiences":["client"],"jwksUri":"https://cognito-idp.eu-west-1.amazonaws.com/pool/.well-known/jwks.json","scopes":["a"]}`
	if _, err := f.New(t.Context(), config.PolicySpec{Type: "jwt", Config: json.RawMessage(imp)}, plugins.Scope{}); err != nil {
		t.Fatal(err)
	}
}
