package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/fleet"
)

// testOrigin is a real origin on 127.0.0.1:0 with the real importer,
// reached through a recording proxy, so the tests know which admin calls
// ctl made.
type testOrigin struct {
	url, token string
	direct     string // the admin listener itself
	o          *origin.Origin
	n          *node

	mu   sync.Mutex
	hits []*http.Request // method and URL of every call, in order
}

func startTestOrigin(t *testing.T) *testOrigin {
	t.Helper()
	// Nothing from the developer's environment may leak in.
	t.Setenv("PORTICO_ADMIN_URL", "")
	t.Setenv("PORTICO_TOKEN", "")
	t.Setenv("XDG_CONFIG_HOME", t.TempDir())

	ctx, cancel := context.WithCancel(context.Background())
	dataDir := t.TempDir()
	mods := &deferredModules{}
	n, err := newNode(nodeFlags{}, nodeEnv{dataDir: dataDir, modules: mods}, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	reg := n.Policies
	o, first, err := origin.New(ctx, origin.Config{DataDir: dataDir, AdminListen: "127.0.0.1:0", DataListen: "127.0.0.1:0",
		Importer: importDocument, Policies: reg, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	mods.set(o.Modules)
	if first == nil {
		t.Fatal("a new data dir gave no first-start admin token")
	}
	if err := o.Listen(); err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- o.Serve(ctx, 2*time.Second) }()
	to := &testOrigin{token: first.AdminToken, direct: "http://" + o.AdminAddr(), o: o, n: n}
	target, _ := url.Parse(to.direct)
	proxy := httputil.NewSingleHostReverseProxy(target)
	rec := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		to.mu.Lock()
		to.hits = append(to.hits, &http.Request{Method: r.Method, URL: &url.URL{Path: r.URL.Path, RawPath: r.URL.RawPath, RawQuery: r.URL.RawQuery}})
		to.mu.Unlock()
		proxy.ServeHTTP(w, r)
	}))
	to.url = rec.URL
	t.Cleanup(func() {
		rec.Close()
		cancel()
		select {
		case err := <-served:
			if err != nil {
				t.Errorf("origin: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("the origin did not stop within 10s")
		}
		o.Close()
		n.Close(context.Background())
	})
	return to
}

// run runs `portico ctl ARGS...` with the origin's URL and token.
func (to *testOrigin) run(args ...string) (string, string, error) {
	return runCtlArgs(append([]string{"--admin-url", to.url, "--token", to.token}, args...)...)
}

func runCtlArgs(args ...string) (string, string, error) {
	var out, errOut bytes.Buffer
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	err := run(ctx, append([]string{"ctl"}, args...), &out, &errOut)
	return out.String(), errOut.String(), err
}

// ok runs a command that must succeed and returns its output.
func (to *testOrigin) ok(t *testing.T, args ...string) string {
	t.Helper()
	out, errOut, err := to.run(args...)
	if err != nil {
		t.Fatalf("portico ctl %s: %v\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), err, out, errOut)
	}
	return out
}

// json runs a command with -o json, checks the output is indented JSON,
// and decodes it into v.
func (to *testOrigin) json(t *testing.T, v any, args ...string) {
	t.Helper()
	out := to.ok(t, append(args, "-o", "json")...)
	if !strings.HasPrefix(out, "{\n  \"") && !strings.HasPrefix(out, "[\n") {
		t.Fatalf("portico ctl %s -o json is not indented JSON:\n%s", strings.Join(args, " "), out)
	}
	dec := json.NewDecoder(strings.NewReader(out))
	if err := dec.Decode(v); err != nil {
		t.Fatalf("portico ctl %s -o json: %v\n%s", strings.Join(args, " "), err, out)
	}
}

// calls returns the calls made since mark as "METHOD PATH?QUERY".
func (to *testOrigin) callsSince(mark int) []string {
	to.mu.Lock()
	defer to.mu.Unlock()
	var out []string
	for _, r := range to.hits[mark:] {
		out = append(out, r.Method+" "+r.URL.RequestURI())
	}
	return out
}

func (to *testOrigin) mark() int {
	to.mu.Lock()
	defer to.mu.Unlock()
	return len(to.hits)
}

var cellSep = regexp.MustCompile(`\s{2,}`)

// hasRow reports whether a line of a table (or "Key:  value" block) starts
// with these cells.
func hasRow(out string, cells ...string) bool {
	for _, line := range strings.Split(out, "\n") {
		got := cellSep.Split(strings.TrimSpace(line), -1)
		if len(got) >= len(cells) && slices.Equal(got[:len(cells)], cells) {
			return true
		}
	}
	return false
}

func wantRow(t *testing.T, out string, cells ...string) {
	t.Helper()
	if !hasRow(out, cells...) {
		t.Errorf("no row %q in:\n%s", cells, out)
	}
}

func wantContains(t *testing.T, out string, subs ...string) {
	t.Helper()
	for _, s := range subs {
		if !strings.Contains(out, s) {
			t.Errorf("output lacks %q:\n%s", s, out)
		}
	}
}

// exitCode is the status main exits with for err.
func exitCode(err error) int {
	var u usageError
	switch {
	case err == nil, errors.Is(err, errHelp):
		return 0
	case errors.As(err, &u):
		return 2
	default:
		return 1
	}
}

func writeFile(t *testing.T, dir, name, text string) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

var deploymentID = regexp.MustCompile(`deployment (d[a-z0-9]+)`)

// TestCtlCommands runs every command against one origin, in both output
// modes, then checks that every admin call was made by some command.
func TestCtlCommands(t *testing.T) {
	to := startTestOrigin(t)
	dir := t.TempDir()
	shopDoc := filepath.Join("testdata", "ctl", "shop.yaml")

	t.Run("apply", func(t *testing.T) {
		out := to.ok(t, "apply", "-f", filepath.Join("testdata", "ctl", "portico.yaml"))
		wantContains(t, out, "1 API imported, 2 stages deployed")
		wantRow(t, out, "CHANGE", "WHAT")
		wantRow(t, out, "imported", "shop")
		wantRow(t, out, "domain", "shop.example.test")
		wantRow(t, out, "edge site", "test-site")
		if !regexp.MustCompile(`(?m)^deployed\s+shop/prod -> d[a-z0-9]+$`).MatchString(out) {
			t.Errorf("no deployed row for shop/prod:\n%s", out)
		}
		out = to.ok(t, "apply", "-f", filepath.Join("testdata", "ctl", "portico.yaml"))
		wantContains(t, out, "every API and stage was already up to date")
		var rep control.ApplyReport
		to.json(t, &rep, "apply", "-f", filepath.Join("testdata", "ctl", "portico.yaml"))
		if len(rep.Imported) != 0 || len(rep.Deployed) != 0 || !slices.Equal(rep.Domains, []string{"shop.example.test"}) {
			t.Errorf("second apply reported %+v", rep)
		}
	})

	t.Run("apis list and get", func(t *testing.T) {
		out := to.ok(t, "apis", "list")
		wantRow(t, out, "NAME", "ID", "VERSION", "ROUTES", "UPDATED", "DESCRIPTION")
		if !regexp.MustCompile(`(?m)^shop\s+a[a-z0-9]+\s+2\.1\.0\s+3\s+\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ\s+The test shop$`).MatchString(out) {
			t.Errorf("apis list:\n%s", out)
		}
		var list struct {
			APIs []apiSummary `json:"apis"`
		}
		to.json(t, &list, "apis", "list")
		if len(list.APIs) != 1 || list.APIs[0].Name != "shop" || list.APIs[0].Routes != 3 {
			t.Errorf("apis list -o json: %+v", list)
		}

		out = to.ok(t, "apis", "get", "shop")
		wantRow(t, out, "Name:", "shop")
		wantRow(t, out, "Version:", "2.1.0")
		wantRow(t, out, "METHOD", "PATH", "OPERATION", "INTEGRATION", "TARGET")
		wantRow(t, out, "GET", "/items/{id}", "getItem", "http_proxy", "GET http://${stageVariables.backend}/items/{id}")
		wantRow(t, out, "GET", "/health", "health", "mock", "status 200")
		var a config.API
		to.json(t, &a, "apis", "get", list.APIs[0].ID) // by ID too
		if a.Name != "shop" || len(a.Routes) != 3 {
			t.Errorf("apis get -o json: %+v", a)
		}
	})

	t.Run("apis import", func(t *testing.T) {
		out := to.ok(t, "apis", "import", shopDoc, "--name", "shop2")
		wantContains(t, out, "Created API shop2 (", "3 routes imported from shop.yaml")
		wantRow(t, out, "GET", "/items", "listItems", "http_proxy")

		out = to.ok(t, "apis", "import", shopDoc, "--name", "shop2", "--overwrite")
		wantContains(t, out, "API shop2 (", "is unchanged: shop.yaml was already imported (3 routes)")

		changed := writeFile(t, dir, "shop-v3.yaml", strings.Replace(mustRead(t, shopDoc), "version: 2.1.0", "version: 3.0.0", 1))
		out = to.ok(t, "apis", "import", changed, "--overwrite", "--name", "shop2")
		wantContains(t, out, "Updated API shop2 (", "3 routes imported from shop-v3.yaml")

		var res control.ImportResult
		to.json(t, &res, "apis", "import", changed, "--name", "shop3")
		if !res.Created || res.API.Name != "shop3" || res.API.Version != "3.0.0" {
			t.Errorf("apis import -o json: %+v", res)
		}

		// Import options reach the admin API: a document without
		// integrations, served from a default backend under its base path.
		plain := writeFile(t, dir, "plain.json", `{"openapi": "3.0.3", "info": {"title": "Plain Things", "version": "1"},
			"servers": [{"url": "https://things.example/base"}],
			"paths": {"/things": {"get": {"operationId": "listThings", "responses": {"200": {"description": "ok"}}}}}}`)
		mark := to.mark()
		out = to.ok(t, "apis", "import", plain, "--default-backend", "http://127.0.0.1:9", "--base-path", "prepend", "--ignore-security")
		wantContains(t, out, "Created API plain-things (")
		wantRow(t, out, "GET", "/base/things", "listThings", "http_proxy", "http://127.0.0.1:9/things")
		calls := to.callsSince(mark)
		if len(calls) != 1 || !strings.HasPrefix(calls[0], "POST /v1/apis?") || !strings.Contains(calls[0], "ignoreSecurity=true") ||
			!strings.Contains(calls[0], "basePath=prepend") || !strings.Contains(calls[0], "defaultBackend=") {
			t.Errorf("import sent %q", calls)
		}

		_, _, err := to.run("apis", "import", shopDoc, "--name", "shop2")
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != http.StatusConflict || !strings.Contains(err.Error(), "--overwrite") {
			t.Errorf("importing over an existing API: %v", err)
		}
	})

	t.Run("apis document", func(t *testing.T) {
		out := to.ok(t, "apis", "document", "shop")
		if out != mustRead(t, shopDoc) {
			t.Errorf("apis document does not print the imported document as is:\n%s", out)
		}
		var doc struct {
			Info struct{ Title, Version string }
		}
		to.json(t, &doc, "apis", "document", "shop")
		if doc.Info.Title != "Shop" || doc.Info.Version != "2.1.0" {
			t.Errorf("apis document -o json: %+v", doc)
		}
		to.json(t, &doc, "apis", "document", "plain-things") // stored as JSON
		if doc.Info.Title != "Plain Things" {
			t.Errorf("apis document -o json (JSON document): %+v", doc)
		}
	})

	t.Run("apis set-policies", func(t *testing.T) {
		pol := writeFile(t, dir, "policies.yaml", "- type: throttle\n  config: {rate: 100, burst: 200}\n")
		out := to.ok(t, "apis", "set-policies", "shop3", "-f", pol)
		wantContains(t, out, "API shop3 now has 1 API-level policy")
		wantRow(t, out, "POLICY", "CONFIG")
		wantRow(t, out, "throttle", `{"burst":200,"rate":100}`)
		wrapped := writeFile(t, dir, "policies.json", `{"policies": []}`)
		var a config.API
		to.json(t, &a, "apis", "set-policies", "shop3", "-f", wrapped)
		if a.Name != "shop3" || len(a.Policies) != 0 {
			t.Errorf("apis set-policies -o json: %+v", a)
		}
		bad := writeFile(t, dir, "bad-policies.yaml", "- config: {rate: 1}\n")
		if _, _, err := to.run("apis", "set-policies", "shop3", "-f", bad); err == nil || !strings.Contains(err.Error(), "policy 1 has no type") {
			t.Errorf("a policy without a type: %v", err)
		}
	})

	t.Run("stages", func(t *testing.T) {
		out := to.ok(t, "stages", "put", "shop", "dev", "--var", "backend=127.0.0.1:9", "--var", "region=eu=west", "--description", "the dev stage")
		wantContains(t, out, "Created stage dev of API shop.", "portico ctl deploy shop dev")
		wantRow(t, out, "VARIABLE", "VALUE")
		wantRow(t, out, "region", "eu=west")
		out = to.ok(t, "stages", "put", "shop", "dev", "--var", "backend=127.0.0.1:9", "--description", "the dev stage")
		wantContains(t, out, "Updated stage dev of API shop.")

		out = to.ok(t, "stages", "list", "shop")
		wantRow(t, out, "NAME", "DEPLOYMENT", "VARIABLES", "UPDATED", "DESCRIPTION")
		if !regexp.MustCompile(`(?m)^prod\s+d[a-z0-9]+\s+backend=127\.0\.0\.1:9\s+\S+Z\s+production$`).MatchString(out) {
			t.Errorf("stages list:\n%s", out)
		}
		if !regexp.MustCompile(`(?m)^dev\s+-\s+backend=127\.0\.0\.1:9\s+\S+Z\s+the dev stage$`).MatchString(out) {
			t.Errorf("stages list:\n%s", out)
		}
		var list struct {
			Stages []config.Stage `json:"stages"`
		}
		to.json(t, &list, "stages", "list", "shop")
		if len(list.Stages) != 3 {
			t.Errorf("stages list -o json: %+v", list)
		}

		out = to.ok(t, "stages", "get", "shop", "dev")
		wantRow(t, out, "Stage:", "dev")
		wantRow(t, out, "Deployment:", "-")
		wantRow(t, out, "backend", "127.0.0.1:9")
		var st config.Stage
		to.json(t, &st, "stages", "get", "shop", "prod")
		if st.Name != "prod" || st.DeploymentID == "" || st.Variables["backend"] != "127.0.0.1:9" {
			t.Errorf("stages get -o json: %+v", st)
		}

		pol := writeFile(t, dir, "stage-policies.json", `[{"type": "cors", "config": {"origins": ["*"]}}]`)
		to.json(t, &st, "stages", "put", "shop3", "test", "--policies-file", pol)
		if len(st.Policies) != 1 || st.Policies[0].Type != "cors" {
			t.Errorf("stages put --policies-file -o json: %+v", st)
		}
		out = to.ok(t, "stages", "get", "shop3", "test")
		wantRow(t, out, "cors", `{"origins":["*"]}`)

		out = to.ok(t, "stages", "delete", "shop3", "test")
		wantContains(t, out, "Deleted stage test of API shop3")
		to.ok(t, "stages", "put", "shop3", "test")
		if out := to.ok(t, "stages", "delete", "shop3", "test", "-o", "json"); out != "" {
			t.Errorf("a delete with -o json printed %q", out)
		}
	})

	var first, second string
	t.Run("deploy, deployments and rollback", func(t *testing.T) {
		out := to.ok(t, "deploy", "shop", "dev", "--description", "first dev deployment")
		m := deploymentID.FindStringSubmatch(out)
		if m == nil || !strings.HasPrefix(out, "Deployed API shop to stage dev: deployment d") || !strings.Contains(out, "(3 routes)") {
			t.Fatalf("deploy:\n%s", out)
		}
		first = m[1]
		var d config.Deployment
		to.json(t, &d, "deploy", "shop", "dev", "--description", "second")
		if d.ID == "" || d.Description != "second" || d.API.Name != "shop" {
			t.Fatalf("deploy -o json: %+v", d)
		}
		second = d.ID

		out = to.ok(t, "deployments", "list", "shop")
		wantRow(t, out, "ID", "CREATED", "ROUTES", "STAGES", "DESCRIPTION")
		wantRow(t, out, second)
		if !regexp.MustCompile(`(?m)^` + second + `\s+\S+Z\s+3\s+dev\s+second$`).MatchString(out) {
			t.Errorf("deployments list: no current row for %s:\n%s", second, out)
		}
		if !regexp.MustCompile(`(?m)^` + first + `\s+\S+Z\s+3\s+-\s+first dev deployment$`).MatchString(out) {
			t.Errorf("deployments list: no row for %s:\n%s", first, out)
		}
		var list struct {
			Deployments []control.DeploymentInfo `json:"deployments"`
		}
		to.json(t, &list, "deployments", "list", "shop")
		if len(list.Deployments) != 4 || list.Deployments[0].ID != second || !slices.Equal(list.Deployments[0].Stages, []string{"dev"}) {
			t.Errorf("deployments list -o json: %+v", list)
		}

		out = to.ok(t, "deployments", "get", first)
		wantRow(t, out, "ID:", first)
		wantRow(t, out, "Description:", "first dev deployment")
		wantRow(t, out, "GET", "/items", "listItems", "http_proxy")
		to.json(t, &d, "deployments", "get", first)
		if d.ID != first || len(d.API.Routes) != 3 {
			t.Errorf("deployments get -o json: %+v", d)
		}

		out = to.ok(t, "rollback", "shop", "dev")
		wantContains(t, out, "Stage dev of API shop now serves deployment "+first+".")
		var st config.Stage
		to.json(t, &st, "rollback", "shop", "dev", "--to", second)
		if st.DeploymentID != second {
			t.Errorf("rollback --to -o json: %+v", st)
		}
	})

	t.Run("nodes and certificates", func(t *testing.T) {
		to.ok(t, "domains", "put", "nodes.example.test")
		hb := fleet.Heartbeat{Node: "fra-1", Site: "fra", Role: "edge", Version: "v-old",
			Certificates: []fleet.Certificate{{Domain: "nodes.example.test", Source: "acme", Issuer: "Test CA", NotAfter: time.Date(2027, 1, 2, 0, 0, 0, 0, time.UTC), LastError: "rate limited"}}}
		if !to.o.Fleet.Record(hb, "127.0.0.1:1") {
			t.Fatal("heartbeat not recorded")
		}
		out := to.ok(t, "nodes", "list")
		wantRow(t, out, "fra-1", "edge", "fra", "v-old", "behind")
		out = to.ok(t, "domains", "certs", "nodes.example.test")
		wantRow(t, out, "fra-1", "acme", "Test CA", "2027-01-02T00:00:00Z", "rate limited")
		var certs struct{ Certificates []fleet.DomainCertificate }
		to.json(t, &certs, "domains", "certs", "nodes.example.test")
		if len(certs.Certificates) != 1 || certs.Certificates[0].Node != "fra-1" {
			t.Errorf("domains certs -o json: %+v", certs)
		}
		if _, _, err := to.run("domains", "certs", "missing.example.test"); err == nil || !strings.Contains(err.Error(), "does not exist") {
			t.Errorf("certs of a missing domain: %v", err)
		}
		to.ok(t, "domains", "delete", "nodes.example.test")
	})

	t.Run("domains and mappings", func(t *testing.T) {
		out := to.ok(t, "domains", "put", "api.example.test", "--endpoint-type", "regional", "--plain-http", "serve", "--managed")
		wantContains(t, out, "Created domain api.example.test.", "portico ctl mappings put api.example.test")
		wantRow(t, out, "Endpoint type:", "regional")
		wantRow(t, out, "Certificate:", "managed")
		var d config.Domain
		to.json(t, &d, "domains", "put", "api.example.test", "--endpoint-type", "private", "--allow", "10.0.0.0/8", "--allow", "192.168.0.0/16",
			"--cert-file", "/etc/portico/api.pem", "--key-file", "/etc/portico/api.key")
		if d.EndpointType != config.EndpointPrivate || !slices.Equal(d.AllowedNetworks, []string{"10.0.0.0/8", "192.168.0.0/16"}) || d.Certificate == nil || d.Certificate.CertFile != "/etc/portico/api.pem" {
			t.Errorf("domains put -o json: %+v", d)
		}
		out = to.ok(t, "domains", "put", "api.example.test")
		wantContains(t, out, "Updated domain api.example.test.")
		wantRow(t, out, "Endpoint type:", "edge")
		wantRow(t, out, "Certificate:", "default")

		out = to.ok(t, "mappings", "put", "api.example.test", "/", "--api", "shop", "--stage", "dev")
		wantContains(t, out, "Mapped api.example.test/ to stage dev of API shop.")
		wantRow(t, out, "BASE PATH", "API", "STAGE")
		wantRow(t, out, "/", "shop", "dev")
		to.json(t, &d, "mappings", "put", "api.example.test", "v1/beta", "--api", "shop", "--stage", "prod")
		if len(d.Mappings) != 2 || d.Mappings[1].BasePath != "v1/beta" || d.Mappings[1].Stage != "prod" {
			t.Errorf("mappings put -o json: %+v", d.Mappings)
		}

		out = to.ok(t, "domains", "list")
		wantRow(t, out, "NAME", "TYPE", "PLAIN HTTP", "CERTIFICATE", "BASE PATHS", "UPDATED")
		wantRow(t, out, "api.example.test", "edge", "redirect", "default", "/ /v1/beta")
		wantRow(t, out, "shop.example.test", "edge", "redirect", "default", "/beta /v1")
		var list struct {
			Domains []config.Domain `json:"domains"`
		}
		to.json(t, &list, "domains", "list")
		if len(list.Domains) != 2 {
			t.Errorf("domains list -o json: %+v", list)
		}

		out = to.ok(t, "domains", "get", "api.example.test")
		wantRow(t, out, "Domain:", "api.example.test")
		wantRow(t, out, "/v1/beta", "shop", "prod")
		to.json(t, &d, "domains", "get", "shop.example.test")
		if d.Name != "shop.example.test" || len(d.Mappings) != 2 {
			t.Errorf("domains get -o json: %+v", d)
		}

		// A stage that a domain maps cannot be deleted: the admin API's
		// message comes through as is.
		_, _, err := to.run("stages", "delete", "shop", "dev")
		if err == nil || !strings.HasPrefix(err.Error(), "409 Conflict: stage \"dev\" of API \"shop\" is still mapped on api.example.test/(none)") {
			t.Errorf("deleting a mapped stage: %v", err)
		}

		out = to.ok(t, "mappings", "delete", "api.example.test", "(none)")
		wantContains(t, out, "Removed the mapping of api.example.test/.")
		out = to.ok(t, "mappings", "delete", "api.example.test", "/v1/beta", "-o", "json")
		if out != "" {
			t.Errorf("mappings delete -o json printed %q", out)
		}
		out = to.ok(t, "domains", "delete", "api.example.test")
		wantContains(t, out, "Deleted domain api.example.test and its mappings.")
	})

	t.Run("edge sites", func(t *testing.T) {
		out := to.ok(t, "edge-sites", "put", "eu-1", "--region", "eu-west", "--address", "192.0.2.10", "--address", "192.0.2.11")
		wantContains(t, out, "Saved edge site eu-1.")
		wantRow(t, out, "Addresses:", "192.0.2.10, 192.0.2.11")
		out = to.ok(t, "edge-sites", "list")
		wantRow(t, out, "NAME", "REGION", "ADDRESSES")
		wantRow(t, out, "eu-1", "eu-west", "192.0.2.10, 192.0.2.11")
		wantRow(t, out, "test-site", "test", "127.0.0.1")
		var list struct {
			EdgeSites []config.EdgeSite `json:"edgeSites"`
		}
		to.json(t, &list, "edge-sites", "list")
		if len(list.EdgeSites) != 2 {
			t.Errorf("edge-sites list -o json: %+v", list)
		}
		var s config.EdgeSite
		to.json(t, &s, "edge-sites", "put", "eu-1", "--region", "eu-central")
		if s.Region != "eu-central" || len(s.Addresses) != 0 {
			t.Errorf("edge-sites put -o json: %+v", s)
		}
		wantContains(t, to.ok(t, "edge-sites", "delete", "eu-1"), "Deleted edge site eu-1.")
	})

	t.Run("tokens", func(t *testing.T) {
		out := to.ok(t, "tokens", "create", "--kind", "admin", "--name", "ci")
		secret := regexp.MustCompile(`(?m)^  (\S+)$`).FindStringSubmatch(out)
		if secret == nil || !strings.Contains(out, "shown only now") {
			t.Fatalf("tokens create prints no secret with a note:\n%s", out)
		}
		// The new token works, and stops working once revoked.
		if _, _, err := runCtlArgs("apis", "list", "--admin-url", to.url, "--token", secret[1]); err != nil {
			t.Errorf("the created admin token: %v", err)
		}
		var created struct{ Kind, Name, Token string }
		to.json(t, &created, "tokens", "create", "--kind", "edge", "--name", "site-b")
		if created.Kind != "edge" || created.Name != "site-b" || created.Token == "" {
			t.Errorf("tokens create -o json: %+v", created)
		}

		out = to.ok(t, "tokens", "list")
		wantRow(t, out, "KIND", "NAME", "CREATED", "HASH")
		wantRow(t, out, "admin", "ci")
		wantRow(t, out, "edge", "site-b")
		var list struct {
			Tokens []tokenInfo `json:"tokens"`
		}
		to.json(t, &list, "tokens", "list")
		if len(list.Tokens) != 4 {
			t.Errorf("tokens list -o json: %+v", list)
		}
		if strings.Contains(out, created.Token) || strings.Contains(out, secret[1]) {
			t.Error("tokens list shows a secret")
		}

		wantContains(t, to.ok(t, "tokens", "revoke", "admin", "ci"), "Revoked the admin tokens named ci.")
		to.ok(t, "tokens", "revoke", "edge", "site-b", "-o", "json")
		_, _, err := runCtlArgs("apis", "list", "--admin-url", to.url, "--token", secret[1])
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != http.StatusUnauthorized {
			t.Errorf("a revoked token: %v", err)
		}
	})

	t.Run("snapshot", func(t *testing.T) {
		out := to.ok(t, "snapshot")
		wantRow(t, out, "API", "STAGE", "DEPLOYMENT", "ROUTES", "VARIABLES")
		wantRow(t, out, "shop", "dev", second, "3", "backend=127.0.0.1:9")
		wantRow(t, out, "DOMAIN", "TYPE", "BASE PATH", "API", "STAGE")
		wantRow(t, out, "shop.example.test", "edge", "/v1", "shop", "prod")
		wantRow(t, out, "test-site", "test", "127.0.0.1")
		var s config.Snapshot
		to.json(t, &s, "snapshot")
		if s.Version == "" || s.Deployment(second) == nil {
			t.Fatalf("snapshot -o json: version %q, %d deployments", s.Version, len(s.Deployments))
		}
		wantRow(t, out, "Version:", s.Version)
	})

	t.Run("openapi", func(t *testing.T) {
		for _, mode := range []string{"table", "json"} {
			var doc struct {
				OpenAPI string         `json:"openapi"`
				Paths   map[string]any `json:"paths"`
			}
			to.json(t, &doc, "openapi", "-o", mode)
			if doc.OpenAPI != "3.0.3" || doc.Paths["/v1/apis/{api}/stages/{stage}"] == nil {
				t.Errorf("openapi -o %s: %s, %d paths", mode, doc.OpenAPI, len(doc.Paths))
			}
		}
	})

	t.Run("cache purges", func(t *testing.T) {
		out := to.ok(t, "purge", "--url", "https://Shop.Example.TEST/v1/./items?page=2")
		wantContains(t, out, "Purge 1 recorded; edges apply it within about a second.")
		var res struct{ Seq uint64 }
		to.json(t, &res, "purge", "--host", "shop.example.test", "--prefix", "/v1/items/")
		if res.Seq != 2 {
			t.Errorf("purge -o json: %+v", res)
		}
		to.ok(t, "purge", "--tag", "product-42")
		mark := to.mark()
		to.ok(t, "purge", "--api", "shop", "--stage", "prod")
		if calls := to.callsSince(mark); len(calls) != 1 || calls[0] != "POST /v1/cache/purge" {
			t.Errorf("purge made %q", calls)
		}
		_, _, err := to.run("purge", "--api", "shop", "--stage", "nope")
		if err == nil || !strings.HasPrefix(err.Error(), `404 Not Found: API "shop" has no stage "nope"`) {
			t.Errorf("purging a missing stage: %v", err)
		}

		out = to.ok(t, "purges", "list")
		wantRow(t, out, "SEQ", "KIND", "WHAT", "AT")
		wantRow(t, out, "1", "url", "shop.example.test/v1/items?page=2")
		wantRow(t, out, "2", "prefix", "shop.example.test/v1/items/*")
		wantRow(t, out, "3", "tag", "tag product-42")
		if !regexp.MustCompile(`(?m)^4\s+stage\s+stage a[a-z0-9]+/prod\s+\S+Z$`).MatchString(out) {
			t.Errorf("purges list: no stage row:\n%s", out)
		}
		var list struct {
			Purges []config.PurgeRequest `json:"purges"`
		}
		to.json(t, &list, "purges", "list")
		if len(list.Purges) != 4 || list.Purges[0].Seq != 4 || list.Purges[3].Path != "/v1/items?page=2" {
			t.Errorf("purges list -o json: %+v", list)
		}
		// Edges receive the purges in the snapshot.
		var snap config.Snapshot
		to.json(t, &snap, "snapshot")
		if len(snap.Purges) != 4 || snap.Purges[0].Seq != 1 {
			t.Errorf("snapshot purges: %+v", snap.Purges)
		}
	})
	t.Run("plugins", func(t *testing.T) { testCtlPlugins(t, to, dir, shopDoc) })

	t.Run("apis delete", func(t *testing.T) {
		wantContains(t, to.ok(t, "apis", "delete", "shop2"), "Deleted API shop2 with its stages and deployments.")
		if out := to.ok(t, "apis", "delete", "shop3", "-o", "json"); out != "" {
			t.Errorf("apis delete -o json printed %q", out)
		}
		_, _, err := to.run("apis", "delete", "shop")
		if err == nil || !strings.Contains(err.Error(), "409 Conflict: API \"shop\" is still mapped on") {
			t.Errorf("deleting a mapped API: %v", err)
		}
	})

	t.Run("usage plans, API keys and usage", func(t *testing.T) {
		out := to.ok(t, "plans", "create", "--id", "gold", "--name", "Gold", "--rate", "5", "--burst", "10", "--quota", "1000", "--period", "day",
			"--stage", "shop:prod", "--stage", "shop:beta=2/4", "--method-throttle", "shop:prod:GET /items/{id}=1/2")
		wantContains(t, out, "Created usage plan gold.", "portico ctl plans attach gold KEY")
		wantRow(t, out, "Throttle per key:", "5/s, burst 10")
		wantRow(t, out, "Quota per key:", "1000 per DAY")
		wantRow(t, out, "API", "STAGE", "ROUTE", "THROTTLE")
		wantRow(t, out, "shop", "prod", "-", "plan's")
		wantRow(t, out, "shop", "prod", "GET /items/{id}", "1/s, burst 2")
		wantRow(t, out, "shop", "beta", "-", "2/s, burst 4")
		file := writeFile(t, dir, "free.yaml", "id: free\nname: Free\nrate: 1\nburst: 1\nstages:\n  - {apiId: shop, stage: dev}\n")
		var p config.UsagePlan
		to.json(t, &p, "plans", "create", "-f", file)
		if p.ID != "free" || len(p.Stages) != 1 || !strings.HasPrefix(p.Stages[0].APIID, "a") {
			t.Errorf("plans create -f -o json: %+v", p)
		}
		bad := writeFile(t, dir, "bad-plan.yaml", "name: X\nrates: 1\n")
		if _, _, err := to.run("plans", "create", "-f", bad); err == nil || !strings.Contains(err.Error(), `unknown field "rates"`) {
			t.Errorf("a misspelt field in a plan file: %v", err)
		}

		out = to.ok(t, "plans", "list")
		wantRow(t, out, "ID", "NAME", "THROTTLE", "QUOTA", "STAGES")
		wantRow(t, out, "gold", "Gold", "5/s, burst 10", "1000 per DAY", "shop:prod shop:beta")
		wantRow(t, out, "free", "Free", "1/s, burst 1", "none", "shop:dev")
		var plans struct {
			UsagePlans []config.UsagePlan `json:"usagePlans"`
		}
		to.json(t, &plans, "plans", "list")
		if len(plans.UsagePlans) != 2 {
			t.Errorf("plans list -o json: %+v", plans)
		}
		to.json(t, &p, "plans", "get", "gold")
		if p.Quota == nil || p.Quota.Limit != 1000 || p.Stages[0].Methods["GET /items/{id}"].Burst != 2 {
			t.Errorf("plans get -o json: %+v", p)
		}
		wantRow(t, to.ok(t, "plans", "get", "free"), "Name:", "Free")

		// update changes only what is given.
		out = to.ok(t, "plans", "update", "gold", "--rate", "50", "--burst", "100", "--quota", "0")
		wantContains(t, out, "Updated usage plan gold.")
		wantRow(t, out, "Throttle per key:", "50/s, burst 100")
		wantRow(t, out, "Quota per key:", "none")
		wantRow(t, out, "shop", "beta", "-", "2/s, burst 4")
		to.json(t, &p, "plans", "update", "gold", "--description", "the gold plan", "--quota", "10", "--period", "WEEK")
		if p.Rate != 50 || p.Description != "the gold plan" || len(p.Stages) != 2 || len(p.Stages[0].Methods) != 1 || p.Quota == nil || p.Quota.Period != "WEEK" {
			t.Errorf("plans update -o json: %+v", p)
		}

		out = to.ok(t, "keys", "create", "--name", "mobile app", "--plan", "gold")
		m := regexp.MustCompile(`Created API key (k[a-z0-9]+) \(mobile app\)\. The key is shown only now[^\n]*\n\n  (ptk_[A-Za-z0-9]{40})\n`).FindStringSubmatch(out)
		if m == nil {
			t.Fatalf("keys create:\n%s", out)
		}
		id, key := m[1], m[2]
		wantContains(t, out, "On usage plan gold.")
		var nk control.NewAPIKey
		to.json(t, &nk, "keys", "create", "--name", "ci", "--disabled")
		if nk.Enabled || !strings.HasPrefix(nk.Key, "ptk_") {
			t.Errorf("keys create -o json: %+v", nk)
		}
		kf := writeFile(t, dir, "key.txt", "AbCdEfGhIjKlMnOpQrStUvWx0123\n")
		out = to.ok(t, "keys", "import", "--name", "from aws", "--value-file", kf)
		wantContains(t, out, "Imported API key k", "only its hash is stored")
		wantRow(t, out, "State:", "enabled")
		var imp control.APIKeyInfo
		to.json(t, &imp, "keys", "import", "--name", "other", "--value", "ZyXwVuTsRqPoNmLkJiHgFeDc9876", "--plan", "free")
		if imp.Name != "other" || !slices.Equal(imp.PlanIDs, []string{"free"}) {
			t.Errorf("keys import -o json: %+v", imp)
		}
		if _, _, err := to.run("keys", "import", "--name", "again", "--value-file", kf); err == nil || !strings.Contains(err.Error(), "409 Conflict: this key is already stored as API key") {
			t.Errorf("importing a key twice: %v", err)
		}

		out = to.ok(t, "keys", "list")
		wantRow(t, out, "ID", "NAME", "STATE", "PLANS", "CREATED")
		wantRow(t, out, id, "mobile app", "enabled", "gold")
		wantRow(t, out, nk.ID, "ci", "disabled", "-")
		if strings.Contains(out, key) || strings.Contains(out, nk.Key) {
			t.Error("keys list shows a key")
		}
		var keys struct {
			APIKeys []control.APIKeyInfo `json:"apiKeys"`
		}
		to.json(t, &keys, "keys", "list")
		if len(keys.APIKeys) != 4 {
			t.Errorf("keys list -o json: %+v", keys)
		}
		out = to.ok(t, "keys", "get", id)
		wantRow(t, out, "Name:", "mobile app")
		wantRow(t, out, "Plans:", "gold")
		wantContains(t, to.ok(t, "keys", "enable", nk.ID), "Enabled API key "+nk.ID+" (ci).")
		wantContains(t, to.ok(t, "keys", "disable", nk.ID), "Disabled API key "+nk.ID+" (ci).")
		var k control.APIKeyInfo
		to.json(t, &k, "keys", "enable", nk.ID)
		if !k.Enabled {
			t.Errorf("keys enable -o json: %+v", k)
		}
		wantContains(t, to.ok(t, "keys", "rename", nk.ID, "ci runner"), "API key "+nk.ID+" is now named ci runner.")

		wantContains(t, to.ok(t, "plans", "attach", "gold", imp.ID), "API key "+imp.ID+" (other) is on usage plans free, gold.")
		to.json(t, &k, "plans", "attach", "gold", imp.ID) // again: no change
		if !slices.Equal(k.PlanIDs, []string{"free", "gold"}) {
			t.Errorf("plans attach -o json: %+v", k)
		}
		to.ok(t, "plans", "create", "--id", "both", "--name", "Both", "--stage", "shop:prod")
		if _, _, err := to.run("plans", "attach", "both", id); err == nil || !strings.Contains(err.Error(), "409 Conflict") || !strings.Contains(err.Error(), "only one plan per stage") {
			t.Errorf("a second plan for a stage: %v", err)
		}
		wantContains(t, to.ok(t, "plans", "detach", "free", imp.ID), "API key "+imp.ID+" is no longer on usage plan free.")
		if out := to.ok(t, "plans", "detach", "gold", imp.ID, "-o", "json"); out != "" {
			t.Errorf("plans detach -o json printed %q", out)
		}
		if _, _, err := to.run("plans", "delete", "gold"); err == nil || !strings.Contains(err.Error(), `409 Conflict: usage plan "gold" still has 1 API key on it (`+id+`)`) {
			t.Errorf("deleting a plan with keys: %v", err)
		}

		// Usage, as edges report it.
		today := time.Now().UTC().Format(time.DateOnly)
		yesterday := time.Now().UTC().AddDate(0, 0, -1).Format(time.DateOnly)
		if _, err := to.o.Control.RecordUsage(context.Background(), control.UsageReport{ID: "r1", Deltas: []control.UsageDelta{
			{KeyID: id, PlanID: "gold", Day: today, Count: 3}, {KeyID: id, PlanID: "gold", Day: yesterday, Count: 2}}}); err != nil {
			t.Fatal(err)
		}
		out = to.ok(t, "keys", "usage", id)
		wantContains(t, out, "API key "+id+" (mobile app) made 5 requests from ")
		wantRow(t, out, "DAY", "REQUESTS")
		wantRow(t, out, yesterday, "2")
		wantRow(t, out, today, "3")
		var u control.Usage
		to.json(t, &u, "keys", "usage", id, "--from", today, "--to", today)
		if u.Total != 3 || u.From != today {
			t.Errorf("keys usage -o json: %+v", u)
		}
		out = to.ok(t, "plans", "usage", "gold")
		wantContains(t, out, "Usage plan gold: 5 requests from ")
		wantRow(t, out, "KEY", "NAME", "REQUESTS")
		wantRow(t, out, id, "mobile app", "5")
		wantRow(t, out, id, today, "3")
		to.json(t, &u, "plans", "usage", "gold", "--key", id, "--from", yesterday, "--to", yesterday)
		if u.Total != 2 || len(u.Keys) != 1 || u.PlanID != "gold" {
			t.Errorf("plans usage -o json: %+v", u)
		}

		wantContains(t, to.ok(t, "keys", "delete", imp.ID), "Deleted API key "+imp.ID+" and its usage.")
		wantContains(t, to.ok(t, "plans", "delete", "both"), "Deleted usage plan both.")
		if out := to.ok(t, "plans", "delete", "free", "-o", "json"); out != "" {
			t.Errorf("plans delete -o json printed %q", out)
		}
		// The snapshot edges receive carries keys (hashes only) and plans.
		var s config.Snapshot
		to.json(t, &s, "snapshot")
		if len(s.APIKeys) != 3 || len(s.UsagePlans) != 1 {
			t.Errorf("snapshot: %d keys, %d plans", len(s.APIKeys), len(s.UsagePlans))
		}
	})

	t.Run("access keys", func(t *testing.T) {
		out := to.ok(t, "access-keys", "create", "--principal", "arn:portico:user/alice")
		idm := regexp.MustCompile(`Access key ID:\s+(PTK[A-Z2-7]{17})`).FindStringSubmatch(out)
		secm := regexp.MustCompile(`Secret access key:\s+(\S{40})`).FindStringSubmatch(out)
		if idm == nil || secm == nil || !strings.Contains(out, "shown only now") {
			t.Fatalf("access-keys create:\n%s", out)
		}
		var ak control.NewAccessKey
		to.json(t, &ak, "access-keys", "create", "--principal", "bob", "--disabled")
		if ak.Enabled || len(ak.Secret) != 40 || ak.Principal != "bob" {
			t.Errorf("access-keys create -o json: %+v", ak)
		}
		out = to.ok(t, "access-keys", "list")
		wantRow(t, out, "ID", "PRINCIPAL", "STATE", "CREATED")
		wantRow(t, out, idm[1], "arn:portico:user/alice", "enabled")
		wantRow(t, out, ak.ID, "bob", "disabled")
		var list struct {
			AccessKeys []control.AccessKeyInfo `json:"accessKeys"`
		}
		to.json(t, &list, "access-keys", "list")
		raw := to.ok(t, "access-keys", "list", "-o", "json")
		if len(list.AccessKeys) != 2 || strings.Contains(raw+out, secm[1]) || strings.Contains(raw+out, ak.Secret) {
			t.Errorf("access-keys list shows secrets or misses keys: %s", raw)
		}
		wantContains(t, to.ok(t, "access-keys", "disable", idm[1]), "Disabled access key "+idm[1]+" (arn:portico:user/alice).")
		var info control.AccessKeyInfo
		to.json(t, &info, "access-keys", "enable", ak.ID)
		if !info.Enabled {
			t.Errorf("access-keys enable -o json: %+v", info)
		}
		wantContains(t, to.ok(t, "access-keys", "enable", idm[1]), "Enabled access key")
		wantContains(t, to.ok(t, "access-keys", "delete", ak.ID), "Deleted access key "+ak.ID+".")
	})

	// Every admin call was made by some command above.
	t.Run("every admin call was exercised", func(t *testing.T) {
		mux := http.NewServeMux()
		for _, r := range to.o.Admin.Routes() {
			mux.HandleFunc(r.Method+" "+r.Path, func(http.ResponseWriter, *http.Request) {})
		}
		hit := map[string]bool{}
		to.mu.Lock()
		for _, r := range to.hits {
			if _, pattern := mux.Handler(r); pattern != "" {
				hit[pattern] = true
			}
		}
		to.mu.Unlock()
		for _, r := range to.o.Admin.Routes() {
			if !hit[r.Method+" "+r.Path] {
				t.Errorf("no ctl command in this test called %s %s", r.Method, r.Path)
			}
		}
	})
}

func mustRead(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// TestCtlCoversAdminAPI fails when the admin server gains a call that no
// ctl command makes, or a command names a call the server does not have.
func TestCtlCoversAdminAPI(t *testing.T) {
	to := startTestOrigin(t)
	declared := map[string]string{}
	for _, c := range ctlCommands() {
		for _, call := range c.calls {
			declared[call] = c.name
		}
	}
	served := map[string]bool{"GET /openapi.json": true}
	for _, r := range to.o.Admin.Routes() {
		key := r.Method + " " + r.Path
		served[key] = true
		if declared[key] == "" {
			t.Errorf("the admin API has %s (%s) but no portico ctl command makes it; add one in cmd/portico/ctl_*.go and to docs/admin-api.md", key, r.Summary)
		}
	}
	for call, cmd := range declared {
		if !served[call] {
			t.Errorf("portico ctl %s names %s, which the admin API does not serve", cmd, call)
		}
	}
}

// TestCtlDocs checks that docs/admin-api.md lists every admin call and
// every ctl command.
func TestCtlDocs(t *testing.T) {
	doc := mustRead(t, filepath.Join("..", "..", "docs", "admin-api.md"))
	for _, c := range ctlCommands() {
		if !strings.Contains(doc, "portico ctl "+c.name) {
			t.Errorf("docs/admin-api.md does not mention `portico ctl %s`", c.name)
		}
		for _, call := range c.calls {
			if !strings.Contains(doc, "`"+call+"`") {
				t.Errorf("docs/admin-api.md does not list `%s`", call)
			}
		}
	}
}

func TestCtlErrors(t *testing.T) {
	to := startTestOrigin(t)

	t.Run("wrong token", func(t *testing.T) {
		_, _, err := runCtlArgs("apis", "list", "--admin-url", to.url, "--token", "ptc_admin_wrong")
		var ae *apiError
		if !errors.As(err, &ae) || ae.Status != 401 || exitCode(err) != 1 {
			t.Fatalf("wrong token: %v (exit %d)", err, exitCode(err))
		}
		wantContains(t, err.Error(), "401 Unauthorized: missing or wrong admin token", "from --token")
	})

	t.Run("unknown API", func(t *testing.T) {
		for _, args := range [][]string{{"apis", "get", "nope"}, {"stages", "list", "nope"}, {"deploy", "nope", "prod"}, {"apis", "get", "nope", "-o", "json"}} {
			out, _, err := to.run(args...)
			if exitCode(err) != 1 || err == nil || !strings.HasPrefix(err.Error(), `404 Not Found: API "nope" does not exist`) {
				t.Errorf("%s: %v (exit %d)", args, err, exitCode(err))
			}
			if out != "" {
				t.Errorf("%s printed %q on stdout", args, out)
			}
		}
		_, _, err := to.run("deployments", "get", "dnope")
		if err == nil || err.Error() != `404 Not Found: deployment "dnope" does not exist` {
			t.Errorf("unknown deployment: %v", err)
		}
	})

	t.Run("usage mistakes", func(t *testing.T) {
		mark := to.mark()
		for _, tc := range []struct {
			args []string
			want []string
		}{
			{[]string{"apis", "list", "--bogus"}, []string{"flag provided but not defined: -bogus", "usage: portico ctl apis list [global flags]"}},
			{[]string{"stages", "get", "shop"}, []string{"ctl stages get: missing STAGE", "usage: portico ctl stages get API STAGE"}},
			{[]string{"apis", "get", "a", "b"}, []string{`unexpected argument "b"`, "usage: portico ctl apis get API"}},
			{[]string{"apis", "list", "-o", "yaml"}, []string{`-o "yaml": use table or json`}},
			{[]string{"apis"}, []string{`"apis" needs a subcommand: list, get, import`}},
			{[]string{"apis", "frob"}, []string{`unknown command "apis frob"`}},
			{[]string{"frob"}, []string{`unknown command "frob"`}},
			{[]string{"stages", "put", "a", "b", "--var", "novalue"}, []string{`"novalue": write NAME=VALUE`, "usage: portico ctl stages put API STAGE [--description TEXT] [--policies-file FILE] [--var NAME=VALUE]..."}},
			{[]string{"stages", "put", "a", "b", "--var", "x=1", "--var", "x=2"}, []string{"--var x is given twice"}},
			{[]string{"domains", "put", "x.test", "--endpoint-type", "cdn"}, []string{`--endpoint-type "cdn": use edge or regional or private`}},
			{[]string{"domains", "put", "x.test", "--allow", "10.0.0.0"}, []string{`"10.0.0.0" is not a CIDR`}},
			{[]string{"domains", "put", "x.test", "--cert-file", "c.pem"}, []string{"--cert-file and --key-file go together"}},
			{[]string{"mappings", "put", "x.test", "v1", "--api", "shop"}, []string{"--stage STAGE is required", "usage: portico ctl mappings put DOMAIN BASEPATH --api API --stage STAGE"}},
			{[]string{"tokens", "create", "--kind", "root", "--name", "x"}, []string{`--kind "root": use admin or edge`}},
			{[]string{"tokens", "revoke", "root", "x"}, []string{`KIND "root": use admin or edge`}},
			{[]string{"apis", "import", "x.yaml", "--overwrite"}, []string{"--overwrite needs --name"}},
			{[]string{"apis", "import", "x.yaml", "--base-path", "strip"}, []string{`--base-path "strip": use ignore or prepend`}},
			{[]string{"apply"}, []string{"-f FILE is required", "usage: portico ctl apply -f FILE"}},
			{[]string{"apis", "list", "--timeout", "-1s"}, []string{"--timeout -1s: give a positive duration"}},
			{[]string{"help", "frob"}, []string{`there is no command "frob"`}},
			{[]string{"purge"}, []string{"say what to purge", "usage: portico ctl purge [--api API] [--host HOST]"}},
			{[]string{"purge", "--tag", "t", "--url", "https://x.test/"}, []string{"give one of --url, --host with --prefix, --tag, or --api with --stage"}},
			{[]string{"purge", "--host", "x.test"}, []string{"--host and --prefix go together"}},
			{[]string{"purge", "--stage", "prod"}, []string{"--api and --stage go together"}},
			{[]string{"purges"}, []string{`"purges" needs a subcommand: list`}},
			{[]string{"plans", "create", "--name", "x", "--quota", "10"}, []string{"--quota needs --period DAY, WEEK or MONTH"}},
			{[]string{"plans", "create", "--name", "x", "--quota", "10", "--period", "YEAR"}, []string{`--period "YEAR": use DAY or WEEK or MONTH`}},
			{[]string{"plans", "create", "--name", "x", "--stage", "shop"}, []string{`"shop" is not API:STAGE`}},
			{[]string{"plans", "create", "--name", "x", "--stage", "shop:prod=5"}, []string{`"5" is not RATE/BURST`}},
			{[]string{"plans", "create", "--name", "x", "--method-throttle", "shop:prod:GET /items=1"}, []string{`"1" is not RATE/BURST`}},
			{[]string{"plans", "create", "--name", "x", "--method-throttle", "shop:prod:get items=1/1"}, []string{"route key"}},
			{[]string{"plans", "create", "--name", "x", "--method-throttle", "shop:prod:GET /items=1/1"}, []string{"the plan does not cover shop:prod; add --stage shop:prod"}},
			{[]string{"plans", "create", "--name", "x", "--stage", "shop:prod", "--stage", "shop:prod"}, []string{"--stage shop:prod is given twice"}},
			{[]string{"plans", "create", "-f", "plan.yaml", "--rate", "1"}, []string{"-f FILE holds the whole plan; do not give --rate with it"}},
			{[]string{"plans", "create", "--rate", "1"}, []string{"--name NAME is required"}},
			{[]string{"plans", "update", "gold"}, []string{"nothing to change"}},
			{[]string{"keys", "create"}, []string{"--name NAME is required", "usage: portico ctl keys create --name NAME [--disabled] [--plan PLAN]..."}},
			{[]string{"keys", "import", "--name", "x"}, []string{"give the key with --value-file FILE or --value VALUE"}},
			{[]string{"keys", "import", "--name", "x", "--value", "short"}, []string{"20 to 128 characters"}},
			{[]string{"keys", "usage", "k1", "--from", "2026-02-30"}, []string{`"2026-02-30" is not a date`}},
			{[]string{"plans", "usage", "gold", "--to", "today"}, []string{`"today" is not a date`}},
			{[]string{"access-keys", "create"}, []string{"--principal PRINCIPAL is required"}},
		} {
			_, _, err := to.run(tc.args...)
			if exitCode(err) != 2 {
				t.Errorf("%q: exit %d (%v), want 2", tc.args, exitCode(err), err)
				continue
			}
			wantContains(t, err.Error(), tc.want...)
		}
		if calls := to.callsSince(mark); len(calls) > 0 {
			t.Errorf("usage mistakes reached the admin API: %q", calls)
		}
	})

	t.Run("bad admin URL", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := "http://" + ln.Addr().String()
		ln.Close()
		_, _, err = runCtlArgs("apis", "list", "--admin-url", closed, "--token", to.token)
		if exitCode(err) != 1 || !strings.Contains(err.Error(), "cannot reach the admin API at "+closed+" (from --admin-url)") {
			t.Errorf("closed port: %v", err)
		}
		_, _, err = runCtlArgs("apis", "list", "--admin-url", "127.0.0.1:9900", "--token", to.token)
		if exitCode(err) != 2 || !strings.Contains(err.Error(), "is not an http:// or https:// URL") {
			t.Errorf("URL without scheme: %v", err)
		}
	})

	t.Run("apply checks the file first", func(t *testing.T) {
		dir := t.TempDir()
		writeFile(t, dir, "api.yaml", mustRead(t, filepath.Join("testdata", "ctl", "shop.yaml")))
		bad := writeFile(t, dir, "portico.yaml", "portico: v1\napis:\n  - name: shop\n    openapi: api.yaml\n    stages:\n      - name: prod\n        varables: {a: b}\n")
		mark := to.mark()
		_, _, err := to.run("apply", "-f", bad)
		if exitCode(err) != 1 || err == nil || !strings.Contains(err.Error(), bad+":7:9") || !strings.Contains(err.Error(), "varables") {
			t.Errorf("a misspelt key: %v", err)
		}
		missing := writeFile(t, dir, "missing.yaml", "portico: v1\napis:\n  - name: shop\n    openapi: nowhere.yaml\n")
		_, _, err = to.run("apply", "-f", missing)
		if err == nil || !strings.Contains(err.Error(), missing+":4:") || !strings.Contains(err.Error(), "cannot read the OpenAPI document") {
			t.Errorf("a missing document: %v", err)
		}
		if calls := to.callsSince(mark); len(calls) > 0 {
			t.Errorf("invalid files reached the admin API: %q", calls)
		}
		// What only the origin can check comes back as its message.
		broken := writeFile(t, dir, "broken.yaml", "portico: v1\napis:\n  - name: shop\n    openapi: api.yaml\n    stages:\n      - name: prod\n")
		_, _, err = to.run("apply", "-f", broken)
		if err == nil || !strings.HasPrefix(err.Error(), "400 Bad Request: API \"shop\" stage \"prod\"") || !strings.Contains(err.Error(), `uses stage variable "backend"`) {
			t.Errorf("a stage without the variable its routes use: %v", err)
		}
	})

	t.Run("help", func(t *testing.T) {
		out, _, err := runCtlArgs("help")
		if err != nil {
			t.Fatal(err)
		}
		for _, c := range ctlCommands() {
			if !strings.Contains(out, "  "+c.name) {
				t.Errorf("help does not list %q", c.name)
			}
		}
		out, _, err = runCtlArgs("help", "stages", "put")
		if err != nil {
			t.Fatal(err)
		}
		wantContains(t, out, "Usage: portico ctl stages put API STAGE", "--var NAME=VALUE", "(repeatable)", "Admin API: PUT /v1/apis/{api}/stages/{stage}", "--admin-url URL")
		out, _, err = runCtlArgs("apis", "import", "-h")
		if !errors.Is(err, errHelp) || exitCode(err) != 0 {
			t.Fatalf("-h: %v", err)
		}
		wantContains(t, out, "Usage: portico ctl apis import FILE", "--default-backend URL")
		out, _, _ = runCtlArgs("help", "domains")
		wantContains(t, out, "domains put NAME", "domains delete NAME")
		out, _, err = runCtlArgs("apis", "-h")
		if !errors.Is(err, errHelp) {
			t.Errorf("apis -h: %v", err)
		}
		wantContains(t, out, "apis set-policies API -f FILE")
		out, _, err = runCtlArgs()
		if err != nil || !strings.Contains(out, "Commands:") {
			t.Errorf("ctl alone: %v\n%s", err, out)
		}
	})
}

func TestCtlGlobalFlagsAnywhere(t *testing.T) {
	to := startTestOrigin(t)
	for _, args := range [][]string{
		{"--admin-url", to.url, "--token", to.token, "-o", "json", "tokens", "list"},
		{"tokens", "list", "--admin-url", to.url, "--token=" + to.token, "-o", "json"},
		{"tokens", "--admin-url=" + to.url, "list", "--token", to.token, "--output=json", "--timeout", "5s"},
		{"-o", "json", "tokens", "--token", to.token, "list", "--admin-url", to.url},
	} {
		out, _, err := runCtlArgs(args...)
		if err != nil || !strings.HasPrefix(out, "{\n  \"tokens\": [") {
			t.Errorf("%q: %v\n%s", args, err, out)
		}
	}
	// "--" ends the flags: what follows is an argument even if it starts with '-'.
	_, _, err := to.run("apis", "get", "--", "-x")
	if err == nil || !strings.Contains(err.Error(), `API "-x" does not exist`) {
		t.Errorf("apis get -- -x: %v", err)
	}
}

func TestCtlSettings(t *testing.T) {
	to := startTestOrigin(t)
	cfgHome := t.TempDir()
	t.Setenv("XDG_CONFIG_HOME", cfgHome)
	cfg := filepath.Join(cfgHome, "portico", "ctl.yaml")
	if err := os.MkdirAll(filepath.Dir(cfg), 0o700); err != nil {
		t.Fatal(err)
	}

	t.Run("no token", func(t *testing.T) {
		_, _, err := runCtlArgs("apis", "list", "--admin-url", to.url)
		if exitCode(err) != 2 {
			t.Fatalf("no token: exit %d: %v", exitCode(err), err)
		}
		wantContains(t, err.Error(), "no admin token", "PORTICO_TOKEN", cfg, "source .data/dev/env", "printed an admin token at its first start")
	})

	t.Run("config file", func(t *testing.T) {
		writeFile(t, filepath.Dir(cfg), "ctl.yaml", fmt.Sprintf("adminUrl: %s\ntoken: %s\n", to.url, to.token))
		out, errOut, err := runCtlArgs("tokens", "list")
		if err != nil {
			t.Fatalf("settings from %s: %v", cfg, err)
		}
		wantRow(t, out, "admin", "initial")
		if errOut != "" {
			t.Errorf("a private config file drew a warning: %s", errOut)
		}
		if err := os.Chmod(cfg, 0o644); err != nil {
			t.Fatal(err)
		}
		_, errOut, err = runCtlArgs("tokens", "list")
		if err != nil || !strings.Contains(errOut, "chmod 600 "+cfg) {
			t.Errorf("a readable config file with a token: %v, stderr %q", err, errOut)
		}
		os.Chmod(cfg, 0o600)
	})

	t.Run("the environment wins over the file", func(t *testing.T) {
		t.Setenv("PORTICO_TOKEN", "ptc_admin_from_env")
		_, _, err := runCtlArgs("tokens", "list")
		if err == nil || !strings.Contains(err.Error(), "401 Unauthorized") || !strings.Contains(err.Error(), "from $PORTICO_TOKEN") {
			t.Errorf("env token: %v", err)
		}
		// and the flag over the environment
		if _, _, err := runCtlArgs("tokens", "list", "--token", to.token); err != nil {
			t.Errorf("flag token: %v", err)
		}
		t.Setenv("PORTICO_TOKEN", to.token)
		t.Setenv("PORTICO_ADMIN_URL", to.direct)
		mark := to.mark()
		if _, _, err := runCtlArgs("tokens", "list"); err != nil {
			t.Errorf("env URL: %v", err)
		}
		if calls := to.callsSince(mark); len(calls) != 0 {
			t.Errorf("the file's adminUrl won over PORTICO_ADMIN_URL: %q", calls)
		}
	})

	t.Run("home fallback", func(t *testing.T) {
		home := t.TempDir()
		t.Setenv("XDG_CONFIG_HOME", "")
		t.Setenv("HOME", home)
		if err := os.MkdirAll(filepath.Join(home, ".config", "portico"), 0o700); err != nil {
			t.Fatal(err)
		}
		writeFile(t, filepath.Join(home, ".config", "portico"), "ctl.yaml", "adminUrl: "+to.url+"\ntoken: "+to.token+"\n")
		if _, _, err := runCtlArgs("apis", "list"); err != nil {
			t.Errorf("settings from ~/.config/portico/ctl.yaml: %v", err)
		}
	})

	t.Run("a mistake in the file", func(t *testing.T) {
		writeFile(t, filepath.Dir(cfg), "ctl.yaml", "adminUrl: "+to.url+"\ntokn: x\n")
		_, _, err := runCtlArgs("apis", "list")
		if err == nil || !strings.Contains(err.Error(), cfg) || !strings.Contains(err.Error(), "line 2") {
			t.Errorf("unknown key in the config file: %v", err)
		}
	})
}

// TestCtlApplyQuickstart applies the quickstart the way the README says.
func TestCtlApplyQuickstart(t *testing.T) {
	to := startTestOrigin(t)
	file := filepath.Join("..", "..", "examples", "quickstart", "portico.yaml")
	out := to.ok(t, "apply", "-f", file)
	wantContains(t, out, "2 APIs imported, 3 stages deployed")
	wantRow(t, out, "imported", "pets")
	wantRow(t, out, "imported", "pets-v2")
	wantRow(t, out, "domain", "localhost")
	wantContains(t, to.ok(t, "apply", "-f", file), "every API and stage was already up to date")

	out = to.ok(t, "stages", "list", "pets")
	wantRow(t, out, "dev")
	wantRow(t, out, "prod")
	out = to.ok(t, "apis", "get", "pets")
	wantRow(t, out, "GET", "/pets/{petId}", "getPet", "http", "http://${stageVariables.backend}/pets/{id}")
	wantRow(t, out, "GET", "/health", "health", "mock", "status 200")
	out = to.ok(t, "snapshot")
	wantRow(t, out, "localhost", "edge", "/dev", "pets", "dev")
	wantRow(t, out, "localhost", "edge", "/v2", "pets-v2", "prod")
}
