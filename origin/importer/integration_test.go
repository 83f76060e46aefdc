package importer

import (
	"reflect"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
)

const d29 = config.Duration(29 * time.Second)

func TestPorticoIntegration(t *testing.T) {
	doc := func(integration string) []byte {
		return oas30(`paths:
  /pets/{petId}:
    get:
      parameters: [{name: petId, in: path, required: true, schema: {type: string}}]
      ` + op + `
      x-portico-integration: ` + integration + "\n")
	}
	const at = "/paths/~1pets~1{petId}/get/x-portico-integration"
	t.Run("accepted", func(t *testing.T) {
		for name, tc := range map[string]struct {
			yaml string
			want config.Integration
		}{
			"every mapping form": {
				`{type: http_proxy, uri: "http://${stageVariables.backend}/pets/{id}/{petId}", method: GET, timeout: 10s, parameters: {path.id: request.path.petId, query.q: request.query.search, header.X-Tenant: stageVariables.tenant, header.X-Static: "'fixed'"}}`,
				config.Integration{Type: "http_proxy", Method: "GET", URI: "http://${stageVariables.backend}/pets/{id}/{petId}", Timeout: config.Duration(10 * time.Second),
					Parameters: map[string]string{"path.id": "request.path.petId", "path.petId": "request.path.petId", "query.q": "request.query.search", "header.X-Tenant": "stageVariables.tenant", "header.X-Static": "'fixed'"}},
			},
			"http with defaults": {
				`{type: http, uri: "https://backend.example/pets"}`,
				config.Integration{Type: "http", URI: "https://backend.example/pets", Timeout: d29},
			},
			"method any is the client's method": {
				`{type: http_proxy, uri: "https://backend.example/", method: any, timeout: 5m}`,
				config.Integration{Type: "http_proxy", URI: "https://backend.example/", Timeout: config.Duration(5 * time.Minute)},
			},
			"mock with a body": {
				`{type: mock, status: 200, headers: {Content-Type: application/json}, body: '{"pets":[]}'}`,
				config.Integration{Type: "mock", Mock: &config.MockResponse{Status: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: `{"pets":[]}`}},
			},
			"mock with bodyJson": {
				`{type: mock, bodyJson: {pets: [{id: 1, name: "Rex \"the\" dog"}], next: null}}`,
				config.Integration{Type: "mock", Mock: &config.MockResponse{Status: 200, Headers: map[string]string{"Content-Type": "application/json"}, Body: `{"pets":[{"id":1,"name":"Rex \"the\" dog"}],"next":null}`}},
			},
			"mock with bodyJson keeps a given content type": {
				`{type: mock, status: 201, bodyJson: [1, 2.5e3, true], headers: {content-type: application/vnd.api+json}}`,
				config.Integration{Type: "mock", Mock: &config.MockResponse{Status: 201, Headers: map[string]string{"content-type": "application/vnd.api+json"}, Body: `[1,2.5e3,true]`}},
			},
		} {
			t.Run(name, func(t *testing.T) {
				res := mustImport(t, doc(tc.yaml), Options{})
				got := res.API.Routes[0].Integration
				if !reflect.DeepEqual(got, tc.want) {
					t.Errorf("got  %+v\nwant %+v", got, tc.want)
					if got.Mock != nil {
						t.Errorf("mock %+v", *got.Mock)
					}
				}
			})
		}
	})
	t.Run("refused", func(t *testing.T) {
		for name, tc := range map[string]struct{ yaml, ptr, text string }{
			"no type":                       {`{uri: "https://b.example/"}`, at, "has no type"},
			"bad type":                      {`{type: lambda}`, at + "/type", `"lambda" is not one Portico has`},
			"no uri":                        {`{type: http_proxy}`, at, "needs a uri"},
			"timeout too short":             {`{type: http_proxy, uri: "https://b.example/", timeout: 10ms}`, at + "/timeout", "out of range"},
			"timeout too long":              {`{type: http_proxy, uri: "https://b.example/", timeout: 6m}`, at + "/timeout", "out of range"},
			"timeout as number":             {`{type: http_proxy, uri: "https://b.example/", timeout: 10}`, at + "/timeout", "not a duration"},
			"bad method":                    {`{type: http_proxy, uri: "https://b.example/", method: FETCH}`, at + "/method", "not an HTTP method"},
			"unknown field":                 {`{type: http_proxy, uri: "https://b.example/", retries: 3}`, at + "/retries", "is not a field of x-portico-integration"},
			"mock field on proxy":           {`{type: http_proxy, uri: "https://b.example/", status: 200}`, at + "/status", "only to mock"},
			"proxy field on mock":           {`{type: mock, uri: "https://b.example/"}`, at + "/uri", "no backend"},
			"body and bodyJson":             {`{type: mock, body: "x", bodyJson: {}}`, at + "/body", "keep one"},
			"bad status":                    {`{type: mock, status: 700}`, at + "/status", "between 100 and 599"},
			"status as string":              {`{type: mock, status: "200"}`, at + "/status", "written as a number"},
			"header with newline":           {`{type: mock, headers: {X-A: "a\nb"}}`, at + "/headers", "line break"},
			"header not a string":           {`{type: mock, headers: {X-A: 1}}`, at + "/headers/X-A", "must be a string"},
			"param from missing path param": {`{type: http, uri: "https://b.example/{x}", parameters: {path.x: request.path.nope}}`, at + "/parameters/path.x", "has no {nope}"},
			"param to missing placeholder":  {`{type: http, uri: "https://b.example/", parameters: {path.x: request.path.petId}}`, at + "/parameters/path.x", "no {x} placeholder"},
			"param with bad key":            {`{type: http, uri: "https://b.example/", parameters: {body.x: "'a'"}}`, at + "/parameters/body.x", "must be path.NAME"},
			"param with bad source":         {`{type: http, uri: "https://b.example/", parameters: {query.x: method.request.querystring.x}}`, at + "/parameters/query.x", "a source is request.path.NAME"},
			"param to a reserved header":    {`{type: http, uri: "https://b.example/", parameters: {header.Portico-Route: "'1'"}}`, at + "/parameters/header.Portico-Route", "reserved"},
			"param with bad stage variable": {`{type: http, uri: "https://b.example/", parameters: {query.x: stageVariables.a-b}}`, at + "/parameters/query.x", "stage variable name"},
			"placeholder in the host":       {`{type: http_proxy, uri: "https://{petId}.example/"}`, at + "/uri", "choose the host"},
			"placeholder in the port":       {`{type: http_proxy, uri: "https://b.example:{petId}/"}`, at + "/uri", "choose the host"},
			"placeholder nothing fills":     {`{type: http_proxy, uri: "https://b.example/{nope}"}`, at + "/uri", "neither a path parameter"},
			"relative uri":                  {`{type: http_proxy, uri: "/pets"}`, at + "/uri", "absolute"},
			"fragment":                      {`{type: http_proxy, uri: "https://b.example/#x"}`, at + "/uri", "fragment"},
			"stray dollar":                  {`{type: http_proxy, uri: "https://b.example/$x"}`, at + "/uri", "'$'"},
			"not an object":                 {`"http://b.example/"`, at, "must be an object"},
			"cache keys on ours":            {`{type: http_proxy, uri: "https://b.example/", cacheKeyParameters: [method.request.querystring]}`, at + "/cacheKeyParameters/0", "must be method.request"},
		} {
			t.Run(name, func(t *testing.T) {
				wantProblems(t, mustFail(t, doc(tc.yaml), Options{}), map[string]string{tc.ptr: tc.text})
			})
		}
	})
}

// The document-level x-portico-integration is the default of operations
// without one: its uri is a base the operation's path is appended to.
func TestDocumentDefaultIntegration(t *testing.T) {
	doc := oas30(`x-portico-integration: {type: http_proxy, uri: "http://${stageVariables.backend}/api/", timeout: 3s, parameters: {header.X-From: "'portico'"}}
paths:
  /pets:
    get:
      ` + op + `
  /pets/{petId}/{rest+}:
    get:
      parameters:
      - {name: petId, in: path, required: true, schema: {type: string}}
      - {name: rest, in: path, required: true, schema: {type: string}}
      ` + op + `
  /own:
    get:
      ` + op + `
      x-portico-integration: {type: mock, status: 204}
`)
	res := mustImport(t, doc, Options{DefaultBackend: "https://never.example"})
	want := map[string]config.Integration{
		"GET /own":  {Type: "mock", Mock: &config.MockResponse{Status: 204}},
		"GET /pets": {Type: "http_proxy", URI: "http://${stageVariables.backend}/api/pets", Timeout: config.Duration(3 * time.Second), Parameters: map[string]string{"header.X-From": "'portico'"}},
		"GET /pets/{petId}/{rest+}": {Type: "http_proxy", URI: "http://${stageVariables.backend}/api/pets/{petId}/{rest}", Timeout: config.Duration(3 * time.Second),
			Parameters: map[string]string{"header.X-From": "'portico'", "path.petId": "request.path.petId", "path.rest": "request.path.rest"}},
	}
	for _, r := range res.API.Routes {
		if !reflect.DeepEqual(r.Integration, want[r.Key()]) {
			t.Errorf("%s: got %+v\nwant %+v", r.Key(), r.Integration, want[r.Key()])
		}
	}
	// Each route has its own copy: changing one changes no other.
	res.API.Routes[1].Integration.Parameters["x"] = "y"
	if _, leaked := res.API.Routes[2].Integration.Parameters["x"]; leaked {
		t.Error("routes share the default's parameters map")
	}

	for name, tc := range map[string]struct{ yaml, ptr, text string }{
		"base with a placeholder": {`{type: http_proxy, uri: "https://b.example/{x}"}`, "/x-portico-integration/uri", "no {param} placeholders"},
		"base with a query":       {`{type: http_proxy, uri: "https://b.example/?a=b"}`, "/x-portico-integration/uri", "no query"},
		"path mapping":            {`{type: http_proxy, uri: "https://b.example/", parameters: {query.id: request.path.id}}`, "/x-portico-integration/parameters/query.id", "cannot map path parameters"},
		"cache keys":              {`{type: http_proxy, uri: "https://b.example/", cacheKeyParameters: []}`, "/x-portico-integration/cacheKeyParameters", "set them in the operation"},
	} {
		t.Run(name, func(t *testing.T) {
			doc := oas30("x-portico-integration: " + tc.yaml + "\npaths:\n  /a:\n    get:\n      " + op + "\n")
			wantProblems(t, mustFail(t, doc, Options{}), map[string]string{tc.ptr: tc.text})
		})
	}
}

func TestDefaultBackend(t *testing.T) {
	doc := oas30(`paths:
  /:
    get:
      ` + op + `
  /files/{path+}:
    get:
      parameters: [{name: path, in: path, required: true, schema: {type: string}}]
      ` + op + `
`)
	res := mustImport(t, doc, Options{DefaultBackend: "http://127.0.0.1:8080/"})
	if got := res.API.Routes[0].Integration; got.Type != "http_proxy" || got.URI != "http://127.0.0.1:8080/" || got.Timeout != d29 || got.Parameters != nil {
		t.Errorf("GET /: %+v", got)
	}
	if got := res.API.Routes[1].Integration; got.URI != "http://127.0.0.1:8080/files/{path}" || got.Parameters["path.path"] != "request.path.path" {
		t.Errorf("GET /files/{path+}: %+v", got)
	}
	// Without DefaultBackend the operations have no integration, which the
	// control plane refuses to deploy.
	res = mustImport(t, doc, Options{})
	if got := res.API.Routes[0].Integration; !reflect.DeepEqual(got, config.Integration{}) {
		t.Errorf("no integration expected, got %+v", got)
	}
	for _, bad := range []string{"127.0.0.1:8080", "http://b.example/{x}", "http://b.example/?q=1", "file:///etc/passwd"} {
		probs := mustFail(t, doc, Options{DefaultBackend: bad})
		if len(probs) != 1 || probs[0].Pointer != "" {
			t.Errorf("DefaultBackend %q: %v", bad, probs)
		}
	}
}

func TestBasePath(t *testing.T) {
	swagger := []byte(`{"swagger": "2.0", "info": {"title": "T", "version": "1"}, "basePath": "/v2/",
		"paths": {"/": {"get": {"responses": {"200": {"description": "ok"}}}}, "/pets": {"get": {"responses": {"200": {"description": "ok"}}}}}}`)
	for _, tc := range []struct {
		doc   []byte
		opts  Options
		paths []string
	}{
		{swagger, Options{}, []string{"/", "/pets"}},
		{swagger, Options{BasePath: BasePathIgnore}, []string{"/", "/pets"}},
		{swagger, Options{BasePath: BasePathPrepend}, []string{"/v2", "/v2/pets"}},
		{oas30("servers: [{url: 'https://api.example.com/v1'}, {url: 'http://localhost:8080/v1/'}]\npaths:\n  /pets:\n    get:\n      " + op + "\n"), Options{BasePath: BasePathPrepend}, []string{"/v1/pets"}},
		{oas30("servers: [{url: '/{stage}/x', variables: {stage: {default: beta}}}]\npaths:\n  /pets:\n    get:\n      " + op + "\n"), Options{BasePath: BasePathPrepend}, []string{"/beta/x/pets"}},
		{oas30("servers: [{url: 'https://api.example.com'}]\npaths:\n  /pets:\n    get:\n      " + op + "\n"), Options{BasePath: BasePathPrepend}, []string{"/pets"}},
	} {
		res := mustImport(t, tc.doc, tc.opts)
		var got []string
		for _, r := range res.API.Routes {
			got = append(got, r.Path)
		}
		if !reflect.DeepEqual(got, tc.paths) {
			t.Errorf("%s: got %v, want %v", tc.opts.BasePath, got, tc.paths)
		}
	}
	wantProblems(t, mustFail(t, oas30("servers: [{url: 'https://a.example/v1'}, {url: 'https://b.example/v2'}]\npaths:\n  /pets:\n    get:\n      "+op+"\n"), Options{BasePath: BasePathPrepend}),
		map[string]string{"/servers/1/url": "different paths"})
	wantProblems(t, mustFail(t, swagger, Options{BasePath: "strip"}), map[string]string{"": `BasePath is "strip"`})
}
