package importer

import (
	"fmt"
	"strings"
)

// template is a parsed path template: literal segments, "{name}" segments
// and an optional final "{name+}".
type template struct {
	raw    string
	params []string // parameter names in order, without "+"
	greedy bool     // the last parameter is greedy
	shape  string   // the template with names erased, for collision checks
}

func (t *template) hasParam(name string) bool {
	for _, p := range t.params {
		if p == name {
			return true
		}
	}
	return false
}

// uriPath returns the template as a backend URI path: greedy "{name+}"
// becomes "{name}", because integration URIs substitute whole values.
func (t *template) uriPath() string {
	if !t.greedy {
		return t.raw
	}
	last := t.params[len(t.params)-1]
	return strings.Replace(t.raw, "{"+last+"+}", "{"+last+"}", 1)
}

// parseTemplate checks a path template and returns what is wrong with it;
// the template is usable only when no problem is returned.
func parseTemplate(raw string) (*template, []string) {
	t := &template{raw: raw}
	var errs []string
	if !strings.HasPrefix(raw, "/") {
		return nil, []string{fmt.Sprintf("path %q does not start with '/'; write it as %q", raw, "/"+raw)}
	}
	if strings.ContainsAny(raw, "?#") {
		return nil, []string{fmt.Sprintf("path %q holds a query or fragment; a path template is only the path: describe query strings with parameters (in: query)", raw)}
	}
	if raw == "/" {
		t.shape = "/"
		return t, nil
	}
	segs := strings.Split(raw[1:], "/")
	var shape strings.Builder
	seen := make(map[string]bool)
	for i, seg := range segs {
		last := i == len(segs)-1
		shape.WriteByte('/')
		if seg == "" {
			if last {
				continue // a trailing slash is kept as written
			}
			errs = append(errs, fmt.Sprintf("path %q has an empty segment (\"//\"); remove it", raw))
			continue
		}
		if !strings.ContainsAny(seg, "{}") {
			if seg == "." || seg == ".." {
				errs = append(errs, fmt.Sprintf("path %q has a %q segment, which clients and proxies remove before routing; remove it", raw, seg))
				continue
			}
			if bad, ok := badPathByte(seg); ok {
				errs = append(errs, fmt.Sprintf("path %q holds %q, which is not allowed in a URL path; percent-encode it or remove it", raw, bad))
				continue
			}
			shape.WriteString(seg)
			continue
		}
		if !strings.HasPrefix(seg, "{") || !strings.HasSuffix(seg, "}") || strings.Count(seg, "{") != 1 || strings.Count(seg, "}") != 1 {
			errs = append(errs, fmt.Sprintf("path %q has segment %q, which mixes a parameter with other text; Portico (like API Gateway) matches a parameter as a whole segment only: write it as a segment of its own, such as /items/{id}", raw, seg))
			continue
		}
		name := seg[1 : len(seg)-1]
		greedy := strings.HasSuffix(name, "+")
		name = strings.TrimSuffix(name, "+")
		if !validParamName(name) {
			errs = append(errs, fmt.Sprintf("path %q has parameter %q; parameter names are 1-128 letters, digits, '_', '-' or '.'", raw, seg))
			continue
		}
		if greedy && !last {
			errs = append(errs, fmt.Sprintf("path %q has the greedy parameter {%s+} before its last segment; a greedy parameter matches the rest of the path, so it must be last", raw, name))
			continue
		}
		if seen[name] {
			errs = append(errs, fmt.Sprintf("path %q uses parameter {%s} twice; give each parameter its own name", raw, name))
			continue
		}
		seen[name] = true
		t.params = append(t.params, name)
		if greedy {
			t.greedy = true
			shape.WriteString("{+}")
		} else {
			shape.WriteString("{}")
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	t.shape = shape.String()
	return t, nil
}

func validParamName(s string) bool {
	if s == "" || len(s) > 128 {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '_' || c == '-' || c == '.') {
			return false
		}
	}
	return true
}

// badPathByte returns the first byte of seg that RFC 3986 does not allow in a
// path segment (pchar), with percent-encodings checked.
func badPathByte(seg string) (string, bool) {
	for i := 0; i < len(seg); i++ {
		c := seg[i]
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
		case strings.IndexByte("-._~!$&'()*+,;=:@", c) >= 0:
		case c == '%':
			if i+2 >= len(seg) || !isHex(seg[i+1]) || !isHex(seg[i+2]) {
				return "%", true
			}
			i += 2
		default:
			if c >= 0x80 {
				// Report the whole character rather than one byte of it.
				r := []rune(seg[i:])[0]
				return string(r), true
			}
			return string(c), true
		}
	}
	return "", false
}

func isHex(c byte) bool {
	return c >= '0' && c <= '9' || c >= 'a' && c <= 'f' || c >= 'A' && c <= 'F'
}

// standardMethods are the operation keys of a path item, with the method
// each routes. TRACE exists only in OpenAPI 3.
var standardMethods = map[string]string{
	"get": "GET", "put": "PUT", "post": "POST", "delete": "DELETE",
	"options": "OPTIONS", "head": "HEAD", "patch": "PATCH", "trace": "TRACE",
	"x-amazon-apigateway-any-method": "ANY",
}

// pathItemFields are the non-operation fields of a path item.
var pathItemFields = map[string]bool{
	"summary": true, "description": true, "servers": true, "parameters": true, "$ref": true,
}

// pathUse records which operation first used a shape with a method.
type pathUse struct {
	raw string
	ptr string
}

// collisions finds templates that differ only in parameter names, such as
// /pets/{id} and /pets/{name}, routed for the same method: no router can
// tell which one a request means.
type collisions map[string]pathUse // shape + " " + method -> first use

func (c collisions) check(t *template, method, opPtr string, probs *problems, n *node) {
	key := method + " " + t.shape
	if first, ok := c[key]; ok && first.raw != t.raw {
		probs.add(opPtr, n, "%s %s and %s %s (at %s) match exactly the same requests, as their paths differ only in parameter names; a request could not be routed to one of them: merge them into one path", method, t.raw, method, first.raw, first.ptr)
		return
	}
	if _, ok := c[key]; !ok {
		c[key] = pathUse{raw: t.raw, ptr: opPtr}
	}
}
