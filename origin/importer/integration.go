package importer

import (
	"fmt"
	"net/url"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
)

// Integration timeouts: API Gateway's lower bound, a generous upper one, and
// API Gateway's default.
const (
	minTimeout     = 50 * time.Millisecond
	maxTimeout     = 5 * time.Minute
	defaultTimeout = 29 * time.Second
)

// integration returns the integration and cache key parameters of an
// operation: its own extension, else the document's default, else
// Options.DefaultBackend, else none (which the control plane refuses to
// deploy, as API Gateway does).
func (im *importer) integration(o *operation) (config.Integration, []string) {
	ours, aws := o.n.get("x-portico-integration"), o.n.get("x-amazon-apigateway-integration")
	oursPtr, awsPtr := child(o.ptr, "x-portico-integration"), child(o.ptr, "x-amazon-apigateway-integration")
	if ours != nil {
		im.consumed[oursPtr] = true
	}
	if aws != nil {
		im.consumed[awsPtr] = true
	}
	switch {
	case ours != nil && aws != nil:
		im.probs.add(o.ptr, o.n, "the operation has both x-portico-integration and x-amazon-apigateway-integration; keep one")
		return config.Integration{}, nil
	case ours != nil:
		return im.readPortico(o, ours, oursPtr)
	case aws != nil:
		return im.readAWS(o, aws, awsPtr)
	case im.docDefault != nil:
		return im.docDefault.apply(o), nil
	case im.opts.DefaultBackend != "":
		in := config.Integration{
			Type:    config.IntegrationHTTPProxy,
			URI:     strings.TrimRight(im.opts.DefaultBackend, "/") + o.tmpl.uriPath(),
			Timeout: config.Duration(defaultTimeout),
		}
		in.Parameters = implicitPathParams(o, nil, o.tmpl.params)
		return in, nil
	}
	return config.Integration{}, nil
}

// readPortico reads an operation's x-portico-integration.
func (im *importer) readPortico(o *operation, n *node, ptr string) (config.Integration, []string) {
	var in config.Integration
	if n.kind != kObject {
		im.probs.add(ptr, n, "x-portico-integration is %s; it must be an object with at least a type", n.kind)
		return in, nil
	}
	f := im.porticoFields(n, ptr, false)
	if f == nil {
		return in, nil
	}
	in = f.in
	if in.Type != config.IntegrationMock {
		placeholders, ok := im.checkURIAt(f.uri, child(ptr, "uri"), n.get("uri"))
		if !ok {
			return config.Integration{}, nil
		}
		in.URI = f.uri
		in.Parameters = im.checkMappings(o, porticoMappings(f.params, child(ptr, "parameters"), n.get("parameters")), placeholders, child(ptr, "uri"), n.get("uri"))
		in.Parameters = implicitPathParams(o, in.Parameters, placeholders)
	}
	keys := im.cacheKeys(o, n.get("cacheKeyParameters"), child(ptr, "cacheKeyParameters"))
	return in, keys
}

// porticoFieldSet holds the fields of an x-portico-integration once read.
type porticoFieldSet struct {
	in     config.Integration
	uri    string
	params map[string]string
}

// porticoFields reads the fields an x-portico-integration object may have.
// docLevel says it is the document's default.
func (im *importer) porticoFields(n *node, ptr string, docLevel bool) *porticoFieldSet {
	f := &porticoFieldSet{}
	typ := n.get("type")
	t, _ := typ.str()
	switch config.IntegrationType(t) {
	case config.IntegrationHTTP, config.IntegrationHTTPProxy, config.IntegrationMock:
		f.in.Type = config.IntegrationType(t)
	default:
		if typ == nil {
			im.probs.add(ptr, n, "x-portico-integration has no type; set type to http_proxy (pass requests through to a backend), http (pass only mapped parameters) or mock (answer from the document)")
		} else {
			im.probs.add(child(ptr, "type"), typ, "integration type %q is not one Portico has; use http_proxy, http or mock", typ.text)
		}
		return nil
	}
	mock := f.in.Type == config.IntegrationMock
	ok := true
	bad := func(key string, v *node, format string, args ...any) {
		im.probs.add(child(ptr, key), v, format, args...)
		ok = false
	}
	backendOnly := map[string]bool{"uri": true, "method": true, "timeout": true, "parameters": true}
	mockOnly := map[string]bool{"status": true, "headers": true, "body": true, "bodyJson": true}
	for i, key := range n.keys {
		v := n.vals[i]
		switch {
		case key == "type":
			continue
		case mock && backendOnly[key]:
			bad(key, v, "a mock integration has no backend, so %q does not apply; remove it", key)
			continue
		case !mock && mockOnly[key]:
			bad(key, v, "%q applies only to mock integrations; remove it, or set type: mock", key)
			continue
		case docLevel && key == "cacheKeyParameters":
			bad(key, v, "cacheKeyParameters name request parameters of one operation; set them in the operation's x-portico-integration")
			continue
		}
		switch key {
		case "uri":
			s, isStr := v.str()
			if !isStr || s == "" {
				bad(key, v, "uri must be an absolute http or https URL string")
				continue
			}
			f.uri = s
		case "method":
			m, isStr := v.str()
			up := strings.ToUpper(m)
			if !isStr || (!standardMethodSet[up] && up != config.MethodAny) {
				bad(key, v, "method %q is not an HTTP method; use GET, PUT, POST, DELETE, PATCH, HEAD, OPTIONS, or leave it out to use the client's method", v.text)
				continue
			}
			if up != config.MethodAny {
				f.in.Method = up
			}
		case "timeout":
			s, isStr := v.str()
			d, err := time.ParseDuration(s)
			if !isStr || err != nil {
				bad(key, v, "timeout %q is not a duration; write a Go duration such as \"10s\" or \"500ms\"", v.text)
				continue
			}
			if d < minTimeout || d > maxTimeout {
				bad(key, v, "timeout %s is out of range; use between %s and %s", d, minTimeout, maxTimeout)
				continue
			}
			f.in.Timeout = config.Duration(d)
		case "parameters":
			m, good := im.stringMap(v, child(ptr, key))
			if !good {
				ok = false
				continue
			}
			f.params = m
		case "status":
			code, err := strconv.Atoi(v.text)
			if v.kind != kNumber || err != nil || code < 100 || code > 599 {
				bad(key, v, "status must be an HTTP status code between 100 and 599, written as a number")
				continue
			}
			if f.in.Mock == nil {
				f.in.Mock = &config.MockResponse{}
			}
			f.in.Mock.Status = code
		case "headers":
			m, good := im.stringMap(v, child(ptr, key))
			if !good {
				ok = false
				continue
			}
			for name, val := range m {
				if msg := checkHeader(name, val); msg != "" {
					bad(key, v, "header %q: %s", name, msg)
				}
			}
			if f.in.Mock == nil {
				f.in.Mock = &config.MockResponse{}
			}
			f.in.Mock.Headers = m
		case "body":
			s, isStr := v.str()
			if !isStr {
				bad(key, v, "body must be a string; to write the body as JSON, use bodyJson")
				continue
			}
			if n.has("bodyJson") {
				bad(key, v, "body and bodyJson are both set; keep one")
				continue
			}
			if f.in.Mock == nil {
				f.in.Mock = &config.MockResponse{}
			}
			f.in.Mock.Body = s
		case "bodyJson":
			if f.in.Mock == nil {
				f.in.Mock = &config.MockResponse{}
			}
			// Content-Type defaults to application/json after the loop,
			// once headers, wherever they are written, have been read.
			f.in.Mock.Body = string(appendJSON(nil, v))
		case "cacheKeyParameters":
			// read by the caller, which knows the operation
		default:
			bad(key, v, "%q is not a field of x-portico-integration; the fields are type, uri, method, timeout, parameters and cacheKeyParameters (http, http_proxy) or type, status, headers, body and bodyJson (mock)", key)
		}
	}
	if !ok {
		return nil
	}
	if mock {
		if f.in.Mock == nil {
			f.in.Mock = &config.MockResponse{}
		}
		if f.in.Mock.Status == 0 {
			f.in.Mock.Status = 200
		}
		if n.has("bodyJson") {
			if _, set := headerValue(f.in.Mock.Headers, "Content-Type"); !set {
				if f.in.Mock.Headers == nil {
					f.in.Mock.Headers = make(map[string]string)
				}
				f.in.Mock.Headers["Content-Type"] = "application/json"
			}
		}
		return f
	}
	if f.uri == "" {
		im.probs.add(ptr, n, "a %s integration needs a uri: the backend URL, such as \"https://backend.example.com/pets/{petId}\" or \"http://${stageVariables.backend}/pets\"", f.in.Type)
		return nil
	}
	if f.in.Timeout == 0 {
		f.in.Timeout = config.Duration(defaultTimeout)
	}
	return f
}

var standardMethodSet = map[string]bool{
	"GET": true, "PUT": true, "POST": true, "DELETE": true, "OPTIONS": true, "HEAD": true, "PATCH": true, "TRACE": true,
}

func headerValue(h map[string]string, name string) (string, bool) {
	for k, v := range h {
		if strings.EqualFold(k, name) {
			return v, true
		}
	}
	return "", false
}

// stringMap reads an object of strings.
func (im *importer) stringMap(n *node, ptr string) (map[string]string, bool) {
	if n.kind != kObject {
		im.probs.add(ptr, n, "this must be an object of strings; it is %s", n.kind)
		return nil, false
	}
	out := make(map[string]string, len(n.keys))
	ok := true
	for i, k := range n.keys {
		s, isStr := n.vals[i].str()
		if !isStr {
			im.probs.add(child(ptr, k), n.vals[i], "%q must be a string; it is %s", k, n.vals[i].kind)
			ok = false
			continue
		}
		out[k] = s
	}
	return out, ok
}

// docIntegration is the document-level x-portico-integration, applied to
// operations without their own.
type docIntegration struct {
	in   config.Integration
	base string // uri, to which the operation's path is appended
}

func (im *importer) readDocIntegration() *docIntegration {
	n := im.root.get("x-portico-integration")
	if n == nil {
		return nil
	}
	ptr := "/x-portico-integration"
	im.consumed[ptr] = true
	if n.kind != kObject {
		im.probs.add(ptr, n, "x-portico-integration is %s; it must be an object with at least a type", n.kind)
		return nil
	}
	f := im.porticoFields(n, ptr, true)
	if f == nil {
		return nil
	}
	d := &docIntegration{in: f.in}
	if f.in.Type == config.IntegrationMock {
		return d
	}
	if msg := checkBaseURI(f.uri); msg != "" {
		im.probs.add(child(ptr, "uri"), n.get("uri"), "the document's default integration uri %q: %s", f.uri, msg)
		return nil
	}
	d.base = strings.TrimRight(f.uri, "/")
	params := make(map[string]string, len(f.params))
	for k, v := range f.params {
		pp := child(child(ptr, "parameters"), k)
		if strings.HasPrefix(k, "path.") || strings.HasPrefix(v, "request.path.") {
			im.probs.add(pp, n.get("parameters").get(k), "the document's default integration applies to operations with different path parameters, so it cannot map path parameters; set an x-portico-integration on the operations that need it")
			return nil
		}
		if msg := checkParamMapping(k, v, nil); msg != "" {
			im.probs.add(pp, n.get("parameters").get(k), "%s", msg)
			return nil
		}
		params[k] = v
	}
	if len(params) > 0 {
		d.in.Parameters = params
	}
	return d
}

// apply returns the default integration for one operation: the operation's
// path is appended to the base uri, and its path parameters fill the
// placeholders that come with it.
func (d *docIntegration) apply(o *operation) config.Integration {
	in := d.in
	if in.Mock != nil {
		m := *in.Mock
		in.Mock = &m
	}
	if in.Type == config.IntegrationMock {
		return in
	}
	in.URI = d.base + o.tmpl.uriPath()
	in.Parameters = implicitPathParams(o, copyMap(d.in.Parameters), o.tmpl.params)
	return in
}

func copyMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// implicitPathParams fills the uri placeholders that no mapping fills from
// the operation's path parameters of the same name (for the default
// integrations, all of the template's parameters), so that the stored
// integration says explicitly where every placeholder comes from.
func implicitPathParams(o *operation, params map[string]string, names []string) map[string]string {
	for _, name := range names {
		if _, mapped := params["path."+name]; mapped {
			continue
		}
		if !o.tmpl.hasParam(name) {
			continue // reported by checkURIAt
		}
		if params == nil {
			params = make(map[string]string)
		}
		params["path."+name] = "request.path." + name
	}
	return params
}

var (
	stageVarRefRe  = regexp.MustCompile(`\$\{([^{}]*)\}`)
	placeholderRe  = regexp.MustCompile(`\{([^{}]*)\}`)
	stageVarNameRe = regexp.MustCompile(`^[A-Za-z0-9_]{1,64}$`)
)

// checkURI checks an integration uri and returns its {param} placeholders.
func checkURI(uri string) ([]string, string) {
	var msg string
	sub := stageVarRefRe.ReplaceAllStringFunc(uri, func(m string) string {
		inner := m[2 : len(m)-1]
		name, ok := strings.CutPrefix(inner, "stageVariables.")
		if !ok || !stageVarNameRe.MatchString(name) {
			if msg == "" {
				msg = fmt.Sprintf("%s is not a stage variable reference; write ${stageVariables.NAME}, where NAME is 1-64 letters, digits or '_'", m)
			}
		}
		return "stagevar"
	})
	if msg != "" {
		return nil, msg
	}
	if strings.Contains(sub, "$") {
		return nil, "it holds a '$' that does not start a ${stageVariables.NAME} reference; percent-encode it as %24"
	}
	// {param} placeholders may fill the path and the query, never the
	// scheme, host or port: a client would otherwise choose the host the
	// origin connects to.
	if i := strings.Index(sub, "://"); i >= 0 {
		rest := sub[i+3:]
		end := strings.IndexAny(rest, "/?#")
		if end < 0 {
			end = len(rest)
		}
		if strings.ContainsAny(rest[:end], "{}") || strings.ContainsAny(sub[:i], "{}") {
			return nil, "it has a {param} placeholder in its scheme or host, which would let clients choose the host the origin connects to; only ${stageVariables.NAME} may appear there"
		}
	}
	var names []string
	sub = placeholderRe.ReplaceAllStringFunc(sub, func(m string) string {
		name := m[1 : len(m)-1]
		if !validParamName(name) && msg == "" {
			msg = fmt.Sprintf("placeholder %s is not valid; write {name} with a path parameter's name", m)
		}
		if !slices.Contains(names, name) {
			names = append(names, name)
		}
		return "param"
	})
	if msg != "" {
		return nil, msg
	}
	if strings.ContainsAny(sub, "{}") {
		return nil, "it has an unmatched '{' or '}'; placeholders are written {name}"
	}
	u, err := url.Parse(sub)
	if err != nil {
		return nil, fmt.Sprintf("it is not a valid URL: %v", err)
	}
	if s := strings.ToLower(u.Scheme); s != "http" && s != "https" {
		return nil, "it must be an absolute http:// or https:// URL"
	}
	if u.Host == "" {
		return nil, "it has no host"
	}
	if u.User != nil {
		return nil, "it holds credentials (user:password@); send credentials with a header parameter mapping instead, so they do not end up in logs"
	}
	if strings.Contains(uri, "#") {
		return nil, "it has a fragment (#...), which is never sent to a server; remove it"
	}
	return names, ""
}

// checkBaseURI checks a uri that paths are appended to.
func checkBaseURI(uri string) string {
	names, msg := checkURI(uri)
	if msg != "" {
		return msg
	}
	if len(names) > 0 {
		return "a base URL has no {param} placeholders: the operation's path, with its parameters, is appended to it"
	}
	if strings.Contains(uri, "?") {
		return "a base URL has no query: the operation's path is appended to it"
	}
	return ""
}

// checkURIAt checks an operation's integration uri and reports problems.
func (im *importer) checkURIAt(uri, ptr string, n *node) ([]string, bool) {
	names, msg := checkURI(uri)
	if msg != "" {
		im.probs.add(ptr, n, "integration uri %q: %s", uri, msg)
		return nil, false
	}
	return names, true
}

var headerNameRe = regexp.MustCompile("^[!#$%&'*+.^_`|~0-9A-Za-z-]+$")

// framingHeaders may not be set by mappings: they would change how the
// message is delimited or routed between Portico and the backend.
var framingHeaders = map[string]bool{
	"content-length": true, "transfer-encoding": true, "connection": true, "upgrade": true,
	"keep-alive": true, "te": true, "trailer": true, "proxy-connection": true,
}

func checkHeaderName(name string) string {
	if !headerNameRe.MatchString(name) {
		return "it is not a valid header name"
	}
	l := strings.ToLower(name)
	if framingHeaders[l] {
		return "it frames the HTTP message and is set by Portico itself"
	}
	if strings.HasPrefix(l, "portico-") {
		return "Portico-* headers are reserved for Portico's own use"
	}
	return ""
}

func checkHeader(name, value string) string {
	if msg := checkHeaderName(name); msg != "" {
		return msg
	}
	if strings.ContainsAny(value, "\r\n\x00") {
		return "its value holds a line break or NUL"
	}
	return ""
}

// checkParamMapping checks one backend parameter mapping in Portico's form
// ("query.q": "request.query.search"). tmpl, when not nil, is the
// operation's template, whose parameters request.path.* must name.
func checkParamMapping(key, value string, tmpl *template) string {
	where, name, ok := strings.Cut(key, ".")
	if !ok || name == "" {
		return fmt.Sprintf("mapping key %q must be path.NAME, query.NAME or header.NAME", key)
	}
	switch where {
	case "path":
		if !validParamName(name) {
			return fmt.Sprintf("mapping key %q: %q is not a valid parameter name", key, name)
		}
	case "query":
	case "header":
		if msg := checkHeaderName(name); msg != "" {
			return fmt.Sprintf("mapping key %q: header %q cannot be mapped: %s", key, name, msg)
		}
	default:
		return fmt.Sprintf("mapping key %q must be path.NAME, query.NAME or header.NAME", key)
	}
	if len(value) >= 2 && value[0] == '\'' && value[len(value)-1] == '\'' {
		if strings.ContainsAny(value, "\r\n\x00") {
			return fmt.Sprintf("mapping %q: the literal holds a line break or NUL", key)
		}
		return ""
	}
	src, sname, ok := strings.Cut(value, ".")
	if ok && src == "stageVariables" {
		if !stageVarNameRe.MatchString(sname) {
			return fmt.Sprintf("mapping %q: stage variable name %q is not 1-64 letters, digits or '_'", key, sname)
		}
		return ""
	}
	if src == "request" {
		part, pname, ok := strings.Cut(sname, ".")
		if ok && pname != "" {
			switch part {
			case "path":
				if tmpl != nil && !tmpl.hasParam(pname) {
					return fmt.Sprintf("mapping %q takes request.path.%s, but path %s has no {%s}", key, pname, tmpl.raw, pname)
				}
				return ""
			case "query":
				return ""
			case "header":
				if !headerNameRe.MatchString(pname) {
					return fmt.Sprintf("mapping %q: %q is not a valid header name", key, pname)
				}
				return ""
			}
		}
	}
	return fmt.Sprintf("mapping %q has source %q; a source is request.path.NAME, request.query.NAME, request.header.NAME, stageVariables.NAME or a 'quoted literal'", key, value)
}

// mapping is one backend parameter mapping in Portico's form, with where
// it was written.
type mapping struct {
	key, value string
	ptr        string
	n          *node
}

// portico returns the mappings of an x-portico-integration parameters
// object.
func porticoMappings(params map[string]string, ptr string, n *node) []mapping {
	if n == nil {
		return nil
	}
	out := make([]mapping, 0, len(n.keys))
	for _, k := range n.keys {
		out = append(out, mapping{key: k, value: params[k], ptr: child(ptr, k), n: n.get(k)})
	}
	return out
}

// checkMappings checks backend parameter mappings against the operation and
// the uri's placeholders, and returns them as config.Integration.Parameters.
// at and atNode are where a placeholder nothing fills is reported.
func (im *importer) checkMappings(o *operation, list []mapping, placeholders []string, at string, atNode *node) map[string]string {
	out := make(map[string]string, len(list))
	written := make(map[string]bool) // mapped, even if wrongly: reported once
	for _, m := range list {
		written[m.key] = true
		if msg := checkParamMapping(m.key, m.value, o.tmpl); msg != "" {
			im.probs.add(m.ptr, m.n, "%s", msg)
			continue
		}
		if name, isPath := strings.CutPrefix(m.key, "path."); isPath && !slices.Contains(placeholders, name) {
			im.probs.add(m.ptr, m.n, "this mapping fills {%s}, but the integration uri has no {%s} placeholder; add it to the uri or remove the mapping", name, name)
			continue
		}
		if _, dup := out[m.key]; dup {
			im.probs.add(m.ptr, m.n, "backend parameter %s is mapped twice; keep one mapping", m.key)
			continue
		}
		out[m.key] = m.value
	}
	for _, name := range placeholders {
		if !written["path."+name] && !o.tmpl.hasParam(name) {
			im.probs.add(at, atNode, "the integration uri has {%s}, which is neither a path parameter of %s nor filled by a mapping of path %q; add the mapping or correct the placeholder", name, o.describe(), name)
		}
	}
	if len(out) == 0 {
		return nil
	}
	return out
}

var cacheKeyRe = regexp.MustCompile(`^method\.request\.(querystring|header|path)\.(.+)$`)

// cacheKeys reads cacheKeyParameters.
func (im *importer) cacheKeys(o *operation, n *node, ptr string) []string {
	if n == nil {
		return nil
	}
	if n.kind != kArray {
		im.probs.add(ptr, n, "cacheKeyParameters must be an array of strings such as \"method.request.querystring.page\"")
		return nil
	}
	var out []string
	for i, v := range n.vals {
		s, _ := v.str()
		m := cacheKeyRe.FindStringSubmatch(s)
		switch {
		case m == nil:
			im.probs.add(index(ptr, i), v, "cache key parameter %q must be method.request.querystring.NAME, method.request.header.NAME or method.request.path.NAME", v.text)
			continue
		case m[1] == "path" && !o.tmpl.hasParam(m[2]):
			im.probs.add(index(ptr, i), v, "cache key parameter %q names path parameter %q, but path %s has no {%s}", s, m[2], o.tmpl.raw, m[2])
			continue
		case m[1] == "header" && !headerNameRe.MatchString(m[2]):
			im.probs.add(index(ptr, i), v, "cache key parameter %q: %q is not a valid header name", s, m[2])
			continue
		case slices.Contains(out, s):
			im.probs.add(index(ptr, i), v, "cache key parameter %q is listed twice; list it once", s)
			continue
		}
		out = append(out, s)
	}
	return out
}
