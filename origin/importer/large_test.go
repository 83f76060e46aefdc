package importer

import (
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

// GitHub's REST API description is the large real document: 13 MB of
// OpenAPI 3.0.3, 1,200 operations. test/testdata/openapi/fetch.sh puts it
// in a gitignored cache.
var githubDocPath = filepath.Join(testdata, ".cache", "octokit-openapi-23.0.2", "generated", "api.github.com.json")

func githubDoc(t testing.TB) []byte {
	t.Helper()
	b, err := os.ReadFile(githubDocPath)
	if err != nil {
		if os.Getenv("PORTICO_CI") == "1" {
			t.Fatalf("GitHub's OpenAPI description is missing (%v); run test/testdata/openapi/fetch.sh (needs npm)", err)
		}
		t.Skipf("GitHub's OpenAPI description is not fetched; run test/testdata/openapi/fetch.sh (needs npm) to include it: %v", err)
	}
	return b
}

// The one path of GitHub's description that Portico cannot route: two
// parameters in one segment.
const githubCompare = "/repos/{owner}/{repo}/compare/{base}...{head}"

var (
	githubFixedOnce sync.Once
	githubFixed     []byte
	githubOps       int
)

// githubDocFixed returns GitHub's description without githubCompare, and
// the number of operations left, counted independently of the importer.
func githubDocFixed(t testing.TB) ([]byte, int) {
	doc := githubDoc(t)
	githubFixedOnce.Do(func() {
		var m map[string]any
		if err := json.Unmarshal(doc, &m); err != nil {
			t.Fatal(err)
		}
		paths := m["paths"].(map[string]any)
		delete(paths, githubCompare)
		for _, item := range paths {
			for k := range item.(map[string]any) {
				if _, ok := standardMethods[k]; ok {
					githubOps++
				}
			}
		}
		var err error
		if githubFixed, err = json.Marshal(m); err != nil {
			t.Fatal(err)
		}
	})
	return githubFixed, githubOps
}

func TestGitHubDescription(t *testing.T) {
	if testing.Short() {
		t.Skip("imports 13 MB twice")
	}
	probs := mustFail(t, githubDoc(t), Options{})
	wantProblems(t, probs, map[string]string{
		"/paths/" + escapeToken(githubCompare): `segment "{base}...{head}", which mixes a parameter with other text`,
	})

	doc, ops := githubDocFixed(t)
	res := mustImport(t, doc, Options{DefaultBackend: "https://api.github.com"})
	if len(res.API.Routes) != ops || ops < 1000 {
		t.Fatalf("got %d routes, want %d", len(res.API.Routes), ops)
	}
	if res.Format != FormatOpenAPI30 || res.API.Name != "githubs-official-openapi-spec-octokit-extension" || res.API.Version != "23.0.2" {
		t.Errorf("format %s name %q version %q", res.Format, res.API.Name, res.API.Version)
	}
	byKey := make(map[string]int)
	for i, r := range res.API.Routes {
		byKey[r.Key()] = i
	}
	for key, want := range map[string][2]string{
		"GET /repos/{owner}/{repo}":                    {"repos/get", "/paths/~1repos~1{owner}~1{repo}/get"},
		"GET /repos/{owner}/{repo}/compare/{basehead}": {"repos/compare-commits-with-basehead", "/paths/~1repos~1{owner}~1{repo}~1compare~1{basehead}/get"},
		// The same shape with different parameter names for different
		// methods is routable.
		"GET /orgs/{org}/attestations/{subject_digest}":    {"orgs/list-attestations", ""},
		"DELETE /orgs/{org}/attestations/{attestation_id}": {"orgs/delete-attestations-by-id", ""},
	} {
		i, ok := byKey[key]
		if !ok {
			t.Errorf("no route %s", key)
			continue
		}
		r := res.API.Routes[i]
		if r.OperationID != want[0] || (want[1] != "" && r.Pointer != want[1]) {
			t.Errorf("%s: operationId %q pointer %q; want %q %q", key, r.OperationID, r.Pointer, want[0], want[1])
		}
		if !strings.HasPrefix(r.Integration.URI, "https://api.github.com/") {
			t.Errorf("%s: integration %+v", key, r.Integration)
		}
	}
	if !sort.SliceIsSorted(res.API.Routes, func(i, j int) bool {
		a, b := res.API.Routes[i], res.API.Routes[j]
		return a.Path < b.Path || a.Path == b.Path && a.Method < b.Method
	}) {
		t.Error("routes are not sorted by path, then method")
	}
}

func BenchmarkImportGitHub(b *testing.B) {
	doc, ops := githubDocFixed(b)
	ctx := testContext(b)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		res, err := Import(ctx, doc, Options{})
		if err != nil || len(res.API.Routes) != ops {
			b.Fatalf("import: %v", err)
		}
	}
}

func BenchmarkImportPetstore(b *testing.B) {
	doc := readTestdata(b, "petstore-openapi-3.0.yaml")
	ctx := testContext(b)
	b.SetBytes(int64(len(doc)))
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Import(ctx, doc, Options{IgnoreSecurity: true}); err != nil {
			b.Fatal(err)
		}
	}
}
