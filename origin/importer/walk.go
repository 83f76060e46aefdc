package importer

import (
	"fmt"
	"net/url"
	"strings"
)

// The scan walks the whole document once, before anything else looks at it,
// and finds what must be refused whatever the rest says: references to
// other files or URLs, references to nothing, extensions Portico cannot
// honour, and schemas that include themselves through composition.
//
// It knows just enough of the OpenAPI structure to tell keywords from names
// and from example data: a schema property called "example" or "$ref" is a
// name to descend into, while the value of an "example" keyword is data that
// may hold anything.

// walkCtx says how the keys of an object are to be read.
type walkCtx uint8

const (
	ctxKeywords walkCtx = iota // keys are OpenAPI or JSON Schema keywords
	ctxNames                   // keys are names (properties, components, media types); values are objects
	ctxNamesExt                // names, plus x- extensions (paths, responses, callbacks)
)

// dataKeys hold example or constant values, never document structure.
var dataKeys = map[string]bool{
	"example": true, "default": true, "enum": true, "const": true, "value": true,
}

// nameKeys hold maps from names to structure.
var nameKeys = map[string]walkCtx{
	"properties": ctxNames, "patternProperties": ctxNames, "definitions": ctxNames,
	"$defs": ctxNames, "dependentSchemas": ctxNames, "schemas": ctxNames,
	"securitySchemes": ctxNames, "securityDefinitions": ctxNames, "headers": ctxNames,
	"content": ctxNames, "links": ctxNames, "encoding": ctxNames, "variables": ctxNames,
	"requestBodies": ctxNames, "pathItems": ctxNames, "webhooks": ctxNames,
	"examples": ctxNames, "callbacks": ctxNames,
	"paths": ctxNamesExt, "responses": ctxNamesExt,
}

// skipKeys hold values that are maps or lists of plain strings.
var skipKeys = map[string]bool{
	"mapping": true, "scopes": true, "security": true, "required": true, "tags": true,
}

type pendingWalk struct {
	n   *node
	ptr string
}

// extUse is one x-amazon-apigateway-* or x-portico-* extension.
type extUse struct {
	ptr  string
	name string
	n    *node
}

type scanner struct {
	root  *node
	probs *problems
	exts  []extUse
	// refs maps an object holding a local $ref to the object it names.
	refs map[*node]*node
	// objects records the pointer of every object read as keywords: these
	// are the candidates for schemas in the composition-cycle check.
	objects map[*node]string
	// badRefs says whether a reference was refused; kin-openapi is then not
	// run, because it would refuse the same thing with a worse message.
	badRefs bool
	// swagger says the document is Swagger 2.0, whose "examples" are
	// always example data (OpenAPI 3's are Example Objects).
	swagger bool
	// pending are reference targets still to be walked as keywords.
	pending []pendingWalk
	// cycles says whether a composition cycle was found; kin-openapi must
	// then not see the document at all.
	cycles bool
}

func scan(root *node, swagger bool, probs *problems) *scanner {
	s := &scanner{root: root, probs: probs, swagger: swagger, refs: make(map[*node]*node), objects: make(map[*node]string)}
	s.walk(root, "", ctxKeywords)
	// A reference may point into what the walk took for data (an example,
	// an extension): whatever it names is structure to whoever follows
	// it, so it is walked as such too.
	for len(s.pending) > 0 {
		t := s.pending[0]
		s.pending = s.pending[1:]
		s.walk(t.n, t.ptr, ctxKeywords)
	}
	s.checkCycles()
	return s
}

func (s *scanner) walk(n *node, ptr string, ctx walkCtx) {
	switch n.kind {
	case kArray:
		for i, v := range n.vals {
			s.walk(v, index(ptr, i), ctxKeywords)
		}
	case kObject:
		if ctx != ctxKeywords {
			for i, k := range n.keys {
				if ctx == ctxNamesExt && strings.HasPrefix(k, "x-") {
					s.extension(n.vals[i], child(ptr, k), k)
					continue
				}
				s.walk(n.vals[i], child(ptr, k), ctxKeywords)
			}
			return
		}
		if _, done := s.objects[n]; done {
			return
		}
		s.objects[n] = ptr
		for i, k := range n.keys {
			v, p := n.vals[i], child(ptr, k)
			switch {
			case strings.HasPrefix(k, "x-"):
				s.extension(v, p, k)
			case k == "$ref":
				s.ref(n, v, p)
			case dataKeys[k] || skipKeys[k]:
			case k == "examples" && (v.kind == kArray || s.swagger): // JSON Schema's or Swagger's examples: data
			case k == "parameters" && v.kind == kObject: // components or Swagger 2 parameters
				s.walk(v, p, ctxNames)
			default:
				c, ok := nameKeys[k]
				if !ok {
					c = ctxKeywords
				}
				s.walk(v, p, c)
			}
		}
	}
}

func (s *scanner) extension(v *node, ptr, name string) {
	if strings.HasPrefix(name, "x-amazon-apigateway-") || strings.HasPrefix(name, "x-portico-") {
		s.exts = append(s.exts, extUse{ptr: ptr, name: name, n: v})
	}
	// API Gateway's ANY method is an operation written as an extension:
	// its content is document structure like any other operation's.
	if name == "x-amazon-apigateway-any-method" {
		s.walk(v, ptr, ctxKeywords)
	}
}

func (s *scanner) ref(holder, v *node, ptr string) {
	ref, ok := v.str()
	if !ok {
		// A "$ref" whose value is not a string is a property name or
		// data, not a reference.
		return
	}
	if !strings.HasPrefix(ref, "#") {
		s.badRefs = true
		s.probs.add(ptr, v, "$ref %q refers to another file or URL; Portico never fetches anything while importing, because a document could otherwise make the origin read its local files or call internal services: bundle the document into a single file first (for example with \"redocly bundle\" or \"swagger-cli bundle\")", ref)
		return
	}
	target, why := resolvePointer(s.root, ref)
	if target == nil {
		s.badRefs = true
		s.probs.add(ptr, v, "$ref %q cannot be resolved: %s; point it at an existing component", ref, why)
		return
	}
	s.refs[holder] = target
	if _, walked := s.objects[target]; !walked && (target.kind == kObject || target.kind == kArray) {
		s.pending = append(s.pending, pendingWalk{n: target, ptr: refPointer(ref)})
	}
}

// refPointer returns the JSON pointer a local reference names.
func refPointer(ref string) string {
	frag := strings.TrimPrefix(ref, "#")
	if f, err := url.PathUnescape(frag); err == nil {
		frag = f
	}
	return frag
}

// compositionKeys apply their schemas to the same value as the schema that
// holds them. A schema that reaches itself through them and $ref alone,
// without descending into a property or an item, makes a validator loop on
// one value until the stack is gone (kin-openapi before v0.153.0 crashed the
// process that way, and recover cannot catch a stack overflow).
var compositionArrays = []string{"allOf", "anyOf", "oneOf"}
var compositionSchemas = []string{"not", "if", "then", "else"}

func (s *scanner) edges(n *node) []*node {
	var out []*node
	if t := s.refs[n]; t != nil {
		out = append(out, t)
	}
	for _, k := range compositionArrays {
		if a := n.get(k); a != nil && a.kind == kArray {
			for _, item := range a.vals {
				if item.kind == kObject {
					out = append(out, item)
				}
			}
		}
	}
	for _, k := range compositionSchemas {
		if v := n.get(k); v != nil && v.kind == kObject {
			out = append(out, v)
		}
	}
	if d := n.get("dependentSchemas"); d != nil && d.kind == kObject {
		for _, v := range d.vals {
			if v.kind == kObject {
				out = append(out, v)
			}
		}
	}
	return out
}

// checkCycles finds schemas that include themselves through composition.
// The search is iterative so that a long chain of references cannot
// exhaust the importer's own stack.
func (s *scanner) checkCycles() {
	const (
		white = iota
		grey
		black
	)
	color := make(map[*node]uint8, len(s.objects))
	type frame struct {
		n     *node
		edges []*node
		next  int
	}
	reported := make(map[*node]bool)
	for start := range s.sortedObjects() {
		if color[start] != white {
			continue
		}
		stack := []*frame{{n: start, edges: s.edges(start)}}
		color[start] = grey
		for len(stack) > 0 {
			top := stack[len(stack)-1]
			if top.next == len(top.edges) {
				color[top.n] = black
				stack = stack[:len(stack)-1]
				continue
			}
			next := top.edges[top.next]
			top.next++
			if _, known := s.objects[next]; !known {
				continue // not read as a schema (a name map or data)
			}
			switch color[next] {
			case white:
				color[next] = grey
				stack = append(stack, &frame{n: next, edges: s.edges(next)})
			case grey:
				if reported[next] {
					continue
				}
				reported[next] = true
				s.cycles = true
				var path []string
				onCycle := false
				for _, f := range stack {
					if f.n == next {
						onCycle = true
					}
					if onCycle {
						path = append(path, s.objects[f.n])
					}
				}
				path = append(path, s.objects[next])
				s.probs.add(s.objects[next], next, "this schema includes itself through %s; a validator checking any value against it would never finish: break the cycle (recursion through properties or items, as in a tree node, is fine)", describeCycle(path))
			}
		}
	}
}

// sortedObjects yields the scanned objects in document order, so that a
// cycle is always reported at the same place.
func (s *scanner) sortedObjects() func(yield func(*node, string) bool) {
	return func(yield func(*node, string) bool) {
		var visit func(n *node) bool
		seen := make(map[*node]bool)
		visit = func(n *node) bool {
			if seen[n] {
				return true
			}
			seen[n] = true
			if ptr, ok := s.objects[n]; ok {
				if !yield(n, ptr) {
					return false
				}
			}
			for _, v := range n.vals {
				if v.kind == kObject || v.kind == kArray {
					if !visit(v) {
						return false
					}
				}
			}
			return true
		}
		visit(s.root)
	}
}

func describeCycle(path []string) string {
	const most = 8
	if len(path) > most {
		path = append(path[:most-1:most-1], "...", path[len(path)-1])
	}
	return fmt.Sprintf("allOf/anyOf/oneOf/not/$ref (%s)", strings.Join(path, " -> "))
}
