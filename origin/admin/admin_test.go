package admin

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/getkin/kin-openapi/openapi3"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/importer"
	"github.com/portico-edge/portico/origin/store"
)

func newAdmin(t *testing.T) (*Server, string) {
	t.Helper()
	ctx := context.Background()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	imp := func(ctx context.Context, d []byte, o control.ImportOptions) (*config.API, error) {
		r, err := importer.Import(ctx, d, importer.Options{Name: o.Name, IgnoreSecurity: o.IgnoreSecurity})
		if err != nil {
			return nil, err
		}
		return &r.API, nil
	}
	ctl, err := control.New(ctx, control.Options{Store: st, Importer: imp})
	if err != nil {
		t.Fatal(err)
	}
	tok, err := CreateToken(ctx, st, store.TokenAdmin, "test")
	if err != nil {
		t.Fatal(err)
	}
	s, err := New(ctx, ctl, st, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	return s, tok
}

func call(t *testing.T, s http.Handler, tok, method, path, ct, body string) (int, string) {
	t.Helper()
	req := httptest.NewRequest(method, path, strings.NewReader(body))
	if tok != "" {
		req.Header.Set("Authorization", "Bearer "+tok)
	}
	if ct != "" {
		req.Header.Set("Content-Type", ct)
	}
	w := httptest.NewRecorder()
	s.ServeHTTP(w, req)
	return w.Code, w.Body.String()
}

func TestEveryCallNeedsAToken(t *testing.T) {
	s, tok := newAdmin(t)
	for _, r := range s.Routes() {
		path := strings.NewReplacer("{api}", "a", "{stage}", "s", "{id}", "d", "{domain}", "a.example.com", "{basePath}", "v1", "{site}", "x", "{kind}", "edge", "{name}", "n").Replace(r.Path)
		for _, bad := range []string{"", "wrong", tok + "x"} {
			if code, _ := call(t, s, bad, r.Method, path, "", ""); code != 401 {
				t.Errorf("%s %s with token %q: %d, want 401", r.Method, path, bad, code)
			}
		}
	}
	if code, _ := call(t, s, "", "GET", "/openapi.json", "", ""); code != 401 {
		t.Error("openapi.json without a token")
	}
}

func TestOpenAPIDocumentIsValidAndComplete(t *testing.T) {
	s, tok := newAdmin(t)
	code, body := call(t, s, tok, "GET", "/openapi.json", "", "")
	if code != 200 {
		t.Fatal(code, body)
	}
	loader := openapi3.NewLoader()
	doc, err := loader.LoadFromData([]byte(body))
	if err != nil {
		t.Fatal(err)
	}
	if err := doc.Validate(context.Background()); err != nil {
		t.Fatalf("the admin API's own document is not valid OpenAPI: %v", err)
	}
	for _, r := range s.Routes() {
		item := doc.Paths.Find(r.Path)
		if item == nil || item.GetOperation(r.Method) == nil {
			t.Errorf("%s %s is not documented", r.Method, r.Path)
		}
	}
	ids := map[string]bool{}
	for _, r := range s.Routes() {
		id := operationID(r)
		if ids[id] {
			t.Errorf("duplicate operationId %s", id)
		}
		ids[id] = true
	}
}

func TestStatusCodes(t *testing.T) {
	s, tok := newAdmin(t)
	doc := "openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n  /a:\n    get:\n      x-portico-integration: {type: mock, status: 200}\n      responses: {'200': {description: ok}}\n"
	steps := []struct {
		method, path, ct, body string
		code                   int
		contains               string
	}{
		{"GET", "/v1/apis/nope", "", "", 404, "does not exist"},
		{"POST", "/v1/apis?name=t", "application/yaml", doc, 201, `"created": true`},
		{"POST", "/v1/apis?name=t", "application/yaml", doc, 409, "already exists"},
		{"POST", "/v1/apis?name=u", "application/yaml", "", 400, "empty"},
		{"POST", "/v1/apis?name=u&ignoreSecurity=maybe", "application/yaml", doc, 400, "not a boolean"},
		{"PUT", "/v1/apis/t/stages/prod", "application/json", `{"variables":{"a":"b"}}`, 201, `"name": "prod"`},
		{"PUT", "/v1/apis/t/stages/prod", "text/plain", `{}`, 415, "application/json"},
		{"PUT", "/v1/apis/t/stages/prod", "application/json", `{"varaibles":{}}`, 400, "unknown field"},
		{"PUT", "/v1/apis/t/stages/prod", "application/json", `{} {}`, 400, "more than one"},
		{"POST", "/v1/apis/t/stages/prod/deployments", "application/json", `{"description":"d"}`, 201, `"apiId"`},
		{"POST", "/v1/apis/t/stages/prod/rollback", "", "", 409, "no earlier deployment"},
		{"PUT", "/v1/domains/a.example.com", "", "", 201, `"endpointType": "edge"`},
		{"PUT", "/v1/domains/a.example.com/mappings/(none)", "application/json", `{"api":"t","stage":"prod"}`, 200, `"basePath": ""`},
		{"DELETE", "/v1/apis/t", "", "", 409, "still mapped"},
		{"POST", "/v1/tokens", "application/json", `{"kind":"root","name":"x"}`, 400, "not valid"},
		{"DELETE", "/v1/tokens/admin/test", "", "", 409, "last admin token"},
		{"POST", "/v1/apply", "application/json", `{"config":"portico: v2\n"}`, 400, "portico.yaml:1:10"},
	}
	for _, st := range steps {
		code, body := call(t, s, tok, st.method, st.path, st.ct, st.body)
		if code != st.code || !strings.Contains(body, st.contains) {
			t.Errorf("%s %s: %d %s\nwant %d containing %q", st.method, st.path, code, body, st.code, st.contains)
		}
		if code >= 400 {
			var e struct{ Message string }
			if json.Unmarshal([]byte(body), &e) != nil || e.Message == "" {
				t.Errorf("%s %s: error body is not {\"message\"}: %s", st.method, st.path, body)
			}
		}
	}
}

func TestTokenLifecycle(t *testing.T) {
	s, tok := newAdmin(t)
	code, body := call(t, s, tok, "POST", "/v1/tokens", "application/json", `{"kind":"admin","name":"second"}`)
	if code != 201 {
		t.Fatal(code, body)
	}
	var nt struct{ Token string }
	json.Unmarshal([]byte(body), &nt)
	if code, _ := call(t, s, nt.Token, "GET", "/v1/apis", "", ""); code != 200 {
		t.Errorf("new token refused: %d", code)
	}
	if code, _ := call(t, s, nt.Token, "DELETE", "/v1/tokens/admin/test", "", ""); code != 204 {
		t.Errorf("revoke first token: %d", code)
	}
	if code, _ := call(t, s, tok, "GET", "/v1/apis", "", ""); code != 401 {
		t.Errorf("revoked token still works: %d", code)
	}
	code, body = call(t, s, nt.Token, "GET", "/v1/tokens", "", "")
	if code != 200 || strings.Contains(body, nt.Token) {
		t.Errorf("token list must never show secrets: %s", body)
	}
}
