package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestAccessCalls(t *testing.T) {
	s, tok := newAdmin(t)
	doc := "openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n  /a:\n    get:\n      x-portico-integration: {type: mock, status: 200}\n      responses: {'200': {description: ok}}\n"
	if code, body := call(t, s, tok, "POST", "/v1/apis?name=t", "application/yaml", doc); code != 201 {
		t.Fatal(code, body)
	}
	if code, body := call(t, s, tok, "PUT", "/v1/apis/t/stages/prod", "application/json", `{}`); code != 201 {
		t.Fatal(code, body)
	}
	code, body := call(t, s, tok, "POST", "/v1/api-keys", "application/json", `{"name":"app"}`)
	if code != 201 {
		t.Fatal(code, body)
	}
	var nk struct{ ID, Key, Hash string }
	json.Unmarshal([]byte(body), &nk)
	if !strings.HasPrefix(nk.Key, "ptk_") || strings.Contains(body, `"hash"`) {
		t.Errorf("create answer: %s", body)
	}
	code, body = call(t, s, tok, "POST", "/v1/access-keys", "application/json", `{"principal":"alice"}`)
	if code != 201 {
		t.Fatal(code, body)
	}
	var ak struct{ ID, Secret string }
	json.Unmarshal([]byte(body), &ak)

	steps := []struct {
		method, path, ct, body string
		code                   int
		contains               string
	}{
		{"POST", "/v1/api-keys", "application/json", `{"name":"x","value":"AbCdEfGhIjKlMnOpQrStUvWx"}`, 400, "unknown field"},
		{"POST", "/v1/api-keys/import", "application/json", `{"name":"aws","value":"AbCdEfGhIjKlMnOpQrStUvWx"}`, 201, `"name": "aws"`},
		{"POST", "/v1/api-keys/import", "application/json", `{"name":"aws2","value":"AbCdEfGhIjKlMnOpQrStUvWx"}`, 409, "already stored"},
		{"POST", "/v1/api-keys/import", "application/json", `{"name":"x","value":"short"}`, 400, "20 to 128 characters"},
		{"GET", "/v1/api-keys/" + nk.ID, "", "", 200, `"enabled": true`},
		{"GET", "/v1/api-keys/knope", "", "", 404, `API key \"knope\" does not exist`},
		{"PATCH", "/v1/api-keys/" + nk.ID, "application/json", `{"enabled":false}`, 200, `"enabled": false`},
		{"PATCH", "/v1/api-keys/" + nk.ID, "application/json", `{}`, 400, "nothing to change"},
		{"POST", "/v1/usage-plans", "application/json", `{"id":"gold","name":"Gold","rate":5,"burst":5,"quota":{"limit":100,"period":"DAY"},"stages":[{"apiId":"t","stage":"prod"}]}`, 201, `"apiId": "a`},
		{"POST", "/v1/usage-plans", "application/json", `{"id":"gold","name":"Gold"}`, 409, "already exists"},
		{"POST", "/v1/usage-plans", "application/json", `{"name":"x","stages":[{"apiId":"t","stage":"dev"}]}`, 404, `has no stage \"dev\"`},
		{"POST", "/v1/usage-plans", "application/json", `{"name":"x","stages":[{"apiId":"t","stage":"prod","methods":{"GET /b":{"rate":1,"burst":1}}}]}`, 400, "no such route"},
		{"PUT", "/v1/usage-plans/gold/keys/" + nk.ID, "", "", 200, `"gold"`},
		{"PUT", "/v1/usage-plans/nope/keys/" + nk.ID, "", "", 404, `usage plan \"nope\" does not exist`},
		{"GET", "/v1/usage-plans", "", "", 200, `"usagePlans"`},
		{"GET", "/v1/usage-plans/gold", "", "", 200, `"limit": 100`},
		{"PUT", "/v1/usage-plans/gold", "application/json", `{"name":"Gold","rate":10,"burst":20,"stages":[{"apiId":"t","stage":"prod"}]}`, 200, `"rate": 10`},
		{"DELETE", "/v1/usage-plans/gold", "", "", 409, "detach them first"},
		{"GET", "/v1/usage-plans/gold/usage?from=2026-01-01&to=2026-01-31", "", "", 200, `"keyId": "` + nk.ID + `"`},
		{"GET", "/v1/usage-plans/gold/usage?from=yesterday", "", "", 400, "is not a date"},
		{"GET", "/v1/api-keys/" + nk.ID + "/usage?from=2026-01-01&to=2026-01-31", "", "", 200, `"total": 0`},
		{"DELETE", "/v1/usage-plans/gold/keys/" + nk.ID, "", "", 204, ""},
		{"DELETE", "/v1/usage-plans/gold/keys/" + nk.ID, "", "", 404, "is not on usage plan"},
		{"DELETE", "/v1/usage-plans/gold", "", "", 204, ""},
		{"GET", "/v1/access-keys", "", "", 200, ak.ID},
		{"PATCH", "/v1/access-keys/" + ak.ID, "application/json", `{"enabled":false}`, 200, `"enabled": false`},
		{"DELETE", "/v1/access-keys/" + ak.ID, "", "", 204, ""},
		{"DELETE", "/v1/access-keys/" + ak.ID, "", "", 404, "does not exist"},
		{"DELETE", "/v1/api-keys/" + nk.ID, "", "", 204, ""},
		{"GET", "/v1/api-keys", "", "", 200, `"name": "aws"`},
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
		if strings.Contains(body, ak.Secret) && st.method == "GET" {
			t.Errorf("%s %s shows an access key's secret", st.method, st.path)
		}
	}
}
