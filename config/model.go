// Package config holds Portico's configuration model: the APIs, stages,
// deployments, custom domains and edge sites that an origin stores and that
// edges serve, the declarative file format users write, and the compiled
// snapshot that edges fetch.
//
// The model has three layers, deliberately kept apart:
//
//   - File: what a person writes (portico.yaml). It names things and points
//     at OpenAPI documents; Load reports mistakes with file, line and field.
//   - State: what the origin stores (API, Stage, Deployment, Domain). Every
//     value is plain data, serialised as JSON, so the store can persist it
//     atomically and an edge can receive it unchanged.
//   - Snapshot: what the origin compiles from State for edges. It carries
//     only what serving needs and a content-derived Version, so two origins
//     holding the same state produce the same version, and an edge can verify
//     what it received.
package config

import (
	"encoding/json"
	"time"
)

// IntegrationType names how the origin answers a route.
type IntegrationType string

const (
	// IntegrationHTTP calls an HTTP backend and passes only the mapped
	// parameters, the way API Gateway's non-proxy "http" integration does.
	IntegrationHTTP IntegrationType = "http"
	// IntegrationHTTPProxy passes the whole request through to the backend
	// and its whole response back ("http_proxy").
	IntegrationHTTPProxy IntegrationType = "http_proxy"
	// IntegrationMock answers from the configuration without a backend.
	IntegrationMock IntegrationType = "mock"
)

// EndpointType says where a custom domain is served.
type EndpointType string

const (
	// EndpointEdge domains are served by edge nodes, which forward to the origin.
	EndpointEdge EndpointType = "edge"
	// EndpointRegional domains are served by the origin gateway directly.
	EndpointRegional EndpointType = "regional"
	// EndpointPrivate domains are served by the origin only to configured networks.
	EndpointPrivate EndpointType = "private"
)

// MethodAny matches every HTTP method (API Gateway's x-amazon-apigateway-any-method).
const MethodAny = "ANY"

// API is an imported API: the routes of one OpenAPI document plus Portico's
// settings for it. An API is mutable; a Deployment freezes a copy of it.
type API struct {
	ID          string       `json:"id"`
	Name        string       `json:"name"`
	Description string       `json:"description,omitempty"`
	Version     string       `json:"version,omitempty"` // info.version of the source document
	Routes      []Route      `json:"routes"`
	Policies    []PolicySpec `json:"policies,omitempty"`
	// SourceDigest is the SHA-256 of the imported document, so that
	// re-importing an unchanged document is recognisably a no-op.
	SourceDigest string    `json:"sourceDigest,omitempty"`
	CreatedAt    time.Time `json:"createdAt"`
	UpdatedAt    time.Time `json:"updatedAt"`
}

// Route is one operation of an API: a method and a path template bound to an
// integration.
type Route struct {
	// Method is an upper-case HTTP method or MethodAny.
	Method string `json:"method"`
	// Path is an OpenAPI path template: literal segments, "{name}" segments
	// matching one segment, and a final "{name+}" matching the rest of the
	// path (API Gateway's greedy path variable).
	Path        string       `json:"path"`
	OperationID string       `json:"operationId,omitempty"`
	Integration Integration  `json:"integration"`
	Policies    []PolicySpec `json:"policies,omitempty"`
	// CacheKeyParameters names the request parameters that, besides the
	// method, host and path, make up the cache key of this route
	// ("method.request.querystring.page", "method.request.header.Accept"),
	// as API Gateway's cacheKeyParameters do.
	CacheKeyParameters []string `json:"cacheKeyParameters,omitempty"`
	// EarlyData lets the route accept TLS 1.3 / QUIC 0-RTT requests on
	// edges that allow them (--allow-0rtt). Early data can be replayed,
	// so only safe methods may set it.
	EarlyData bool `json:"earlyData,omitempty"`
	// Pointer is the JSON pointer of the operation in the source document,
	// kept so that errors found later (at deploy or serve time) can still
	// name the place the user must edit.
	Pointer string `json:"pointer,omitempty"`
}

// Key identifies a route within its API: "GET /pets/{petId}".
func (r *Route) Key() string { return r.Method + " " + r.Path }

// Integration says how the origin answers a route.
type Integration struct {
	Type IntegrationType `json:"type"`
	// Method is the method used toward the backend; empty means the
	// client's method.
	Method string `json:"method,omitempty"`
	// URI is the backend URL. It may contain ${stageVariables.name} and
	// {param} placeholders that are substituted per request.
	URI string `json:"uri,omitempty"`
	// Timeout bounds the whole backend exchange; zero means the default.
	Timeout Duration `json:"timeout,omitempty"`
	// Parameters maps backend request parameters to their sources. Keys are
	// "path.NAME", "query.NAME" or "header.NAME"; values are
	// "request.path.NAME", "request.query.NAME", "request.header.NAME",
	// "stageVariables.NAME", or a 'quoted literal'.
	Parameters map[string]string `json:"parameters,omitempty"`
	// Mock is the canned response of a mock integration.
	Mock *MockResponse `json:"mock,omitempty"`
	// Responses maps backend status codes to what the client gets (API
	// Gateway's integration responses) for the "http" type. Empty means the
	// backend's response passes through unchanged.
	Responses []IntegrationResponse `json:"responses,omitempty"`
}

// IntegrationResponse maps backend responses whose status code matches
// Pattern to a client response.
type IntegrationResponse struct {
	// Pattern is a regular expression matched against the whole backend
	// status code ("2\\d{2}"); empty is the default, used when no other
	// pattern matches.
	Pattern string `json:"pattern,omitempty"`
	// Status is the status code the client gets; zero keeps the backend's.
	Status int `json:"status,omitempty"`
	// Headers sets response headers: values are 'quoted literals' or
	// "integration.response.header.NAME".
	Headers map[string]string `json:"headers,omitempty"`
}

// MockResponse is the response a mock integration returns.
type MockResponse struct {
	Status  int               `json:"status"`
	Headers map[string]string `json:"headers,omitempty"`
	Body    string            `json:"body,omitempty"`
}

// PolicySpec attaches a policy (API key, throttle, authorizer, cache, ...) to
// an API, stage or route. Config is interpreted by the policy named by Type;
// the config package only carries it.
type PolicySpec struct {
	Type   string          `json:"type"`
	Config json.RawMessage `json:"config,omitempty"`
}

// Stage is a named environment of an API (dev, test, prod) that points at one
// deployment and carries stage variables.
type Stage struct {
	APIID        string            `json:"apiId"`
	Name         string            `json:"name"`
	Description  string            `json:"description,omitempty"`
	Variables    map[string]string `json:"variables,omitempty"`
	DeploymentID string            `json:"deploymentId,omitempty"`
	Policies     []PolicySpec      `json:"policies,omitempty"`
	CreatedAt    time.Time         `json:"createdAt"`
	UpdatedAt    time.Time         `json:"updatedAt"`
}

// Deployment is an immutable snapshot of an API's routes and policies. Stages
// point at deployments; rolling back is pointing a stage at an earlier one.
type Deployment struct {
	ID          string    `json:"id"`
	APIID       string    `json:"apiId"`
	Description string    `json:"description,omitempty"`
	CreatedAt   time.Time `json:"createdAt"`
	// API is the frozen copy of the API at deploy time.
	API API `json:"api"`
}

// Domain is a custom domain name with its endpoint type and base path mappings.
type Domain struct {
	Name         string             `json:"name"`
	EndpointType EndpointType       `json:"endpointType"`
	Mappings     []BasePathMapping  `json:"mappings,omitempty"`
	Certificate  *CertificateSource `json:"certificate,omitempty"`
	// PlainHTTP says what plain-HTTP requests for this domain get:
	// "redirect" (the default: 308 to https) or "serve".
	PlainHTTP string `json:"plainHttp,omitempty"`
	// AllowedNetworks restricts a private endpoint to these CIDRs.
	AllowedNetworks []string  `json:"allowedNetworks,omitempty"`
	CreatedAt       time.Time `json:"createdAt"`
	UpdatedAt       time.Time `json:"updatedAt"`
}

// Plain-HTTP behaviours of a domain.
const (
	PlainHTTPRedirect = "redirect"
	PlainHTTPServe    = "serve"
)

// BasePathMapping sends requests under BasePath of a domain to a stage of an
// API. An empty BasePath is the domain's root (API Gateway's "(none)").
type BasePathMapping struct {
	BasePath string `json:"basePath"`
	APIID    string `json:"apiId"`
	Stage    string `json:"stage"`
}

// CertificateSource says where a domain's certificate comes from. Files are
// read by the node that serves the domain; "managed" means ACME issuance.
type CertificateSource struct {
	CertFile string `json:"certFile,omitempty"`
	KeyFile  string `json:"keyFile,omitempty"`
	Managed  bool   `json:"managed,omitempty"`
}

// EdgeSite is one place where an edge node runs.
type EdgeSite struct {
	Name      string   `json:"name"`
	Region    string   `json:"region,omitempty"`
	Addresses []string `json:"addresses,omitempty"`
}

// Duration is a time.Duration that reads and writes as a Go duration string
// ("5s", "250ms") in JSON and YAML, because a bare number of nanoseconds is
// an easy mistake to make in a config file.
type Duration time.Duration

// MarshalJSON writes the duration as a string such as "5s".
func (d Duration) MarshalJSON() ([]byte, error) {
	return json.Marshal(time.Duration(d).String())
}

// UnmarshalJSON reads "5s"-style strings and, for compatibility with API
// Gateway exports that use timeoutInMillis, plain numbers of milliseconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			return err
		}
		*d = Duration(v)
		return nil
	}
	var ms int64
	if err := json.Unmarshal(b, &ms); err != nil {
		return err
	}
	*d = Duration(time.Duration(ms) * time.Millisecond)
	return nil
}

// Std returns the duration as a time.Duration.
func (d Duration) Std() time.Duration { return time.Duration(d) }
