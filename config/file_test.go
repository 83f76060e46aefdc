package config

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const goodFile = `portico: v1
apis:
  - name: pets
    openapi: pets.yaml
    stages:
      - name: prod
        variables: {backend: "127.0.0.1:9080"}
domains:
  - name: API.Example.com.
    mappings:
      - {basePath: /v1/, api: pets, stage: prod}
      - {basePath: "(none)", api: pets, stage: prod}
edgeSites:
  - {name: fra1, region: eu, addresses: [192.0.2.1]}
`

func TestParseFileGood(t *testing.T) {
	f, err := ParseFile("portico.yaml", []byte(goodFile))
	if err != nil {
		t.Fatal(err)
	}
	if len(f.APIs) != 1 || f.APIs[0].Stages[0].Variables["backend"] != "127.0.0.1:9080" {
		t.Fatalf("decoded %+v", f)
	}
	if f.ResolvePath("pets.yaml") != "pets.yaml" {
		t.Errorf("relative path: %q", f.ResolvePath("pets.yaml"))
	}
}

func TestParseFileJSON(t *testing.T) {
	js := `{"portico":"v1","apis":[{"name":"pets","openapi":"p.json","stages":[{"name":"prod"}]}],
"domains":[{"name":"a.example.com","mappings":[{"basePath":"v1","api":"pets","stage":"prod"}]}]}`
	if _, err := ParseFile("portico.json", []byte(js)); err != nil {
		t.Fatal(err)
	}
	_, err := ParseFile("portico.json", []byte(`{"portico":"v1","apis":[{"name":"pets","openapi":"p.json","stagse":[]}]}`))
	if err == nil || !strings.Contains(err.Error(), "portico.json:1:") || !strings.Contains(err.Error(), `did you mean "stages"`) {
		t.Errorf("JSON error location: %v", err)
	}
}

func TestParseFileErrorsHaveLocations(t *testing.T) {
	cases := []struct {
		name, text string
		want       []string // substrings of the error
	}{
		{"empty", "", []string{"portico.yaml: the file is empty"}},
		{"not yaml", "a: [", []string{"not valid YAML"}},
		{"no version", "apis: []\n", []string{"portico.yaml:1:1: portico: missing"}},
		{"wrong version", "portico: v9\n", []string{"portico.yaml:1:10: portico: version \"v9\" is not supported"}},
		{"unknown field", "portico: v1\nap1s: []\n", []string{"portico.yaml:2:1: ap1s: unknown field \"ap1s\"; did you mean \"apis\"?"}},
		{"unknown far field", "portico: v1\nzzz: 1\n", []string{"the fields here are: portico, apis, domains, edgeSites"}},
		{"nested unknown", "portico: v1\napis:\n  - name: a\n    openapi: x\n    stages:\n      - name: prod\n        variabels: {}\n", []string{"portico.yaml:7:9: apis[0].stages[0].variabels: unknown field"}},
		{"bad api name", "portico: v1\napis:\n  - name: 'has space'\n    openapi: x\n", []string{"portico.yaml:3:11: apis[0].name: API name \"has space\" is not valid"}},
		{"missing openapi", "portico: v1\napis:\n  - name: a\n", []string{"portico.yaml:3:5: apis[0]: no \"openapi\" document"}},
		{"duplicate api", "portico: v1\napis:\n  - {name: a, openapi: x}\n  - {name: a, openapi: y}\n", []string{"apis[1].name: API \"a\" is declared twice"}},
		{"bad stage", "portico: v1\napis:\n  - name: a\n    openapi: x\n    stages:\n      - name: 'pr od'\n", []string{"apis[0].stages[0].name: stage name \"pr od\" is not valid"}},
		{"bad variable", "portico: v1\napis:\n  - name: a\n    openapi: x\n    stages:\n      - name: prod\n        variables: {\"a-b\": x}\n", []string{"apis[0].stages[0].variables.a-b: stage variable name \"a-b\" is not valid"}},
		{"bad domain", "portico: v1\ndomains:\n  - name: 'a..b'\n", []string{"domains[0].name: domain name \"a..b\" is not valid"}},
		{"bad endpoint", "portico: v1\ndomains:\n  - {name: a.com, endpointType: global}\n", []string{"domains[0].endpointType: endpoint type \"global\" is not valid"}},
		{"private without networks", "portico: v1\ndomains:\n  - {name: a.com, endpointType: private}\n", []string{"a private endpoint needs allowedNetworks"}},
		{"bad cidr", "portico: v1\ndomains:\n  - {name: a.com, endpointType: private, allowedNetworks: [10.0.0.1/8]}\n", []string{"has host bits set; did you mean \"10.0.0.0/8\"?"}},
		{"mapping to unknown api", "portico: v1\ndomains:\n  - name: a.com\n    mappings: [{basePath: v1, api: nope, stage: prod}]\n", []string{"domains[0].mappings[0].api: API \"nope\" is not declared"}},
		{"mapping to unknown stage", "portico: v1\napis:\n  - {name: a, openapi: x, stages: [{name: prod}]}\ndomains:\n  - name: a.com\n    mappings: [{basePath: v1, api: a, stage: dev}]\n", []string{"API \"a\" has no stage \"dev\" here; its stages are: prod"}},
		{"duplicate base path", "portico: v1\napis:\n  - {name: a, openapi: x, stages: [{name: prod}]}\ndomains:\n  - name: a.com\n    mappings: [{basePath: v1, api: a, stage: prod}, {basePath: /v1/, api: a, stage: prod}]\n", []string{"base path \"/v1/\" is mapped twice"}},
		{"bad base path", "portico: v1\napis:\n  - {name: a, openapi: x, stages: [{name: prod}]}\ndomains:\n  - name: a.com\n    mappings: [{basePath: 'v1/../x', api: a, stage: prod}]\n", []string{"has an empty, '.' or '..' segment"}},
		{"certificate half", "portico: v1\ndomains:\n  - {name: a.com, certificate: {certFile: c.pem}}\n", []string{"certFile and keyFile go together"}},
		{"policy without type", "portico: v1\napis:\n  - name: a\n    openapi: x\n    policies: [{config: {a: 1}}]\n", []string{"apis[0].policies[0]: policy without a type"}},
		{"type error", "portico: v1\napis: 5\n", []string{"cannot unmarshal"}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := ParseFile("portico.yaml", []byte(c.text))
			if err == nil {
				t.Fatal("no error")
			}
			for _, w := range c.want {
				if !strings.Contains(err.Error(), w) {
					t.Errorf("error %q\ndoes not contain %q", err, w)
				}
			}
		})
	}
}

func TestParseFileReportsEveryProblem(t *testing.T) {
	text := "portico: v1\napis:\n  - name: 'x y'\n    openapi: a\n  - name: b\ndomains:\n  - name: '-bad'\n"
	_, err := ParseFile("portico.yaml", []byte(text))
	var le *LocationError
	if !errors.As(err, &le) {
		t.Fatalf("error is not located: %v", err)
	}
	if n := strings.Count(err.Error(), "portico.yaml:"); n != 3 {
		t.Errorf("want 3 located problems, got %d:\n%v", n, err)
	}
}

func TestLoadFileChecksDocuments(t *testing.T) {
	dir := t.TempDir()
	p := filepath.Join(dir, "portico.yaml")
	if err := os.WriteFile(p, []byte(goodFile), 0o600); err != nil {
		t.Fatal(err)
	}
	_, err := LoadFile(p)
	if err == nil || !strings.Contains(err.Error(), "apis[0].openapi: cannot read the OpenAPI document") {
		t.Fatalf("missing document: %v", err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pets.yaml"), []byte("openapi: 3.0.0"), 0o600); err != nil {
		t.Fatal(err)
	}
	f, err := LoadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	if f.ResolvePath("pets.yaml") != filepath.Join(dir, "pets.yaml") {
		t.Errorf("resolve: %s", f.ResolvePath("pets.yaml"))
	}
}

func TestPolicySpecFromYAML(t *testing.T) {
	text := "portico: v1\napis:\n  - name: a\n    openapi: x\n    policies:\n      - type: throttle\n        config: {rate: 5, burst: 10, 1: one}\n"
	f, err := ParseFile("p.yaml", []byte(text))
	if err != nil {
		t.Fatal(err)
	}
	spec, err := f.APIs[0].Policies[0].Spec()
	if err != nil {
		t.Fatal(err)
	}
	if spec.Type != "throttle" || string(spec.Config) != `{"1":"one","burst":10,"rate":5}` {
		t.Errorf("spec %s %s", spec.Type, spec.Config)
	}
}

func FuzzParseFile(f *testing.F) {
	f.Add([]byte(goodFile))
	f.Add([]byte("portico: v1\napis: [{name: a}]"))
	f.Add([]byte("{\"portico\": \"v1\", \"domains\": [{\"name\": 5}]}"))
	f.Fuzz(func(t *testing.T, b []byte) {
		file, err := ParseFile("f.yaml", b)
		if err == nil && file == nil {
			t.Fatal("nil file without error")
		}
	})
}
