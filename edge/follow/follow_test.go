package follow

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
)

func snap(t *testing.T, domain string) *config.Snapshot {
	s, err := config.Compile(config.State{Domains: []config.Domain{{Name: domain}}})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// fakeOrigin serves snapshots the way the origin's data plane does.
type fakeOrigin struct {
	mu      sync.Mutex
	current *config.Snapshot
	corrupt bool
}

func (f *fakeOrigin) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if r.Header.Get("Authorization") != "Bearer tok" {
		w.WriteHeader(401)
		return
	}
	f.mu.Lock()
	s, corrupt := f.current, f.corrupt
	f.mu.Unlock()
	if r.URL.Query().Get("after") == s.Version {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	b, _ := json.Marshal(s)
	if corrupt {
		var m map[string]any
		json.Unmarshal(b, &m)
		m["domains"] = []any{map[string]any{"name": "evil.example.com"}}
		b, _ = json.Marshal(m)
	}
	w.Write(b)
}

func newFollower(t *testing.T, srv *httptest.Server, dir string, apply Apply) *Follower {
	u, _ := url.Parse(srv.URL)
	return &Follower{Origin: u, Token: "tok", DataDir: dir, Apply: apply, Wait: time.Second, Log: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

func TestFollowVerifiesAppliesAndKeepsLastGood(t *testing.T) {
	fo := &fakeOrigin{current: snap(t, "a.example.com")}
	srv := httptest.NewServer(fo)
	defer srv.Close()
	dir := t.TempDir()
	var applied []string
	refuse := ""
	f := newFollower(t, srv, dir, func(s *config.Snapshot) error {
		if s.Domains[0].Name == refuse {
			return errors.New("refused")
		}
		applied = append(applied, s.Domains[0].Name)
		return nil
	})
	ctx := context.Background()
	if err := f.Poll(ctx); err != nil || len(applied) != 1 {
		t.Fatalf("first poll: %v %v", err, applied)
	}
	if err := f.Poll(ctx); err != nil || len(applied) != 1 {
		t.Fatalf("unchanged poll: %v %v", err, applied)
	}
	// A snapshot whose content does not match its version is refused.
	fo.mu.Lock()
	fo.current, fo.corrupt = snap(t, "b.example.com"), true
	fo.mu.Unlock()
	if err := f.Poll(ctx); err == nil || len(applied) != 1 {
		t.Fatalf("corrupt snapshot: %v %v", err, applied)
	}
	// A snapshot the edge cannot serve is refused and not refetched.
	fo.mu.Lock()
	fo.corrupt = false
	fo.mu.Unlock()
	refuse = "b.example.com"
	now := time.Unix(1000, 0)
	f.now = func() time.Time { return now }
	if err := f.Poll(ctx); err != nil || len(applied) != 1 || f.Current() == fo.current.Version {
		t.Fatalf("refused snapshot: %v %v", err, applied)
	}
	// Until the back-off passes, the refused version is not asked for
	// again (the fake origin would answer 304 for after=refused).
	f.Wait = 10 * time.Millisecond
	if err := f.Poll(ctx); err != nil || len(applied) != 1 {
		t.Fatalf("within the back-off: %v %v", err, applied)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, LastGoodFile)); !strings.Contains(string(b), "a.example.com") {
		t.Errorf("a refused snapshot replaced the last good one on disk: %s", b)
	}
	// After it, the same version is tried again; a transient cause gone,
	// it is applied.
	now = now.Add(16 * time.Second)
	refuse = ""
	if err := f.Poll(ctx); err != nil || len(applied) != 2 || f.Current() != fo.current.Version {
		t.Fatalf("retry after the back-off: %v %v", err, applied)
	}
	// The last good one is on disk and loads in a new follower.
	b, err := os.ReadFile(filepath.Join(dir, LastGoodFile))
	if err != nil {
		t.Fatal(err)
	}
	var kept config.Snapshot
	json.Unmarshal(b, &kept)
	if kept.Domains[0].Name != "b.example.com" {
		t.Errorf("kept %s", kept.Domains[0].Name)
	}
	var loaded string
	f2 := newFollower(t, srv, dir, func(s *config.Snapshot) error { loaded = s.Domains[0].Name; return nil })
	if ok, err := f2.LoadLastGood(); !ok || err != nil || loaded != "b.example.com" {
		t.Errorf("load last good: %v %v %q", ok, err, loaded)
	}
	// A damaged file on disk is reported, not served.
	os.WriteFile(filepath.Join(dir, LastGoodFile), []byte(`{"version":"x","domains":[]}`), 0o600)
	if ok, err := f2.LoadLastGood(); ok || err == nil {
		t.Errorf("damaged last good: %v %v", ok, err)
	}
}

func TestFollowWrongToken(t *testing.T) {
	srv := httptest.NewServer(&fakeOrigin{current: snap(t, "a.example.com")})
	defer srv.Close()
	f := newFollower(t, srv, "", func(*config.Snapshot) error { return nil })
	f.Token = "nope"
	if err := f.Poll(context.Background()); err == nil {
		t.Fatal("401 not reported")
	}
}
