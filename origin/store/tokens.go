package store

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base32"
	"encoding/hex"
	"encoding/json"
	"strings"
	"time"
)

// Token kinds.
const (
	TokenAdmin = "admin" // the admin API
	TokenEdge  = "edge"  // edges: snapshots and forwarded requests
)

// Token is a stored credential. Only the SHA-256 of the secret is kept: the
// secret has 256 bits of entropy, so a slow password hash would add nothing
// but cost on every request.
type Token struct {
	Kind      string    `json:"kind"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"createdAt"`
}

// NewTokenSecret returns a new random token: a kind prefix and 52
// base32 characters (256 bits).
func NewTokenSecret(kind string) string {
	var b [32]byte
	_, _ = rand.Read(b[:])
	return "ptc_" + kind + "_" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}

// HashToken returns the key a token is stored under.
func HashToken(secret string) string {
	sum := sha256.Sum256([]byte(secret))
	return hex.EncodeToString(sum[:])
}

// PutToken stores a token by the hash of its secret.
func (t *Tx) PutToken(secret string, tok Token) error {
	return t.PutJSON(BucketTokens, HashToken(secret), tok)
}

// Tokens returns all stored tokens by hash.
func (t *Tx) Tokens() (map[string]Token, error) {
	out := map[string]Token{}
	err := t.ForEach(BucketTokens, "", func(k string, raw []byte) error {
		var tok Token
		if err := json.Unmarshal(raw, &tok); err != nil {
			return err
		}
		out[k] = tok
		return nil
	})
	return out, err
}

// DeleteTokens removes every token of a kind with the given name.
func (t *Tx) DeleteTokens(kind, name string) error {
	toks, err := t.Tokens()
	if err != nil {
		return err
	}
	for h, tok := range toks {
		if tok.Kind == kind && tok.Name == name {
			if err := t.Delete(BucketTokens, h); err != nil {
				return err
			}
		}
	}
	return nil
}
