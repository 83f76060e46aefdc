package modules

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/store"
	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/harness"
	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// A proxy-wasm module in WebAssembly text, with parts to cut or replace.
const goodWAT = `(module
  (memory (export "memory") 1)
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "malloc") (param i32) (result i32) (i32.const 1024))
  (func (export "proxy_on_context_create") (param i32 i32))
)`

// TestCheckAgreesWithAdmission: every module the upload check refuses, the
// WASM host's own admission refuses too, and the good one passes both.
func TestCheckAgreesWithAdmission(t *testing.T) {
	ctx := context.Background()
	dir := t.TempDir()
	c, err := NewChecker(ctx, dir, 0, slog.New(slog.DiscardHandler))
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close(ctx)
	src := &harness.MemSource{}
	host, err := wasm.NewHost(ctx, wasm.HostConfig{DataDir: dir, Source: src, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	defer host.Close(ctx)

	for _, tc := range []struct {
		name, wat, want string
	}{
		{"good", goodWAT, ""},
		{"no memory", strings.Replace(goodWAT, `(memory (export "memory") 1)`, `(memory 1)`, 1), `exports no memory named "memory"`},
		{"old ABI", strings.Replace(goodWAT, "proxy_abi_version_0_2_1", "proxy_abi_version_0_1_0", 1), "built for proxy-wasm ABI [proxy_abi_version_0_1_0]"},
		{"no ABI", strings.Replace(goodWAT, "proxy_abi_version_0_2_1", "hello", 1), "exports no proxy_abi_version_0_2_1 (or _0_2_0) marker"},
		{"no context create", strings.Replace(goodWAT, `"proxy_on_context_create"`, `"other"`, 1), "does not export proxy_on_context_create"},
		{"no allocator", strings.Replace(goodWAT, `"malloc"`, `"other"`, 1), "exports neither proxy_on_memory_allocate nor malloc"},
		{"imported memory", strings.Replace(goodWAT, `(memory (export "memory") 1)`, `(import "env" "memory" (memory 1)) (export "memory" (memory 0))`, 1), "imports memory env.memory"},
		{"foreign import", strings.Replace(goodWAT, `(memory (export "memory") 1)`, `(import "host" "exec" (func)) (memory (export "memory") 1)`, 1), "imports host.exec; plugins may only import"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mod := wasmbuild.WATText(t, "check-"+strings.ReplaceAll(tc.name, " ", "-"), tc.wat)
			err := c.Check(ctx, mod)
			verr := host.Validate(ctx, config.PolicySpec{Type: wasm.TypeAuthorizer, Config: json.RawMessage(`{"module":"` + src.Add(mod) + `","instances":1}`)})
			if tc.want == "" {
				if err != nil || verr != nil {
					t.Fatalf("check: %v; admission: %v", err, verr)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Errorf("check: %v, want %q", err, tc.want)
			}
			if verr == nil || !strings.Contains(verr.Error(), tc.want) {
				t.Errorf("admission: %v, want %q (the upload check and the host disagree)", verr, tc.want)
			}
		})
	}

	t.Run("not wasm, too large", func(t *testing.T) {
		if err := c.Check(ctx, []byte("(module)")); err == nil || !strings.Contains(err.Error(), "not a WebAssembly binary module") {
			t.Errorf("text: %v", err)
		}
		if err := c.Check(ctx, []byte("\x00asm\x01\x00\x00\x00\x01\xff")); err == nil || !strings.Contains(err.Error(), "preparing module: malformed section header") {
			t.Errorf("damaged: %v", err)
		}
		small, err := NewChecker(ctx, "", 16, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer small.Close(ctx)
		if err := small.Check(ctx, wasmbuild.WATText(t, "check-good", goodWAT)); err == nil || !strings.Contains(err.Error(), "the limit is 16 bytes") {
			t.Errorf("over the cap: %v", err)
		}
	})
}

func newService(t *testing.T, check func(context.Context, []byte) error) (*Service, *store.Store) {
	t.Helper()
	st, err := store.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	s, err := New(Options{Store: st, Check: check, MaxBytes: 64, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	return s, st
}

func policy(typ, module string) config.PolicySpec {
	return config.PolicySpec{Type: typ, Config: json.RawMessage(`{"module":"` + module + `"}`)}
}

func TestUploadListUsageDelete(t *testing.T) {
	ctx := context.Background()
	checks := 0
	s, st := newService(t, func(_ context.Context, b []byte) error {
		checks++
		if string(b) == "bad" {
			return errors.New("module exports no memory")
		}
		return nil
	})

	info, created, err := s.Upload(ctx, "a.wasm", []byte("module a"))
	if err != nil || !created || info.Digest != Digest([]byte("module a")) || info.Size != 8 || info.Name != "a.wasm" {
		t.Fatalf("upload: %+v %v %v", info, created, err)
	}
	again, created, err := s.Upload(ctx, "other.wasm", []byte("module a"))
	if err != nil || created || again.Name != "a.wasm" || checks != 1 {
		t.Fatalf("second upload of the same bytes: %+v created=%v err=%v checks=%d", again, created, err, checks)
	}
	if _, _, err := s.Upload(ctx, "", []byte("bad")); control.KindOf(err) != control.Invalid || !strings.Contains(err.Error(), "the module cannot be used as a plugin: module exports no memory") {
		t.Errorf("a module the check refuses: %v", err)
	}
	var tl *TooLargeError
	if _, _, err := s.Upload(ctx, "", make([]byte, 65)); !errors.As(err, &tl) || !strings.Contains(err.Error(), "65 bytes, over the 64-byte limit") {
		t.Errorf("too large: %v", err)
	}
	if _, _, err := s.Upload(ctx, "", nil); control.KindOf(err) != control.Invalid {
		t.Errorf("empty: %v", err)
	}
	if _, _, err := s.Upload(ctx, "two\nlines", []byte("x")); control.KindOf(err) != control.Invalid {
		t.Errorf("a name with a newline: %v", err)
	}
	b, _, err := s.Upload(ctx, "b.wasm", []byte("module b"))
	if err != nil {
		t.Fatal(err)
	}
	if got, err := s.Module(ctx, info.Digest); err != nil || string(got) != "module a" {
		t.Errorf("Module: %q %v", got, err)
	}

	// Uses: an API's current policies, a stage's, and a deployment's
	// frozen API (route level) served by a stage.
	a := info.Digest
	err = st.Update(ctx, func(tx *store.Tx) error {
		api := config.API{ID: "a1", Name: "shop", Policies: []config.PolicySpec{policy(wasm.TypeAuthorizer, a), policy("throttle", a)}}
		if err := tx.PutJSON(store.BucketAPIs, api.ID, api); err != nil {
			return err
		}
		dep := config.Deployment{ID: "d1", APIID: "a1", API: config.API{ID: "a1", Name: "shop", Routes: []config.Route{{Method: "GET", Path: "/x", Policies: []config.PolicySpec{policy(wasm.TypeTransform, a)}}}}}
		if err := tx.PutJSON(store.BucketDeployments, dep.ID, dep); err != nil {
			return err
		}
		old := config.Deployment{ID: "d0", APIID: "a1", API: config.API{ID: "a1", Name: "shop", Policies: []config.PolicySpec{policy(wasm.TypeAuthorizer, a)}}}
		if err := tx.PutJSON(store.BucketDeployments, old.ID, old); err != nil {
			return err
		}
		stage := config.Stage{APIID: "a1", Name: "prod", DeploymentID: "d1", Policies: []config.PolicySpec{policy(wasm.TypeTransform, a)}}
		return tx.PutJSON(store.BucketStages, store.StageKey("a1", "prod"), stage)
	})
	if err != nil {
		t.Fatal(err)
	}
	got, err := s.Get(ctx, strings.TrimPrefix(a, "sha256:"))
	if err != nil {
		t.Fatal(err)
	}
	u := got.UsedBy
	if len(u.Deployments) != 2 || u.Deployments[0].ID != "d0" || len(u.Deployments[0].Stages) != 0 || u.Deployments[1].ID != "d1" || u.Deployments[1].Stages[0] != "prod" ||
		len(u.Stages) != 1 || u.Stages[0] != "shop/prod" || len(u.APIs) != 1 || u.APIs[0] != "shop" {
		t.Errorf("usage: %+v", u)
	}
	list, err := s.List(ctx)
	if err != nil || len(list) != 2 {
		t.Fatalf("list: %+v %v", list, err)
	}
	for _, m := range list {
		if m.Digest == b.Digest && (m.UsedBy == nil || !m.UsedBy.empty()) {
			t.Errorf("module b is unused: %+v", m.UsedBy)
		}
	}
	if err := s.Delete(ctx, a); control.KindOf(err) != control.Conflict || !strings.Contains(err.Error(), "deployment d1 of API shop (serving stage prod), the policies of stage shop/prod, the policies of API shop") {
		t.Errorf("deleting a module in use: %v", err)
	}
	if err := s.Delete(ctx, b.Digest); err != nil {
		t.Fatal(err)
	}
	if _, err := s.Get(ctx, b.Digest); control.KindOf(err) != control.NotFound {
		t.Errorf("a deleted module: %v", err)
	}
	if _, err := s.Module(ctx, b.Digest); control.KindOf(err) != control.NotFound || !strings.Contains(err.Error(), "portico ctl plugins upload FILE") {
		t.Errorf("Module of a deleted module: %v", err)
	}
	if err := s.Delete(ctx, b.Digest); control.KindOf(err) != control.NotFound {
		t.Errorf("deleting twice: %v", err)
	}
	if _, err := s.Get(ctx, "sha256:nothex"); control.KindOf(err) != control.Invalid {
		t.Errorf("a bad digest: %v", err)
	}
}

func TestUploadedAtIsUTC(t *testing.T) {
	s, _ := newService(t, func(context.Context, []byte) error { return nil })
	s.now = func() time.Time { return time.Date(2026, 1, 2, 3, 4, 5, 600, time.FixedZone("x", 3600)) }
	info, _, err := s.Upload(context.Background(), "", []byte("m"))
	if err != nil || !info.UploadedAt.Equal(time.Date(2026, 1, 2, 2, 4, 5, 0, time.UTC)) || info.UploadedAt.Location() != time.UTC {
		t.Errorf("%v %v", info.UploadedAt, err)
	}
}
