package sigv4_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/aws/aws-sdk-go-v2/aws"
	v4 "github.com/aws/aws-sdk-go-v2/aws/signer/v4"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/authcache"
	"github.com/portico-edge/portico/plugins/authfail"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
	"github.com/portico-edge/portico/plugins/sigv4"
)

var t0 = time.Date(2026, 11, 25, 12, 0, 0, 0, time.UTC)

var (
	akid   = "PTKAAAAAAAAAAAAAAAAA"
	secret = "wJalrXUtnFEMI/K7MDENG/bPxRfiCYEXAMPLEKEY"
)

type env struct {
	url     string
	clock   *edgetest.Clock
	backend *edgetest.Backend
	creds   aws.Credentials
}

func start(t *testing.T, cfg string, guard *authfail.Guard, clock *edgetest.Clock) *env {
	t.Helper()
	if clock == nil {
		clock = edgetest.NewClock(t0)
	}
	keys := []config.AccessKey{
		{ID: akid, Secret: secret, Principal: "arn:portico:user/alice", Enabled: true},
		{ID: "PTKDISABLEDDDDDDDDDD", Secret: secret, Principal: "bob", Enabled: false},
	}
	for _, k := range keys {
		edgetest.Must(t, config.CheckAccessKey(k))
	}
	table, err := sigv4.NewTable(keys)
	edgetest.Must(t, err)
	var live sigv4.Live
	live.Store(table)
	reg := prometheus.NewRegistry()
	cache, err := authcache.New(authcache.Options{Now: clock.Now, Registerer: reg})
	edgetest.Must(t, err)
	f, err := sigv4.NewFactory(sigv4.Options{Keys: &live, Cache: cache, Guard: guard, Now: clock.Now, Registerer: reg})
	edgetest.Must(t, err)
	r, err := plugins.NewRegistry(f)
	edgetest.Must(t, err)
	b, bsrv := edgetest.StartBackend(t)
	var spec config.PolicySpec
	spec.Type = "sigv4"
	if cfg != "" {
		spec.Config = json.RawMessage(cfg)
	}
	u := edgetest.Start(t, r, edgetest.Config{APIID: "pets", Stage: "prod", Backend: bsrv.URL,
		Routes: []config.Route{{Method: config.MethodAny, Path: "/{proxy+}", Policies: []config.PolicySpec{spec}}}}).URL
	return &env{url: u, clock: clock, backend: b, creds: aws.Credentials{AccessKeyID: akid, SecretAccessKey: secret}}
}

func hashOf(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

// signed builds a request signed by the AWS SDK for Go v2 signer.
func (e *env) signed(t *testing.T, method, path string, body []byte, at time.Time, headers ...string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, e.url+path, bytes.NewReader(body))
	edgetest.Must(t, err)
	for _, h := range headers {
		k, v, _ := strings.Cut(h, ":")
		req.Header.Set(k, strings.TrimSpace(v))
	}
	edgetest.Must(t, v4.NewSigner().SignHTTP(context.Background(), e.creds, req, hashOf(body), "execute-api", "eu-west-1", at))
	return req
}

func TestSDKSignedRequestsAccepted(t *testing.T) {
	e := start(t, "", nil, nil)
	reqs := []*http.Request{
		e.signed(t, "GET", "/pets", nil, t0),
		e.signed(t, "GET", "/pets/a%20b/c?z=1&a=2&a=1&sp=x%20y&plus=a%2Bb&empty=", nil, t0),
		e.signed(t, "POST", "/pets", []byte(`{"name":"rex"}`), t0, "Content-Type: application/json", "X-Custom:  spaced   value "),
		e.signed(t, "PUT", "/pets/1", []byte("body"), t0.Add(-4*time.Minute), "X-Amz-Content-Sha256: "+hashOf([]byte("body"))),
	}
	for i, r := range reqs {
		if st, _, body := edgetest.Do(t, r); st != 200 {
			t.Errorf("request %d (%s %s): %d %s", i, r.Method, r.URL, st, body)
		}
	}
	got := e.backend.Requests()
	if len(got) != len(reqs) {
		t.Fatalf("backend saw %d requests", len(got))
	}
	if p := got[2].Header.Get(sigv4.PrincipalHeader); p != "arn:portico:user/alice" || string(got[2].Body) != `{"name":"rex"}` {
		t.Fatalf("backend got principal %q, body %q", p, got[2].Body)
	}
}

func TestPresignedURL(t *testing.T) {
	e := start(t, "", nil, nil)
	// The SDK signs the X-Amz-Expires the URL carries (service clients
	// add it from their presign options).
	req, err := http.NewRequest("GET", e.url+"/pets?x=1&X-Amz-Expires=900", nil)
	edgetest.Must(t, err)
	u, _, err := v4.NewSigner().PresignHTTP(context.Background(), e.creds, req, hashOf(nil), "execute-api", "eu-west-1", t0)
	edgetest.Must(t, err)
	if !strings.Contains(u, "X-Amz-Signature=") {
		t.Fatalf("not presigned: %s", u)
	}
	e.clock.Advance(10 * time.Minute)
	if st, _, body := edgetest.Get(t, u); st != 200 {
		t.Fatalf("presigned: %d %s (%s)", st, body, u)
	}
	if st, _, _ := edgetest.Get(t, strings.Replace(u, "x=1", "x=2", 1)); st != 403 {
		t.Fatalf("presigned with a changed parameter: %d", st)
	}
	e.clock.Advance(6 * time.Minute)
	if st, _, body := edgetest.Get(t, u); st != 403 || !strings.Contains(body, "expired") {
		t.Fatalf("presigned after expiry: %d %s", st, body)
	}
}

func TestTamperedRequestsRefused(t *testing.T) {
	e := start(t, "", nil, nil)
	body := []byte(`{"amount":10}`)
	cases := []struct {
		name string
		req  func() *http.Request
		msg  string
	}{
		{"changed signed header", func() *http.Request {
			r := e.signed(t, "POST", "/pay", body, t0, "X-Account: 1")
			r.Header.Set("X-Account", "2")
			return r
		}, "does not match"},
		{"changed body", func() *http.Request {
			r := e.signed(t, "POST", "/pay", body, t0)
			r.Body, r.ContentLength = ioNop(`{"amount":99}`), int64(len(`{"amount":99}`))
			return r
		}, "does not match"},
		{"changed body, declared hash kept", func() *http.Request {
			r := e.signed(t, "POST", "/pay", body, t0, "X-Amz-Content-Sha256: "+hashOf(body))
			r.Body, r.ContentLength = ioNop(`{"amount":99}`), int64(len(`{"amount":99}`))
			return r
		}, "x-amz-content-sha256 does not match"},
		{"changed path", func() *http.Request {
			r := e.signed(t, "POST", "/pay", body, t0)
			r.URL.Path = "/refund"
			return r
		}, "does not match"},
		{"changed method", func() *http.Request {
			r := e.signed(t, "POST", "/pay", body, t0)
			r.Method = "PUT"
			return r
		}, "does not match"},
		{"changed query", func() *http.Request {
			r := e.signed(t, "GET", "/pay?to=alice", nil, t0)
			r.URL.RawQuery = "to=mallory"
			return r
		}, "does not match"},
		{"stale date", func() *http.Request { return e.signed(t, "GET", "/pay", nil, t0.Add(-6*time.Minute)) }, "Signature expired"},
		{"future date", func() *http.Request { return e.signed(t, "GET", "/pay", nil, t0.Add(6*time.Minute)) }, "Signature expired"},
		{"wrong secret", func() *http.Request {
			e2 := *e
			e2.creds.SecretAccessKey = "x" + secret[1:]
			return e2.signed(t, "GET", "/pay", nil, t0)
		}, "does not match"},
		{"unknown key", func() *http.Request {
			e2 := *e
			e2.creds.AccessKeyID = "PTKUNKNOWNNNNNNNNNNN"
			return e2.signed(t, "GET", "/pay", nil, t0)
		}, "invalid"},
		{"disabled key", func() *http.Request {
			e2 := *e
			e2.creds.AccessKeyID = "PTKDISABLEDDDDDDDDDD"
			return e2.signed(t, "GET", "/pay", nil, t0)
		}, "invalid"},
		{"another service", func() *http.Request {
			r, _ := http.NewRequest("GET", e.url+"/pay", nil)
			_ = v4.NewSigner().SignHTTP(context.Background(), e.creds, r, hashOf(nil), "s3", "eu-west-1", t0)
			return r
		}, "service"},
		{"unsigned", func() *http.Request { r, _ := http.NewRequest("GET", e.url+"/pay", nil); return r }, "Missing Authentication Token"},
		{"unsigned payload", func() *http.Request {
			r, _ := http.NewRequest("POST", e.url+"/pay", bytes.NewReader(body))
			r.Header.Set("X-Amz-Content-Sha256", "UNSIGNED-PAYLOAD")
			_ = v4.NewSigner().SignHTTP(context.Background(), e.creds, r, "UNSIGNED-PAYLOAD", "execute-api", "eu-west-1", t0)
			return r
		}, "unsigned payloads"},
	}
	for _, c := range cases {
		st, _, b := edgetest.Do(t, c.req())
		if st != 403 || !strings.Contains(b, c.msg) {
			t.Errorf("%s: %d %s; want 403 containing %q", c.name, st, b, c.msg)
		}
	}
	if n := len(e.backend.Requests()); n != 0 {
		t.Fatalf("backend saw %d refused requests", n)
	}
}

func TestConfiguredRegionAndBodyCap(t *testing.T) {
	e := start(t, `{"region":"us-east-1","maxBodyBytes":8}`, nil, nil)
	if st, _, b := edgetest.Do(t, e.signed(t, "GET", "/x", nil, t0)); st != 403 || !strings.Contains(b, "region") {
		t.Fatalf("region eu-west-1 on a us-east-1 policy: %d %s", st, b)
	}
	e.creds.AccessKeyID = akid
	req, _ := http.NewRequest("POST", e.url+"/x", bytes.NewReader(make([]byte, 9)))
	_ = v4.NewSigner().SignHTTP(context.Background(), e.creds, req, hashOf(make([]byte, 9)), "execute-api", "us-east-1", t0)
	if st, _, _ := edgetest.Do(t, req); st != 413 {
		t.Fatalf("9-byte body over an 8-byte cap: %d, want 413", st)
	}
	req, _ = http.NewRequest("POST", e.url+"/x", bytes.NewReader(make([]byte, 8)))
	_ = v4.NewSigner().SignHTTP(context.Background(), e.creds, req, hashOf(make([]byte, 8)), "execute-api", "us-east-1", t0)
	if st, _, b := edgetest.Do(t, req); st != 200 {
		t.Fatalf("8-byte body: %d %s", st, b)
	}
}

func TestBadSignaturesAreThrottled(t *testing.T) {
	clock := edgetest.NewClock(t0)
	g, err := authfail.New(authfail.Options{Failures: 2, Window: time.Minute, Now: clock.Now})
	edgetest.Must(t, err)
	e := start(t, "", g, clock)
	bad := *e
	bad.creds.SecretAccessKey = "wrong-secret-wrong-secret-wrong"
	for range 2 {
		if st, _, _ := edgetest.Do(t, bad.signed(t, "GET", "/x", nil, t0)); st != 403 {
			t.Fatal(st)
		}
	}
	if st, h, _ := edgetest.Do(t, e.signed(t, "GET", "/x", nil, t0)); st != 429 || h.Get("Retry-After") != "30" {
		t.Fatalf("after 2 bad signatures: %d %q", st, h.Get("Retry-After"))
	}
}

func TestConfigErrors(t *testing.T) {
	f, err := sigv4.NewFactory(sigv4.Options{Keys: &sigv4.Live{}})
	edgetest.Must(t, err)
	for _, c := range []string{`{"window":"2h"}`, `{"maxPresignExpiry":"200h"}`, `{"service":"a/b"}`, `{"sevice":"x"}`, `{"maxBodyBytes":-1}`} {
		if _, err := f.New(t.Context(), config.PolicySpec{Type: "sigv4", Config: json.RawMessage(c)}, plugins.Scope{}); err == nil {
			t.Errorf("config accepted: %s", c)
		}
	}
	if _, err := f.New(t.Context(), config.PolicySpec{Type: "sigv4"}, plugins.Scope{}); err != nil {
		t.Fatalf("no config: %v", err)
	}
}
