package importer

import (
	"strings"
	"testing"
)

func schemasDoc(schemas string) []byte {
	return oas30(`paths:
  /a:
    post:
      requestBody: {content: {application/json: {schema: {$ref: '#/components/schemas/A'}}}}
      ` + op + `
components:
  schemas:
` + schemas)
}

// Schemas that include themselves through composition are refused before
// any validator sees them; the problem is at the schema where the cycle
// closes, and names the way round.
func TestCompositionCycles(t *testing.T) {
	for name, tc := range map[string]struct {
		doc       []byte
		ptr, path string
	}{
		"allOf itself": {schemasDoc(`    A: {allOf: [{$ref: '#/components/schemas/A'}]}
`), "/components/schemas/A", "/components/schemas/A -> /components/schemas/A/allOf/0 -> /components/schemas/A"},
		"anyOf through another schema": {schemasDoc(`    A: {anyOf: [{$ref: '#/components/schemas/B'}, {type: string}]}
    B: {oneOf: [{type: integer}, {$ref: '#/components/schemas/A'}]}
`), "/components/schemas/A", "/components/schemas/B/oneOf/1"},
		"not": {schemasDoc(`    A: {not: {$ref: '#/components/schemas/A'}}
`), "/components/schemas/A", "/components/schemas/A/not"},
		"nested inline allOf": {schemasDoc(`    A:
      allOf:
      - type: object
      - allOf:
        - $ref: '#/components/schemas/C'
    C: {oneOf: [{$ref: '#/components/schemas/A'}]}
`), "/components/schemas/A", "/components/schemas/A/allOf/1/allOf/0"},
		"references only": {schemasDoc(`    A: {$ref: '#/components/schemas/B'}
    B: {$ref: '#/components/schemas/A'}
`), "/components/schemas/A", "/components/schemas/B"},
		"a parameter schema": {oas30(`paths:
  /a:
    get:
      parameters: [{name: q, in: query, schema: {allOf: [{$ref: '#/paths/~1a/get/parameters/0/schema'}]}}]
      ` + op + `
`), "/paths/~1a/get/parameters/0/schema", "/paths/~1a/get/parameters/0/schema/allOf/0"},
		"swagger definitions": {[]byte(`{"swagger": "2.0", "info": {"title": "T", "version": "1"}, "paths": {},
			"definitions": {"A": {"allOf": [{"$ref": "#/definitions/B"}]}, "B": {"allOf": [{"$ref": "#/definitions/A"}]}}}`),
			"/definitions/A", "/definitions/B/allOf/0"},
		"openapi 3.1 if/then": {[]byte(`openapi: 3.1.0
info: {title: T, version: '1'}
paths: {}
components:
  schemas:
    A: {if: {type: object}, then: {$ref: '#/components/schemas/A'}}
`), "/components/schemas/A", "/components/schemas/A/then"},
	} {
		t.Run(name, func(t *testing.T) {
			probs := mustFail(t, tc.doc, Options{})
			var found bool
			for _, p := range probs {
				if p.Pointer == tc.ptr && strings.Contains(p.Message, "includes itself through") {
					found = true
					if !strings.Contains(p.Message, tc.path) {
						t.Errorf("message %q does not show the cycle through %s", p.Message, tc.path)
					}
				}
			}
			if !found {
				t.Errorf("no cycle reported at %s: %v", tc.ptr, probs)
			}
		})
	}
}

// Recursion through properties or items consumes the value being checked,
// so it ends: a tree or a linked list is a legitimate schema.
func TestPropertyRecursionAccepted(t *testing.T) {
	mustImport(t, schemasDoc(`    A:
      type: object
      properties:
        name: {type: string}
        children: {type: array, items: {$ref: '#/components/schemas/A'}}
        parent: {$ref: '#/components/schemas/A'}
        extra: {additionalProperties: {$ref: '#/components/schemas/A'}}
    Linked:
      allOf:
      - $ref: '#/components/schemas/A'
      - properties: {next: {$ref: '#/components/schemas/Linked'}}
`), Options{})
	// ReadMe's circular examples, in both formats.
	mustImport(t, readTestdata(t, "readme-schema-circular-3.0.yaml"), Options{})
	mustImport(t, readTestdata(t, "readme-schema-circular-2.0.yaml"), Options{})
}

func TestReferences(t *testing.T) {
	for name, tc := range map[string]struct {
		doc  []byte
		want map[string]string
	}{
		"another file": {schemasDoc(`    A: {$ref: 'pet.yaml#/Pet'}
`), map[string]string{"/components/schemas/A/$ref": "never fetches anything"}},
		"a URL": {schemasDoc(`    A: {properties: {b: {$ref: 'http://169.254.169.254/latest/meta-data'}}}
`), map[string]string{"/components/schemas/A/properties/b/$ref": "refers to another file or URL"}},
		"a local file": {oas30(`paths:
  /a:
    get:
      parameters: [{$ref: '/etc/passwd'}]
      ` + op + `
`), map[string]string{"/paths/~1a/get/parameters/0/$ref": "bundle the document"}},
		"a path item in another file": {oas30(`paths:
  /a: {$ref: 'paths.yaml#/a'}
`), map[string]string{"/paths/~1a/$ref": "refers to another file or URL"}},
		"nothing": {schemasDoc(`    A: {$ref: '#/components/schemas/Nope'}
`), map[string]string{"/components/schemas/A/$ref": "nothing in the document is at that place"}},
		"an anchor": {schemasDoc(`    A: {$ref: '#node'}
`), map[string]string{"/components/schemas/A/$ref": "named anchor"}},
	} {
		t.Run(name, func(t *testing.T) {
			wantProblems(t, mustFail(t, tc.doc, Options{}), tc.want)
		})
	}
	// A "$ref" in example data or as a property name is not a reference.
	mustImport(t, schemasDoc(`    A:
      type: object
      properties:
        $ref: {type: string}
        example: {type: string, example: {$ref: 'https://example.com/not-fetched'}}
      example: {$ref: 'file:///etc/passwd'}
`), Options{})
	// Escaped and percent-encoded pointers resolve.
	mustImport(t, oas30(`paths:
  /a/{b}:
    get:
      parameters: [{$ref: '#/paths/~1x~1%7Bb%7D/get/parameters/0'}]
      `+op+`
  /x/{b}:
    get:
      parameters: [{name: b, in: path, required: true, schema: {type: string}}]
      `+op+`
`), Options{})
}

// A reference into example data makes that data a schema for whoever
// follows the reference, so a cycle through it is found too.
func TestCycleThroughReferencedData(t *testing.T) {
	probs := mustFail(t, schemasDoc(`    A:
      allOf: [{$ref: '#/components/schemas/A/example'}]
      example: {allOf: [{$ref: '#/components/schemas/A'}]}
`), Options{})
	var found bool
	for _, p := range probs {
		found = found || strings.Contains(p.Message, "includes itself through")
	}
	if !found {
		t.Errorf("no cycle reported: %v", probs)
	}
	wantProblems(t, mustFail(t, schemasDoc(`    A:
      properties: {a: {$ref: '#/components/schemas/A/x-data'}}
      x-data: {properties: {b: {$ref: 'https://example.com/b.json'}}}
`), Options{}), map[string]string{"/components/schemas/A/x-data/properties/b/$ref": "never fetches anything"})
}
