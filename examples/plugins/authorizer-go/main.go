//go:build wasip1

// Bearer-token authorizer for Portico, in standard Go.
//
// Plugin config: "token=user" entries separated by commas or spaces. No
// bearer token: 401; unknown token: 403; good token: the request goes on
// with "x-portico-user: USER" and principal USER.
package main

import (
	"errors"
	"strings"

	proxywasm "github.com/portico-edge/portico/sdk/go"
	"github.com/portico-edge/portico/sdk/go/authorizer"
)

var tokens map[string]string

func parse(config []byte) error {
	tokens = map[string]string{}
	for _, f := range strings.FieldsFunc(string(config), func(r rune) bool { return r == ',' || r == ' ' || r == '\n' || r == '\t' }) {
		tok, user, ok := strings.Cut(f, "=")
		if !ok || tok == "" || user == "" {
			return errors.New(`config must be "token=user[, token=user...]"`)
		}
		tokens[tok] = user
	}
	if len(tokens) == 0 {
		return errors.New(`config must be "token=user[, token=user...]"`)
	}
	return nil
}

func authorize(r authorizer.Request) authorizer.Decision {
	tok, ok := strings.CutPrefix(r.Header("authorization"), "Bearer ")
	if !ok || tok == "" {
		return authorizer.Deny(401, "Unauthorized")
	}
	user, ok := tokens[tok]
	if !ok {
		return authorizer.Deny(403, "Forbidden")
	}
	return authorizer.Allow(user, proxywasm.Header{Name: "x-portico-user", Value: user})
}

func init() { authorizer.Register(parse, authorize) }

func main() {}
