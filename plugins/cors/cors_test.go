package cors_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/cors"
	"github.com/portico-edge/portico/plugins/internal/edgetest"
)

func start(t *testing.T, api, route string) (string, *edgetest.Backend) {
	t.Helper()
	f, err := cors.NewFactory(prometheus.NewRegistry())
	edgetest.Must(t, err)
	reg, err := plugins.NewRegistry(f)
	edgetest.Must(t, err)
	b, bsrv := edgetest.StartBackend(t)
	c := edgetest.Config{APIID: "a", Stage: "s", Backend: bsrv.URL,
		APIPolicies: []config.PolicySpec{{Type: "cors", Config: json.RawMessage(api)}},
		Routes:      []config.Route{{Method: "GET", Path: "/pets"}, {Method: "PUT", Path: "/pets"}, {Method: "GET", Path: "/public"}}}
	if route != "" {
		c.Routes[2].Policies = []config.PolicySpec{{Type: "cors", Config: json.RawMessage(route)}}
		c.APIPolicies = nil
	}
	return edgetest.Start(t, reg, c).URL, b
}

func preflight(t *testing.T, url, origin, method, headers string) (int, http.Header, string) {
	req, _ := http.NewRequest("OPTIONS", url, nil)
	req.Header.Set("Origin", origin)
	req.Header.Set("Access-Control-Request-Method", method)
	if headers != "" {
		req.Header.Set("Access-Control-Request-Headers", headers)
	}
	return edgetest.Do(t, req)
}

const apiCfg = `{"allowOrigins":["https://app.example.com","https://*.example.org"],"allowMethods":["GET","PUT"],
  "allowHeaders":["Content-Type","X-Api-Key"],"exposeHeaders":["X-Request-Id"],"allowCredentials":true,"maxAge":600}`

func TestPreflight(t *testing.T) {
	u, b := start(t, apiCfg, "")
	st, h, _ := preflight(t, u+"/pets", "https://app.example.com", "PUT", "content-type, x-api-key")
	if st != 204 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" ||
		h.Get("Access-Control-Allow-Credentials") != "true" || h.Get("Access-Control-Allow-Methods") != "GET, PUT" ||
		h.Get("Access-Control-Allow-Headers") != "content-type, x-api-key" || h.Get("Access-Control-Max-Age") != "600" ||
		!strings.Contains(strings.Join(h.Values("Vary"), ","), "Origin") {
		t.Fatalf("allowed preflight: %d %v", st, h)
	}
	if st, h, _ := preflight(t, u+"/pets", "https://deep.sub.example.org", "GET", ""); st != 204 || h.Get("Access-Control-Allow-Origin") != "https://deep.sub.example.org" {
		t.Fatalf("wildcard subdomain: %d %v", st, h)
	}
	denied := []struct{ name, origin, method, headers string }{
		{"origin", "https://evil.example.com", "GET", ""},
		{"apex of a wildcard", "https://example.org", "GET", ""},
		{"scheme of a wildcard", "http://a.example.org", "GET", ""},
		{"suffix trick", "https://evilexample.org", "GET", ""},
		{"method", "https://app.example.com", "DELETE", ""},
		{"header", "https://app.example.com", "GET", "x-secret"},
	}
	for _, d := range denied {
		st, h, body := preflight(t, u+"/pets", d.origin, d.method, d.headers)
		if st != 403 || h.Get("Access-Control-Allow-Origin") != "" || h.Get("Access-Control-Allow-Methods") != "" || h.Get("Content-Type") != "application/json" || !strings.Contains(body, "CORS preflight refused") {
			t.Errorf("%s: %d %v %s; want 403 JSON without CORS headers", d.name, st, h, body)
		}
	}
	if n := len(b.Requests()); n != 0 {
		t.Fatalf("preflights reached the backend (%d)", n)
	}
}

func TestActualRequests(t *testing.T) {
	u, b := start(t, apiCfg, "")
	st, h, _ := edgetest.Get(t, u+"/pets", "Origin: https://app.example.com")
	if st != 200 || h.Get("Access-Control-Allow-Origin") != "https://app.example.com" || h.Get("Access-Control-Expose-Headers") != "X-Request-Id" || h.Get("Vary") == "" {
		t.Fatalf("allowed origin: %d %v", st, h)
	}
	st, h, _ = edgetest.Get(t, u+"/pets", "Origin: https://evil.example.com")
	if st != 200 || h.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(h.Get("Vary"), "Origin") {
		t.Fatalf("other origin: %d %v (the browser enforces; the response must carry no grant but still Vary)", st, h)
	}
	st, h, _ = edgetest.Get(t, u+"/pets")
	if st != 200 || h.Get("Access-Control-Allow-Origin") != "" || !strings.Contains(h.Get("Vary"), "Origin") {
		t.Fatalf("same-origin request: %d %v", st, h)
	}
	if n := len(b.Requests()); n != 3 {
		t.Fatalf("backend saw %d", n)
	}
}

func TestWildcardOriginPerRoute(t *testing.T) {
	u, _ := start(t, "", `{"allowOrigins":["*"],"allowHeaders":["*"]}`)
	st, h, _ := edgetest.Get(t, u+"/public", "Origin: https://anyone.test")
	if st != 200 || h.Get("Access-Control-Allow-Origin") != "*" || h.Get("Access-Control-Allow-Credentials") != "" {
		t.Fatalf("public route: %d %v", st, h)
	}
	st, h, _ = preflight(t, u+"/public", "https://anyone.test", "GET", "x-anything")
	if st != 204 || h.Get("Access-Control-Allow-Headers") != "x-anything" {
		t.Fatalf("preflight with allowHeaders *: %d %v", st, h)
	}
	if st, h, _ := edgetest.Get(t, u+"/pets", "Origin: https://anyone.test"); st != 200 || h.Get("Access-Control-Allow-Origin") != "" {
		t.Fatalf("route without cors: %d %v", st, h)
	}
}

func TestConfigErrors(t *testing.T) {
	f, err := cors.NewFactory(nil)
	edgetest.Must(t, err)
	for _, c := range []string{
		`{}`,
		`{"allowOrigins":["*"],"allowCredentials":true}`,
		`{"allowOrigins":["https://a.example"],"allowHeaders":["*"],"allowCredentials":true}`,
		`{"allowOrigins":["https://a.*.example"]}`,
		`{"allowOrigins":["a.example"]}`,
		`{"allowOrigins":["https://a.example/path"]}`,
		`{"allowOrigins":["https://a.example"],"allowMethods":["get"]}`,
		`{"allowOrigins":["https://a.example"],"maxAge":-1}`,
		`{"allowOrigin":["https://a.example"]}`,
	} {
		if _, err := f.New(t.Context(), config.PolicySpec{Type: "cors", Config: json.RawMessage(c)}, plugins.Scope{}); err == nil {
			t.Errorf("accepted %s", c)
		}
	}
}
