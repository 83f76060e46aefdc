package importer

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"strings"
	"testing"

	"github.com/portico-edge/portico/config"
)

// The Swagger Petstore, as published in its three formats: the same 20
// operations, each secured by the petstore_auth oauth2 scheme or the
// api_key scheme (test/testdata/openapi/README.md says where each file
// comes from).

type wantRoute struct {
	method, path, operationID, pointer string
}

var petstoreRoutes = []wantRoute{
	{"POST", "/pet", "addPet", "/paths/~1pet/post"},
	{"PUT", "/pet", "updatePet", "/paths/~1pet/put"},
	{"GET", "/pet/findByStatus", "findPetsByStatus", "/paths/~1pet~1findByStatus/get"},
	{"GET", "/pet/findByTags", "findPetsByTags", "/paths/~1pet~1findByTags/get"},
	{"DELETE", "/pet/{petId}", "deletePet", "/paths/~1pet~1{petId}/delete"},
	{"GET", "/pet/{petId}", "getPetById", "/paths/~1pet~1{petId}/get"},
	{"POST", "/pet/{petId}", "updatePetWithForm", "/paths/~1pet~1{petId}/post"},
	{"POST", "/pet/{petId}/uploadImage", "uploadFile", "/paths/~1pet~1{petId}~1uploadImage/post"},
	{"GET", "/store/inventory", "getInventory", "/paths/~1store~1inventory/get"},
	{"POST", "/store/order", "placeOrder", "/paths/~1store~1order/post"},
	{"DELETE", "/store/order/{orderId}", "deleteOrder", "/paths/~1store~1order~1{orderId}/delete"},
	{"GET", "/store/order/{orderId}", "getOrderById", "/paths/~1store~1order~1{orderId}/get"},
	{"POST", "/user", "createUser", "/paths/~1user/post"},
	{"POST", "/user/createWithArray", "createUsersWithArrayInput", "/paths/~1user~1createWithArray/post"},
	{"POST", "/user/createWithList", "createUsersWithListInput", "/paths/~1user~1createWithList/post"},
	{"GET", "/user/login", "loginUser", "/paths/~1user~1login/get"},
	{"GET", "/user/logout", "logoutUser", "/paths/~1user~1logout/get"},
	{"DELETE", "/user/{username}", "deleteUser", "/paths/~1user~1{username}/delete"},
	{"GET", "/user/{username}", "getUserByName", "/paths/~1user~1{username}/get"},
	{"PUT", "/user/{username}", "updateUser", "/paths/~1user~1{username}/put"},
}

// The operations petstore_auth protects.
var petstoreAuthOps = []string{
	"/paths/~1pet/post", "/paths/~1pet/put", "/paths/~1pet~1findByStatus/get",
	"/paths/~1pet~1findByTags/get", "/paths/~1pet~1{petId}/delete",
	"/paths/~1pet~1{petId}/post", "/paths/~1pet~1{petId}~1uploadImage/post",
}

var petstores = []struct {
	file, format, schemes string
}{
	{"petstore-swagger-2.0.json", FormatSwagger20, "/securityDefinitions"},
	{"petstore-openapi-3.0.yaml", FormatOpenAPI30, "/components/securitySchemes"},
	{"petstore-openapi-3.1.yaml", FormatOpenAPI31, "/components/securitySchemes"},
}

func checkRoutes(t *testing.T, got []config.Route, want []wantRoute) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("got %d routes, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		r := got[i]
		if r.Method != w.method || r.Path != w.path || r.OperationID != w.operationID || r.Pointer != w.pointer {
			t.Errorf("route %d is %s %s (%s, %s); want %s %s (%s, %s)", i, r.Method, r.Path, r.OperationID, r.Pointer, w.method, w.path, w.operationID, w.pointer)
		}
	}
}

func TestPetstoreIgnoreSecurity(t *testing.T) {
	for _, ps := range petstores {
		t.Run(ps.file, func(t *testing.T) {
			doc := readTestdata(t, ps.file)
			res := mustImport(t, doc, Options{IgnoreSecurity: true})
			if res.Format != ps.format {
				t.Errorf("format %q, want %q", res.Format, ps.format)
			}
			api := res.API
			if api.Name != "swagger-petstore" || api.Version != "1.0.0" || !strings.HasPrefix(api.Description, "This is a sample server Petstore server.") {
				t.Errorf("name %q, version %q, description %.40q", api.Name, api.Version, api.Description)
			}
			sum := sha256.Sum256(doc)
			if api.SourceDigest != hex.EncodeToString(sum[:]) {
				t.Errorf("source digest %s is not the document's SHA-256", api.SourceDigest)
			}
			if api.ID != "" || !api.CreatedAt.IsZero() {
				t.Errorf("ID and timestamps are the caller's, got %q %v", api.ID, api.CreatedAt)
			}
			checkRoutes(t, api.Routes, petstoreRoutes)
			for _, r := range api.Routes {
				if len(r.Policies) != 0 {
					t.Errorf("%s has policies %v with IgnoreSecurity", r.Key(), r.Policies)
				}
				if r.Integration.Type != "" {
					t.Errorf("%s has integration %v; the document has none", r.Key(), r.Integration)
				}
			}
		})
	}
}

// Without IgnoreSecurity the oauth2 scheme cannot be enforced: the error
// names the scheme and every operation that requires it.
func TestPetstoreSecurityRefused(t *testing.T) {
	for _, ps := range petstores {
		t.Run(ps.file, func(t *testing.T) {
			probs := mustFail(t, readTestdata(t, ps.file), Options{})
			want := map[string]string{
				ps.schemes + "/petstore_auth": "Add x-portico-jwt",
			}
			for _, op := range petstoreAuthOps {
				want[op+"/security/0/petstore_auth"] = `requires security scheme "petstore_auth", which Portico cannot enforce`
			}
			wantProblems(t, probs, want)
		})
	}
}

// With the issuer described, the same document imports with a JWT policy
// carrying each operation's scopes, and API key policies where api_key is
// required.
func TestPetstoreWithJWT(t *testing.T) {
	var doc map[string]any
	if err := json.Unmarshal(readTestdata(t, "petstore-swagger-2.0.json"), &doc); err != nil {
		t.Fatal(err)
	}
	auth := doc["securityDefinitions"].(map[string]any)["petstore_auth"].(map[string]any)
	auth["x-portico-jwt"] = map[string]any{
		"issuer":    "https://login.petstore.example/",
		"audiences": []string{"petstore"},
		"jwksUri":   "https://login.petstore.example/.well-known/jwks.json",
	}
	b, err := json.Marshal(doc)
	if err != nil {
		t.Fatal(err)
	}
	res := mustImport(t, b, Options{DefaultBackend: "https://petstore.example/v2"})
	byKey := make(map[string]config.Route)
	for _, r := range res.API.Routes {
		byKey[r.Key()] = r
	}
	jwt := `{"issuer":"https://login.petstore.example/","audiences":["petstore"],"jwksUri":"https://login.petstore.example/.well-known/jwks.json","scopes":["write:pets","read:pets"]}`
	for _, tc := range []struct{ key, typ, config string }{
		{"POST /pet", "jwt", jwt},
		{"DELETE /pet/{petId}", "jwt", jwt},
		{"GET /pet/{petId}", "api-key", `{"source":"header","name":"api_key"}`},
		{"GET /store/inventory", "api-key", `{"source":"header","name":"api_key"}`},
	} {
		r := byKey[tc.key]
		if len(r.Policies) != 1 || r.Policies[0].Type != tc.typ || string(r.Policies[0].Config) != tc.config {
			t.Errorf("%s: policies %s; want one %s %s", tc.key, policiesString(r.Policies), tc.typ, tc.config)
		}
	}
	if r := byKey["GET /user/login"]; len(r.Policies) != 0 {
		t.Errorf("GET /user/login is public in the document but has policies %s", policiesString(r.Policies))
	}
	// DefaultBackend gives every operation an http_proxy integration.
	r := byKey["GET /pet/{petId}"]
	if r.Integration.Type != config.IntegrationHTTPProxy || r.Integration.URI != "https://petstore.example/v2/pet/{petId}" || r.Integration.Parameters["path.petId"] != "request.path.petId" {
		t.Errorf("GET /pet/{petId} integration %+v", r.Integration)
	}
}

func policiesString(ps []config.PolicySpec) string {
	var b strings.Builder
	for _, p := range ps {
		b.WriteString(p.Type + " " + string(p.Config) + "; ")
	}
	return b.String()
}

// ReadMe's security examples use every kind of scheme; each one Portico
// cannot enforce is refused at the scheme, and alternatives at the
// requirement.
func TestReadMeSecurityExamples(t *testing.T) {
	probs := mustFail(t, readTestdata(t, "readme-security-3.0.yaml"), Options{})
	found := make(map[string]bool)
	for _, p := range probs {
		found[p.Pointer] = true
	}
	for ptr, text := range map[string]string{
		"/components/securitySchemes/basic/scheme":        "HTTP basic authentication is not supported",
		"/components/securitySchemes/apiKey_cookie/in":    "API keys in cookies are not supported",
		"/components/securitySchemes/bearer":              "Add x-portico-jwt",
		"/components/securitySchemes/oauth2":              "Add x-portico-jwt",
		"/components/securitySchemes/openIdConnect":       "Add x-portico-jwt",
		"/paths/~1anything~1optional-auth/get/security/1": "makes authentication optional",
	} {
		if !found[ptr] {
			t.Errorf("no problem at %s (%s)", ptr, text)
			continue
		}
		for _, p := range probs {
			if p.Pointer == ptr && !strings.Contains(p.Message, text) {
				t.Errorf("%s: %q does not say %q", ptr, p.Message, text)
			}
		}
	}
	// The apiKey schemes in a header or the query string are enforceable:
	// no problem is reported at them.
	for _, ptr := range []string{"/components/securitySchemes/apiKey_header", "/components/securitySchemes/apiKey_query"} {
		if found[ptr] {
			t.Errorf("unexpected problem at %s", ptr)
		}
	}
	res := mustImport(t, readTestdata(t, "readme-security-3.0.yaml"), Options{IgnoreSecurity: true})
	for _, r := range res.API.Routes {
		if len(r.Policies) != 0 {
			t.Errorf("%s has policies with IgnoreSecurity", r.Key())
		}
	}

	probs = mustFail(t, readTestdata(t, "readme-security-multiple-3.0.yaml"), Options{})
	alternatives := 0
	for _, p := range probs {
		if strings.HasSuffix(p.Pointer, "/security") && strings.Contains(p.Message, "are alternatives") {
			alternatives++
		}
	}
	if alternatives != 3 {
		t.Errorf("want the 3 operations with alternatives refused, got %d: %v", alternatives, probs)
	}
}

// Imports share nothing: the origin may run several at once.
func TestConcurrentImports(t *testing.T) {
	docs := [][]byte{readTestdata(t, "petstore-swagger-2.0.json"), readTestdata(t, "petstore-openapi-3.1.yaml"), readTestdata(t, "aws-export-supported.yaml")}
	want := make([]string, len(docs))
	for i, d := range docs {
		b, _ := json.Marshal(mustImport(t, d, Options{IgnoreSecurity: true}))
		want[i] = string(b)
	}
	errs := make(chan error, 8)
	for g := range 8 {
		go func() {
			i := g % len(docs)
			res, err := Import(testContext(t), docs[i], Options{IgnoreSecurity: true})
			if err == nil {
				b, _ := json.Marshal(res)
				if string(b) != want[i] {
					err = fmt.Errorf("import %d differs", g)
				}
			}
			errs <- err
		}()
	}
	for range 8 {
		if err := <-errs; err != nil {
			t.Error(err)
		}
	}
}
