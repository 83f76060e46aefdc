// Command accesscreds writes what test/bench/access.sh needs to call a JWT
// protected route: a fresh RS256 key's public JWKS (for the jwt policy's
// inline keys) and a token it signed, valid for a day.
package main

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"flag"
	"log"
	"os"
	"path/filepath"
	"time"

	"github.com/go-jose/go-jose/v4"
	josejwt "github.com/go-jose/go-jose/v4/jwt"
)

func main() {
	dir := flag.String("dir", ".", "directory to write jwks.json and token to")
	issuer := flag.String("issuer", "https://issuer.bench", "the token's iss")
	audience := flag.String("audience", "bench", "the token's aud")
	flag.Parse()
	if err := run(*dir, *issuer, *audience); err != nil {
		log.Fatal(err)
	}
}

func run(dir, issuer, audience string) error {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		return err
	}
	sg, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: key}, (&jose.SignerOptions{}).WithType("JWT").WithHeader("kid", "bench"))
	if err != nil {
		return err
	}
	now := time.Now()
	token, err := josejwt.Signed(sg).Claims(map[string]any{
		"iss": issuer, "aud": audience, "sub": "bench-user", "scope": "pets:read",
		"exp": now.Add(24 * time.Hour).Unix(), "iat": now.Unix(),
	}).Serialize()
	if err != nil {
		return err
	}
	set, err := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "bench", Algorithm: "RS256", Use: "sig"}}})
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "jwks.json"), set, 0o600); err != nil {
		return err
	}
	return os.WriteFile(filepath.Join(dir, "token"), []byte(token+"\n"), 0o600)
}
