package importer

import (
	"encoding/json"
	"regexp"
	"strconv"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
)

// API Gateway's x-amazon-apigateway-integration, as found in its exports.
// Portico runs http, http_proxy and mock integrations; everything else an
// integration can say is honoured exactly or refused where it is written.

// vtlRe finds Velocity Template Language in a mapping template: references
// ($input, $context, $util, ...) and directives.
var vtlRe = regexp.MustCompile(`\$|#(set|if|elseif|else|end|foreach|macro|parse|include|define|break|stop|evaluate)\b|##|#\*`)

const vtlUnsupported = "VTL mapping templates are not supported: Portico does not run Velocity"

func (im *importer) readAWS(o *operation, n *node, ptr string) (config.Integration, []string) {
	var in config.Integration
	if n.kind != kObject {
		im.probs.add(ptr, n, "x-amazon-apigateway-integration is %s; it must be an object", n.kind)
		return in, nil
	}
	a := &awsReader{im: im, n: n, ptr: ptr}
	typNode := n.get("type")
	t, _ := typNode.str()
	switch strings.ToLower(t) {
	case "http":
		in.Type = config.IntegrationHTTP
	case "http_proxy":
		in.Type = config.IntegrationHTTPProxy
	case "mock":
		in.Type = config.IntegrationMock
	case "aws", "aws_proxy":
		im.probs.add(child(ptr, "type"), typNode, "integration type %q (an AWS service or Lambda function) is not supported: Portico calls HTTP backends and answers mocks; put an HTTP endpoint in front of the function (a Lambda function URL, for example) and use http_proxy", t)
		return config.Integration{}, nil
	default:
		if typNode == nil {
			im.probs.add(ptr, n, "x-amazon-apigateway-integration has no type; use http_proxy, http or mock")
		} else {
			im.probs.add(child(ptr, "type"), typNode, "integration type %q is not supported; use http_proxy, http or mock", typNode.text)
		}
		return config.Integration{}, nil
	}
	mock := in.Type == config.IntegrationMock
	var uri string
	var mappings []mapping
	for i, key := range n.keys {
		v, p := n.vals[i], child(ptr, key)
		switch key {
		case "type":
		case "uri":
			if mock {
				a.bad(p, v, "a mock integration has no backend, so uri does not apply; remove it")
				continue
			}
			s, ok := v.str()
			if !ok || s == "" {
				a.bad(p, v, "uri must be the backend URL, as a string")
				continue
			}
			uri = s
		case "httpMethod":
			m, ok := v.str()
			up := strings.ToUpper(m)
			if !ok || (!standardMethodSet[up] && up != config.MethodAny) {
				a.bad(p, v, "httpMethod %q is not an HTTP method; use GET, POST, PUT, DELETE, PATCH, HEAD, OPTIONS or ANY (the client's method)", v.text)
				continue
			}
			if !mock && up != config.MethodAny {
				in.Method = up
			}
			// API Gateway ignores the method of a mock; so does Portico.
		case "connectionType":
			s, _ := v.str()
			if strings.EqualFold(s, "INTERNET") {
				continue
			}
			a.bad(p, v, "connectionType %q is not supported: Portico has no VPC links and reaches backends directly; put the backend's address (or a ${stageVariables.NAME}) in uri and remove connectionType and connectionId", v.text)
		case "connectionId":
			a.bad(p, v, "connectionId names a VPC link, which Portico does not have; put the backend's address in uri and remove connectionType and connectionId")
		case "credentials":
			a.bad(p, v, "credentials name an IAM role for calling AWS services, which Portico does not call; remove them")
		case "requestParameters":
			if mock {
				a.bad(p, v, "a mock integration sends no request to a backend, so requestParameters do not apply; remove them")
				continue
			}
			mappings = a.requestParameters(v, p)
		case "requestTemplates":
			if !mock {
				a.noTemplates(v, p, "Portico passes the request body through unchanged; remove requestTemplates")
			}
		case "passthroughBehavior":
			s, _ := v.str()
			switch strings.ToUpper(s) {
			case "WHEN_NO_MATCH", "WHEN_NO_TEMPLATES":
				// With no templates both pass the body through, which is
				// what Portico does.
			case "NEVER":
				a.bad(p, v, "passthroughBehavior NEVER makes API Gateway reject requests for which no mapping template exists (415); Portico has no mapping templates and passes bodies through: remove it, or use WHEN_NO_MATCH")
			default:
				a.bad(p, v, "passthroughBehavior %q is not WHEN_NO_MATCH, WHEN_NO_TEMPLATES or NEVER", v.text)
			}
		case "contentHandling":
			a.contentHandling(v, p)
		case "timeoutInMillis":
			ms, err := strconv.Atoi(v.text)
			if v.kind != kNumber || err != nil {
				a.bad(p, v, "timeoutInMillis must be a whole number of milliseconds")
				continue
			}
			d := time.Duration(ms) * time.Millisecond
			if d < minTimeout || d > maxTimeout {
				a.bad(p, v, "timeoutInMillis %d is out of range; use between %d and %d", ms, minTimeout.Milliseconds(), maxTimeout.Milliseconds())
				continue
			}
			if !mock {
				in.Timeout = config.Duration(d)
			}
		case "cacheKeyParameters":
			// read below, once the operation is known to be routable
		case "cacheNamespace":
			if _, ok := v.str(); !ok {
				a.bad(p, v, "cacheNamespace must be a string")
			}
			// API Gateway shares cache entries between methods of one
			// namespace; Portico keys its cache per route, which is what a
			// namespace per resource (the default) gives.
		case "responses":
			// read below, by type
		case "tlsConfig":
			a.tlsConfig(v, p)
		default:
			a.bad(p, v, "%q is not a field of x-amazon-apigateway-integration that Portico supports; the fields are type, uri, httpMethod, requestParameters, requestTemplates, passthroughBehavior, contentHandling, timeoutInMillis, cacheKeyParameters, cacheNamespace, responses, connectionType (INTERNET) and tlsConfig", key)
		}
	}
	keys := im.cacheKeys(o, n.get("cacheKeyParameters"), child(ptr, "cacheKeyParameters"))
	switch in.Type {
	case config.IntegrationMock:
		in.Mock = a.mock()
	case config.IntegrationHTTPProxy:
		a.proxyResponses()
	case config.IntegrationHTTP:
		in.Responses = a.httpResponses()
	}
	if !mock {
		if uri == "" {
			if !n.has("uri") {
				a.bad(ptr, n, "a %s integration needs a uri: the backend URL", t)
			}
		} else if placeholders, ok := im.checkURIAt(uri, child(ptr, "uri"), n.get("uri")); ok {
			in.URI = uri
			in.Parameters = im.checkMappings(o, mappings, placeholders, child(ptr, "uri"), n.get("uri"))
			in.Parameters = implicitPathParams(o, in.Parameters, placeholders)
		} else {
			a.failed = true
		}
		if in.Timeout == 0 {
			in.Timeout = config.Duration(defaultTimeout)
		}
	}
	if a.failed {
		return config.Integration{}, nil
	}
	return in, keys
}

type awsReader struct {
	im     *importer
	n      *node
	ptr    string
	failed bool
}

func (a *awsReader) bad(ptr string, n *node, format string, args ...any) {
	a.im.probs.add(ptr, n, format, args...)
	a.failed = true
}

// requestParameters converts API Gateway's request parameter mappings
// ("integration.request.querystring.q": "method.request.querystring.search")
// into Portico's ("query.q": "request.query.search").
func (a *awsReader) requestParameters(v *node, ptr string) []mapping {
	if v.kind != kObject {
		a.bad(ptr, v, "requestParameters must be an object")
		return nil
	}
	var out []mapping
	for i, k := range v.keys {
		val, p := v.vals[i], child(ptr, k)
		target, ok := awsTarget(k)
		if !ok {
			a.bad(p, val, "mapping target %q is not supported; map to integration.request.path.NAME, integration.request.querystring.NAME or integration.request.header.NAME", k)
			continue
		}
		s, isStr := val.str()
		if !isStr {
			a.bad(p, val, "a mapping source must be a string")
			continue
		}
		src, msg := awsSource(s)
		if msg != "" {
			a.bad(p, val, "mapping source %q: %s", s, msg)
			continue
		}
		out = append(out, mapping{key: target, value: src, ptr: p, n: val})
	}
	return out
}

func awsTarget(k string) (string, bool) {
	for _, t := range [][2]string{
		{"integration.request.path.", "path."},
		{"integration.request.querystring.", "query."},
		{"integration.request.header.", "header."},
	} {
		if name, ok := strings.CutPrefix(k, t[0]); ok && name != "" {
			return t[1] + name, true
		}
	}
	return "", false
}

func awsSource(s string) (string, string) {
	if len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' {
		return s, ""
	}
	if strings.HasPrefix(s, "stageVariables.") {
		return s, ""
	}
	for _, t := range [][2]string{
		{"method.request.path.", "request.path."},
		{"method.request.querystring.", "request.query."},
		{"method.request.header.", "request.header."},
	} {
		if name, ok := strings.CutPrefix(s, t[0]); ok && name != "" {
			return t[1] + name, ""
		}
	}
	switch {
	case strings.HasPrefix(s, "method.request.multivaluequerystring.") || strings.HasPrefix(s, "method.request.multivalueheader."):
		return "", "multi-value parameters are not supported; map the single-value form (method.request.querystring.NAME or method.request.header.NAME)"
	case strings.HasPrefix(s, "method.request.body"):
		return "", "values taken from the request body are not supported (Portico does not evaluate JSONPath on bodies)"
	case strings.HasPrefix(s, "context."):
		return "", "$context variables are not supported; use a path, query string or header parameter, a stage variable or a 'quoted literal'"
	}
	return "", "use method.request.path.NAME, method.request.querystring.NAME, method.request.header.NAME, stageVariables.NAME or a 'quoted literal'"
}

// noTemplates accepts a templates object that holds no template.
func (a *awsReader) noTemplates(v *node, ptr, what string) {
	if v.kind != kObject {
		a.bad(ptr, v, "mapping templates must be an object of content types")
		return
	}
	for i, ct := range v.keys {
		if v.vals[i].kind == kNull {
			continue // a content type listed without a template passes through
		}
		a.bad(child(ptr, ct), v.vals[i], "%s; %s", vtlUnsupported, what)
	}
}

func (a *awsReader) contentHandling(v *node, ptr string) {
	s, _ := v.str()
	switch s {
	case "CONVERT_TO_TEXT":
		// Converts binary payloads to text, and Portico has no binary
		// media types (x-amazon-apigateway-binary-media-types is refused):
		// every payload already is one, so it changes nothing.
	case "CONVERT_TO_BINARY":
		a.bad(ptr, v, "contentHandling CONVERT_TO_BINARY base64-decodes payloads, which Portico does not do; remove it")
	default:
		a.bad(ptr, v, "contentHandling %q is not CONVERT_TO_TEXT or CONVERT_TO_BINARY", v.text)
	}
}

func (a *awsReader) tlsConfig(v *node, ptr string) {
	if v.kind != kObject {
		a.bad(ptr, v, "tlsConfig must be an object")
		return
	}
	for i, k := range v.keys {
		val, p := v.vals[i], child(ptr, k)
		switch k {
		case "insecureSkipVerification":
			if val.kind == kBool && val.text == "false" {
				continue
			}
			a.bad(p, val, "Portico always verifies backend certificates; remove insecureSkipVerification")
		default:
			a.bad(p, val, "tlsConfig %q is not supported; Portico verifies the backend certificate against the uri's host name", k)
		}
	}
}

// awsResponse is one entry of an integration's responses.
type awsResponse struct {
	pattern string // "" for default
	ptr     string
	n       *node
	status  int
	headers map[string]string // method.response.header.X -> source, as written
	hptrs   map[string]string
	body    *node // responseTemplates
}

// responses reads the responses object; ok is false when it is malformed.
func (a *awsReader) responses() ([]*awsResponse, bool) {
	rs := a.n.get("responses")
	ptr := child(a.ptr, "responses")
	if rs == nil {
		return nil, true
	}
	if rs.kind != kObject {
		a.bad(ptr, rs, "responses must be an object of selection patterns")
		return nil, false
	}
	ok := true
	var out []*awsResponse
	for i, sel := range rs.keys {
		v, p := rs.vals[i], child(ptr, sel)
		r := &awsResponse{ptr: p, n: v}
		if sel != "default" {
			r.pattern = sel
			if _, err := regexp.Compile("^(?:" + sel + ")$"); err != nil {
				a.bad(p, v, "selection pattern %q is not a regular expression Portico can use (RE2 syntax): %v", sel, err)
				ok = false
				continue
			}
		}
		if v.kind != kObject {
			a.bad(p, v, "an integration response must be an object")
			ok = false
			continue
		}
		for j, k := range v.keys {
			fv, fp := v.vals[j], child(p, k)
			switch k {
			case "statusCode":
				code, err := strconv.Atoi(fv.text)
				if (fv.kind != kString && fv.kind != kNumber) || err != nil || code < 100 || code > 599 {
					a.bad(fp, fv, "statusCode must be an HTTP status code between 100 and 599, such as \"200\"")
					ok = false
					continue
				}
				r.status = code
			case "responseParameters":
				if fv.kind != kObject {
					a.bad(fp, fv, "responseParameters must be an object")
					ok = false
					continue
				}
				r.headers, r.hptrs = make(map[string]string), make(map[string]string)
				for h, hk := range fv.keys {
					hv, hp := fv.vals[h], child(fp, hk)
					name, isHeader := strings.CutPrefix(hk, "method.response.header.")
					src, isStr := hv.str()
					if !isHeader || name == "" {
						a.bad(hp, hv, "response parameter %q is not supported; set response headers with method.response.header.NAME", hk)
						ok = false
						continue
					}
					if msg := checkHeaderName(name); msg != "" || !isStr {
						a.bad(hp, hv, "response header %q cannot be set: %s", name, firstNonEmpty(msg, "its value must be a string"))
						ok = false
						continue
					}
					r.headers[name], r.hptrs[name] = src, hp
				}
			case "responseTemplates":
				if fv.kind != kObject {
					a.bad(fp, fv, "responseTemplates must be an object of content types")
					ok = false
					continue
				}
				r.body = fv
			case "contentHandling":
				a.contentHandling(fv, fp)
			default:
				a.bad(fp, fv, "%q is not a field of an integration response that Portico supports; the fields are statusCode, responseParameters, responseTemplates and contentHandling", k)
				ok = false
			}
		}
		out = append(out, r)
	}
	return out, ok
}

func firstNonEmpty(s ...string) string {
	for _, v := range s {
		if v != "" {
			return v
		}
	}
	return ""
}

// httpResponses compiles an http integration's responses.
func (a *awsReader) httpResponses() []config.IntegrationResponse {
	rs, ok := a.responses()
	if !ok {
		return nil
	}
	var out []config.IntegrationResponse
	var def *config.IntegrationResponse
	for _, r := range rs {
		if r.status == 0 {
			a.bad(r.ptr, r.n, "an integration response needs a statusCode: the status the client gets")
			continue
		}
		ir := config.IntegrationResponse{Pattern: r.pattern, Status: r.status}
		for name, src := range r.headers {
			if isQuoted(src) {
				if strings.ContainsAny(src, "\r\n\x00") {
					a.bad(r.hptrs[name], nil, "the literal holds a line break or NUL")
					continue
				}
			} else if h, isHdr := strings.CutPrefix(src, "integration.response.header."); !isHdr || !headerNameRe.MatchString(h) {
				a.bad(r.hptrs[name], nil, "response header %s takes %q; Portico sets response headers from a 'quoted literal' or integration.response.header.NAME only", name, src)
				continue
			}
			if ir.Headers == nil {
				ir.Headers = make(map[string]string)
			}
			ir.Headers[name] = src
		}
		if r.body != nil {
			a.noTemplates(r.body, child(r.ptr, "responseTemplates"), "Portico passes the backend's body through unchanged; remove responseTemplates")
		}
		if r.pattern == "" {
			d := ir
			def = &d
			continue
		}
		out = append(out, ir)
	}
	// The default applies when no pattern matches, so it is kept last.
	if def != nil {
		out = append(out, *def)
	}
	return out
}

func isQuoted(s string) bool { return len(s) >= 2 && s[0] == '\'' && s[len(s)-1] == '\'' }

// proxyResponses accepts the one responses block API Gateway ignores on
// proxy integrations: a default with only a statusCode.
func (a *awsReader) proxyResponses() {
	rs := a.n.get("responses")
	if rs == nil {
		return
	}
	ptr := child(a.ptr, "responses")
	if rs.kind == kObject && len(rs.keys) == 1 && rs.keys[0] == "default" {
		d := rs.vals[0]
		if d.kind == kObject && len(d.keys) == 1 && d.keys[0] == "statusCode" {
			return
		}
	}
	a.bad(ptr, rs, "an http_proxy integration passes the backend's response through unchanged, so integration responses do not apply (API Gateway ignores them); remove responses, or use type http to map responses")
}

// mock compiles a mock integration to its one response: the request
// template {"statusCode": N} selects the integration response whose pattern
// matches N, or the default one.
func (a *awsReader) mock() *config.MockResponse {
	status, haveStatus := a.mockStatus()
	rs, ok := a.responses()
	if !ok || a.failed {
		return nil
	}
	if len(rs) == 0 {
		a.bad(a.ptr, a.n, "a mock integration needs responses: at least a default response with a statusCode")
		return nil
	}
	var chosen *awsResponse
	code := strconv.Itoa(status)
	if haveStatus {
		for _, r := range rs {
			if r.pattern != "" && regexp.MustCompile("^(?:"+r.pattern+")$").MatchString(code) {
				chosen = r
				break
			}
		}
	}
	if chosen == nil {
		for _, r := range rs {
			if r.pattern == "" {
				chosen = r
			}
		}
	}
	if chosen == nil {
		if haveStatus {
			a.bad(child(a.ptr, "responses"), a.n.get("responses"), "no integration response matches status %d selected by the request template, and there is no default response; add one", status)
		} else {
			a.bad(child(a.ptr, "responses"), a.n.get("responses"), "without a request template a mock answers with its default response, and there is none; add a default response or a request template {\"statusCode\": N}")
		}
		return nil
	}
	if chosen.status == 0 {
		a.bad(chosen.ptr, chosen.n, "this response, which the mock answers with, has no statusCode; add one")
		return nil
	}
	m := &config.MockResponse{Status: chosen.status}
	for name, src := range chosen.headers {
		if !isQuoted(src) {
			a.bad(chosen.hptrs[name], nil, "a mock has no backend response to take %q from; set the header to a 'quoted literal'", src)
			continue
		}
		lit := src[1 : len(src)-1]
		if msg := checkHeader(name, lit); msg != "" {
			a.bad(chosen.hptrs[name], nil, "response header %s: %s", name, msg)
			continue
		}
		if m.Headers == nil {
			m.Headers = make(map[string]string)
		}
		m.Headers[name] = lit
	}
	if chosen.body != nil {
		var ct string
		var body *node
		for i, k := range chosen.body.keys {
			v := chosen.body.vals[i]
			if v.kind == kNull {
				continue
			}
			if body != nil {
				a.bad(child(child(chosen.ptr, "responseTemplates"), k), v, "a Portico mock answers one body whatever the client accepts; keep one response template")
				return nil
			}
			ct, body = k, v
		}
		if body != nil {
			tp := child(child(chosen.ptr, "responseTemplates"), ct)
			s, isStr := body.str()
			switch {
			case !isStr:
				a.bad(tp, body, "a response template must be a string")
				return nil
			case vtlRe.MatchString(s):
				a.bad(tp, body, "%s; a mock body must be static text (this one uses '$' or a '#' directive)", vtlUnsupported)
				return nil
			}
			m.Body = s
			if _, set := headerValue(m.Headers, "Content-Type"); !set {
				if m.Headers == nil {
					m.Headers = make(map[string]string)
				}
				m.Headers["Content-Type"] = ct
			}
		}
	}
	if a.failed {
		return nil
	}
	return m
}

// mockStatus reads the request templates of a mock, which may only select a
// status code.
func (a *awsReader) mockStatus() (int, bool) {
	t := a.n.get("requestTemplates")
	ptr := child(a.ptr, "requestTemplates")
	if t == nil {
		return 0, false
	}
	if t.kind != kObject {
		a.bad(ptr, t, "requestTemplates must be an object of content types")
		return 0, false
	}
	status, have := 0, false
	for i, ct := range t.keys {
		v, p := t.vals[i], child(ptr, ct)
		if v.kind == kNull {
			continue
		}
		s, _ := v.str()
		var sel struct {
			StatusCode *int `json:"statusCode"`
		}
		dec := json.NewDecoder(strings.NewReader(s))
		dec.DisallowUnknownFields()
		switch {
		case v.kind != kString:
			a.bad(p, v, "a mapping template must be a string")
			continue
		case vtlRe.MatchString(s):
			a.bad(p, v, "%s; a mock's request template can only be {\"statusCode\": N}", vtlUnsupported)
			continue
		case dec.Decode(&sel) != nil || sel.StatusCode == nil || dec.More():
			a.bad(p, v, "a mock's request template must be {\"statusCode\": N}, which selects the integration response; anything else is a mapping template Portico does not run")
			continue
		case *sel.StatusCode < 100 || *sel.StatusCode > 599:
			a.bad(p, v, "statusCode %d is not between 100 and 599", *sel.StatusCode)
			continue
		case have && *sel.StatusCode != status:
			a.bad(p, v, "the request templates select different status codes (%d and %d) by content type; a Portico mock answers one response: keep one template", status, *sel.StatusCode)
			continue
		}
		status, have = *sel.StatusCode, true
	}
	return status, have
}
