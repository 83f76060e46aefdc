package importer

import (
	"testing"

	"github.com/portico-edge/portico/config"
)

const jwtExt = `x-portico-jwt: {issuer: "https://id.example/", audiences: [api], jwksUri: "https://id.example/jwks.json"}`

// securityDoc builds a document with the given security schemes, document
// security and operation security (empty strings leave them out).
func securityDoc(schemes, docSecurity, opSecurity string) []byte {
	s := "paths:\n  /a:\n    get:\n      " + op + "\n"
	if opSecurity != "" {
		s += "      security: " + opSecurity + "\n"
	}
	if docSecurity != "" {
		s += "security: " + docSecurity + "\n"
	}
	if schemes != "" {
		s += "components:\n  securitySchemes:\n" + schemes
	}
	return oas30(s)
}

const (
	schemeKey    = "    key: {type: apiKey, in: header, name: X-API-Key}\n"
	schemeQuery  = "    qkey: {type: apiKey, in: query, name: api_key}\n"
	schemeCookie = "    ckey: {type: apiKey, in: cookie, name: session}\n"
	schemeBasic  = "    basic: {type: http, scheme: basic}\n"
	schemeDigest = "    digest: {type: http, scheme: digest}\n"
	schemeBearer = "    bearer: {type: http, scheme: bearer, bearerFormat: JWT, " + jwtExt + "}\n"
	schemeBare   = "    bare: {type: http, scheme: bearer}\n"
	schemeOAuth  = "    oauth: {type: oauth2, flows: {clientCredentials: {tokenUrl: 'https://id.example/token', scopes: {read: r, write: w}}}, " + jwtExt + "}\n"
	schemeOIDC   = "    oidc: {type: openIdConnect, openIdConnectUrl: 'https://id.example/.well-known/openid-configuration', " + jwtExt + "}\n"
	schemeMTLS   = "    mtls: {type: mutualTLS}\n"
	schemeSigV4  = "    sigv4: {type: apiKey, name: Authorization, in: header, x-amazon-apigateway-authtype: awsSigv4}\n"
)

func TestSecurityPolicies(t *testing.T) {
	jwtConfig := func(scopes string) string {
		return `{"issuer":"https://id.example/","audiences":["api"],"jwksUri":"https://id.example/jwks.json","scopes":` + scopes + `}`
	}
	for name, tc := range map[string]struct {
		doc  []byte
		want []config.PolicySpec
	}{
		"api key in a header": {securityDoc(schemeKey, "", "[{key: []}]"),
			[]config.PolicySpec{{Type: "api-key", Config: []byte(`{"source":"header","name":"X-API-Key"}`)}}},
		"api key in the query": {securityDoc(schemeQuery, "", "[{qkey: []}]"),
			[]config.PolicySpec{{Type: "api-key", Config: []byte(`{"source":"query","name":"api_key"}`)}}},
		"bearer": {securityDoc(schemeBearer, "", "[{bearer: []}]"),
			[]config.PolicySpec{{Type: "jwt", Config: []byte(jwtConfig(`[]`))}}},
		"oauth2 with scopes": {securityDoc(schemeOAuth, "", "[{oauth: [read, write]}]"),
			[]config.PolicySpec{{Type: "jwt", Config: []byte(jwtConfig(`["read","write"]`))}}},
		"openIdConnect": {securityDoc(schemeOIDC, "", "[{oidc: [profile]}]"),
			[]config.PolicySpec{{Type: "jwt", Config: []byte(jwtConfig(`["profile"]`))}}},
		"sigv4": {securityDoc(schemeSigV4, "", "[{sigv4: []}]"),
			[]config.PolicySpec{{Type: "sigv4"}}},
		"both schemes of one requirement are required": {securityDoc(schemeKey+schemeOAuth, "", "[{key: [], oauth: [read]}]"),
			[]config.PolicySpec{{Type: "api-key", Config: []byte(`{"source":"header","name":"X-API-Key"}`)}, {Type: "jwt", Config: []byte(jwtConfig(`["read"]`))}}},
		"document security applies": {securityDoc(schemeKey, "[{key: []}]", ""),
			[]config.PolicySpec{{Type: "api-key", Config: []byte(`{"source":"header","name":"X-API-Key"}`)}}},
		"operation security overrides the document's": {securityDoc(schemeKey+schemeQuery, "[{key: []}]", "[{qkey: []}]"),
			[]config.PolicySpec{{Type: "api-key", Config: []byte(`{"source":"query","name":"api_key"}`)}}},
		"empty operation security makes it public":         {securityDoc(schemeKey, "[{key: []}]", "[]"), nil},
		"a lone empty requirement means no authentication": {securityDoc(schemeKey, "", "[{}]"), nil},
		"unused unenforceable schemes are fine":            {securityDoc(schemeBasic+schemeCookie+schemeBare, "", ""), nil},
		// http loopback is allowed for JWKS, so tests can serve keys.
		"loopback jwks over http": {securityDoc("    b: {type: http, scheme: bearer, x-portico-jwt: {issuer: i, audiences: [a], jwksUri: 'http://127.0.0.1:9999/jwks'}}\n", "", "[{b: []}]"),
			[]config.PolicySpec{{Type: "jwt", Config: []byte(`{"issuer":"i","audiences":["a"],"jwksUri":"http://127.0.0.1:9999/jwks","scopes":[]}`)}}},
	} {
		t.Run(name, func(t *testing.T) {
			res := mustImport(t, tc.doc, Options{})
			got := res.API.Routes[0].Policies
			if policiesString(got) != policiesString(tc.want) {
				t.Errorf("got  %s\nwant %s", policiesString(got), policiesString(tc.want))
			}
		})
	}
}

func TestSecurityRefused(t *testing.T) {
	const req = "/paths/~1a/get/security"
	const schemes = "/components/securitySchemes"
	for name, tc := range map[string]struct {
		doc  []byte
		want map[string]string
	}{
		"basic": {securityDoc(schemeBasic, "", "[{basic: []}]"), map[string]string{
			schemes + "/basic/scheme": "HTTP basic authentication is not supported",
			req + "/0/basic":          "cannot enforce",
		}},
		"other http scheme": {securityDoc(schemeDigest, "", "[{digest: []}]"), map[string]string{
			schemes + "/digest/scheme": `"digest" is not supported`,
			req + "/0/digest":          "cannot enforce",
		}},
		"cookie api key": {securityDoc(schemeCookie, "", "[{ckey: []}]"), map[string]string{
			schemes + "/ckey/in": "cookies are not supported",
			req + "/0/ckey":      "cannot enforce",
		}},
		"mutual TLS": {securityDoc(schemeMTLS, "", "[{mtls: []}]"), map[string]string{
			schemes + "/mtls/type": "mutual TLS is not supported",
			req + "/0/mtls":        "cannot enforce",
		}},
		"bearer without x-portico-jwt": {securityDoc(schemeBare, "", "[{bare: []}]"), map[string]string{
			schemes + "/bare": "Add x-portico-jwt",
			req + "/0/bare":   "cannot enforce",
		}},
		"alternatives": {securityDoc(schemeKey+schemeBearer, "", "[{key: []}, {bearer: []}]"), map[string]string{
			req: "are alternatives",
		}},
		"optional authentication": {securityDoc(schemeKey, "", "[{key: []}, {}]"), map[string]string{
			req + "/1": "makes authentication optional",
		}},
		"optional authentication at the document level": {securityDoc(schemeKey, "[{}, {key: []}]", ""), map[string]string{
			"/security/0": "makes authentication optional",
		}},
		"undefined scheme": {securityDoc(schemeKey, "", "[{nope: []}]"), map[string]string{
			req + "/0/nope": `"nope" is not defined`,
		}},
		"scopes on an api key": {securityDoc(schemeKey, "", "[{key: [admin]}]"), map[string]string{
			req + "/0/key": "carries no scopes",
		}},
		"other authtype": {securityDoc("    cognito: {type: apiKey, name: Authorization, in: header, x-amazon-apigateway-authtype: cognito_user_pools}\n", "", "[{cognito: []}]"), map[string]string{
			schemes + "/cognito/x-amazon-apigateway-authtype": `authtype "cognito_user_pools"`,
			req + "/0/cognito": "cannot enforce",
		}},
		"x-portico-jwt on an api key": {securityDoc("    k: {type: apiKey, in: header, name: K, "+jwtExt+"}\n", "", "[{k: []}]"), map[string]string{
			schemes + "/k/x-portico-jwt": "applies only to oauth2",
		}},
		"x-portico-jwt without audiences": {securityDoc("    b: {type: http, scheme: bearer, x-portico-jwt: {issuer: i, jwksUri: 'https://i.example/k'}}\n", "", "[{b: []}]"), map[string]string{
			schemes + "/b/x-portico-jwt": "needs audiences",
			req + "/0/b":                 "cannot enforce",
		}},
		"x-portico-jwt with empty audiences": {securityDoc("    b: {type: http, scheme: bearer, x-portico-jwt: {issuer: i, audiences: [], jwksUri: 'https://i.example/k'}}\n", "", "[{b: []}]"), map[string]string{
			schemes + "/b/x-portico-jwt/audiences": "non-empty array",
			req + "/0/b":                           "cannot enforce",
		}},
		"x-portico-jwt with plain http keys": {securityDoc("    b: {type: http, scheme: bearer, x-portico-jwt: {issuer: i, audiences: [a], jwksUri: 'http://id.example/k'}}\n", "", "[{b: []}]"), map[string]string{
			schemes + "/b/x-portico-jwt/jwksUri": "use https",
			req + "/0/b":                         "cannot enforce",
		}},
		"x-portico-jwt with an unknown field": {securityDoc("    b: {type: http, scheme: bearer, x-portico-jwt: {issuer: i, audiences: [a], jwksUri: 'https://i.example/k', leeway: 5s}}\n", "", "[{b: []}]"), map[string]string{
			schemes + "/b/x-portico-jwt/leeway": "not a field of x-portico-jwt",
			req + "/0/b":                        "cannot enforce",
		}},
		"x-portico-jwt elsewhere": {oas30("x-portico-jwt: {}\npaths:\n  /a:\n    get: {" + op + "}\n"), map[string]string{
			"/x-portico-jwt": "read only on security schemes",
		}},
		"unknown Portico extension": {oas30("paths:\n  /a:\n    get: {" + op + ", x-portico-integratoin: {}}\n"), map[string]string{
			"/paths/~1a/get/x-portico-integratoin": "is not a Portico extension",
		}},
	} {
		t.Run(name, func(t *testing.T) {
			wantProblems(t, mustFail(t, tc.doc, Options{}), tc.want)
		})
	}
}

// IgnoreSecurity produces no policies, also for schemes Portico could not
// enforce, but still refuses requirements that name undefined schemes.
func TestIgnoreSecurity(t *testing.T) {
	doc := securityDoc(schemeBasic+schemeKey+schemeCookie+
		"    lambda: {type: apiKey, name: Authorization, in: header, x-amazon-apigateway-authtype: custom, x-amazon-apigateway-authorizer: {type: token}}\n",
		"[{key: []}, {basic: []}, {}]", "[{lambda: []}, {ckey: []}]")
	res := mustImport(t, doc, Options{IgnoreSecurity: true})
	if p := res.API.Routes[0].Policies; len(p) != 0 {
		t.Errorf("policies %s with IgnoreSecurity", policiesString(p))
	}
	wantProblems(t, mustFail(t, securityDoc(schemeKey, "", "[{nope: []}]"), Options{IgnoreSecurity: true}),
		map[string]string{"/paths/~1a/get/security/0/nope": "is not defined"})
}

// Swagger 2.0 security definitions follow the same rules.
func TestSwaggerSecurity(t *testing.T) {
	doc := []byte(`{"swagger": "2.0", "info": {"title": "T", "version": "1"},
		"securityDefinitions": {
			"key": {"type": "apiKey", "in": "query", "name": "k"},
			"basic": {"type": "basic"},
			"oauth": {"type": "oauth2", "flow": "application", "tokenUrl": "https://id.example/token", "scopes": {"r": "read"},
				"x-portico-jwt": {"issuer": "https://id.example/", "audiences": ["api"], "jwksUri": "https://id.example/jwks.json"}}},
		"paths": {
			"/a": {"get": {"security": [{"key": [], "oauth": ["r"]}], "responses": {"200": {"description": "ok"}}}},
			"/b": {"get": {"security": [{"basic": []}], "responses": {"200": {"description": "ok"}}}}}}`)
	wantProblems(t, mustFail(t, doc, Options{}), map[string]string{
		"/securityDefinitions/basic/type": "HTTP basic authentication is not supported",
		"/paths/~1b/get/security/0/basic": "cannot enforce",
	})
	res := mustImport(t, []byte(`{"swagger": "2.0", "info": {"title": "T", "version": "1"},
		"securityDefinitions": {
			"key": {"type": "apiKey", "in": "query", "name": "k"},
			"oauth": {"type": "oauth2", "flow": "application", "tokenUrl": "https://id.example/token", "scopes": {"r": "read"},
				"x-portico-jwt": {"issuer": "https://id.example/", "audiences": ["api"], "jwksUri": "https://id.example/jwks.json"}}},
		"paths": {"/a": {"get": {"security": [{"key": [], "oauth": ["r"]}], "responses": {"200": {"description": "ok"}}}}}}`), Options{})
	want := `api-key {"source":"query","name":"k"}; jwt {"issuer":"https://id.example/","audiences":["api"],"jwksUri":"https://id.example/jwks.json","scopes":["r"]}; `
	if got := policiesString(res.API.Routes[0].Policies); got != want {
		t.Errorf("got  %s\nwant %s", got, want)
	}
}
