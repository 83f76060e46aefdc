package importer

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

// testdata is the repository's shared directory of OpenAPI documents.
var testdata = filepath.Join("..", "..", "test", "testdata", "openapi")

func readTestdata(t testing.TB, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(testdata, name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// testContext bounds one test's imports. GitHub's 13 MB description takes
// about 5 s to import, and more than a minute under the race detector on a
// busy 2-core machine.
func testContext(t testing.TB) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
	t.Cleanup(cancel)
	return ctx
}

// mustImport imports a document that must be accepted.
func mustImport(t testing.TB, doc []byte, opts Options) *Result {
	t.Helper()
	res, err := Import(testContext(t), doc, opts)
	if err != nil {
		t.Fatalf("import failed:\n%v", err)
	}
	return res
}

// mustFail imports a document that must be refused and returns its
// problems, checking the invariants every refusal keeps.
func mustFail(t testing.TB, doc []byte, opts Options) []*Error {
	t.Helper()
	res, err := Import(testContext(t), doc, opts)
	if err == nil {
		t.Fatalf("import succeeded with %d routes; want an error", len(res.API.Routes))
	}
	if res != nil {
		t.Fatalf("import returned both a result and an error")
	}
	var first *Error
	if !errors.As(err, &first) {
		t.Fatalf("error %v (%T) holds no *Error", err, err)
	}
	probs := Problems(err)
	if len(probs) == 0 {
		t.Fatalf("Problems found nothing in %v", err)
	}
	if !slices.IsSortedFunc(probs, func(a, b *Error) int { return strings.Compare(a.Pointer, b.Pointer) }) {
		t.Errorf("problems are not sorted by pointer: %v", err)
	}
	for _, p := range probs {
		if !strings.HasPrefix(p.Error(), "at ") {
			t.Errorf("problem %q does not start with its place", p.Error())
		}
		if p.Pointer != "" && !strings.HasPrefix(p.Pointer, "/") {
			t.Errorf("pointer %q is not an RFC 6901 pointer", p.Pointer)
		}
	}
	return probs
}

// wantProblems checks that the problems are exactly at the given pointers,
// each with a message holding the given text.
func wantProblems(t testing.TB, probs []*Error, want map[string]string) {
	t.Helper()
	got := make(map[string][]string)
	for _, p := range probs {
		got[p.Pointer] = append(got[p.Pointer], p.Message)
	}
	for ptr, text := range want {
		msgs, ok := got[ptr]
		if !ok {
			t.Errorf("no problem at %s (want one saying %q)", ptr, text)
			continue
		}
		if !slices.ContainsFunc(msgs, func(m string) bool { return strings.Contains(m, text) }) {
			t.Errorf("problems at %s are %q; want one saying %q", ptr, msgs, text)
		}
	}
	for ptr, msgs := range got {
		if _, ok := want[ptr]; !ok {
			t.Errorf("unexpected problem at %s: %q", ptr, msgs)
		}
	}
}

// oas30 wraps YAML paths (and anything after them) into an OpenAPI 3.0
// document.
func oas30(rest string) []byte {
	return []byte("openapi: 3.0.3\ninfo: {title: Test API, version: '1.0'}\n" + rest)
}

// op is a minimal valid operation body, indented for use under a method.
const op = "responses: {'200': {description: ok}}"
