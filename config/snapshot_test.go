package config

import (
	"encoding/json"
	"strings"
	"testing"
	"time"
)

func testState() State {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	api := API{ID: "a1", Name: "pets", Routes: []Route{{Method: "GET", Path: "/pets", Integration: Integration{Type: IntegrationMock, Mock: &MockResponse{Status: 200}}}}}
	return State{
		APIs:        []API{api},
		Stages:      []Stage{{APIID: "a1", Name: "prod", DeploymentID: "d1", Variables: map[string]string{"x": "y"}, CreatedAt: now}, {APIID: "a1", Name: "dev"}},
		Deployments: []Deployment{{ID: "d1", APIID: "a1", API: api, CreatedAt: now}},
		Domains:     []Domain{{Name: "b.example.com", Mappings: []BasePathMapping{{BasePath: "v1", APIID: "a1", Stage: "prod"}}}, {Name: "a.example.com"}},
	}
}

func TestCompileIsDeterministic(t *testing.T) {
	st := testState()
	s1, err := Compile(st)
	if err != nil {
		t.Fatal(err)
	}
	// Reverse every list: the version must not change.
	st.Stages[0], st.Stages[1] = st.Stages[1], st.Stages[0]
	st.Domains[0], st.Domains[1] = st.Domains[1], st.Domains[0]
	s2, err := Compile(st)
	if err != nil {
		t.Fatal(err)
	}
	if s1.Version != s2.Version || len(s1.Version) != 24 {
		t.Errorf("versions %q %q", s1.Version, s2.Version)
	}
	st.Stages[1].Variables = map[string]string{"x": "z"}
	s3, _ := Compile(st)
	if s3.Version == s1.Version {
		t.Error("a changed stage variable kept the version")
	}
	if s1.Deployment("d1") == nil || s1.Deployment("nope") != nil || s1.API("a1").Stage("prod") == nil {
		t.Error("lookups")
	}
}

func TestCompileRefusesDanglingReferences(t *testing.T) {
	st := testState()
	st.Stages[0].DeploymentID = "missing"
	if _, err := Compile(st); err == nil || !strings.Contains(err.Error(), "missing") {
		t.Errorf("dangling deployment: %v", err)
	}
	st = testState()
	st.Domains[0].Mappings[0].Stage = "nope"
	if _, err := Compile(st); err == nil {
		t.Error("mapping to a missing stage compiled")
	}
}

func TestVerifyDetectsTampering(t *testing.T) {
	s, _ := Compile(testState())
	b, _ := json.Marshal(s)
	var back Snapshot
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if err := back.Verify(); err != nil {
		t.Fatalf("round trip: %v", err)
	}
	back.Domains[0].Name = "evil.example.com"
	if err := back.Verify(); err == nil {
		t.Error("tampered snapshot verified")
	}
}

func TestIntegrationValidate(t *testing.T) {
	ok := []Integration{
		{Type: IntegrationHTTPProxy, URI: "http://${stageVariables.b}/x/{id}"},
		{Type: IntegrationHTTP, URI: "https://h/x/{other}", Parameters: map[string]string{"path.other": "request.path.id", "query.q": "'lit'", "header.X-A": "request.header.B"}},
		{Type: IntegrationMock, Mock: &MockResponse{Status: 204}},
	}
	for _, in := range ok {
		if err := in.Validate([]string{"id"}); err != nil {
			t.Errorf("%+v: %v", in, err)
		}
	}
	bad := map[string]Integration{
		"no type":          {},
		"unknown type":     {Type: "aws"},
		"relative uri":     {Type: IntegrationHTTP, URI: "/x"},
		"ftp uri":          {Type: IntegrationHTTP, URI: "ftp://h/x"},
		"credentials":      {Type: IntegrationHTTP, URI: "http://u:p@h/x"},
		"unknown param":    {Type: IntegrationHTTP, URI: "http://h/{nope}"},
		"bad destination":  {Type: IntegrationHTTP, URI: "http://h/", Parameters: map[string]string{"body.x": "'a'"}},
		"bad source":       {Type: IntegrationHTTP, URI: "http://h/", Parameters: map[string]string{"query.x": "context.requestId"}},
		"bad header":       {Type: IntegrationHTTP, URI: "http://h/", Parameters: map[string]string{"header.X_A": "'a'"}},
		"timeout":          {Type: IntegrationHTTP, URI: "http://h/", Timeout: Duration(time.Hour)},
		"mock no response": {Type: IntegrationMock},
		"mock bad status":  {Type: IntegrationMock, Mock: &MockResponse{Status: 42}},
		"bad pattern":      {Type: IntegrationHTTP, URI: "http://h/", Responses: []IntegrationResponse{{Pattern: "("}}},
	}
	for name, in := range bad {
		if err := in.Validate([]string{"id"}); err == nil {
			t.Errorf("%s: accepted", name)
		}
	}
	in := Integration{URI: "http://${stageVariables.b}/${stageVariables.a}", Parameters: map[string]string{"header.X": "stageVariables.c"}}
	if got := strings.Join(in.StageVariablesUsed(), ","); got != "a,b,c" {
		t.Errorf("stage variables used: %s", got)
	}
}
