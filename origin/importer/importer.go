// Package importer turns an OpenAPI 3.0, OpenAPI 3.1 or Swagger 2.0
// document into a Portico API: one route per operation, each with its
// integration (from x-portico-integration or API Gateway's
// x-amazon-apigateway-integration), the policies its security requirements
// call for, and the JSON pointer of the operation in the document.
//
// The importer fails closed. Whatever the document asks for that Portico
// cannot honour (an authorizer it does not run, a mapping template it does
// not execute, alternatives between security schemes) is an error at the
// place it is written, never silently dropped. Every problem found is
// returned at once, each as an *Error with a JSON pointer.
//
// Documents are untrusted input: the importer never fetches a reference,
// bounds the size, depth and number of operations of a document, refuses
// schemas that would send a validator into endless recursion, and turns a
// panic in the OpenAPI library into an error. README.md beside this file is
// the manual.
package importer

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"regexp"
	"slices"
	"strings"

	"github.com/portico-edge/portico/config"
)

// DefaultMaxDocumentBytes bounds the size of a document when
// Options.MaxDocumentBytes is zero.
const DefaultMaxDocumentBytes = 16 << 20

// MaxOperations bounds the operations of one document.
const MaxOperations = 10_000

// Base path handling (Options.BasePath), as API Gateway's basepath import
// parameter.
const (
	// BasePathIgnore imports paths as written (the default).
	BasePathIgnore = "ignore"
	// BasePathPrepend puts the document's base path (Swagger basePath, or
	// the path of the OpenAPI 3 server URL) in front of every path.
	BasePathPrepend = "prepend"
)

// Formats a document can have (Result.Format).
const (
	FormatOpenAPI30 = "openapi-3.0"
	FormatOpenAPI31 = "openapi-3.1"
	FormatSwagger20 = "swagger-2.0"
)

// Options are the caller's choices for one import.
type Options struct {
	// MaxDocumentBytes bounds the document size; 0 means
	// DefaultMaxDocumentBytes.
	MaxDocumentBytes int
	// Name is the API's name. Empty means a name derived from info.title.
	Name string
	// DefaultBackend, when set, is the backend of operations that have no
	// integration: they get an http_proxy integration to DefaultBackend
	// followed by the operation's path, so a plain public document can be
	// served as it is.
	DefaultBackend string
	// IgnoreSecurity imports the document without turning its security
	// requirements into policies. The caller must record that it was asked,
	// because the routes are then unprotected until policies are attached.
	IgnoreSecurity bool
	// BasePath is BasePathIgnore (the default when empty) or
	// BasePathPrepend.
	BasePath string
}

// Result is an imported API.
type Result struct {
	// API has Name, Description, Version, Routes (sorted by path, then
	// method) and SourceDigest set; ID and timestamps are the caller's.
	API config.API
	// Format is FormatOpenAPI30, FormatOpenAPI31 or FormatSwagger20.
	Format string
}

// Import reads a document (JSON or YAML) and returns the API it describes.
// On failure the error joins one *Error per problem found, sorted by
// pointer; Problems returns them as a slice.
func Import(ctx context.Context, doc []byte, opts Options) (res *Result, err error) {
	defer func() {
		// The OpenAPI library, and this package, must never take the
		// origin down with them: a panic on a hostile document is a
		// refused document.
		if r := recover(); r != nil {
			res = nil
			// The stack stays out of the message, which reaches API
			// clients; the document reproduces the failure.
			err = errors.Join(&Error{Message: fmt.Sprintf("the importer failed on this document (%v); this is a bug in Portico, please report it with the document", r)})
		}
	}()
	probs := &problems{}
	checkOptions(&opts, probs)
	if len(doc) > opts.MaxDocumentBytes {
		probs.add("", nil, "the document is %d bytes; the limit is %d bytes: split the API, or raise the limit if the document is trusted", len(doc), opts.MaxDocumentBytes)
	}
	if !probs.empty() {
		return nil, probs.err()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	root, perr := parseDocument(doc)
	if perr != nil {
		msg := perr.msg
		if perr.line > 0 && !strings.Contains(msg, "line ") {
			msg = fmt.Sprintf("line %d: %s", perr.line, msg)
		}
		probs.list = append(probs.list, &Error{Message: msg, Line: perr.line})
		return nil, probs.err()
	}
	format, ok := detectFormat(root, probs)
	if !ok {
		return nil, probs.err()
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	sc := scan(root, format == FormatSwagger20, probs)
	im := &importer{
		ctx:      ctx,
		opts:     opts,
		root:     root,
		format:   format,
		swagger:  format == FormatSwagger20,
		probs:    probs,
		sc:       sc,
		consumed: make(map[string]bool),
	}
	api := im.build()
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	if !sc.badRefs && !sc.cycles && !im.tooBig {
		kin := &problems{}
		if err := validateWithKin(ctx, root, format, kin); err != nil {
			return nil, err
		}
		probs.merge(kin)
	}
	if !probs.empty() {
		return nil, probs.err()
	}
	sum := sha256.Sum256(doc)
	api.SourceDigest = hex.EncodeToString(sum[:])
	return &Result{API: *api, Format: format}, nil
}

func checkOptions(opts *Options, probs *problems) {
	if opts.MaxDocumentBytes <= 0 {
		opts.MaxDocumentBytes = DefaultMaxDocumentBytes
	}
	switch opts.BasePath {
	case "":
		opts.BasePath = BasePathIgnore
	case BasePathIgnore, BasePathPrepend:
	default:
		probs.add("", nil, "import option BasePath is %q; use %q (paths as written) or %q (the document's base path in front of every path)", opts.BasePath, BasePathIgnore, BasePathPrepend)
	}
	if opts.Name != "" {
		if err := config.CheckAPIName(opts.Name); err != nil {
			probs.add("", nil, "import option Name: %v", err)
		}
	}
	if opts.DefaultBackend != "" {
		if msg := checkBaseURI(opts.DefaultBackend); msg != "" {
			probs.add("", nil, "import option DefaultBackend %q: %s", opts.DefaultBackend, msg)
		}
	}
}

var (
	openapi30Re = regexp.MustCompile(`^3\.0\.\d+$`)
	openapi31Re = regexp.MustCompile(`^3\.1\.\d+$`)
)

func detectFormat(root *node, probs *problems) (string, bool) {
	if root.kind != kObject {
		probs.add("", root, "the document is %s, not an object; an OpenAPI document is an object starting with \"openapi: 3.x.y\" or \"swagger: '2.0'\"", root.kind)
		return "", false
	}
	// A version written as a bare YAML number (swagger: 2.0, version: 1.10)
	// is read as the text it was written as.
	for _, v := range []*node{root.get("openapi"), root.get("swagger"), root.get("info").get("version")} {
		if v != nil && v.kind == kNumber {
			v.kind = kString
		}
	}
	oa, sw := root.get("openapi"), root.get("swagger")
	switch {
	case oa != nil && sw != nil:
		probs.add("", root, "the document has both an \"openapi\" and a \"swagger\" field; keep the one that matches its content")
	case sw != nil:
		v, _ := sw.str()
		if v == "2.0" {
			return FormatSwagger20, true
		}
		probs.add("/swagger", sw, "swagger version %q is not supported; Swagger documents must say swagger: \"2.0\"", sw.text)
	case oa != nil:
		v, _ := oa.str()
		switch {
		case openapi30Re.MatchString(v):
			return FormatOpenAPI30, true
		case openapi31Re.MatchString(v):
			return FormatOpenAPI31, true
		case strings.HasPrefix(v, "3.2"):
			probs.add("/openapi", oa, "OpenAPI %s is not supported yet; Portico imports OpenAPI 3.0.x, 3.1.x and Swagger 2.0: if the document uses no 3.2 feature, declare it as openapi: 3.1.1", v)
		default:
			probs.add("/openapi", oa, "OpenAPI version %q is not supported; Portico imports OpenAPI 3.0.x, 3.1.x (for example \"3.0.3\") and Swagger \"2.0\"", oa.text)
		}
	default:
		probs.add("", root, "this is not an OpenAPI or Swagger document: it has neither an \"openapi\" nor a \"swagger\" field")
	}
	return "", false
}

// importer holds the state of one import.
type importer struct {
	ctx      context.Context
	opts     Options
	root     *node
	format   string
	swagger  bool
	probs    *problems
	sc       *scanner
	consumed map[string]bool // pointers of extensions that were read

	basePrefix string          // route prefix from BasePathPrepend
	docDefault *docIntegration // document-level x-portico-integration
	security   *securityReader
	// tooBig says the document exceeded a bound: nothing more is done
	// with it.
	tooBig bool
}

func (im *importer) build() *config.API {
	api := &config.API{}
	info := im.root.get("info")
	if info != nil && info.kind != kObject {
		im.probs.add("/info", info, "info is %s; it must be an object with at least title and version", info.kind)
		info = nil
	}
	title, _ := info.get("title").str()
	api.Description, _ = info.get("description").str()
	if v := info.get("version"); v != nil && (v.kind == kString || v.kind == kNumber) {
		api.Version = v.text
	}
	api.Name = im.opts.Name
	if api.Name == "" {
		api.Name = slugName(title)
	}
	if im.opts.BasePath == BasePathPrepend {
		im.basePrefix = im.basePathPrefix()
	}
	im.docDefault = im.readDocIntegration()
	im.security = newSecurityReader(im)
	api.Routes = im.routes()
	im.security.finish()
	im.reportUnconsumed()
	slices.SortFunc(api.Routes, func(a, b config.Route) int {
		if c := strings.Compare(a.Path, b.Path); c != 0 {
			return c
		}
		return strings.Compare(a.Method, b.Method)
	})
	return api
}

// reportUnconsumed refuses every API Gateway or Portico extension that
// nothing read: each one asks for behaviour Portico would otherwise silently
// not have.
func (im *importer) reportUnconsumed() {
	for _, e := range im.sc.exts {
		if im.consumed[e.ptr] {
			continue
		}
		if strings.HasPrefix(e.name, "x-portico-") {
			switch e.name {
			case "x-portico-integration":
				im.probs.add(e.ptr, e.n, "x-portico-integration is read only on operations under /paths and at the document root; move it there or remove it")
			case "x-portico-jwt":
				im.probs.add(e.ptr, e.n, "x-portico-jwt is read only on security schemes (components/securitySchemes or securityDefinitions) of type oauth2, openIdConnect or http bearer; move it there or remove it")
			case "x-portico-early-data":
				im.probs.add(e.ptr, e.n, "x-portico-early-data is read only on operations under /paths; move it there or remove it")
			default:
				im.probs.add(e.ptr, e.n, "%s is not a Portico extension (Portico reads x-portico-integration on operations and the document root, x-portico-early-data on operations, and x-portico-jwt on security schemes); correct the name or remove it", e.name)
			}
			continue
		}
		hint := awsExtensionHints[e.name]
		if hint == "" {
			hint = "Portico does not implement it"
		}
		im.probs.add(e.ptr, e.n, "API Gateway extension %s is not supported (%s); it can be removed, but check first that the API does not rely on what it did", e.name, hint)
	}
}

var awsExtensionHints = map[string]string{
	"x-amazon-apigateway-integration":                  "it is read only on operations under /paths",
	"x-amazon-apigateway-any-method":                   "it is read only as an operation of a path item under /paths",
	"x-amazon-apigateway-authtype":                     "it is read only on security schemes",
	"x-amazon-apigateway-authorizer":                   "Lambda and Cognito authorizers are not run by Portico; to check JWTs, describe the issuer with x-portico-jwt on the security scheme",
	"x-amazon-apigateway-gateway-responses":            "Portico answers its own errors with its own JSON bodies",
	"x-amazon-apigateway-request-validators":           "Portico does not validate requests against the document",
	"x-amazon-apigateway-request-validator":            "Portico does not validate requests against the document",
	"x-amazon-apigateway-policy":                       "IAM resource policies do not exist in Portico; restrict access with policies such as API keys or JWT, or with a private endpoint's allowed networks",
	"x-amazon-apigateway-binary-media-types":           "Portico passes bodies through unchanged and has no binary media type setting",
	"x-amazon-apigateway-api-key-source":               "Portico reads API keys where the apiKey security scheme says",
	"x-amazon-apigateway-minimum-compression-size":     "Portico has no payload compression setting",
	"x-amazon-apigateway-endpoint-configuration":       "the endpoint type is set on the custom domain in Portico",
	"x-amazon-apigateway-documentation":                "documentation parts are API Gateway's own",
	"x-amazon-apigateway-importexport-version":         "it only labels API Gateway's export format",
	"x-amazon-apigateway-cors":                         "it belongs to API Gateway HTTP APIs; answer OPTIONS with an operation or a CORS policy",
	"x-amazon-apigateway-request-parameters":           "it belongs to API Gateway HTTP APIs",
	"x-amazon-apigateway-tag-value":                    "tags are API Gateway's own",
	"x-amazon-apigateway-auth":                         "IAM authorization is not run by Portico",
	"x-amazon-apigateway-integrations":                 "it belongs to API Gateway HTTP APIs",
	"x-amazon-apigateway-endpoint-access-mode":         "the endpoint type is set on the custom domain in Portico",
	"x-amazon-apigateway-security-policy":              "TLS settings are the edge's in Portico",
	"x-amazon-apigateway-disable-execute-api-endpoint": "Portico serves APIs only through its own domains",
}

// basePathPrefix returns the route prefix that BasePathPrepend asks for:
// Swagger's basePath, or the path of the OpenAPI 3 servers' URL.
func (im *importer) basePathPrefix() string {
	var raw, ptr string
	var at *node
	if im.swagger {
		bp := im.root.get("basePath")
		if bp == nil {
			return ""
		}
		raw, _ = bp.str()
		ptr, at = "/basePath", bp
	} else {
		servers := im.root.get("servers")
		if servers == nil || servers.kind != kArray || len(servers.vals) == 0 {
			return ""
		}
		for i, s := range servers.vals {
			p, msg := serverPath(s)
			if msg != "" {
				im.probs.add(index("/servers", i), s, "%s", msg)
				return ""
			}
			if i == 0 {
				raw, ptr, at = p, index("/servers", 0)+"/url", s
				continue
			}
			a, errA := config.NormalizeBasePath(raw)
			b, errB := config.NormalizeBasePath(p)
			if errA == nil && errB == nil && a != b {
				im.probs.add(index("/servers", i)+"/url", s, "BasePath prepend needs one base path, but the servers' URLs have different paths (%q and %q); keep servers whose URLs share a path, or import with BasePath ignore", raw, p)
				return ""
			}
		}
	}
	norm, err := config.NormalizeBasePath(raw)
	if err != nil {
		im.probs.add(ptr, at, "cannot prepend the base path: %v", err)
		return ""
	}
	if norm == "" {
		return ""
	}
	return "/" + norm
}

var serverVarRe = regexp.MustCompile(`\{([^{}]*)\}`)

// serverPath returns the path of an OpenAPI 3 server URL, with server
// variables replaced by their defaults.
func serverPath(s *node) (string, string) {
	u, ok := s.get("url").str()
	if !ok {
		return "", "a server must have a url string"
	}
	vars := s.get("variables")
	var missing string
	u = serverVarRe.ReplaceAllStringFunc(u, func(m string) string {
		name := m[1 : len(m)-1]
		d, ok := vars.get(name).get("default").str()
		if !ok {
			missing = name
		}
		return d
	})
	if missing != "" {
		return "", fmt.Sprintf("server URL variable {%s} has no default in variables; add one", missing)
	}
	if i := strings.Index(u, "://"); i >= 0 {
		rest := u[i+3:]
		j := strings.IndexByte(rest, '/')
		if j < 0 {
			return "", ""
		}
		u = rest[j:]
	}
	if i := strings.IndexAny(u, "?#"); i >= 0 {
		u = u[:i]
	}
	return u, ""
}
