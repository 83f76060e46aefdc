// Package router matches requests to routes: host to custom domain, path to
// base path mapping, mapping to an API stage and its deployment, and the
// rest of the path to one of the deployment's routes.
//
// A Table is compiled once per snapshot and then only read, so lookups
// need no locks. Matching follows API Gateway: the most specific route
// wins (a literal segment over a {param}, a {param} over a greedy
// {param+}), and a path that matches routes of other methods gets 405 with
// the methods it has.
package router

import (
	"fmt"
	"net/url"
	"slices"
	"strings"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// node is one path segment position in a route tree.
type node struct {
	literal map[string]*node
	param   *node
	pName   string
	greedy  *node // matches the rest of the path: one or more segments
	gName   string
	// methods maps a method to a route index; "ANY" matches every method.
	methods map[string]int
}

// Tree matches paths of one deployment.
type Tree struct {
	root   node
	routes []config.Route
}

// NewTree compiles routes. Two routes with the same method and the same
// template shape are an error (the importer rejects them too).
func NewTree(routes []config.Route) (*Tree, error) {
	t := &Tree{routes: routes}
	for i := range routes {
		if err := t.add(i, &routes[i]); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *Tree) add(idx int, r *config.Route) error {
	if !strings.HasPrefix(r.Path, "/") {
		return fmt.Errorf("route %s: path must start with /", r.Key())
	}
	n := &t.root
	rest := strings.Trim(r.Path, "/")
	if rest != "" {
		segs := strings.Split(rest, "/")
		for i, seg := range segs {
			switch {
			case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "+}"):
				if i != len(segs)-1 {
					return fmt.Errorf("route %s: a greedy {name+} parameter must be the last segment", r.Key())
				}
				name := seg[1 : len(seg)-2]
				if n.greedy == nil {
					n.greedy = &node{}
					n.gName = name
				} else if n.gName != name {
					return fmt.Errorf("route %s: greedy parameter {%s+} conflicts with {%s+} at the same place in another route", r.Key(), name, n.gName)
				}
				n = n.greedy
			case strings.HasPrefix(seg, "{") && strings.HasSuffix(seg, "}"):
				name := seg[1 : len(seg)-1]
				if n.param == nil {
					n.param = &node{}
					n.pName = name
				} else if n.pName != name {
					return fmt.Errorf("route %s: parameter {%s} conflicts with {%s} at the same place in another route; use one name", r.Key(), name, n.pName)
				}
				n = n.param
			default:
				if n.literal == nil {
					n.literal = map[string]*node{}
				}
				next := n.literal[seg]
				if next == nil {
					next = &node{}
					n.literal[seg] = next
				}
				n = next
			}
		}
	}
	if n.methods == nil {
		n.methods = map[string]int{}
	}
	if prev, dup := n.methods[r.Method]; dup {
		return fmt.Errorf("route %s duplicates route %s", r.Key(), t.routes[prev].Key())
	}
	n.methods[r.Method] = idx
	return nil
}

// Result is the outcome of a match.
type Result struct {
	// Index of the matched route, or -1.
	Index int
	// Allowed lists the methods of the path when it exists but not for
	// the request's method (for 405 and its Allow header).
	Allowed []string
}

// Match finds the route for method and path (already normalised, starting
// with "/"), appending path parameters to params. When a more specific
// branch has the path but not the method, a less specific one that has
// both is used (DELETE /pets/mine reaches DELETE /pets/{id} even though
// GET /pets/mine exists); when no branch has the method, the result
// lists the methods of the most specific match, for 405 and Allow.
func (t *Tree) Match(method, path string, params []plugins.Param) (Result, []plugins.Param) {
	base := len(params)
	var first *node
	n, params := t.root.walk(strings.TrimPrefix(path, "/"), method, params, &first)
	if n != nil {
		return Result{Index: n.index(method)}, params
	}
	if first == nil {
		return Result{Index: -1}, params[:base]
	}
	allowed := make([]string, 0, len(first.methods)+1)
	for m := range first.methods {
		allowed = append(allowed, m)
	}
	if slices.Contains(allowed, "GET") && !slices.Contains(allowed, "HEAD") {
		allowed = append(allowed, "HEAD")
	}
	slices.Sort(allowed)
	return Result{Index: -1, Allowed: allowed}, params[:base]
}

// index returns the route for method at n, or -1.
func (n *node) index(method string) int {
	if i, ok := n.methods[method]; ok {
		return i
	}
	if method == "HEAD" {
		if i, ok := n.methods["GET"]; ok {
			return i
		}
	}
	if i, ok := n.methods[config.MethodAny]; ok {
		return i
	}
	return -1
}

// walk matches the remaining path (no leading slash) below n, preferring
// literal over parameter over greedy, and backtracking when a more
// specific branch dead-ends or lacks the method. first records the first
// node whose path matched, whatever its methods.
func (n *node) walk(rest, method string, params []plugins.Param, first **node) (*node, []plugins.Param) {
	if rest == "" {
		if n.methods == nil {
			return nil, params
		}
		if *first == nil {
			*first = n
		}
		if n.index(method) >= 0 {
			return n, params
		}
		return nil, params
	}
	seg, tail, _ := strings.Cut(rest, "/")
	if seg == "" {
		// A trailing slash: "/pets/" is "/pets" (the path is normalised,
		// so an empty segment can only be the last one).
		return n.walk(tail, method, params, first)
	}
	if next := n.literal[seg]; next != nil {
		if m, p := next.walk(tail, method, params, first); m != nil {
			return m, p
		}
	}
	if n.param != nil {
		base := len(params)
		params = append(params, plugins.Param{Name: n.pName, Value: unescape(seg)})
		if m, p := n.param.walk(tail, method, params, first); m != nil {
			return m, p
		}
		params = params[:base]
	}
	if g := n.greedy; g != nil && g.methods != nil {
		if *first == nil {
			*first = g
		}
		if g.index(method) >= 0 {
			return g, append(params, plugins.Param{Name: n.gName, Value: unescape(strings.TrimSuffix(rest, "/"))})
		}
	}
	return nil, params
}

func unescape(s string) string {
	if !strings.Contains(s, "%") {
		return s
	}
	if v, err := url.PathUnescape(s); err == nil {
		return v
	}
	return s
}

// Routes returns the routes the tree was built from.
func (t *Tree) Routes() []config.Route { return t.routes }

// MatchTemplate matches one path against one route template, appending the
// path parameters. The origin uses it to recover the parameters of the
// route an edge already chose, without a whole tree.
func MatchTemplate(template, path string, params []plugins.Param) ([]plugins.Param, bool) {
	tmpl := strings.Trim(template, "/")
	rest := strings.Trim(path, "/")
	base := len(params)
	for tmpl != "" {
		tseg, ttail, _ := strings.Cut(tmpl, "/")
		if strings.HasPrefix(tseg, "{") && strings.HasSuffix(tseg, "+}") {
			if rest == "" {
				return params[:base], false
			}
			return append(params, plugins.Param{Name: tseg[1 : len(tseg)-2], Value: unescape(rest)}), true
		}
		if rest == "" {
			return params[:base], false
		}
		seg, tail, _ := strings.Cut(rest, "/")
		switch {
		case strings.HasPrefix(tseg, "{") && strings.HasSuffix(tseg, "}"):
			params = append(params, plugins.Param{Name: tseg[1 : len(tseg)-1], Value: unescape(seg)})
		case tseg != seg:
			return params[:base], false
		}
		tmpl, rest = ttail, tail
	}
	if rest != "" {
		return params[:base], false
	}
	return params, true
}
