package admin

import (
	"encoding/json"
	"strings"
	"testing"
)

func TestPurgeCalls(t *testing.T) {
	s, tok := newAdmin(t)
	doc := "openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n  /a:\n    get:\n      x-portico-integration: {type: mock, status: 200}\n      responses: {'200': {description: ok}}\n"
	if code, body := call(t, s, tok, "POST", "/v1/apis?name=t", "application/yaml", doc); code != 201 {
		t.Fatal(code, body)
	}
	if code, body := call(t, s, tok, "PUT", "/v1/apis/t/stages/prod", "application/json", `{}`); code != 201 {
		t.Fatal(code, body)
	}
	steps := []struct {
		body     string
		code     int
		contains string
	}{
		{`{"url":"https://API.example.test:8443/v1/./items?page=2"}`, 202, `"seq": 1`},
		{`{"url":"https://api.example.test"}`, 202, `"seq": 2`},
		{`{"host":"api.example.test","prefix":"/v1/"}`, 202, `"seq": 3`},
		{`{"tag":"product-42"}`, 202, `"seq": 4`},
		{`{"api":"t","stage":"prod"}`, 202, `"seq": 5`},
		{`{}`, 400, "nothing to purge"},
		{`{"tag":"a","url":"https://x.test/"}`, 400, "more than one thing to purge"},
		{`{"host":"x.test"}`, 400, "needs both host and prefix"},
		{`{"api":"t"}`, 400, "needs both api and stage"},
		{`{"url":"/relative"}`, 400, "not an absolute http:// or https:// URL"},
		{`{"url":"ftp://x.test/a"}`, 400, "not an absolute http:// or https:// URL"},
		{`{"url":"https://u:p@x.test/a"}`, 400, "user information"},
		{`{"url":"https://x.test/a#frag"}`, 400, "fragment"},
		{`{"url":"https://x.test/a%2fb"}`, 400, "encoded slash"},
		{`{"tag":"two words"}`, 400, "Surrogate-Key word"},
		{`{"api":"t","stage":"nope"}`, 404, "has no stage"},
		{`{"uri":"https://x.test/"}`, 400, "unknown field"},
	}
	for _, st := range steps {
		code, body := call(t, s, tok, "POST", "/v1/cache/purge", "application/json", st.body)
		if code != st.code || !strings.Contains(body, st.contains) {
			t.Errorf("POST /v1/cache/purge %s: %d %s\nwant %d containing %q", st.body, code, body, st.code, st.contains)
		}
	}
	code, body := call(t, s, tok, "GET", "/v1/cache/purges", "", "")
	var list struct {
		Purges []struct {
			Seq              uint64
			Kind, Host, Path string
			APIID            string `json:"apiId"`
		}
	}
	if code != 200 || json.Unmarshal([]byte(body), &list) != nil || len(list.Purges) != 5 {
		t.Fatalf("GET /v1/cache/purges: %d %s", code, body)
	}
	last, first := list.Purges[0], list.Purges[4]
	if last.Seq != 5 || last.Kind != "stage" || !strings.HasPrefix(last.APIID, "a") {
		t.Errorf("newest purge: %+v", last)
	}
	if first.Seq != 1 || first.Host != "api.example.test" || first.Path != "/v1/items?page=2" {
		t.Errorf("oldest purge: %+v", first)
	}
	if p := list.Purges[3]; p.Path != "/" {
		t.Errorf("a URL without a path purges /: %+v", p)
	}
}
