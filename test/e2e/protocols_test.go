package e2e

import (
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/edge/devca"
	"github.com/portico-edge/portico/edge/listen"
)

// h3Client returns an HTTP/3 (quic-go) client of the edge.
func (e *edgeNode) h3Client(t *testing.T) *http.Client {
	t.Helper()
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(e.DataDir, "dev-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	tr := listen.NewHTTP3Transport(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	t.Cleanup(func() { tr.(io.Closer).Close() })
	return &http.Client{Transport: tr, Timeout: 30 * time.Second, CheckRedirect: e.client.CheckRedirect}
}

type protoAnswer struct {
	status int
	ct     string
	allow  string
	body   map[string]any
}

func askWith(t *testing.T, c *http.Client, e *edgeNode, method, path string) (protoAnswer, *http.Response) {
	t.Helper()
	req, _ := http.NewRequest(method, e.url(path), nil)
	req.Host = "api.example.test"
	res, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	defer res.Body.Close()
	raw, _ := io.ReadAll(res.Body)
	a := protoAnswer{status: res.StatusCode, ct: res.Header.Get("Content-Type"), allow: res.Header.Get("Allow")}
	if len(raw) > 0 {
		if err := json.Unmarshal(raw, &a.body); err != nil {
			t.Fatalf("%s %s over %s: not JSON: %s", method, path, res.Proto, raw)
		}
	}
	// What differs per request or per protocol is not compared.
	if h, ok := a.body["headers"].(map[string]any); ok {
		for _, k := range []string{"X-Request-Id", "Forwarded", "X-Forwarded-Proto", "User-Agent"} {
			delete(h, k)
		}
	}
	return a, res
}

// TestHTTP3SameAnswers sends the same requests over HTTP/1.1, HTTP/2 and
// HTTP/3 to one real edge: one handler, one pipeline, the same answers,
// errors included; HTTP/3 is advertised with Alt-Svc.
func TestHTTP3SameAnswers(t *testing.T) {
	env := newShop(t)
	clients := map[string]*http.Client{"HTTP/1.1": env.e.http1(), "HTTP/2.0": env.e.client, "HTTP/3.0": env.e.h3Client(t)}
	cases := []struct{ method, path string }{
		{"GET", "/v1/items?x=1"}, {"GET", "/v1/items/9"}, {"GET", "/v1/version"}, {"GET", "/v2/items"},
		{"GET", "/v1/nothing"}, {"DELETE", "/v1/items"}, {"GET", "/v1/down"}, {"GET", "/v1/slow"},
		{"GET", "/v1/%2e%2e/v2/items"}, {"GET", "/v1/x%2Fy"},
	}
	for _, c := range cases {
		var ref protoAnswer
		for _, proto := range []string{"HTTP/1.1", "HTTP/2.0", "HTTP/3.0"} {
			got, res := askWith(t, clients[proto], env.e, c.method, c.path)
			if res.Proto != proto {
				t.Fatalf("%s %s: asked over %s, answered over %s", c.method, c.path, proto, res.Proto)
			}
			if res.Header.Get("X-Request-Id") == "" {
				t.Errorf("%s %s over %s: no X-Request-Id", c.method, c.path, proto)
			}
			if proto != "HTTP/3.0" && !strings.Contains(res.Header.Get("Alt-Svc"), "h3=") {
				t.Errorf("%s %s over %s: no Alt-Svc advertising h3: %q", c.method, c.path, proto, res.Header.Get("Alt-Svc"))
			}
			if proto == "HTTP/1.1" {
				ref = got
				continue
			}
			if ref.status != got.status || ref.ct != got.ct || ref.allow != got.allow || fmt.Sprint(ref.body) != fmt.Sprint(got.body) {
				t.Errorf("%s %s: HTTP/1.1 answered %d %q %q %v, %s answered %d %q %q %v", c.method, c.path, ref.status, ref.ct, ref.allow, ref.body, proto, got.status, got.ct, got.allow, got.body)
			}
		}
	}
}

var reRegional = regexp.MustCompile(`regional endpoints serving.* https=(\S+) http=(\S*)`)

// TestRegionalAndPrivateEndpoints: an origin serves regional and private
// domains itself, with the same pipeline; edges do not serve them.
func TestRegionalAndPrivateEndpoints(t *testing.T) {
	be := backend(t, testBackend("regional"))
	o := startOrigin(t, "", "--regional-https-listen", "127.0.0.1:0", "--regional-http-listen", "127.0.0.1:0", "--dev-ca")
	m := o.waitFor(reRegional, 20*time.Second)
	cfg := shopConfig(t, be, be, deadAddr(t)) + `  - name: regional.example.test
    endpointType: regional
    mappings: [{basePath: v1, api: shop, stage: prod}]
  - name: private.example.test
    endpointType: private
    allowedNetworks: [10.0.0.0/8]
    mappings: [{basePath: v1, api: shop, stage: prod}]
  - name: inside.example.test
    endpointType: private
    allowedNetworks: [127.0.0.0/8]
    mappings: [{basePath: v1, api: shop, stage: prod}]
`
	if code, body := o.apply(t, cfg, map[string]string{"shop-v1.yaml": readFile(t, "testdata/shop-v1.yaml"), "shop-v2.yaml": readFile(t, "testdata/shop-v2.yaml")}); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	pool := x509.NewCertPool()
	ca, err := os.ReadFile(filepath.Join(o.DataDir, "regional", "dev-ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool.AppendCertsFromPEM(ca)
	c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}}}
	get := func(host string) (int, string) {
		req, _ := http.NewRequest("GET", "https://"+m[1]+"/v1/items", nil)
		req.Host = host
		res, err := c.Do(req)
		if err != nil {
			t.Fatalf("%s: %v", host, err)
		}
		defer res.Body.Close()
		b, _ := io.ReadAll(res.Body)
		return res.StatusCode, string(b)
	}
	eventually(t, 10*time.Second, func() error {
		if code, body := get("regional.example.test"); code != 200 || !strings.Contains(body, `"backend":"regional"`) {
			return fmt.Errorf("regional: %d %s", code, body)
		}
		return nil
	})
	if code, body := get("private.example.test"); code != 403 || !strings.Contains(body, "message") {
		t.Errorf("private endpoint from outside its networks: %d %s", code, body)
	}
	if code, _ := get("inside.example.test"); code != 200 {
		t.Errorf("private endpoint from inside its networks: %d", code)
	}
	if code, _ := get("api.example.test"); code != 404 {
		t.Errorf("the origin must not serve edge domains: %d", code)
	}
	// An edge does not serve regional or private domains.
	e := startEdge(t, o, "")
	eventually(t, 10*time.Second, func() error {
		if r := e.do(t, "GET", "api.example.test", "/v1/version", nil, nil); r.StatusCode != 200 {
			return fmt.Errorf("edge: %d", r.StatusCode)
		}
		return nil
	})
	if r := e.do(t, "GET", "regional.example.test", "/v1/items", nil, nil); r.StatusCode != 404 {
		t.Errorf("edge served a regional domain: %d", r.StatusCode)
	}
	// Both report in the origin's node list, with their certificates.
	eventually(t, 15*time.Second, func() error {
		var nodes struct {
			Current string
			Nodes   []struct {
				Node, Role, Version string
				Behind              bool
			}
		}
		o.mustAdmin(t, "GET", "/v1/nodes", nil, &nodes)
		roles := map[string]bool{}
		for _, n := range nodes.Nodes {
			if !n.Behind {
				roles[n.Role] = true
			}
		}
		if !roles["edge"] || !roles["regional"] {
			return fmt.Errorf("nodes: %+v", nodes)
		}
		return nil
	})
	var certs struct {
		Certificates []struct{ Node, Role, Source, Issuer string }
	}
	o.mustAdmin(t, "GET", "/v1/domains/regional.example.test/certificates", nil, &certs)
	if len(certs.Certificates) != 1 || certs.Certificates[0].Role != "regional" || certs.Certificates[0].Source != "default" || certs.Certificates[0].Issuer == "" {
		t.Errorf("regional certificate status: %+v", certs)
	}
}

// TestOriginOverTLSAndHTTP3: the origin's data plane over TLS, and an edge
// forwarding to it over HTTP/3 (--origin-http3) or HTTPS; the backend sees
// the hop's protocol in Via.
func TestOriginOverTLSAndHTTP3(t *testing.T) {
	be := backend(t, testBackend("one"))
	certDir := t.TempDir()
	ca, err := devca.Load(certDir)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := ca.Leaf([]string{"127.0.0.1"}); err != nil {
		t.Fatal(err)
	}
	o := startOrigin(t, "", "--data-tls-cert", filepath.Join(certDir, "dev-leaf.pem"), "--data-tls-key", filepath.Join(certDir, "dev-leaf.key"))
	if !strings.HasPrefix(o.DataURL, "https://") {
		t.Fatalf("data plane URL %q", o.DataURL)
	}
	if code, body := o.apply(t, shopConfig(t, be, be, deadAddr(t)), map[string]string{"shop-v1.yaml": readFile(t, "testdata/shop-v1.yaml"), "shop-v2.yaml": readFile(t, "testdata/shop-v2.yaml")}); code != 200 {
		t.Fatalf("apply: %d %s", code, body)
	}
	for _, tc := range []struct {
		name string
		args []string
		via  string
	}{
		{"https", []string{"--origin-ca", ca.CertPath()}, "1.1 portico"},
		{"http3", []string{"--origin-ca", ca.CertPath(), "--origin-http3"}, "3 portico"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			e := startEdge(t, o, "", tc.args...)
			eventually(t, 10*time.Second, func() error {
				r := e.do(t, "GET", "api.example.test", "/v1/items", nil, nil)
				if r.StatusCode != 200 {
					return fmt.Errorf("%d %s", r.StatusCode, r.Body)
				}
				var got echoed
				r.json(t, &got)
				if got.Headers.Get("Via") != tc.via {
					return fmt.Errorf("backend saw Via %q, want %q", got.Headers.Get("Via"), tc.via)
				}
				return nil
			})
			// A body goes the same way.
			r := e.do(t, "POST", "api.example.test", "/v1/items", strings.NewReader("hello"), nil)
			var got echoed
			r.json(t, &got)
			if got.Body != "hello" || got.Headers.Get("Via") != tc.via {
				t.Errorf("POST: %d %s\nedge output:\n%s\norigin output:\n%s", r.StatusCode, r.Body, e.output(), o.output())
			}
		})
	}
}
