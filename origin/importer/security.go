package importer

import (
	"encoding/json"
	"net"
	"net/url"
	"strings"

	"github.com/portico-edge/portico/config"
)

// Security requirements become route policies. The importer fails closed:
// a requirement Portico cannot enforce exactly is an error (unless the
// caller passed IgnoreSecurity), never a route left open.

// Policy configs, in the exact form the access-control policies read.
type apiKeyConfig struct {
	Source string `json:"source"` // "header" or "query"
	Name   string `json:"name"`
}

type jwtConfig struct {
	Issuer    string   `json:"issuer"`
	Audiences []string `json:"audiences"`
	JWKSURI   string   `json:"jwksUri"`
	Scopes    []string `json:"scopes"`
}

// Policy types the importer produces.
const (
	PolicyAPIKey = "api-key"
	PolicyJWT    = "jwt"
	PolicySigV4  = "sigv4"
)

// scheme is a security scheme, converted once.
type scheme struct {
	kind   string // PolicyAPIKey, PolicyJWT or PolicySigV4; "" when it cannot be enforced
	apiKey apiKeyConfig
	jwt    jwtConfig
}

type securityReader struct {
	im      *importer
	ptr     string // "/components/securitySchemes" or "/securityDefinitions"
	schemes *node
	done    map[string]*scheme
}

func newSecurityReader(im *importer) *securityReader {
	s := &securityReader{im: im, ptr: "/components/securitySchemes", done: make(map[string]*scheme)}
	if im.swagger {
		s.ptr = "/securityDefinitions"
		s.schemes = im.root.get("securityDefinitions")
	} else {
		s.schemes = im.root.get("components").get("securitySchemes")
	}
	return s
}

// finish marks the extensions of schemes that no operation used (or all of
// them, with IgnoreSecurity) as read: an unused scheme enforces nothing, so
// nothing is lost by not reading it.
func (s *securityReader) finish() {
	if s.schemes == nil || s.schemes.kind != kObject {
		return
	}
	for _, name := range s.schemes.keys {
		if _, used := s.done[name]; used {
			continue
		}
		ptr := s.schemePtr(name)
		for _, ext := range []string{"x-portico-jwt", "x-amazon-apigateway-authtype", "x-amazon-apigateway-authorizer"} {
			s.im.consumed[child(ptr, ext)] = true
		}
	}
}

// schemePtr returns the pointer of the scheme's object, following a $ref.
func (s *securityReader) schemePtr(name string) string {
	n := s.schemes.get(name)
	if t := s.im.sc.refs[n]; t != nil {
		return s.im.sc.objects[t]
	}
	return child(s.ptr, name)
}

// policies returns the policies of an operation's security requirements.
func (s *securityReader) policies(o *operation) []config.PolicySpec {
	im := s.im
	reqs, ptr := o.n.get("security"), child(o.ptr, "security")
	if reqs == nil {
		reqs, ptr = im.root.get("security"), "/security"
	}
	if reqs == nil {
		return nil
	}
	if reqs.kind != kArray {
		im.probs.add(ptr, reqs, "security must be an array of security requirement objects")
		return nil
	}
	ok := true
	for i, r := range reqs.vals {
		rp := index(ptr, i)
		if r.kind != kObject {
			im.probs.add(rp, r, "a security requirement must be an object mapping scheme names to scopes")
			ok = false
			continue
		}
		for j, name := range r.keys {
			if s.schemes.get(name) == nil {
				im.probs.add(child(rp, name), r.vals[j], "security scheme %q is not defined in %s; define it or correct the name", name, strings.TrimPrefix(s.ptr, "/"))
				ok = false
			}
			if !stringArray(r.vals[j]) {
				im.probs.add(child(rp, name), r.vals[j], "the scopes of a security requirement must be an array of strings (empty when there are none)")
				ok = false
			}
		}
	}
	if !ok || im.opts.IgnoreSecurity || len(reqs.vals) == 0 {
		return nil
	}
	if len(reqs.vals) > 1 {
		for i, r := range reqs.vals {
			if len(r.keys) == 0 {
				im.probs.add(index(ptr, i), r, "the empty requirement {} among the alternatives makes authentication optional; Portico fails closed and cannot let unauthenticated requests through on a route that also accepts credentials: remove {} to require authentication, or use security: [] to make the operation public")
				return nil
			}
		}
		im.probs.add(ptr, reqs, "these %d security requirements are alternatives (any one of them suffices); Portico enforces every policy of a route, so it cannot accept one scheme or another: keep one requirement object (schemes listed together in one object are all required) %s", len(reqs.vals), ignoreHint)
		return nil
	}
	r := reqs.vals[0]
	var out []config.PolicySpec
	for j, name := range r.keys {
		sc := s.scheme(name)
		rp := child(index(ptr, 0), name)
		if sc.kind == "" {
			// The scheme's own problem is reported at the scheme; this
			// names each operation that would be left unprotected.
			im.probs.add(rp, r.vals[j], "requires security scheme %q, which Portico cannot enforce as written (see %s)", name, s.schemePtr(name))
			continue
		}
		scopes := strings2(r.vals[j])
		switch sc.kind {
		case PolicyAPIKey, PolicySigV4:
			if len(scopes) > 0 {
				im.probs.add(rp, r.vals[j], "scopes (or roles) are listed for %s scheme %q, but an API key or a SigV4 signature carries no scopes Portico could check; remove them %s", sc.kind, name, ignoreHint)
				continue
			}
		}
		p := config.PolicySpec{Type: sc.kind}
		switch sc.kind {
		case PolicyAPIKey:
			p.Config = mustJSON(sc.apiKey)
		case PolicyJWT:
			c := sc.jwt
			c.Scopes = append([]string{}, scopes...)
			p.Config = mustJSON(c)
		}
		out = append(out, p)
	}
	return out
}

func stringArray(n *node) bool {
	if n.kind != kArray {
		return false
	}
	for _, v := range n.vals {
		if v.kind != kString {
			return false
		}
	}
	return true
}

func strings2(n *node) []string {
	out := make([]string, 0, len(n.vals))
	for _, v := range n.vals {
		out = append(out, v.text)
	}
	return out
}

func mustJSON(v any) json.RawMessage {
	b, err := json.Marshal(v)
	if err != nil {
		panic(err) // only plain structs of strings are marshalled
	}
	return b
}

const ignoreHint = "(to import the document anyway, import it with IgnoreSecurity and attach policies yourself)"

// scheme converts a security scheme once and reports its problems at the
// scheme.
func (s *securityReader) scheme(name string) *scheme {
	if sc, ok := s.done[name]; ok {
		return sc
	}
	im := s.im
	sc := &scheme{}
	s.done[name] = sc
	n := s.schemes.get(name)
	if t := im.sc.refs[n]; t != nil {
		n = t
	}
	ptr := s.schemePtr(name)
	if n == nil || n.kind != kObject {
		im.probs.add(ptr, n, "a security scheme must be an object")
		return sc
	}
	jwtExt, jwtPtr := n.get("x-portico-jwt"), child(ptr, "x-portico-jwt")
	authtype, atPtr := n.get("x-amazon-apigateway-authtype"), child(ptr, "x-amazon-apigateway-authtype")
	im.consumed[jwtPtr] = true
	im.consumed[atPtr] = true
	typ, _ := n.get("type").str()
	notJWT := func() {
		if jwtExt != nil {
			im.probs.add(jwtPtr, jwtExt, "x-portico-jwt applies only to oauth2, openIdConnect and http bearer schemes; remove it")
		}
	}
	if authtype != nil {
		at, _ := authtype.str()
		if strings.EqualFold(at, "awsSigv4") {
			notJWT()
			sc.kind = PolicySigV4
			return sc
		}
		im.probs.add(atPtr, authtype, "API Gateway authtype %q (a Lambda or Cognito authorizer) is not supported: Portico does not run authorizers. For JWTs, describe the issuer with x-portico-jwt on this scheme and remove the x-amazon-apigateway-* fields %s", authtype.text, ignoreHint)
		return sc
	}
	switch typ {
	case "apiKey":
		notJWT()
		in, _ := n.get("in").str()
		keyName, _ := n.get("name").str()
		switch {
		case keyName == "":
			im.probs.add(ptr, n, "an apiKey scheme needs the name of the header or query parameter that carries the key")
		case in == "header" || in == "query":
			sc.kind = PolicyAPIKey
			sc.apiKey = apiKeyConfig{Source: in, Name: keyName}
		case in == "cookie":
			im.probs.add(child(ptr, "in"), n.get("in"), "API keys in cookies are not supported: browsers send cookies to any site's requests, which lets other sites use the key; accept the key in a header or the query string %s", ignoreHint)
		default:
			im.probs.add(child(ptr, "in"), n.get("in"), "an apiKey scheme's \"in\" must be header or query")
		}
	case "http":
		hs, _ := n.get("scheme").str()
		switch strings.ToLower(hs) {
		case "bearer":
			s.jwt(sc, n, ptr, jwtExt, jwtPtr, "http bearer")
		case "basic":
			notJWT()
			im.probs.add(child(ptr, "scheme"), n.get("scheme"), "HTTP basic authentication is not supported: Portico keeps no passwords; use an apiKey or a JWT (bearer) scheme %s", ignoreHint)
		default:
			notJWT()
			im.probs.add(child(ptr, "scheme"), n.get("scheme"), "HTTP authentication scheme %q is not supported; Portico enforces bearer (JWT) tokens, API keys and SigV4 signatures %s", hs, ignoreHint)
		}
	case "basic":
		notJWT()
		im.probs.add(child(ptr, "type"), n.get("type"), "HTTP basic authentication is not supported: Portico keeps no passwords; use an apiKey or an oauth2 (JWT) scheme %s", ignoreHint)
	case "oauth2", "openIdConnect":
		s.jwt(sc, n, ptr, jwtExt, jwtPtr, typ)
	case "mutualTLS":
		notJWT()
		im.probs.add(child(ptr, "type"), n.get("type"), "mutual TLS is not supported as a security scheme: Portico does not check client certificates per route %s", ignoreHint)
	default:
		notJWT()
		im.probs.add(child(ptr, "type"), n.get("type"), "security scheme type %q is not one Portico knows (apiKey, http, oauth2, openIdConnect, mutualTLS)", typ)
	}
	return sc
}

// jwt reads x-portico-jwt for a scheme whose credentials are JWTs.
func (s *securityReader) jwt(sc *scheme, n *node, ptr string, ext *node, extPtr, what string) {
	im := s.im
	if ext == nil {
		im.probs.add(ptr, n, "Portico cannot enforce this %s scheme by itself: it checks tokens as JWTs signed by an issuer's keys, and the scheme does not say which issuer. Add x-portico-jwt: {issuer: ..., audiences: [...], jwksUri: https://...} to the scheme %s", what, ignoreHint)
		return
	}
	if ext.kind != kObject {
		im.probs.add(extPtr, ext, "x-portico-jwt must be an object with issuer, audiences and jwksUri")
		return
	}
	var c jwtConfig
	ok := true
	for i, k := range ext.keys {
		v, p := ext.vals[i], child(extPtr, k)
		switch k {
		case "issuer":
			c.Issuer, _ = v.str()
			if c.Issuer == "" {
				im.probs.add(p, v, "issuer must be a non-empty string: the iss claim tokens must carry, such as \"https://login.example.com/\"")
				ok = false
			}
		case "audiences":
			if !stringArray(v) || len(v.vals) == 0 {
				im.probs.add(p, v, "audiences must be a non-empty array of strings; without an audience check, a token the same issuer minted for another service would be accepted")
				ok = false
				continue
			}
			for _, a := range v.vals {
				if a.text == "" {
					im.probs.add(p, v, "audiences may not hold an empty string")
					ok = false
				}
			}
			c.Audiences = strings2(v)
		case "jwksUri":
			u, _ := v.str()
			if msg := checkJWKSURI(u); msg != "" {
				im.probs.add(p, v, "jwksUri %q: %s", u, msg)
				ok = false
				continue
			}
			c.JWKSURI = u
		default:
			im.probs.add(p, v, "%q is not a field of x-portico-jwt; the fields are issuer, audiences and jwksUri", k)
			ok = false
		}
	}
	for _, req := range []struct {
		set  bool
		name string
	}{{c.Issuer != "" || ext.has("issuer"), "issuer"}, {ext.has("audiences"), "audiences"}, {ext.has("jwksUri"), "jwksUri"}} {
		if !req.set {
			im.probs.add(extPtr, ext, "x-portico-jwt needs %s", req.name)
			ok = false
		}
	}
	if ok {
		sc.kind = PolicyJWT
		sc.jwt = c
	}
}

// checkJWKSURI accepts https URLs, and http ones on loopback only, where no
// one can tamper with the keys in transit.
func checkJWKSURI(s string) string {
	u, err := url.Parse(s)
	if err != nil || u.Host == "" {
		return "it must be an absolute https URL"
	}
	switch u.Scheme {
	case "https":
		return ""
	case "http":
		h := u.Hostname()
		if h == "localhost" {
			return ""
		}
		if ip := net.ParseIP(h); ip != nil && ip.IsLoopback() {
			return ""
		}
		return "keys fetched over plain http could be replaced in transit; use https (http is accepted only on loopback)"
	}
	return "it must be an absolute https URL"
}
