//go:build wasip1

// Package authorizer is the common case of a Portico WASM authorizer in one
// function: look at the request, allow it (naming the caller and adding
// headers for the backend) or deny it with a status and a message.
//
//	func init() {
//		authorizer.Register(parseConfig, func(r authorizer.Request) authorizer.Decision {
//			if r.Header("authorization") == "Bearer "+token {
//				return authorizer.Allow("alice", proxywasm.Header{"x-portico-user", "alice"})
//			}
//			return authorizer.Deny(401, "Unauthorized")
//		})
//	}
package authorizer

import (
	"encoding/json"

	proxywasm "github.com/portico-edge/portico/sdk/go"
)

// Request is the request being authorized.
type Request struct{}

// Header returns a request header value ("" when absent); names are lower
// case.
func (Request) Header(name string) string {
	v, _ := proxywasm.RequestHeader(name)
	return v
}

// Method and Path return ":method" and ":path" (path and query).
func (r Request) Method() string { return r.Header(":method") }
func (r Request) Path() string   { return r.Header(":path") }

// Decision is an authorizer's answer.
type Decision struct {
	allow     bool
	principal string
	headers   []proxywasm.Header
	status    int
	message   string
}

// Allow lets the request through as principal, adding headers that the
// backend receives (and that clients can never forge).
func Allow(principal string, headers ...proxywasm.Header) Decision {
	return Decision{allow: true, principal: principal, headers: headers}
}

// Deny answers with status and a JSON body {"message": message}.
func Deny(status int, message string) Decision {
	return Decision{status: status, message: message}
}

type root struct {
	proxywasm.DefaultRootContext
	configure func([]byte) error
	authorize func(Request) Decision
}

func (r *root) OnConfigure(config []byte) bool {
	if r.configure == nil {
		return true
	}
	if err := r.configure(config); err != nil {
		proxywasm.Logf(proxywasm.LogError, "authorizer configuration: %v", err)
		return false
	}
	return true
}

func (r *root) NewHTTPContext(uint32) proxywasm.HTTPContext { return &stream{root: r} }

type stream struct {
	proxywasm.DefaultHTTPContext
	root *root
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	d := s.root.authorize(Request{})
	if !d.allow {
		body, _ := json.Marshal(map[string]string{"message": d.message})
		_ = proxywasm.SendLocalResponse(d.status, []proxywasm.Header{{Name: "content-type", Value: "application/json"}}, body)
		return proxywasm.Pause
	}
	for _, h := range d.headers {
		_ = proxywasm.SetRequestHeader(h.Name, h.Value)
	}
	if d.principal != "" {
		_ = proxywasm.SetProperty("portico.principal", []byte(d.principal))
	}
	return proxywasm.Continue
}

// Register installs the authorizer. configure gets the plugin config (nil
// configure accepts any); authorize runs for every request.
func Register(configure func(config []byte) error, authorize func(Request) Decision) {
	r := &root{configure: configure, authorize: authorize}
	proxywasm.SetNewRootContext(func(uint32) proxywasm.RootContext { return r })
}
