package importer

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
)

// fuzzSeeds are small documents that reach every part of the importer.
var fuzzSeeds = []string{
	``,
	`{}`,
	`openapi: 3.0.3`,
	`{"swagger": "2.0", "info": {"title": "T", "version": "1"}, "paths": {"/a/{b}": {"get": {"parameters": [{"name": "b", "in": "path", "required": true, "type": "string"}], "responses": {"200": {"description": "ok"}}}}}}`,
	"openapi: 3.1.0\ninfo: {title: T, version: '1'}\npaths:\n  /{proxy+}:\n    x-amazon-apigateway-any-method:\n      parameters: [{name: proxy, in: path, required: true, schema: {type: string}}]\n      responses: {'200': {description: ok}}\n      x-amazon-apigateway-integration: {type: http_proxy, uri: 'http://${stageVariables.b}/{proxy}', requestParameters: {integration.request.path.proxy: method.request.path.proxy}}\n",
	"openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n  /a:\n    get:\n      responses: {'200': {description: ok}}\n      x-amazon-apigateway-integration: {type: mock, requestTemplates: {application/json: '{\"statusCode\": 200}'}, responses: {default: {statusCode: '200', responseTemplates: {application/json: '{}'}}}}\n",
	"openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n  /a:\n    get:\n      responses: {'200': {description: ok}}\n      security: [{k: []}, {}]\n      x-portico-integration: {type: mock, bodyJson: {a: [1, 2]}}\ncomponents:\n  securitySchemes:\n    k: {type: apiKey, in: header, name: K}\n",
	"openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths: {}\ncomponents:\n  schemas:\n    A: {allOf: [{$ref: '#/components/schemas/B'}]}\n    B: {oneOf: [{$ref: '#/components/schemas/A'}]}\n",
	"openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths: {}\ncomponents:\n  schemas:\n    A: {properties: {a: {$ref: '#/components/schemas/A'}}, example: {$ref: x}}\n    B: {$ref: 'other.yaml#/B'}\n",
	"swagger: 2.0\ninfo: {title: T, version: 1.0}\nx: &a {'200': {description: ok}}\npaths:\n  /a:\n    get: {responses: *a}\n  /b:\n    get:\n      responses:\n        <<: *a\n",
	"openapi: 3.0.3\ninfo: {title: T, version: '1'}\nx-portico-integration: {type: http_proxy, uri: 'https://b.example/api'}\nservers: [{url: 'https://x/{v}', variables: {v: {default: v1}}}]\npaths:\n  /a/{b}:\n    get: {parameters: [{name: b, in: path, required: true, schema: {type: string}}], responses: {'200': {description: ok}}}\n",
}

// FuzzImport checks that no document, however broken, makes the importer
// panic, hang or answer without saying where: every import returns either
// a result or problems that each carry a pointer.
func FuzzImport(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	files, _ := filepath.Glob(filepath.Join(testdata, "*"))
	for _, name := range files {
		if b, err := os.ReadFile(name); err == nil && len(b) < 24<<10 {
			f.Add(b)
		}
	}
	f.Fuzz(func(t *testing.T, doc []byte) {
		if len(doc) > 64<<10 {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		for _, opts := range []Options{{}, {IgnoreSecurity: true, DefaultBackend: "http://127.0.0.1:1", BasePath: BasePathPrepend}} {
			res, err := Import(ctx, doc, opts)
			checkOutcome(t, res, err)
			// The same document gives the same answer.
			res2, err2 := Import(ctx, doc, opts)
			if errString(err) != errString(err2) {
				t.Fatalf("two imports disagree:\n%v\n---\n%v", err, err2)
			}
			if res != nil {
				a, _ := json.Marshal(res)
				b, _ := json.Marshal(res2)
				if string(a) != string(b) {
					t.Fatalf("two imports disagree:\n%s\n---\n%s", a, b)
				}
			}
		}
	})
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

func checkOutcome(t *testing.T, res *Result, err error) {
	t.Helper()
	if err != nil {
		if res != nil {
			t.Fatal("both a result and an error")
		}
		var e *Error
		if !errors.As(err, &e) {
			t.Fatalf("error without a located problem: %v", err)
		}
		for _, p := range Problems(err) {
			if strings.Contains(p.Message, "the importer failed on this document") {
				t.Fatalf("the importer panicked: %s", p.Message)
			}
			if p.Message == "" {
				t.Fatalf("problem at %q without a message", p.Pointer)
			}
			if p.Pointer != "" && !strings.HasPrefix(p.Pointer, "/") {
				t.Fatalf("pointer %q is not a JSON pointer", p.Pointer)
			}
		}
		return
	}
	if res == nil {
		t.Fatal("neither a result nor an error")
	}
	if len(res.API.SourceDigest) != 64 || res.API.Name == "" {
		t.Fatalf("result without digest or name: %+v", res.API)
	}
	if !slices.IsSortedFunc(res.API.Routes, func(a, b config.Route) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	}) {
		t.Fatal("routes are not sorted")
	}
	for _, r := range res.API.Routes {
		if r.Method == "" || !strings.HasPrefix(r.Path, "/") || !strings.HasPrefix(r.Pointer, "/") {
			t.Fatalf("route %+v", r)
		}
	}
	if _, err := json.Marshal(res); err != nil {
		t.Fatalf("result does not marshal: %v", err)
	}
}
