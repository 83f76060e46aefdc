package e2e

import (
	"fmt"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestImportRealDocuments imports the public Petstore documents (Swagger
// 2.0 and OpenAPI 3.0), the AWS-export fixture and, when fetched, GitHub's
// 13 MB description through the admin API, deploys the Petstores with a
// default backend, and calls them through a real edge.
func TestImportRealDocuments(t *testing.T) {
	be := backend(t, testBackend("pets"))
	o := startOrigin(t, "")
	docs := map[string]string{
		"petstore2": "../testdata/openapi/petstore-swagger-2.0.json",
		"petstore3": "../testdata/openapi/petstore-openapi-3.0.yaml",
	}
	for name, path := range docs {
		doc := []byte(readFile(t, path))
		// Enforcing the documents' security needs authorizer settings
		// they do not have: refused, naming each requirement's pointer.
		code, body := o.admin(t, "POST", "/v1/apis?name="+name, doc, nil)
		if code != 400 || !strings.Contains(body, "/security") {
			t.Errorf("%s with security enforced: %d %s", name, code, body)
		}
		q := url.Values{"name": {name}, "ignoreSecurity": {"true"}, "defaultBackend": {"http://" + be}}
		var res struct {
			API struct {
				Routes []struct{ Method, Path string }
			}
		}
		o.mustAdmin(t, "POST", "/v1/apis?"+q.Encode(), doc, &res)
		if len(res.API.Routes) < 19 {
			t.Errorf("%s: %d routes", name, len(res.API.Routes))
		}
		o.mustAdmin(t, "PUT", "/v1/apis/"+name+"/stages/prod", map[string]any{}, nil)
		o.mustAdmin(t, "POST", "/v1/apis/"+name+"/stages/prod/deployments", map[string]any{}, nil)
	}
	o.mustAdmin(t, "PUT", "/v1/domains/pets.example.test", map[string]any{}, nil)
	o.mustAdmin(t, "PUT", "/v1/domains/pets.example.test/mappings/v2", map[string]string{"api": "petstore2", "stage": "prod"}, nil)
	o.mustAdmin(t, "PUT", "/v1/domains/pets.example.test/mappings/v3", map[string]string{"api": "petstore3", "stage": "prod"}, nil)
	e := startEdge(t, o, "")
	for _, base := range []string{"/v2", "/v3"} {
		eventually(t, 10*time.Second, func() error {
			r := e.do(t, "GET", "pets.example.test", base+"/pet/42", nil, nil)
			if r.StatusCode != 200 {
				return fmt.Errorf("%s/pet/42: %d %s", base, r.StatusCode, r.Body)
			}
			var got echoed
			r.json(t, &got)
			if got.Path != "/pet/42" {
				return fmt.Errorf("backend saw %q", got.Path)
			}
			return nil
		})
		if r := e.do(t, "PATCH", "pets.example.test", base+"/pet/42", nil, nil); r.StatusCode != http.StatusMethodNotAllowed {
			t.Errorf("%s PATCH /pet/42: %d", base, r.StatusCode)
		}
	}
	// The AWS-export fixture imports with every supported form.
	o.mustAdmin(t, "POST", "/v1/apis?name=aws&ignoreSecurity=true", []byte(readFile(t, "../testdata/openapi/aws-export-supported.yaml")), nil)
	// The unsupported one is refused with pointers.
	code, body := o.admin(t, "POST", "/v1/apis?name=aws2", []byte(readFile(t, "../testdata/openapi/aws-export-unsupported.yaml")), nil)
	if code != 400 || !strings.Contains(body, "x-amazon-apigateway") {
		t.Errorf("unsupported AWS forms: %d %.300s", code, body)
	}
	// Recursion through properties (a tree) is legitimate and imports...
	code, body = o.admin(t, "POST", "/v1/apis?name=circ&ignoreSecurity=true", []byte(readFile(t, "../testdata/openapi/readme-schema-circular-3.0.yaml")), nil)
	if code != 201 {
		t.Errorf("property recursion: %d %.300s", code, body)
	}
	// ...but a schema composed of itself would overflow a validator's
	// stack: refused at import, naming the cycle.
	cyclic := `openapi: 3.0.3
info: {title: C, version: "1"}
paths:
  /a:
    get:
      x-portico-integration: {type: mock, status: 200}
      responses: {"200": {description: ok, content: {application/json: {schema: {$ref: "#/components/schemas/A"}}}}}
components:
  schemas:
    A: {allOf: [{$ref: "#/components/schemas/B"}]}
    B: {anyOf: [{$ref: "#/components/schemas/A"}]}
`
	code, body = o.admin(t, "POST", "/v1/apis?name=cyclic", []byte(cyclic), nil)
	if code != 400 || !strings.Contains(body, "/components/schemas/") {
		t.Errorf("composition cycle: %d %.300s", code, body)
	}

	big := filepath.Join("..", "testdata", "openapi", ".cache", "octokit-openapi-23.0.2", "generated", "api.github.com.json")
	doc, err := os.ReadFile(big)
	if err != nil {
		skipOrFail(t, "GitHub's OpenAPI description is not fetched (run test/testdata/openapi/fetch.sh)")
	}
	code, body = o.admin(t, "POST", "/v1/apis?name=github&ignoreSecurity=true&defaultBackend=http://"+be, doc, nil)
	// One path of GitHub's description puts two parameters in one segment
	// (/compare/{base}...{head}), which Portico cannot route: the import is
	// refused and names exactly that place.
	if code != 400 || !strings.Contains(body, "compare") {
		t.Errorf("GitHub description: %d %.500s", code, body)
	}
}
