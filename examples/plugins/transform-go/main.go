//go:build wasip1

// Request/response transform for Portico, in standard Go: renames top-level
// JSON fields in both bodies and sets or removes headers.
//
// Plugin config (JSON):
//
//	{"requestRename": {"userName": "user_name"},
//	 "responseRename": {"user_name": "userName"},
//	 "requestHeaders": {"x-transformed": "yes"},
//	 "responseHeaders": {"x-transformed": "yes"},
//	 "removeResponseHeaders": ["x-internal"]}
package main

import (
	"encoding/json"
	"strings"

	proxywasm "github.com/portico-edge/portico/sdk/go"
)

type config struct {
	RequestRename         map[string]string `json:"requestRename"`
	ResponseRename        map[string]string `json:"responseRename"`
	RequestHeaders        map[string]string `json:"requestHeaders"`
	ResponseHeaders       map[string]string `json:"responseHeaders"`
	RemoveResponseHeaders []string          `json:"removeResponseHeaders"`
}

type root struct {
	proxywasm.DefaultRootContext
	cfg config
}

func (r *root) OnConfigure(b []byte) bool {
	dec := json.NewDecoder(strings.NewReader(string(b)))
	dec.DisallowUnknownFields()
	if err := dec.Decode(&r.cfg); err != nil {
		proxywasm.Logf(proxywasm.LogError, "transform-go: bad config: %v", err)
		return false
	}
	return true
}

func (r *root) NewHTTPContext(uint32) proxywasm.HTTPContext { return &stream{cfg: &r.cfg} }

type stream struct {
	proxywasm.DefaultHTTPContext
	cfg *config
}

// rename renames top-level fields of a JSON object; anything else passes
// through unchanged.
func rename(body []byte, names map[string]string) ([]byte, bool) {
	if len(names) == 0 {
		return nil, false
	}
	var obj map[string]json.RawMessage
	if json.Unmarshal(body, &obj) != nil {
		return nil, false
	}
	changed := false
	for from, to := range names {
		if v, ok := obj[from]; ok {
			delete(obj, from)
			obj[to] = v
			changed = true
		}
	}
	if !changed {
		return nil, false
	}
	out, err := json.Marshal(obj)
	return out, err == nil
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	for k, v := range s.cfg.RequestHeaders {
		_ = proxywasm.SetRequestHeader(k, v)
	}
	return proxywasm.Continue
}

func (s *stream) OnRequestBody(size int, eos bool) proxywasm.Action {
	if !eos {
		return proxywasm.Pause // wait for the whole body
	}
	if out, ok := rename(proxywasm.RequestBody(0, size), s.cfg.RequestRename); ok {
		_ = proxywasm.ReplaceRequestBody(out)
	}
	return proxywasm.Continue
}

func (s *stream) OnResponseHeaders(int, bool) proxywasm.Action {
	for k, v := range s.cfg.ResponseHeaders {
		_ = proxywasm.SetResponseHeader(k, v)
	}
	for _, k := range s.cfg.RemoveResponseHeaders {
		_ = proxywasm.RemoveResponseHeader(k)
	}
	return proxywasm.Continue
}

func (s *stream) OnResponseBody(size int, eos bool) proxywasm.Action {
	if !eos {
		return proxywasm.Pause
	}
	if out, ok := rename(proxywasm.ResponseBody(0, size), s.cfg.ResponseRename); ok {
		_ = proxywasm.ReplaceResponseBody(out)
	}
	return proxywasm.Continue
}

func init() {
	proxywasm.SetNewRootContext(func(uint32) proxywasm.RootContext { return &root{} })
}

func main() {}
