//go:build wasip1

// Token-introspection authorizer for Portico, in standard Go: it checks each
// bearer token with an introspection endpoint (RFC 7662 style) through
// proxy_http_call, holding the request until the answer comes.
//
// Plugin config (JSON): {"upstream": "introspect", "path": "/introspect"}.
// The upstream must be named in the policy's "upstreams". The endpoint gets
// "token=TOKEN" as a form POST and answers {"active": true, "sub": "alice"}.
package main

import (
	"encoding/json"
	"net/url"
	"strings"

	proxywasm "github.com/portico-edge/portico/sdk/go"
)

type config struct {
	Upstream string `json:"upstream"`
	Path     string `json:"path"`
}

type root struct {
	proxywasm.DefaultRootContext
	cfg config
}

func (r *root) OnConfigure(b []byte) bool {
	if err := json.Unmarshal(b, &r.cfg); err != nil || r.cfg.Upstream == "" || !strings.HasPrefix(r.cfg.Path, "/") {
		proxywasm.Log(proxywasm.LogError, `introspect-go: config must be {"upstream": NAME, "path": "/..."}`)
		return false
	}
	return true
}

func (r *root) NewHTTPContext(uint32) proxywasm.HTTPContext { return &stream{cfg: &r.cfg} }

type stream struct {
	proxywasm.DefaultHTTPContext
	cfg *config
}

var jsonHeader = []proxywasm.Header{{Name: "content-type", Value: "application/json"}}

func deny(status int, msg string) {
	b, _ := json.Marshal(map[string]string{"message": msg})
	_ = proxywasm.SendLocalResponse(status, jsonHeader, b)
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	auth, _ := proxywasm.RequestHeader("authorization")
	tok, ok := strings.CutPrefix(auth, "Bearer ")
	if !ok || tok == "" {
		deny(401, "Unauthorized")
		return proxywasm.Pause
	}
	body := []byte("token=" + url.QueryEscape(tok))
	headers := []proxywasm.Header{
		{Name: ":method", Value: "POST"},
		{Name: ":path", Value: s.cfg.Path},
		{Name: ":authority", Value: s.cfg.Upstream},
		{Name: "content-type", Value: "application/x-www-form-urlencoded"},
	}
	_, err := proxywasm.HTTPCall(s.cfg.Upstream, headers, body, 2000, func(numHeaders, bodySize, _ int) {
		if numHeaders == 0 {
			deny(503, "Token introspection unavailable")
			return
		}
		if status, _ := proxywasm.HTTPCallResponseHeader(":status"); status != "200" {
			deny(503, "Token introspection failed")
			return
		}
		var res struct {
			Active bool   `json:"active"`
			Sub    string `json:"sub"`
		}
		if json.Unmarshal(proxywasm.HTTPCallResponseBody(0, bodySize), &res) != nil || !res.Active || res.Sub == "" {
			deny(403, "Forbidden")
			return
		}
		_ = proxywasm.SetRequestHeader("x-portico-user", res.Sub)
		_ = proxywasm.SetProperty("portico.principal", []byte(res.Sub))
		_ = proxywasm.ContinueRequest()
	})
	if err != nil {
		proxywasm.Logf(proxywasm.LogError, "introspect-go: http call: %v", err)
		deny(503, "Token introspection unavailable")
	}
	return proxywasm.Pause
}

func init() {
	proxywasm.SetNewRootContext(func(uint32) proxywasm.RootContext { return &root{} })
}

func main() {}
