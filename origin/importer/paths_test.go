package importer

import (
	"reflect"
	"strings"
	"testing"
)

func TestParseTemplate(t *testing.T) {
	for _, tc := range []struct {
		raw    string
		params []string
		greedy bool
		shape  string
		err    string // substring of the problem; "" when valid
	}{
		{raw: "/", shape: "/"},
		{raw: "/pets", shape: "/pets"},
		{raw: "/pets/", shape: "/pets/"},
		{raw: "/pets/{petId}", params: []string{"petId"}, shape: "/pets/{}"},
		{raw: "/a/{x}/b/{y}", params: []string{"x", "y"}, shape: "/a/{}/b/{}"},
		{raw: "/{proxy+}", params: []string{"proxy"}, greedy: true, shape: "/{+}"},
		{raw: "/files/{dir}/{path+}", params: []string{"dir", "path"}, greedy: true, shape: "/files/{}/{+}"},
		{raw: "/v1.0/user_name/~me/a:b@c/%20x", shape: "/v1.0/user_name/~me/a:b@c/%20x"},
		{raw: "/items/{item-id.v2}", params: []string{"item-id.v2"}, shape: "/items/{}"},

		{raw: "pets", err: "does not start with '/'"},
		{raw: "", err: "does not start with '/'"},
		{raw: "/a{b}", err: "mixes a parameter with other text"},
		{raw: "/a/{b}c", err: "mixes a parameter with other text"},
		{raw: "/a/{b}{c}", err: "mixes a parameter with other text"},
		{raw: "/compare/{base}...{head}", err: "mixes a parameter with other text"},
		{raw: "/a/{b", err: "mixes a parameter with other text"},
		{raw: "/a/b}", err: "mixes a parameter with other text"},
		{raw: "/{proxy+}/x", err: "must be last"},
		{raw: "/{a+}/{b+}", err: "must be last"},
		{raw: "/{id}/x/{id}", err: "uses parameter {id} twice"},
		{raw: "/{id}/{id+}", err: "uses parameter {id} twice"},
		{raw: "/a/{}", err: "parameter names are"},
		{raw: "/a/{+}", err: "parameter names are"},
		{raw: "/a/{x y}", err: "parameter names are"},
		{raw: "/a//b", err: "empty segment"},
		{raw: "/a/../b", err: `".." segment`},
		{raw: "/a/./b", err: `"." segment`},
		{raw: "/a?b=c", err: "query or fragment"},
		{raw: "/a#b", err: "query or fragment"},
		{raw: "/a b", err: `holds " "`},
		{raw: "/a%zz", err: `holds "%"`},
		{raw: "/caf\u00e9", err: "holds \"\u00e9\""},
		{raw: "/a\\b", err: `holds "\\"`},
	} {
		tmpl, errs := parseTemplate(tc.raw)
		if tc.err != "" {
			if len(errs) == 0 || !strings.Contains(strings.Join(errs, "|"), tc.err) {
				t.Errorf("%q: problems %q; want one saying %q", tc.raw, errs, tc.err)
			}
			continue
		}
		if len(errs) > 0 {
			t.Errorf("%q: unexpected problems %q", tc.raw, errs)
			continue
		}
		if !reflect.DeepEqual(tmpl.params, tc.params) || tmpl.greedy != tc.greedy || tmpl.shape != tc.shape {
			t.Errorf("%q: params %q greedy %v shape %q; want %q %v %q", tc.raw, tmpl.params, tmpl.greedy, tmpl.shape, tc.params, tc.greedy, tc.shape)
		}
	}
}

// The path rules, through whole documents: each problem is reported at the
// path item or operation that has it.
func TestPathRules(t *testing.T) {
	const idParam = "parameters: [{name: id, in: path, required: true, schema: {type: string}}]"
	const nameParam = "parameters: [{name: name, in: path, required: true, schema: {type: string}}]"
	for name, tc := range map[string]struct {
		paths string
		want  map[string]string // pointer -> text; nil means accepted
	}{
		"partial-segment parameter": {`
  /a{b}:
    get: {parameters: [{name: b, in: path, required: true, schema: {type: string}}], ` + op + `}`,
			map[string]string{"/paths/~1a{b}": "whole segment only"}},
		"greedy not last": {`
  /{proxy+}/x:
    get: {parameters: [{name: proxy, in: path, required: true, schema: {type: string}}], ` + op + `}`,
			map[string]string{"/paths/~1{proxy+}~1x": "must be last"}},
		"duplicate parameter": {`
  /{id}/{id}:
    get: {` + idParam + `, ` + op + `}`,
			map[string]string{"/paths/~1{id}~1{id}": "twice"}},
		"colliding templates, same method": {`
  /pets/{id}:
    get: {` + idParam + `, ` + op + `}
  /pets/{name}:
    get: {` + nameParam + `, ` + op + `}`,
			map[string]string{"/paths/~1pets~1{name}/get": "match exactly the same requests"}},
		"colliding templates, ANY and GET": {`
  /pets/{id}:
    x-amazon-apigateway-any-method: {` + idParam + `, ` + op + `}
  /pets/{name}:
    x-amazon-apigateway-any-method: {` + nameParam + `, ` + op + `}`,
			map[string]string{"/paths/~1pets~1{name}/x-amazon-apigateway-any-method": "ANY /pets/{name} and ANY /pets/{id}"}},
		// The same shape for different methods is routable, as in GitHub's
		// own description (/orgs/{org}/attestations/{subject_digest} GET and
		// .../{attestation_id} DELETE).
		"same shape, different methods": {`
  /pets/{id}:
    delete: {` + idParam + `, ` + op + `}
  /pets/{name}:
    get: {` + nameParam + `, ` + op + `}`, nil},
		"greedy and single segment do not collide": {`
  /files/{id}:
    get: {` + idParam + `, ` + op + `}
  /files/{name+}:
    get: {` + nameParam + `, ` + op + `}`, nil},
		"non-standard method": {`
  /pets:
    connect: {` + op + `}
    query: {` + op + `}
    GET: {` + op + `}`,
			map[string]string{
				"/paths/~1pets/connect": `"connect" is not an HTTP method`,
				"/paths/~1pets/query":   `"query" is not an HTTP method`,
				"/paths/~1pets/GET":     `"GET" is not an HTTP method`,
			}},
		"declared parameter missing from the template": {`
  /pets:
    get: {` + idParam + `, ` + op + `}`,
			map[string]string{"/paths/~1pets/get/parameters/0": `path parameter "id" is declared, but path /pets has no {id}`}},
		"template parameter not declared": {`
  /pets/{id}:
    get: {` + op + `}`,
			map[string]string{"/paths/~1pets~1{id}/get": `declares no path parameter "id"`}},
		"parameters declared on the path item and through $ref": {`
  /pets/{id}/{name}:
    parameters: [{$ref: '#/components/parameters/id'}]
    get: {` + nameParam + `, ` + op + `}
components:
  parameters:
    id: {name: id, in: path, required: true, schema: {type: string}}`, nil},
		"greedy declared as proxy+": {`
  /{proxy+}:
    get: {parameters: [{name: proxy+, in: path, required: true, schema: {type: string}}], ` + op + `}`, nil},
		"path without a slash": {`
  pets:
    get: {` + op + `}`,
			map[string]string{"/paths/pets": "does not start with '/'"}},
		"path item that is not an object": {`
  /pets: []`,
			map[string]string{"/paths/~1pets": "must be an object of operations"}},
		"operation that is not an object": {`
  /pets:
    get: "list pets"`,
			map[string]string{"/paths/~1pets/get": "must be an object"}},
		"no operations": {`
  /pets: {}`,
			map[string]string{"/paths": "defines no operations"}},
	} {
		t.Run(name, func(t *testing.T) {
			doc := oas30("paths:" + tc.paths + "\n")
			if tc.want == nil {
				mustImport(t, doc, Options{})
				return
			}
			wantProblems(t, mustFail(t, doc, Options{}), tc.want)
		})
	}
}

// Swagger 2.0 has no trace operations; OpenAPI 3 does.
func TestTraceMethod(t *testing.T) {
	res := mustImport(t, oas30("paths:\n  /a:\n    trace: {"+op+"}\n"), Options{})
	if res.API.Routes[0].Method != "TRACE" {
		t.Errorf("got %s", res.API.Routes[0].Method)
	}
	doc := []byte(`{"swagger":"2.0","info":{"title":"T","version":"1"},"paths":{"/a":{"trace":{"responses":{"200":{"description":"ok"}}},"get":{"responses":{"200":{"description":"ok"}}}}}}`)
	wantProblems(t, mustFail(t, doc, Options{}), map[string]string{"/paths/~1a/trace": "no trace operations"})
}

// Path items may be references (OpenAPI 3.1 components/pathItems); the
// route's pointer is where the operation is written.
func TestPathItemRef(t *testing.T) {
	doc := []byte(`openapi: 3.1.0
info: {title: T, version: '1'}
paths:
  /pets:
    $ref: '#/components/pathItems/pets'
components:
  pathItems:
    pets:
      get: {responses: {'200': {description: ok}}}
`)
	res := mustImport(t, doc, Options{})
	if r := res.API.Routes[0]; r.Key() != "GET /pets" || r.Pointer != "/components/pathItems/pets/get" {
		t.Errorf("got %s at %s", r.Key(), r.Pointer)
	}
}

func TestTooManyOperations(t *testing.T) {
	var b strings.Builder
	b.WriteString(`{"openapi":"3.0.3","info":{"title":"T","version":"1"},"paths":{`)
	for i := 0; i <= MaxOperations; i++ {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(`"/p` + itoa(i) + `":{"get":{"responses":{"200":{"description":"ok"}}}}`)
	}
	b.WriteString("}}")
	probs := mustFail(t, []byte(b.String()), Options{})
	if len(probs) != 1 || !strings.Contains(probs[0].Message, "more than 10000 operations") || probs[0].Pointer != "/paths/~1p10000/get" {
		t.Errorf("got %v", probs)
	}
}

func itoa(i int) string {
	if i == 0 {
		return "0"
	}
	var d []byte
	for ; i > 0; i /= 10 {
		d = append([]byte{byte('0' + i%10)}, d...)
	}
	return string(d)
}
