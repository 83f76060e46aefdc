package router

import (
	"slices"
	"strings"
	"testing"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

func routes(specs ...string) []config.Route {
	var out []config.Route
	for _, s := range specs {
		m, p, _ := strings.Cut(s, " ")
		out = append(out, config.Route{Method: m, Path: p})
	}
	return out
}

func TestTreeMatch(t *testing.T) {
	tree, err := NewTree(routes(
		"GET /", "GET /pets", "POST /pets", "GET /pets/{id}", "GET /pets/mine", "DELETE /pets/{id}",
		"GET /pets/{id}/photos/{photo}", "ANY /files/{path+}", "GET /a/{x}/c", "GET /a/b/{y}",
	))
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		method, path string
		route        string // "" for no match
		params       string
		allowed      string
	}{
		{"GET", "/", "GET /", "", ""},
		{"GET", "/pets", "GET /pets", "", ""},
		{"GET", "/pets/", "GET /pets", "", ""},
		{"HEAD", "/pets", "GET /pets", "", ""},
		{"POST", "/pets", "POST /pets", "", ""},
		{"PUT", "/pets", "", "", "GET,HEAD,POST"},
		{"GET", "/pets/mine", "GET /pets/mine", "", ""},
		{"DELETE", "/pets/mine", "DELETE /pets/{id}", "id=mine", ""},
		{"GET", "/pets/7", "GET /pets/{id}", "id=7", ""},
		{"GET", "/pets/a%20b", "GET /pets/{id}", "id=a b", ""},
		{"GET", "/pets/7/photos/x", "GET /pets/{id}/photos/{photo}", "id=7,photo=x", ""},
		{"GET", "/files/a/b/c", "ANY /files/{path+}", "path=a/b/c", ""},
		{"PATCH", "/files/a", "ANY /files/{path+}", "path=a", ""},
		{"GET", "/files", "", "", ""},
		{"GET", "/nothing", "", "", ""},
		{"GET", "/Pets", "", "", ""},
		// Backtracking: /a/b/c matches the literal b branch first, which has
		// {y} -> /a/b/{y}; /a/x/c needs the {x} branch.
		{"GET", "/a/b/c", "GET /a/b/{y}", "y=c", ""},
		{"GET", "/a/z/c", "GET /a/{x}/c", "x=z", ""},
	}
	for _, c := range cases {
		res, params := tree.Match(c.method, c.path, nil)
		got := ""
		if res.Index >= 0 {
			got = tree.Routes()[res.Index].Key()
		}
		if got != c.route {
			t.Errorf("%s %s: matched %q, want %q", c.method, c.path, got, c.route)
			continue
		}
		var ps []string
		for _, p := range params {
			ps = append(ps, p.Name+"="+p.Value)
		}
		if strings.Join(ps, ",") != c.params {
			t.Errorf("%s %s: params %v, want %s", c.method, c.path, ps, c.params)
		}
		if strings.Join(res.Allowed, ",") != c.allowed {
			t.Errorf("%s %s: allowed %v, want %s", c.method, c.path, res.Allowed, c.allowed)
		}
	}
}

func TestTreeRejectsConflicts(t *testing.T) {
	bad := [][]string{
		{"GET /pets/{id}", "GET /pets/{name}"},
		{"GET /pets/{id}", "GET /pets/{id}"},
		{"GET /a/{p+}/b"},
		{"GET /a/{p+}", "GET /a/{q+}"},
		{"GET pets"},
	}
	for _, b := range bad {
		if _, err := NewTree(routes(b...)); err == nil {
			t.Errorf("%v accepted", b)
		}
	}
}

func TestMatchTemplate(t *testing.T) {
	cases := []struct {
		tmpl, path string
		ok         bool
		params     string
	}{
		{"/pets/{id}", "/pets/7", true, "id=7"},
		{"/pets/{id}", "/pets/7/x", false, ""},
		{"/pets", "/pets/", true, ""},
		{"/files/{p+}", "/files/a/b", true, "p=a/b"},
		{"/files/{p+}", "/files", false, ""},
		{"/a/{x}/c", "/a/%41/c", true, "x=A"},
		{"/", "/", true, ""},
	}
	for _, c := range cases {
		ps, ok := MatchTemplate(c.tmpl, c.path, nil)
		var got []string
		for _, p := range ps {
			got = append(got, p.Name+"="+p.Value)
		}
		if ok != c.ok || strings.Join(got, ",") != c.params {
			t.Errorf("%s %s: %v %v", c.tmpl, c.path, ok, got)
		}
	}
}

func TestTableHostsAndMappings(t *testing.T) {
	api := config.API{ID: "a", Routes: routes("GET /x")}
	snap := &config.Snapshot{
		APIs:        []config.SnapshotAPI{{ID: "a", Stages: []config.Stage{{APIID: "a", Name: "prod", DeploymentID: "d"}}}},
		Deployments: []config.Deployment{{ID: "d", APIID: "a", API: api}},
		Domains: []config.Domain{
			{Name: "api.example.com", EndpointType: config.EndpointEdge, Mappings: []config.BasePathMapping{{BasePath: "v1", APIID: "a", Stage: "prod"}, {BasePath: "v1/beta", APIID: "a", Stage: "prod"}, {BasePath: "", APIID: "a", Stage: "prod"}}},
			{Name: "*.example.com", EndpointType: config.EndpointEdge, Mappings: []config.BasePathMapping{{BasePath: "w", APIID: "a", Stage: "prod"}}},
			{Name: "regional.example.com", EndpointType: config.EndpointRegional, Mappings: []config.BasePathMapping{{BasePath: "", APIID: "a", Stage: "prod"}}},
		},
	}
	built := 0
	tbl, err := Compile(snap, []config.EndpointType{config.EndpointEdge}, func(st *Stage, i int) (plugins.Handler, []plugins.Policy, error) {
		built++
		return plugins.HandlerFunc(nil), nil, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if built != 1 {
		t.Errorf("chains built: %d", built)
	}
	if tbl.Host("regional.example.com") != nil {
		t.Error("an edge must not serve a regional domain")
	}
	if tbl.Host("a.example.com") == nil || tbl.Host("a.b.example.com") != nil || tbl.Host("example.com") != nil {
		t.Error("wildcard matching")
	}
	h := tbl.Host("api.example.com")
	for path, want := range map[string]string{"/v1/x": "/x", "/v1": "/", "/v1/beta/x": "/x", "/v1x": "/v1x", "/other": "/other"} {
		st, rest := h.Map(path)
		if st == nil || rest != want {
			t.Errorf("map %s: %v %q, want %q", path, st != nil, rest, want)
		}
	}
	if !slices.Equal(tbl.Host("api.example.com").Domain.Mappings[0:1], snap.Domains[0].Mappings[0:1]) {
		t.Error("domain")
	}
}

func BenchmarkTreeMatch(b *testing.B) {
	tree, _ := NewTree(routes("GET /pets", "GET /pets/{id}", "GET /pets/{id}/photos/{photo}", "GET /stores/{s}/orders/{o}", "ANY /files/{p+}"))
	params := make([]plugins.Param, 0, 4)
	b.ReportAllocs()
	for b.Loop() {
		_, params = tree.Match("GET", "/pets/123/photos/abc", params[:0])
	}
}
