package config

import (
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// Integration limits.
const (
	DefaultIntegrationTimeout = 29 * time.Second // API Gateway's default
	MinIntegrationTimeout     = 50 * time.Millisecond
	MaxIntegrationTimeout     = 5 * time.Minute
)

// stageVarRef matches ${stageVariables.NAME}.
var stageVarRef = regexp.MustCompile(`\$\{stageVariables\.([A-Za-z0-9_]+)\}`)

// StageVariablesUsed lists the stage variables an integration refers to, in
// its URI and parameter sources, sorted and without repeats.
func (in *Integration) StageVariablesUsed() []string {
	var out []string
	for _, m := range stageVarRef.FindAllStringSubmatch(in.URI, -1) {
		out = append(out, m[1])
	}
	for _, src := range in.Parameters {
		if name, ok := strings.CutPrefix(src, "stageVariables."); ok {
			out = append(out, name)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// Validate checks an integration of a route whose path parameters are
// params. It is run at import and again at deploy, so that a mistake is
// found before any request is served.
func (in *Integration) Validate(params []string) error {
	switch in.Type {
	case IntegrationMock:
		if in.Mock == nil {
			return fmt.Errorf("mock integration has no response; set its status (and optionally headers and body)")
		}
		if in.Mock.Status < 100 || in.Mock.Status > 599 {
			return fmt.Errorf("mock status %d is not an HTTP status code (100-599)", in.Mock.Status)
		}
		for name := range in.Mock.Headers {
			if !validHeaderName(name) {
				return fmt.Errorf("mock header name %q is not a valid HTTP header name", name)
			}
		}
		return nil
	case IntegrationHTTP, IntegrationHTTPProxy:
	case "":
		return fmt.Errorf("the route has no integration; add x-portico-integration (or x-amazon-apigateway-integration) to the operation")
	default:
		return fmt.Errorf("integration type %q is not supported; use http, http_proxy or mock", in.Type)
	}
	if in.Method != "" && !validMethod(in.Method) {
		return fmt.Errorf("integration method %q is not an HTTP method", in.Method)
	}
	if t := in.Timeout.Std(); t != 0 && (t < MinIntegrationTimeout || t > MaxIntegrationTimeout) {
		return fmt.Errorf("integration timeout %s is outside %s..%s", t, MinIntegrationTimeout, MaxIntegrationTimeout)
	}
	// Check the URI with every placeholder replaced by a harmless value:
	// what remains must be an absolute http(s) URL.
	probe := stageVarRef.ReplaceAllString(in.URI, "x")
	for _, p := range templateParams(probe) {
		name := strings.TrimSuffix(p, "+")
		if _, mapped := in.Parameters["path."+name]; !mapped && !slices.Contains(params, name) {
			return fmt.Errorf("integration uri %q uses {%s}, which is neither a path parameter of the route (it has: %s) nor mapped with a path.%s parameter", in.URI, p, strings.Join(params, ", "), name)
		}
		probe = strings.ReplaceAll(probe, "{"+p+"}", "x")
	}
	u, err := url.Parse(probe)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
		return fmt.Errorf("integration uri %q is not an absolute http:// or https:// URL", in.URI)
	}
	if u.User != nil {
		return fmt.Errorf("integration uri %q holds credentials; pass them as a header parameter from a stage variable instead", in.URI)
	}
	for dst, src := range in.Parameters {
		if err := checkParameter(dst, src, params); err != nil {
			return err
		}
	}
	for _, r := range in.Responses {
		if r.Pattern != "" {
			if _, err := regexp.Compile("^(?:" + r.Pattern + ")$"); err != nil {
				return fmt.Errorf("integration response pattern %q is not a valid regular expression: %v", r.Pattern, err)
			}
		}
		if r.Status != 0 && (r.Status < 100 || r.Status > 599) {
			return fmt.Errorf("integration response status %d is not an HTTP status code", r.Status)
		}
		for name, src := range r.Headers {
			if !validHeaderName(name) {
				return fmt.Errorf("integration response header name %q is not valid", name)
			}
			if !isLiteral(src) && !strings.HasPrefix(src, "integration.response.header.") {
				return fmt.Errorf("integration response header %q has source %q; use a 'quoted literal' or integration.response.header.NAME", name, src)
			}
		}
	}
	return nil
}

func checkParameter(dst, src string, params []string) error {
	kind, name, ok := strings.Cut(dst, ".")
	if !ok || name == "" || (kind != "path" && kind != "query" && kind != "header") {
		return fmt.Errorf("integration parameter %q: write the destination as path.NAME, query.NAME or header.NAME", dst)
	}
	if kind == "header" && !validHeaderName(name) {
		return fmt.Errorf("integration parameter %q: %q is not a valid header name", dst, name)
	}
	switch {
	case isLiteral(src):
		return nil
	case strings.HasPrefix(src, "stageVariables."):
		return nil
	case strings.HasPrefix(src, "request.path."):
		p := strings.TrimPrefix(src, "request.path.")
		if !slices.Contains(params, p) {
			return fmt.Errorf("integration parameter %q takes %q, but the route has no path parameter %q", dst, src, p)
		}
		return nil
	case strings.HasPrefix(src, "request.query."), strings.HasPrefix(src, "request.header."):
		return nil
	}
	return fmt.Errorf("integration parameter %q has source %q; use request.path.NAME, request.query.NAME, request.header.NAME, stageVariables.NAME or a 'quoted literal'", dst, src)
}

func isLiteral(s string) bool { return len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' }

// templateParams returns the names inside {} in a template, "+" kept.
func templateParams(s string) []string {
	var out []string
	for {
		i := strings.IndexByte(s, '{')
		if i < 0 {
			return out
		}
		j := strings.IndexByte(s[i:], '}')
		if j < 0 {
			return out
		}
		out = append(out, s[i+1:i+j])
		s = s[i+j+1:]
	}
}

// PathParams returns the parameter names of a route path template.
func PathParams(template string) []string {
	var out []string
	for _, p := range templateParams(template) {
		out = append(out, strings.TrimSuffix(p, "+"))
	}
	return out
}

func validMethod(m string) bool {
	switch m {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut, http.MethodPatch,
		http.MethodDelete, http.MethodOptions:
		return true
	}
	return false
}

func validHeaderName(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || strings.IndexByte("!#$%&'*+-.^`|~", c) >= 0) {
			return false
		}
	}
	return true
}
