package importer

import (
	"fmt"
	"net/http"
	"strings"

	"github.com/portico-edge/portico/config"
)

// operation is what the integration and security readers need to know
// about the operation they read.
type operation struct {
	ptr    string // pointer of the operation object
	n      *node
	method string // upper case, or config.MethodAny
	tmpl   *template
}

func (im *importer) routes() []config.Route {
	paths := im.root.get("paths")
	if paths == nil {
		im.probs.add("", im.root, "the document has no paths, so there is nothing to route; add operations under \"paths\"")
		return nil
	}
	if paths.kind != kObject {
		im.probs.add("/paths", paths, "paths is %s; it must be an object mapping path templates to path items", paths.kind)
		return nil
	}
	var out []config.Route
	seen := make(collisions)
	count := 0
	for i, raw := range paths.keys {
		if strings.HasPrefix(raw, "x-") {
			continue
		}
		if i%64 == 0 && im.ctx.Err() != nil {
			return nil
		}
		itemPtr := child("/paths", raw)
		item := paths.vals[i]
		if item.kind == kObject && item.has("$ref") {
			target := im.sc.refs[item]
			if target == nil {
				continue // the reference itself was reported
			}
			if len(item.keys) > 1 {
				im.probs.add(itemPtr, item, "this path item has a $ref and other fields; OpenAPI leaves the meaning of that open: move the fields into the referenced path item")
			}
			item, itemPtr = target, im.sc.objects[target]
		}
		if item.kind != kObject {
			im.probs.add(itemPtr, item, "a path item must be an object of operations; this one is %s", item.kind)
			continue
		}
		tmpl, errs := parseTemplate(raw)
		for _, e := range errs {
			im.probs.add(child("/paths", raw), paths.vals[i], "%s", e)
		}
		common := im.parameters(item.get("parameters"), child(itemPtr, "parameters"))
		for j, key := range item.keys {
			method, isOp := standardMethods[key]
			if !isOp {
				if !pathItemFields[key] && !strings.HasPrefix(key, "x-") {
					im.probs.add(child(itemPtr, key), item.vals[j], "%q is not an HTTP method Portico routes; path items hold get, put, post, delete, options, head, patch%s, x-amazon-apigateway-any-method, summary, description, servers and parameters", key, map[bool]string{false: ", trace", true: ""}[im.swagger])
				}
				continue
			}
			opPtr := child(itemPtr, key)
			if key == "x-amazon-apigateway-any-method" {
				im.consumed[opPtr] = true
			}
			if im.swagger && key == "trace" {
				im.probs.add(opPtr, item.vals[j], "Swagger 2.0 has no trace operations; move the document to OpenAPI 3 or remove it")
				continue
			}
			op := item.vals[j]
			if op.kind != kObject {
				im.probs.add(opPtr, op, "an operation must be an object; this one is %s", op.kind)
				continue
			}
			count++
			if count > MaxOperations {
				im.tooBig = true
				im.probs.add(opPtr, op, "the document has more than %d operations; Portico refuses such documents to bound the work of an import: split the API", MaxOperations)
				return out
			}
			if tmpl == nil {
				continue
			}
			o := &operation{ptr: opPtr, n: op, method: method, tmpl: tmpl}
			im.checkPathParams(o, common, im.parameters(op.get("parameters"), child(opPtr, "parameters")))
			seen.check(tmpl, method, opPtr, im.probs, op)
			r := config.Route{Method: method, Path: im.basePrefix + raw, Pointer: opPtr}
			if im.basePrefix != "" && raw == "/" {
				r.Path = im.basePrefix // "/prod" + "/" is the base path itself
			}
			if id := op.get("operationId"); id != nil {
				s, ok := id.str()
				if !ok {
					im.probs.add(child(opPtr, "operationId"), id, "operationId is %s; it must be a string", id.kind)
				}
				r.OperationID = s
			}
			r.Integration, r.CacheKeyParameters = im.integration(o)
			r.Policies = im.security.policies(o)
			r.EarlyData = im.earlyData(o)
			out = append(out, r)
		}
	}
	if count == 0 && im.probs.empty() {
		im.probs.add("/paths", paths, "the document defines no operations, so there is nothing to route; add operations under \"paths\"")
	}
	return out
}

// param is one resolved parameter.
type param struct {
	name, in string
	ptr      string
	n        *node
}

// parameters resolves a parameters list.
func (im *importer) parameters(list *node, ptr string) []param {
	if list == nil {
		return nil
	}
	if list.kind != kArray {
		im.probs.add(ptr, list, "parameters is %s; it must be an array of parameter objects", list.kind)
		return nil
	}
	var out []param
	for i, p := range list.vals {
		// Problems with how a parameter is used are reported where it is
		// used, also when it is a reference to a shared one.
		use, at := index(ptr, i), index(ptr, i)
		for hops := 0; p != nil && p.kind == kObject && p.has("$ref"); hops++ {
			t := im.sc.refs[p]
			if t == nil || hops > 32 {
				p = nil
				break
			}
			at, p = im.sc.objects[t], t
		}
		if p == nil {
			continue // a bad reference is reported by the scan
		}
		if p.kind != kObject {
			im.probs.add(at, p, "a parameter must be an object; this one is %s", p.kind)
			continue
		}
		name, _ := p.get("name").str()
		in, _ := p.get("in").str()
		out = append(out, param{name: name, in: in, ptr: use, n: list.vals[i]})
	}
	return out
}

// checkPathParams compares the declared path parameters of an operation
// with its template.
func (im *importer) checkPathParams(o *operation, common, own []param) {
	declared := make(map[string]bool)
	where := make(map[string]param)
	for _, list := range [][]param{common, own} {
		for _, p := range list {
			if p.in != "path" {
				continue
			}
			name := strings.TrimSuffix(p.name, "+") // {proxy+} is declared as "proxy" (API Gateway) or "proxy+"
			declared[name] = true
			where[name] = p
		}
	}
	for name, p := range where {
		if !o.tmpl.hasParam(name) {
			im.probs.add(p.ptr, p.n, "path parameter %q is declared, but path %s has no {%s} segment; remove the parameter or add the segment", p.name, o.tmpl.raw, name)
		}
	}
	for _, name := range o.tmpl.params {
		if !declared[name] {
			im.probs.add(o.ptr, o.n, "path %s has {%s}, but the %s operation declares no path parameter %q; declare it (name: %s, in: path, required: true) in the operation or its path item", o.tmpl.raw, name, o.method, name, name)
		}
	}
}

// describe names an operation in messages.
func (o *operation) describe() string { return fmt.Sprintf("%s %s", o.method, o.tmpl.raw) }

// earlyData reads x-portico-early-data: a safe operation may accept TLS
// 1.3 / QUIC 0-RTT requests, which an attacker can replay, so only GET,
// HEAD and OPTIONS may opt in.
func (im *importer) earlyData(o *operation) bool {
	n := o.n.get("x-portico-early-data")
	if n == nil {
		return false
	}
	ptr := child(o.ptr, "x-portico-early-data")
	im.consumed[ptr] = true
	if n.kind != kBool {
		im.probs.add(ptr, n, "x-portico-early-data is %s; it must be true or false", n.kind)
		return false
	}
	if n.text != "true" {
		return false
	}
	switch o.method {
	case http.MethodGet, http.MethodHead, http.MethodOptions:
		return true
	}
	im.probs.add(ptr, n, "%s may not accept 0-RTT early data: early data can be replayed, so only GET, HEAD and OPTIONS operations may opt in", o.method)
	return false
}
