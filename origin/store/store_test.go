package store

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/portico-edge/portico/config"
)

func TestStoreRoundTripAndAtomicity(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	s, err := Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	err = s.Update(ctx, func(tx *Tx) error {
		return tx.PutJSON(BucketAPIs, "a1", config.API{ID: "a1", Name: "pets"})
	})
	if err != nil {
		t.Fatal(err)
	}
	// A failing transaction leaves nothing behind.
	boom := errors.New("boom")
	err = s.Update(ctx, func(tx *Tx) error {
		if err := tx.PutJSON(BucketAPIs, "a2", config.API{ID: "a2"}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatal(err)
	}
	// A second open of the same dir is refused with a clear message.
	if _, err := Open(dir); err == nil || !strings.Contains(err.Error(), "locked") {
		t.Errorf("second open: %v", err)
	}
	s.Close()
	s, err = Open(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var apis []config.API
	s.View(ctx, func(tx *Tx) error {
		apis, err = List[config.API](tx, BucketAPIs, "")
		return err
	})
	if len(apis) != 1 || apis[0].Name != "pets" {
		t.Errorf("after reopen: %+v", apis)
	}
	var a config.API
	err = s.View(ctx, func(tx *Tx) error { return tx.GetJSON(BucketAPIs, "a2", &a) })
	if !errors.Is(err, ErrNotFound) {
		t.Errorf("rolled-back key: %v", err)
	}
}

func TestTokens(t *testing.T) {
	ctx := context.Background()
	s, err := Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	sec := NewTokenSecret(TokenEdge)
	if !strings.HasPrefix(sec, "ptc_edge_") || len(sec) < 60 {
		t.Errorf("secret %q", sec)
	}
	s.Update(ctx, func(tx *Tx) error { return tx.PutToken(sec, Token{Kind: TokenEdge, Name: "x"}) })
	s.View(ctx, func(tx *Tx) error {
		toks, _ := tx.Tokens()
		if _, ok := toks[HashToken(sec)]; !ok || len(toks) != 1 {
			t.Errorf("tokens %v", toks)
		}
		for h := range toks {
			if strings.Contains(h, sec) {
				t.Error("secret stored")
			}
		}
		return nil
	})
}
