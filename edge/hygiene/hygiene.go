// Package hygiene is what the edge does to every request before routing:
// it rejects requests whose framing, target, host or headers could be read
// one way here and another way by the origin or a backend, and it turns the
// rest into one canonical form (host, path) that routing, every policy, the
// cache key and the forwarder all use. README.md lists each rule, why it
// exists and the status it answers with.
//
// The edge (package edge, served through edge/listen) follows README.md's
// order: the framing guard on every HTTP/1 connection, then Check,
// the client address, Sanitize and WrapBody; the forwarder adds the
// gateway's headers only after the client's were cleaned, and maps body
// errors with BodyError.
package hygiene

import (
	"net/http"
	"strconv"

	"github.com/portico-edge/portico/plugins"
)

// Default limits, used for any Limits field left at zero.
const (
	DefaultMaxHeaderBytes = 32 << 10
	DefaultMaxHeaderCount = 100
	DefaultMaxBodyBytes   = 10 << 20
	DefaultMaxURIBytes    = 8 << 10
)

// Limits bound the size of a request. A field at zero (or below) takes its
// default.
type Limits struct {
	// MaxHeaderBytes bounds the header fields, counted as
	// len(name)+len(value)+4 per field line plus the host: 431 above it.
	MaxHeaderBytes int
	// MaxHeaderCount bounds the number of header field lines, the host
	// included: 431 above it.
	MaxHeaderCount int
	// MaxBodyBytes bounds the body: a Content-Length above it is refused
	// up front with 413; a body without one is cut there by Body.
	MaxBodyBytes int64
	// MaxURIBytes bounds the request target as sent: 414 above it.
	MaxURIBytes int
}

func (l Limits) withDefaults() Limits {
	if l.MaxHeaderBytes <= 0 {
		l.MaxHeaderBytes = DefaultMaxHeaderBytes
	}
	if l.MaxHeaderCount <= 0 {
		l.MaxHeaderCount = DefaultMaxHeaderCount
	}
	if l.MaxBodyBytes <= 0 {
		l.MaxBodyBytes = DefaultMaxBodyBytes
	}
	if l.MaxURIBytes <= 0 {
		l.MaxURIBytes = DefaultMaxURIBytes
	}
	return l
}

// Request is the canonical form of a request that passed Check. Routing,
// policies, the cache key and the forwarder use these fields and never the
// raw ones.
type Request struct {
	// Host is lower-case, without port and without a trailing dot; an IPv6
	// literal is written without brackets. It comes from the absolute-form
	// target when there is one, else from the Host header (HTTP/1) or
	// :authority (HTTP/2, HTTP/3).
	Host string
	// Path is the normalised path, fully percent-decoded: what routes and
	// path-based policies match. Decoding cannot create a separator,
	// because an encoded '/' or '\' is refused.
	Path string
	// EscapedPath is the same path as sent on: unreserved characters
	// decoded, every other escape kept with upper-case hex, characters
	// that may not appear raw escaped. Use it for the outbound URL and in
	// cache keys.
	EscapedPath string
	// RawQuery is the query exactly as the client sent it, validated.
	RawQuery string
	// WebSocket reports a valid HTTP/1.1 WebSocket upgrade (see
	// IsWebSocketUpgrade). Sanitize removes Upgrade and Connection, so the
	// edge decides on this field, not on the headers.
	WebSocket bool
	// Close asks the edge to close the HTTP/1 connection after the
	// response (set "Connection: close"): the request's framing could not
	// be verified, see Listener.
	Close bool
}

// Error is a rejected request: the status and message to answer with, and
// whether the connection must be closed after the response because its
// framing can no longer be trusted. Close is only ever set for HTTP/1.x.
type Error struct {
	Status  int
	Message string
	Close   bool
}

func (e *Error) Error() string {
	return "request rejected with " + strconv.Itoa(e.Status) + ": " + e.Message
}

// Write answers with the Portico JSON error, and with "Connection: close"
// when the connection must not be reused.
func (e *Error) Write(w http.ResponseWriter) {
	if e.Close {
		w.Header().Set("Connection", "close")
	}
	plugins.WriteError(w, e.Status, e.Message)
}

func reject(status int, msg string) *Error { return &Error{Status: status, Message: msg} }

// rejectClose is for framing errors on HTTP/1: whatever follows on the
// connection cannot be trusted to start a new request.
func rejectClose(status int, msg string) *Error {
	return &Error{Status: status, Message: msg, Close: true}
}

// Check validates r and returns its canonical form, or the error to answer
// with. It runs before routing, for every request and protocol.
//
// On success Check also rewrites r.URL.Path, r.URL.RawPath and r.Host to
// the canonical values, so that code reading r directly (and the outbound
// copy ReverseProxy makes of it) sees what routing saw; r.RequestURI keeps
// what the client sent, for logs.
//
// Check allocates nothing for a clean request; it does not read the body
// and does not touch the headers (see Sanitize).
func Check(r *http.Request, lim Limits) (Request, *Error) {
	lim = lim.withDefaults()
	req, err := check(r, lim)
	if err != nil {
		if r.ProtoMajor != 1 {
			// HTTP/2 and HTTP/3 frame each stream on its own: one bad
			// request never taints the connection, and "Connection"
			// would make Go's HTTP/2 server shut the whole connection.
			err.Close = false
		}
		return Request{}, err
	}
	r.Host = req.Host
	r.URL.Path = req.Path
	// Always set RawPath: Go's URL.EscapedPath then returns exactly our
	// form instead of re-escaping Path its own way (it would, for
	// example, escape '!' and '('). With no escapes it costs nothing.
	r.URL.RawPath = req.EscapedPath
	return req, nil
}

func check(r *http.Request, lim Limits) (Request, *Error) {
	var req Request

	switch {
	case r.ProtoMajor == 1 && (r.ProtoMinor == 0 || r.ProtoMinor == 1):
	case r.ProtoMajor == 2 && r.ProtoMinor == 0:
	case r.ProtoMajor == 3 && r.ProtoMinor == 0:
	default:
		return req, rejectClose(http.StatusHTTPVersionNotSupported, "the HTTP version is not supported; use HTTP/1.1, HTTP/2 or HTTP/3")
	}

	if r.ProtoMajor == 1 {
		mustClose, err := checkFraming(r)
		if err != nil {
			return req, err
		}
		req.Close = mustClose
	}

	switch r.Method {
	case http.MethodGet, http.MethodHead, http.MethodPost, http.MethodPut,
		http.MethodDelete, http.MethodOptions, http.MethodPatch:
	default:
		// 501, not 405: 405 is about one resource and must list what it
		// allows, which only the router knows. CONNECT and TRACE are
		// known methods the gateway never implements (TRACE would echo
		// credentials back, CONNECT would open a tunnel).
		return req, reject(http.StatusNotImplemented, "the request method is not supported; use GET, HEAD, POST, PUT, PATCH, DELETE or OPTIONS")
	}

	if err := checkHeaders(r, lim); err != nil {
		return req, err
	}

	target := r.RequestURI
	if target == "" {
		// A request built in-process rather than read by a server.
		target = r.URL.RequestURI()
	}
	if len(target) > lim.MaxURIBytes {
		return req, reject(http.StatusRequestURITooLong, "the request URI is longer than "+strconv.Itoa(lim.MaxURIBytes)+" bytes")
	}

	if r.ContentLength > lim.MaxBodyBytes {
		return req, rejectClose(http.StatusRequestEntityTooLarge, "the request body is larger than "+strconv.FormatInt(lim.MaxBodyBytes, 10)+" bytes")
	}

	host, err := canonicalHost(r)
	if err != nil {
		return req, err
	}
	req.Host = host

	rawPath, rawQuery, err := splitTarget(r, target)
	if err != nil {
		return req, err
	}
	if err := checkQuery(rawQuery); err != nil {
		return req, err
	}
	req.RawQuery = rawQuery
	req.Path, req.EscapedPath, err = normalizePath(rawPath)
	if err != nil {
		return req, err
	}
	req.WebSocket = IsWebSocketUpgrade(r)
	return req, nil
}

// splitTarget returns the raw path and query of an origin-form or
// absolute-form request target.
func splitTarget(r *http.Request, target string) (path, query string, err *Error) {
	if target[0] != '/' {
		if target == "*" {
			return "", "", reject(http.StatusBadRequest, "the request target * is not supported; send a path")
		}
		// Absolute form (RFC 9112 3.2.2). Go has already taken the host
		// from it into r.Host; check what Go let through.
		if r.URL.User != nil {
			return "", "", reject(http.StatusBadRequest, "the request target must not hold user information")
		}
		scheme := r.URL.Scheme
		if !equalFold(scheme, "http") && !equalFold(scheme, "https") {
			return "", "", reject(http.StatusBadRequest, "the request target must be a path or an http or https URL")
		}
		if r.URL.Host == "" {
			return "", "", reject(http.StatusBadRequest, "the request target URL has no host")
		}
		rest := target[len(scheme):]
		if len(rest) < 3 || rest[:3] != "://" {
			return "", "", reject(http.StatusBadRequest, "the request target must be a path or an http or https URL")
		}
		rest = rest[3:]
		i := 0
		for i < len(rest) && rest[i] != '/' && rest[i] != '?' && rest[i] != '#' {
			i++
		}
		target = rest[i:]
		if target == "" || target[0] != '/' {
			target = "/" + target // allocates; absolute form is rare
		}
	}
	for i := 0; i < len(target); i++ {
		if target[i] == '?' {
			return target[:i], target[i+1:], nil
		}
	}
	return target, "", nil
}

func equalFold(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if lower(a[i]) != lower(b[i]) {
			return false
		}
	}
	return true
}

func lower(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}
