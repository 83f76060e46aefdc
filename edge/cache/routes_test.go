package cache

import (
	"bytes"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// A stage config's routes entries override single routes, and a
// route-level policy still has the last word.
func TestRouteOverrides(t *testing.T) {
	e := newEnv(t, envOpts{
		stageCfg: `{"ttl":"60s","routes":{
			"GET /nocache":{"enabled":false},
			"GET /short":{"ttl":"1s"},
			"GET /layered":{"ttl":"1s","xCacheHeader":false}}}`,
		routes: []testRoute{{prefix: "/other"}, {prefix: "/nocache"}, {prefix: "/short"}, {prefix: "/layered", routeCfg: `{"ttl":"120s"}`}},
	})
	expect(t, "other", e.get("/other"), 200, "Miss", "hello")
	expect(t, "other", e.get("/other"), 200, "Hit", "hello")
	expect(t, "nocache", e.get("/nocache"), 200, "", "hello")
	expect(t, "nocache", e.get("/nocache"), 200, "", "hello")
	e.wantHits(3)
	expect(t, "short", e.get("/short"), 200, "Miss", "hello")
	expect(t, "layered", e.get("/layered"), 200, "", "hello")
	e.clock.Advance(2 * time.Second)
	expect(t, "short after its ttl", e.get("/short"), 200, "Miss", "hello")
	expect(t, "other within the stage ttl", e.get("/other"), 200, "Hit", "hello")
	// The route-level ttl (120s) wins over the stage's entry (1s); the
	// entry's other field still applies.
	if r := e.get("/layered"); r.header.Get("Age") == "" || r.header.Get("X-Cache") != "" {
		t.Fatalf("layered: not a hit without X-Cache: %v", r.header)
	}
	e.wantHits(6)
}

func TestRouteOverrideKeysChecked(t *testing.T) {
	for cfg, want := range map[string]string{
		`{"routes":{"items":{}}}`:                                `"items" is not a route key`,
		`{"routes":{"FETCH /x":{}}}`:                             `"FETCH /x" is not a route key`,
		`{"routes":{"GET x":{}}}`:                                `"GET x" is not a route key`,
		`{"routes":{"GET /x":{"routes":{}}}}`:                    "cannot hold routes",
		`{"routes":{"GET /x":{"ttl":"-1s"}}}`:                    `"GET /x": config: ttl -1s is out of range`,
		`{"routes":{"GET /x":{"methods":["POST"]}}}`:             `"POST" cannot be cached`,
		`{"routes":{"GET /x":{"maxObjectBytes":1000000000000}}}`: "more than this node's cache can hold",
		`{"routes":{"GET /x":{"enabeld":false}}}`:                "unknown field",
		`{"routes":{"ANY /{proxy+}":{"enabled":false}}}`:         "",
	} {
		_, err := decodeConfig(config.PolicySpec{Type: Type, Config: []byte(cfg)}, 1<<20)
		switch {
		case want == "" && err != nil:
			t.Errorf("%s: %v", cfg, err)
		case want != "" && (err == nil || !strings.Contains(err.Error(), want)):
			t.Errorf("%s: %v, want an error containing %q", cfg, err, want)
		}
	}
}

func TestDisabledFactoryRefuses(t *testing.T) {
	f := Disabled("this node has no cache")
	if f.Type() != Type {
		t.Fatal(f.Type())
	}
	if _, err := f.New(t.Context(), config.PolicySpec{Type: Type}, plugins.Scope{}); err == nil || err.Error() != "this node has no cache" {
		t.Fatalf("New: %v", err)
	}
}

// A routes key that names no route of the deployed API is warned about,
// once, at the first request.
func TestRouteOverrideUnknownKeyWarned(t *testing.T) {
	var buf bytes.Buffer
	f, err := NewFactory(Options{MaxBytes: 1 << 20, Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	p, err := f.New(t.Context(), config.PolicySpec{Type: Type, Config: []byte(`{"routes":{"GET /items":{"ttl":"1s"},"GET /itmes/{id}":{"enabled":false}}}`)}, plugins.Scope{APIID: "a", Stage: "prod"})
	if err != nil {
		t.Fatal(err)
	}
	h := p.Wrap(plugins.HandlerFunc(func(http.ResponseWriter, *plugins.Exchange) {})).(*handler)
	d := &config.Deployment{ID: "d1", API: config.API{Name: "shop", Routes: []config.Route{{Method: "GET", Path: "/items"}, {Method: "GET", Path: "/items/{id}"}}}}
	for i := range 3 {
		r := &d.API.Routes[i%2]
		got := h.forRoute(&plugins.Exchange{Route: r, Deployment: d})
		if (r.Path == "/items") == (got == h) {
			t.Errorf("%s: override handler %v", r.Key(), got != h)
		}
	}
	if n := strings.Count(buf.String(), "routes names a route the API does not have"); n != 1 || !strings.Contains(buf.String(), `route="GET /itmes/{id}"`) {
		t.Fatalf("%d warnings:\n%s", n, buf.String())
	}
}
