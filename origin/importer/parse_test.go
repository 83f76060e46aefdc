package importer

import (
	"context"
	"errors"
	"strings"
	"testing"
)

// Malformed documents get one precise problem, with the line where the
// parser knows it.
func TestMalformedDocuments(t *testing.T) {
	for name, tc := range map[string]struct {
		doc  string
		ptr  string
		text string
		line int
	}{
		"bad YAML":          {"openapi: 3.0.3\ninfo:\n  title: [unclosed\n  version: 1\n", "", "neither valid JSON nor valid YAML", 2},
		"YAML tab":          {"openapi: 3.0.3\ninfo:\n\ttitle: T\n", "", "line 3", 3},
		"bad JSON":          {"{\n  \"openapi\": \"3.0.3\",\n  \"info\": ,\n}", "", "not valid JSON", 3},
		"truncated JSON":    {"{\n  \"openapi\": \"3.0.3\",\n  \"info\": {\"title\": \"T\"", "", "ends in the middle of a value", 3},
		"two JSON values":   {`{"openapi": "3.0.3"} {}`, "", "more content after its end", 1},
		"duplicate JSON":    {"{\"openapi\": \"3.0.3\",\n\"openapi\": \"3.1.0\"}", "", `key "openapi" appears twice`, 2},
		"duplicate YAML":    {"openapi: 3.0.3\ninfo: {title: T, version: '1'}\ninfo: {}\n", "", `key "info" appears twice`, 3},
		"empty":             {"", "", "the document is empty", 0},
		"blank":             {" \n\t\n", "", "the document is empty", 0},
		"comment only":      {"# nothing\n", "", "the document is empty", 0},
		"array":             {"- openapi: 3.0.3\n", "", "is an array, not an object", 1},
		"scalar":            {"hello", "", "is a string, not an object", 1},
		"not OpenAPI":       {`{"name": "portico", "version": "1.0.0"}`, "", "neither an \"openapi\" nor a \"swagger\" field", 1},
		"both versions":     {`{"openapi": "3.0.3", "swagger": "2.0"}`, "", "both an \"openapi\" and a \"swagger\" field", 1},
		"OpenAPI 3.2":       {"openapi: 3.2.0\ninfo: {title: T, version: '1'}\npaths: {}\n", "/openapi", "OpenAPI 3.2.0 is not supported yet", 1},
		"OpenAPI 4":         {"openapi: 4.0.0\n", "/openapi", `OpenAPI version "4.0.0" is not supported`, 1},
		"OpenAPI 2":         {"openapi: '2.0'\n", "/openapi", `OpenAPI version "2.0" is not supported`, 1},
		"OpenAPI 3 short":   {"openapi: '3.0'\n", "/openapi", `"3.0" is not supported`, 1},
		"Swagger 1.2":       {`{"swagger": "1.2"}`, "/swagger", `swagger version "1.2"`, 1},
		"not UTF-8":         {"openapi: 3.0.3\ninfo: {title: \xff\xfe}\n", "", "not valid UTF-8", 0},
		"infinity":          {"openapi: 3.0.3\nx-n: .inf\n", "", "cannot be represented in JSON", 2},
		"CloudFormation":    {"openapi: 3.0.3\ninfo: {title: !Sub '${AWS::StackName}', version: '1'}\n", "", "CloudFormation intrinsic functions", 2},
		"complex key":       {"openapi: 3.0.3\n? [a, b]\n: c\n", "", "a mapping key is itself a mapping", 2},
		"merge non-mapping": {"openapi: 3.0.3\nx: &a [1]\ny:\n  <<: *a\n", "", "must refer to a mapping", 4},
	} {
		t.Run(name, func(t *testing.T) {
			probs := mustFail(t, []byte(tc.doc), Options{})
			if len(probs) != 1 {
				t.Fatalf("want one problem, got %v", probs)
			}
			p := probs[0]
			if p.Pointer != tc.ptr || !strings.Contains(p.Message, tc.text) || p.Line != tc.line {
				t.Errorf("got %q line %d; want at %q line %d a message saying %q", p.Error(), p.Line, tc.ptr, tc.line, tc.text)
			}
		})
	}
}

func TestDocumentBounds(t *testing.T) {
	t.Run("size", func(t *testing.T) {
		doc := readTestdata(t, "petstore-openapi-3.0.yaml")
		probs := mustFail(t, doc, Options{MaxDocumentBytes: 1000, IgnoreSecurity: true})
		if len(probs) != 1 || !strings.Contains(probs[0].Message, "the limit is 1000 bytes") {
			t.Errorf("got %v", probs)
		}
		mustImport(t, doc, Options{MaxDocumentBytes: len(doc), IgnoreSecurity: true})
	})
	t.Run("default size", func(t *testing.T) {
		doc := make([]byte, DefaultMaxDocumentBytes+1)
		probs := mustFail(t, doc, Options{})
		if !strings.Contains(probs[0].Message, "the limit is 16777216 bytes") {
			t.Errorf("got %v", probs)
		}
	})
	t.Run("JSON depth", func(t *testing.T) {
		doc := `{"openapi": "3.0.3", "x-deep": ` + strings.Repeat("[", maxDepth+5) + strings.Repeat("]", maxDepth+5) + "}"
		probs := mustFail(t, []byte(doc), Options{})
		if !strings.Contains(probs[0].Message, "nests deeper than 200 levels") {
			t.Errorf("got %v", probs)
		}
	})
	t.Run("YAML depth", func(t *testing.T) {
		doc := "openapi: 3.0.3\nx-deep: " + strings.Repeat("[", maxDepth+5) + strings.Repeat("]", maxDepth+5) + "\n"
		probs := mustFail(t, []byte(doc), Options{})
		if !strings.Contains(probs[0].Message, "deeper than") && !strings.Contains(probs[0].Message, "depth") {
			t.Errorf("got %v", probs)
		}
	})
	t.Run("YAML alias expansion", func(t *testing.T) {
		// Nine levels of ten aliases each expand to a billion values.
		var b strings.Builder
		b.WriteString("openapi: 3.0.3\nl0: &l0 [x, x, x, x, x, x, x, x, x, x]\n")
		for i := 1; i < 10; i++ {
			p := "*l" + itoa(i-1)
			b.WriteString("l" + itoa(i) + ": &l" + itoa(i) + " [" + strings.Repeat(p+", ", 9) + p + "]\n")
		}
		probs := mustFail(t, []byte(b.String()), Options{})
		if !strings.Contains(probs[0].Message, "aliases expand to more than 200000 values") {
			t.Errorf("got %v", probs)
		}
	})
}

// YAML conveniences real documents use: unquoted versions, anchors and
// merge keys, numeric response codes.
func TestYAMLFeatures(t *testing.T) {
	doc := []byte(`swagger: 2.0
info: {title: T, version: 1.10}
x-common: &ok
  '200': {description: ok}
x-errors: &errors
  500: {description: error}
paths:
  /a:
    get:
      responses:
        <<: [*ok, *errors]
        404: {description: missing}
  /b:
    get:
      responses: *ok
`)
	res := mustImport(t, doc, Options{})
	if res.Format != FormatSwagger20 || res.API.Version != "1.10" || len(res.API.Routes) != 2 {
		t.Errorf("got %s %q %d routes", res.Format, res.API.Version, len(res.API.Routes))
	}
}

func TestCanceled(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err := Import(ctx, readTestdata(t, "petstore-openapi-3.0.yaml"), Options{})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("got %v, want context.Canceled", err)
	}
}

func TestErrorFormatAndCap(t *testing.T) {
	e := &Error{Pointer: "/paths/~1pets/get", Message: "something is wrong; do this"}
	if e.Error() != "at /paths/~1pets/get: something is wrong; do this" {
		t.Errorf("got %q", e.Error())
	}
	if (&Error{Message: "m"}).Error() != "at the document root: m" {
		t.Errorf("got %q", (&Error{Message: "m"}).Error())
	}
	// 60 operations with the same mistake: 50 problems, then a count.
	var b strings.Builder
	b.WriteString("openapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n")
	for i := 59; i >= 0; i-- {
		b.WriteString("  /p" + itoa(i) + ":\n    get: {" + op + ", x-portico-integration: {type: nope}}\n")
	}
	_, err := Import(testContext(t), []byte(b.String()), Options{})
	probs := Problems(err)
	if len(probs) != maxReported {
		t.Fatalf("got %d problems, want %d", len(probs), maxReported)
	}
	lines := strings.Split(err.Error(), "\n")
	if len(lines) != maxReported+1 || lines[len(lines)-1] != "and 10 more problems (fix the ones above and import again to see them)" {
		t.Errorf("last line %q of %d", lines[len(lines)-1], len(lines))
	}
	if probs[0].Pointer != "/paths/~1p0/get/x-portico-integration/type" || probs[1].Pointer != "/paths/~1p1/get/x-portico-integration/type" || probs[2].Pointer != "/paths/~1p10/get/x-portico-integration/type" {
		t.Errorf("not sorted by pointer: %s, %s, %s", probs[0].Pointer, probs[1].Pointer, probs[2].Pointer)
	}
	if probs[0].Line == 0 {
		t.Error("problem has no line")
	}
}

func TestSlugName(t *testing.T) {
	for in, want := range map[string]string{
		"Swagger Petstore": "swagger-petstore",
		"GitHub's official OpenAPI spec + Octokit extension": "githubs-official-openapi-spec-octokit-extension",
		"  --Hello,   World!!  ":                             "hello-world",
		"日本語":                                                "api",
		"":                                                   "api",
		"Café API v2.1":                                      "caf-api-v2-1",
		strings.Repeat("a", 70):                              strings.Repeat("a", 64),
		strings.Repeat("ab ", 30):                            strings.Repeat("ab-", 21) + "a",
	} {
		if got := slugName(in); got != want {
			t.Errorf("slugName(%q) = %q, want %q", in, got, want)
		}
	}
	res := mustImport(t, oas30("paths:\n  /a:\n    get: {"+op+"}\n"), Options{Name: "my.api_v2"})
	if res.API.Name != "my.api_v2" {
		t.Errorf("name %q", res.API.Name)
	}
	wantProblems(t, mustFail(t, oas30("paths:\n  /a:\n    get: {"+op+"}\n"), Options{Name: "-bad name"}), map[string]string{"": "import option Name"})
}

func TestByteOrderMark(t *testing.T) {
	for _, doc := range []string{
		"\ufeff{\"openapi\": \"3.0.3\", \"info\": {\"title\": \"T\", \"version\": \"1\"}, \"paths\": {\"/a\": {\"get\": {\"responses\": {\"200\": {\"description\": \"ok\"}}}}}}",
		"\ufeffopenapi: 3.0.3\ninfo: {title: T, version: '1'}\npaths:\n  /a:\n    get: {" + op + "}\n",
	} {
		mustImport(t, []byte(doc), Options{})
	}
}
