package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

// Access control through real processes: API keys with usage plans (rate,
// burst, disable, usage reports), shared limits in Redis and its failure
// modes, JWT, SigV4 with keys made by the admin API, failed-authentication
// throttling, IP lists and CORS preflights, all at a real edge.

const accessHost = "access.example.test"

const accessDoc = `openapi: 3.0.3
info: {title: Pets, version: "1"}
paths:
  /pets:
    get:
      operationId: listPets
      x-portico-integration: {type: http_proxy, uri: "http://${stageVariables.backend}/pets"}
      responses: {"200": {description: ok}}
    post:
      operationId: addPet
      x-portico-integration: {type: http_proxy, uri: "http://${stageVariables.backend}/pets"}
      responses: {"201": {description: created}}
`

// accessConfig serves the API on one stage per policy under its own base
// path of accessHost.
const accessConfig = `portico: v1
apis:
  - name: pets
    openapi: pets.yaml
    stages:
      - name: open
        variables: {backend: "BACKEND"}
      - name: keys
        variables: {backend: "BACKEND"}
        policies:
          - {type: api-key, config: {}}
      - name: keysopen
        variables: {backend: "BACKEND"}
        policies:
          - {type: api-key, config: {redisFailure: open}}
      - name: jwt
        variables: {backend: "BACKEND"}
        policies:
          - type: jwt
            config: {issuer: "https://issuer.example.test", audiences: [pets], keys: JWKS}
      - name: sigv4
        variables: {backend: "BACKEND"}
        policies:
          - {type: sigv4, config: {region: us-east-1}}
      - name: ip
        variables: {backend: "BACKEND"}
        policies:
          - {type: ip, config: {deny: [127.0.0.0/8, "::1/128"]}}
      - name: cors
        variables: {backend: "BACKEND"}
        policies:
          - type: cors
            config: {allowOrigins: ["https://app.example.test"], allowMethods: [GET, POST], allowHeaders: [Content-Type, X-Api-Key], maxAge: 600}
domains:
  - name: access.example.test
    mappings:
      - {basePath: open, api: pets, stage: open}
      - {basePath: keys, api: pets, stage: keys}
      - {basePath: keysopen, api: pets, stage: keysopen}
      - {basePath: jwt, api: pets, stage: jwt}
      - {basePath: sigv4, api: pets, stage: sigv4}
      - {basePath: ip, api: pets, stage: ip}
      - {basePath: cors, api: pets, stage: cors}
`

type accessEnv struct {
	o       *origin
	signer  *rsa.PrivateKey // signs JWTs for the jwt stage
	hits    atomic.Int64    // requests the backend received
	lastHdr atomic.Pointer[http.Header]
}

// newAccess starts a backend and an origin and applies the access config.
// Edges are started by the tests, with the flags each needs.
func newAccess(t *testing.T) *accessEnv {
	t.Helper()
	env := &accessEnv{}
	echo := testBackend("access")
	b := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		env.hits.Add(1)
		h := r.Header.Clone()
		env.lastHdr.Store(&h)
		echo.ServeHTTP(w, r)
	}))
	var err error
	if env.signer, err = rsa.GenerateKey(rand.Reader, 2048); err != nil {
		t.Fatal(err)
	}
	jwks, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &env.signer.PublicKey, KeyID: "e2e", Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		t.Fatal(err)
	}
	env.o = startOrigin(t, "")
	cfg := strings.NewReplacer("BACKEND", b, "JWKS", string(jwks)).Replace(accessConfig)
	if code, body := env.o.apply(t, cfg, map[string]string{"pets.yaml": accessDoc}); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	return env
}

// edge starts an edge of the environment and waits until it serves.
func (env *accessEnv) edge(t *testing.T, extra ...string) *edgeNode {
	t.Helper()
	e := startEdge(t, env.o, "", extra...)
	eventually(t, 10*time.Second, func() error {
		if r := e.do(t, "GET", accessHost, "/open/pets", nil, nil); r.StatusCode != 200 {
			return fmt.Errorf("edge not serving yet: %d %s", r.StatusCode, r.Body)
		}
		return nil
	})
	return e
}

// ctl runs `portico ctl ARGS... -o json` against the origin and decodes
// the answer into out (when not nil).
func (env *accessEnv) ctl(t *testing.T, out any, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, binary, append(append([]string{"ctl"}, args...), "-o", "json", "--admin-url", env.o.AdminURL, "--token", env.o.AdminToken)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("portico ctl %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if out != nil {
		if err := json.Unmarshal(stdout.Bytes(), out); err != nil {
			t.Fatalf("portico ctl %s: %v\n%s", strings.Join(args, " "), err, stdout.String())
		}
	}
}

type newKey struct {
	ID, Key string
}

// key creates an API key on plans with ctl.
func (env *accessEnv) key(t *testing.T, name string, plans ...string) newKey {
	t.Helper()
	args := []string{"keys", "create", "--name", name}
	for _, p := range plans {
		args = append(args, "--plan", p)
	}
	var k newKey
	env.ctl(t, &k, args...)
	if k.ID == "" || !strings.HasPrefix(k.Key, "ptk_") {
		t.Fatalf("keys create answered %+v", k)
	}
	return k
}

// probe makes a key on a generous plan for the stages and waits until
// every edge accepts it. Keys created before it are then known to the
// edges too, since each snapshot holds every key: tests wait this way
// without spending the tokens of the keys they measure.
func (env *accessEnv) probe(t *testing.T, stages []string, edges ...*edgeNode) {
	t.Helper()
	args := []string{"plans", "create", "--id", "probe", "--name", "Probe", "--rate", "1000", "--burst", "1000"}
	for _, s := range stages {
		args = append(args, "--stage", "pets:"+s)
	}
	env.ctl(t, nil, args...)
	k := env.key(t, "probe", "probe")
	for _, e := range edges {
		eventually(t, 10*time.Second, func() error {
			for _, s := range stages {
				if r := e.do(t, "GET", accessHost, "/"+s+"/pets", nil, http.Header{"X-Api-Key": {k.Key}}); r.StatusCode != 200 {
					return fmt.Errorf("probe key on %s: %d %s", s, r.StatusCode, r.Body)
				}
			}
			return nil
		})
	}
}

func keyHeader(k newKey) http.Header { return http.Header{"X-Api-Key": {k.Key}} }

// usageTotal reads a key's usage today from the admin API.
func (env *accessEnv) usageTotal(t *testing.T, keyID string) int64 {
	t.Helper()
	var u struct{ Total int64 }
	env.o.mustAdmin(t, "GET", "/v1/api-keys/"+keyID+"/usage", nil, &u)
	return u.Total
}

// burst sends n requests back to back on one connection and returns the
// statuses, the last 429 and how long the burst took.
func burst(t *testing.T, e *edgeNode, path string, hdr http.Header, n int) ([]int, *response, time.Duration) {
	t.Helper()
	var codes []int
	var tooMany *response
	start := time.Now()
	for range n {
		r := e.do(t, "GET", accessHost, path, nil, hdr)
		codes = append(codes, r.StatusCode)
		if r.StatusCode == 429 {
			tooMany = r
		}
	}
	return codes, tooMany, time.Since(start)
}

// checkBurst checks that a burst against a plan of rate 1 and burst 5 got
// exactly 5 200s, then 429s. A token comes back every second: if the burst
// took longer (a very slow machine), that many more may pass, never fewer.
func checkBurst(t *testing.T, codes []int, took time.Duration) int {
	t.Helper()
	ok := 0
	for i, c := range codes {
		switch {
		case c == 200:
			ok++
		case c != 429:
			t.Errorf("request %d: status %d, want 200 or 429", i, c)
		}
	}
	extra := int(took / time.Second)
	if ok < 5 || ok > 5+extra {
		t.Errorf("%d requests of %d passed in %v with rate 1/s and burst 5: want 5 (%v)", ok, len(codes), took, codes)
	}
	if extra == 0 {
		for i, c := range codes {
			if want := map[bool]int{true: 200, false: 429}[i < 5]; c != want {
				t.Errorf("request %d: %d, want %d (%v)", i, c, want, codes)
				break
			}
		}
	}
	return ok
}

func checkTooMany(t *testing.T, r *response) {
	t.Helper()
	if r == nil {
		t.Fatal("no 429 in the burst")
	}
	ra, err := strconv.Atoi(r.Header.Get("Retry-After"))
	if err != nil || ra < 1 {
		t.Errorf("429 Retry-After %q: want whole seconds, at least 1", r.Header.Get("Retry-After"))
	}
	if msg := r.message(t); msg != "Too Many Requests" || !strings.HasPrefix(r.Header.Get("Content-Type"), "application/json") {
		t.Errorf("429 body %q, content type %q", r.Body, r.Header.Get("Content-Type"))
	}
}

func TestAccessAPIKeyPlanDisableAndUsage(t *testing.T) {
	env := newAccess(t)
	e := env.edge(t, "--usage-interval", "200ms")
	env.ctl(t, nil, "plans", "create", "--id", "limited", "--name", "Limited", "--rate", "1", "--burst", "5", "--stage", "pets:keys")
	app := env.key(t, "app", "limited")
	idle := env.key(t, "idle") // on no plan
	env.probe(t, []string{"keys"}, e)

	r := e.do(t, "GET", accessHost, "/keys/pets", nil, nil)
	if r.StatusCode != 403 || r.message(t) != "Forbidden: this API requires an API key in the x-api-key header" {
		t.Errorf("no key: %d %s", r.StatusCode, r.Body)
	}
	r = e.do(t, "GET", accessHost, "/keys/pets", nil, keyHeader(idle))
	if r.StatusCode != 403 || r.message(t) != "Forbidden: this API key is not on a usage plan for this API stage" {
		t.Errorf("key on no plan: %d %s", r.StatusCode, r.Body)
	}
	hits := env.hits.Load()
	codes, tooMany, took := burst(t, e, "/keys/pets", keyHeader(app), 10)
	ok := checkBurst(t, codes, took)
	checkTooMany(t, tooMany)
	if got := env.hits.Load() - hits; got != int64(ok) {
		t.Errorf("the backend received %d requests, want the %d accepted", got, ok)
	}
	if h := env.lastHdr.Load(); h == nil || h.Get("X-Portico-Api-Key-Id") != app.ID {
		t.Errorf("the origin did not receive the key ID: %v", h)
	}

	// Usage: the accepted requests, reported by the edge every 200ms,
	// as the admin API and ctl show them.
	eventually(t, 10*time.Second, func() error {
		if got := env.usageTotal(t, app.ID); got != int64(ok) {
			return fmt.Errorf("usage of %s: %d, want %d", app.ID, got, ok)
		}
		return nil
	})
	today := time.Now().UTC().Format(time.DateOnly)
	var plan struct {
		Total int64
		Keys  []struct {
			KeyID string
			Days  []struct {
				Day   string
				Count int64
			}
			Total int64
		}
	}
	env.ctl(t, &plan, "plans", "usage", "limited", "--key", app.ID)
	if plan.Total != int64(ok) || len(plan.Keys) != 1 || len(plan.Keys[0].Days) != 1 || plan.Keys[0].Days[0].Day != today {
		t.Errorf("plans usage: %+v", plan)
	}

	// Disabled: refused within a second of the command.
	env.ctl(t, nil, "keys", "disable", app.ID)
	disabledAt := time.Now()
	eventually(t, time.Second, func() error {
		r := e.do(t, "GET", accessHost, "/keys/pets", nil, keyHeader(app))
		if r.StatusCode != 403 {
			return fmt.Errorf("disabled key: %d %s", r.StatusCode, r.Body)
		}
		if m := r.message(t); m != "Forbidden: the API key is not valid" {
			return fmt.Errorf("disabled key: %q", m)
		}
		return nil
	})
	t.Logf("a disabled key was refused %v after ctl keys disable returned", time.Since(disabledAt).Round(time.Millisecond))
	env.ctl(t, nil, "keys", "enable", app.ID)
	eventually(t, 5*time.Second, func() error {
		if r := e.do(t, "GET", accessHost, "/keys/pets", nil, keyHeader(app)); r.StatusCode == 403 {
			return fmt.Errorf("re-enabled key still refused: %s", r.Body)
		}
		return nil
	})
}

func TestAccessUsageReportedAtShutdown(t *testing.T) {
	env := newAccess(t)
	// An interval far longer than the test: only the report made at
	// shutdown can bring the counts to the origin.
	e := env.edge(t, "--usage-interval", "1h")
	env.ctl(t, nil, "plans", "create", "--id", "free", "--name", "Free", "--stage", "pets:keys")
	k := env.key(t, "app", "free")
	env.probe(t, []string{"keys"}, e)
	for range 7 {
		if r := e.do(t, "GET", accessHost, "/keys/pets", nil, keyHeader(k)); r.StatusCode != 200 {
			t.Fatalf("%d %s", r.StatusCode, r.Body)
		}
	}
	if got := env.usageTotal(t, k.ID); got != 0 {
		t.Fatalf("usage before the edge stopped: %d", got)
	}
	e.stop()
	if got := env.usageTotal(t, k.ID); got != 7 {
		t.Errorf("usage after the edge stopped: %d, want 7; edge output:\n%s", got, e.output())
	}
	if len(lines(e.output(), "usage reported at shutdown")) != 1 {
		t.Errorf("the edge did not log its last report:\n%s", e.output())
	}
}

// redisServer is a redis-server the test started.
type redisServer struct {
	addr string
	cmd  *exec.Cmd
	once sync.Once
	done chan struct{}
}

// startRedis starts redis-server on a free 127.0.0.1 port without
// persistence, and stops it when the test ends.
func startRedis(t *testing.T) *redisServer {
	t.Helper()
	bin, err := exec.LookPath("redis-server")
	if err != nil {
		skipOrFail(t, "redis-server is not installed (apt-get install redis-server)")
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	ln.Close()
	cmd := exec.Command(bin, "--bind", "127.0.0.1", "--port", strconv.Itoa(port), "--save", "", "--appendonly", "no", "--dir", t.TempDir())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = cmd.Stdout
	if err := cmd.Start(); err != nil {
		t.Fatalf("start redis-server: %v", err)
	}
	r := &redisServer{addr: net.JoinHostPort("127.0.0.1", strconv.Itoa(port)), cmd: cmd, done: make(chan struct{})}
	t.Cleanup(r.stop)
	ready := make(chan struct{})
	go func() {
		defer close(r.done)
		sc := bufio.NewScanner(out)
		signalled := false
		for sc.Scan() {
			if !signalled && strings.Contains(sc.Text(), "Ready to accept connections") {
				close(ready)
				signalled = true
			}
		}
	}()
	select {
	case <-ready:
	case <-time.After(10 * time.Second):
		r.stop()
		t.Fatal("redis-server did not become ready within 10s")
	}
	return r
}

func (r *redisServer) stop() {
	r.once.Do(func() {
		_ = r.cmd.Process.Kill()
		_ = r.cmd.Wait()
		<-r.done
	})
}

func TestAccessLimitsSharedInRedis(t *testing.T) {
	rs := startRedis(t)
	env := newAccess(t)
	a := env.edge(t, "--redis", rs.addr)
	b := env.edge(t, "--redis", rs.addr)
	env.ctl(t, nil, "plans", "create", "--id", "limited", "--name", "Limited", "--rate", "1", "--burst", "5", "--stage", "pets:keys", "--stage", "pets:keysopen")
	app := env.key(t, "app", "limited")
	env.probe(t, []string{"keys", "keysopen"}, a, b)

	// Requests alternate between the edges; the one bucket in Redis
	// lets 5 through in all.
	var codes []int
	var tooMany *response
	start := time.Now()
	for i := range 10 {
		e := a
		if i%2 == 1 {
			e = b
		}
		r := e.do(t, "GET", accessHost, "/keys/pets", nil, keyHeader(app))
		codes = append(codes, r.StatusCode)
		if r.StatusCode == 429 {
			tooMany = r
		}
	}
	checkBurst(t, codes, time.Since(start))
	checkTooMany(t, tooMany)

	// Redis stops: the stage failing closed answers 503, the one failing
	// open lets requests through unlimited; keys are still checked.
	rs.stop()
	eventually(t, 5*time.Second, func() error {
		r := a.do(t, "GET", accessHost, "/keys/pets", nil, keyHeader(app))
		if r.StatusCode != 503 {
			return fmt.Errorf("closed with Redis down: %d %s", r.StatusCode, r.Body)
		}
		if m := r.message(t); !strings.HasPrefix(m, "Service Unavailable: the request limit cannot be checked right now") || r.Header.Get("Retry-After") == "" {
			return fmt.Errorf("closed with Redis down: %q, Retry-After %q", m, r.Header.Get("Retry-After"))
		}
		return nil
	})
	for _, e := range []*edgeNode{a, b} {
		for range 8 { // more than the burst: no limit applies
			if r := e.do(t, "GET", accessHost, "/keysopen/pets", nil, keyHeader(app)); r.StatusCode != 200 {
				t.Fatalf("open with Redis down: %d %s", r.StatusCode, r.Body)
			}
		}
		if r := e.do(t, "GET", accessHost, "/keysopen/pets", nil, http.Header{"X-Api-Key": {"ptk_notakey0000000000000000000000000000000000"}}); r.StatusCode != 403 {
			t.Errorf("an unknown key with Redis down: %d %s", r.StatusCode, r.Body)
		}
	}
}

func (env *accessEnv) token(t *testing.T, claims map[string]any) string {
	t.Helper()
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: env.signer}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "e2e"))
	if err != nil {
		t.Fatal(err)
	}
	tok, err := josejwt.Signed(sg).Claims(claims).Serialize()
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

func TestAccessJWT(t *testing.T) {
	env := newAccess(t)
	e := env.edge(t)
	now := time.Now()
	claims := func(aud string, exp time.Time) map[string]any {
		return map[string]any{"iss": "https://issuer.example.test", "aud": aud, "sub": "user-1", "exp": exp.Unix(), "iat": now.Add(-time.Minute).Unix()}
	}
	bearer := func(tok string) http.Header { return http.Header{"Authorization": {"Bearer " + tok}} }

	r := e.do(t, "GET", accessHost, "/jwt/pets", nil, bearer(env.token(t, claims("pets", now.Add(time.Hour)))))
	if r.StatusCode != 200 {
		t.Fatalf("valid token: %d %s", r.StatusCode, r.Body)
	}
	var got echoed
	r.json(t, &got)
	if got.Headers.Get("X-Portico-Principal") != "user-1" || got.Headers.Get("Authorization") == "" {
		t.Errorf("the origin got principal %q", got.Headers.Get("X-Portico-Principal"))
	}
	for name, tok := range map[string]string{
		"expired":        env.token(t, claims("pets", now.Add(-10*time.Minute))),
		"wrong audience": env.token(t, claims("cats", now.Add(time.Hour))),
	} {
		hits := env.hits.Load()
		r := e.do(t, "GET", accessHost, "/jwt/pets", nil, bearer(tok))
		if r.StatusCode != 401 || !strings.Contains(r.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
			t.Errorf("%s token: %d %s, WWW-Authenticate %q", name, r.StatusCode, r.Body, r.Header.Get("WWW-Authenticate"))
		}
		r.message(t)
		if env.hits.Load() != hits {
			t.Errorf("%s token reached the backend", name)
		}
	}
	r = e.do(t, "GET", accessHost, "/jwt/pets", nil, nil)
	if r.StatusCode != 401 || !strings.HasPrefix(r.Header.Get("WWW-Authenticate"), "Bearer") {
		t.Errorf("no token: %d, WWW-Authenticate %q", r.StatusCode, r.Header.Get("WWW-Authenticate"))
	}
}

// sign signs a request to the edge as an AWS SDK would.
func sign(t *testing.T, e *edgeNode, method, path string, body []byte, id, secret string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, e.url(path), bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Host = accessHost
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	sum := sha256.Sum256(body)
	creds := aws.Credentials{AccessKeyID: id, SecretAccessKey: secret}
	if err := v4.NewSigner().SignHTTP(context.Background(), creds, req, hex.EncodeToString(sum[:]), "execute-api", "us-east-1", time.Now()); err != nil {
		t.Fatal(err)
	}
	return req
}

func send(t *testing.T, e *edgeNode, req *http.Request) *response {
	t.Helper()
	res, err := e.client.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return &response{Response: res, Body: b}
}

func TestAccessSigV4(t *testing.T) {
	env := newAccess(t)
	e := env.edge(t)
	var ak struct{ ID, Secret, Principal string }
	env.ctl(t, &ak, "access-keys", "create", "--principal", "arn:portico:user/alice")
	if !strings.HasPrefix(ak.ID, "PTK") || ak.Secret == "" {
		t.Fatalf("access-keys create: %+v", ak)
	}
	eventually(t, 10*time.Second, func() error {
		if r := send(t, e, sign(t, e, "GET", "/sigv4/pets?limit=2", nil, ak.ID, ak.Secret)); r.StatusCode != 200 {
			return fmt.Errorf("signed GET: %d %s", r.StatusCode, r.Body)
		}
		return nil
	})
	r := send(t, e, sign(t, e, "POST", "/sigv4/pets", []byte(`{"name":"rex"}`), ak.ID, ak.Secret))
	if r.StatusCode != 200 {
		t.Fatalf("signed POST: %d %s", r.StatusCode, r.Body)
	}
	var got echoed
	r.json(t, &got)
	if got.Body != `{"name":"rex"}` || got.Headers.Get("X-Portico-Principal") != "arn:portico:user/alice" || got.Headers.Get("X-Portico-Access-Key") != ak.ID {
		t.Errorf("the origin got body %q, principal %q, access key %q", got.Body, got.Headers.Get("X-Portico-Principal"), got.Headers.Get("X-Portico-Access-Key"))
	}
	if r := e.do(t, "GET", accessHost, "/sigv4/pets", nil, nil); r.StatusCode != 403 || !strings.Contains(r.message(t), "Missing Authentication Token") {
		t.Errorf("unsigned: %d %s", r.StatusCode, r.Body)
	}
	r = send(t, e, sign(t, e, "GET", "/sigv4/pets", nil, ak.ID, strings.Repeat("x", 40)))
	if r.StatusCode != 403 || !strings.Contains(r.message(t), "signature we calculated does not match") {
		t.Errorf("wrong secret: %d %s", r.StatusCode, r.Body)
	}

	env.ctl(t, nil, "access-keys", "disable", ak.ID)
	eventually(t, time.Second, func() error {
		r := send(t, e, sign(t, e, "GET", "/sigv4/pets", nil, ak.ID, ak.Secret))
		if r.StatusCode != 403 || !strings.Contains(r.message(t), "security token included in the request is invalid") {
			return fmt.Errorf("disabled access key: %d %s", r.StatusCode, r.Body)
		}
		return nil
	})
}

func TestAccessFailedAuthenticationsThrottled(t *testing.T) {
	env := newAccess(t)
	e := env.edge(t, "--auth-failures", "3", "--auth-failure-window", "1m")
	env.ctl(t, nil, "plans", "create", "--id", "free", "--name", "Free", "--stage", "pets:keys")
	good := env.key(t, "app", "free")
	// The probe's requests fail until the edge has the new keys; made from
	// another address, they do not count against this client's failures.
	env.probe(t, []string{"keys"}, e.from("127.0.0.2"))
	for i := range 3 {
		r := e.do(t, "GET", accessHost, "/keys/pets", nil, http.Header{"X-Api-Key": {fmt.Sprintf("ptk_guess%035d", i)}})
		if r.StatusCode != 403 {
			t.Fatalf("bad key %d: %d %s", i, r.StatusCode, r.Body)
		}
	}
	// Over the limit, the address gets 429 before any key is looked at,
	// even a valid one.
	hits := env.hits.Load()
	r := e.do(t, "GET", accessHost, "/keys/pets", nil, keyHeader(good))
	if r.StatusCode != 429 || r.message(t) != "Too many failed authentication attempts from your address; try again later" {
		t.Errorf("after 3 failures: %d %s", r.StatusCode, r.Body)
	}
	if ra, err := strconv.Atoi(r.Header.Get("Retry-After")); err != nil || ra < 1 {
		t.Errorf("Retry-After %q", r.Header.Get("Retry-After"))
	}
	if env.hits.Load() != hits {
		t.Error("a blocked source reached the backend")
	}
}

func TestAccessIPAndCORS(t *testing.T) {
	env := newAccess(t)
	e := env.edge(t)
	hits := env.hits.Load()
	r := e.do(t, "GET", accessHost, "/ip/pets", nil, nil)
	if r.StatusCode != 403 || r.message(t) != "Forbidden: requests from your network are not allowed" {
		t.Errorf("denied network: %d %s", r.StatusCode, r.Body)
	}
	// X-Forwarded-For from an untrusted client changes nothing.
	r = e.do(t, "GET", accessHost, "/ip/pets", nil, http.Header{"X-Forwarded-For": {"203.0.113.9"}})
	if r.StatusCode != 403 {
		t.Errorf("denied network with a forged X-Forwarded-For: %d %s", r.StatusCode, r.Body)
	}

	pre := http.Header{"Origin": {"https://app.example.test"}, "Access-Control-Request-Method": {"POST"}, "Access-Control-Request-Headers": {"content-type"}}
	r = e.do(t, "OPTIONS", accessHost, "/cors/pets", nil, pre)
	if r.StatusCode != 204 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.test" ||
		!strings.Contains(r.Header.Get("Access-Control-Allow-Methods"), "POST") || r.Header.Get("Access-Control-Max-Age") != "600" ||
		!strings.Contains(strings.ToLower(r.Header.Get("Access-Control-Allow-Headers")), "content-type") {
		t.Errorf("allowed preflight: %d %v", r.StatusCode, r.Header)
	}
	pre.Set("Origin", "https://evil.example")
	r = e.do(t, "OPTIONS", accessHost, "/cors/pets", nil, pre)
	if r.StatusCode != 403 || r.Header.Get("Access-Control-Allow-Origin") != "" {
		t.Errorf("refused preflight: %d %v", r.StatusCode, r.Header)
	}
	r.message(t)
	if env.hits.Load() != hits {
		t.Error("a preflight or a denied request reached the backend; the edge answers them")
	}
	r = e.do(t, "GET", accessHost, "/cors/pets", nil, http.Header{"Origin": {"https://app.example.test"}})
	if r.StatusCode != 200 || r.Header.Get("Access-Control-Allow-Origin") != "https://app.example.test" || !strings.Contains(r.Header.Get("Vary"), "Origin") {
		t.Errorf("actual request: %d %v", r.StatusCode, r.Header)
	}
}
