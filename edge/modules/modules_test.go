package modules

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// fakeOrigin serves modules the way the origin's data plane does.
type fakeOrigin struct {
	srv     *httptest.Server
	mu      sync.Mutex
	modules map[string][]byte // hex digest -> bytes served
	status  int               // when non-zero, every download gets it
	gate    chan struct{}     // when set, downloads wait for it to close
	calls   atomic.Int64
	token   string
}

func newFakeOrigin(t *testing.T) *fakeOrigin {
	f := &fakeOrigin{modules: map[string][]byte{}, token: "ptc_edge_test"}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /_portico/v1/modules/{sha256}", func(w http.ResponseWriter, r *http.Request) {
		f.calls.Add(1)
		f.mu.Lock()
		gate := f.gate
		f.mu.Unlock()
		if gate != nil {
			<-gate
		}
		if r.Header.Get("Authorization") != "Bearer "+f.token {
			http.Error(w, `{"message":"no token"}`, http.StatusUnauthorized)
			return
		}
		f.mu.Lock()
		defer f.mu.Unlock()
		if f.status != 0 {
			w.WriteHeader(f.status)
			return
		}
		b, ok := f.modules[r.PathValue("sha256")]
		if !ok {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte(`{"message":"no module sha256:x is uploaded to this origin"}`))
			return
		}
		w.Write(b)
	})
	f.srv = httptest.NewServer(mux)
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOrigin) add(b []byte) string {
	sum := sha256.Sum256(b)
	h := hex.EncodeToString(sum[:])
	f.mu.Lock()
	f.modules[h] = b
	f.mu.Unlock()
	return "sha256:" + h
}

func (f *fakeOrigin) source(t *testing.T, dir string) *Source {
	u, _ := url.Parse(f.srv.URL)
	s, err := New(Options{Origin: u, Token: f.token, Dir: dir, Attempts: 2, MaxBytes: 1 << 20})
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func TestFetchCacheAndVerify(t *testing.T) {
	ctx := context.Background()
	o := newFakeOrigin(t)
	dir := t.TempDir()
	mod := []byte("\x00asm\x01\x00\x00\x00 a module")
	d := o.add(mod)
	s := o.source(t, dir)

	got, err := s.Module(ctx, d)
	if err != nil || !bytes.Equal(got, mod) {
		t.Fatalf("first fetch: %q, %v", got, err)
	}
	file := filepath.Join(dir, strings.TrimPrefix(d, "sha256:")+".wasm")
	if b, err := os.ReadFile(file); err != nil || !bytes.Equal(b, mod) {
		t.Fatalf("the module was not kept on disk: %v", err)
	}
	// A second Source on the same directory (an edge restarted while the
	// origin is down) serves it from disk.
	o.srv.Close()
	s2 := o.source(t, dir)
	if got, err := s2.Module(ctx, d); err != nil || !bytes.Equal(got, mod) {
		t.Fatalf("from disk with the origin down: %q, %v", got, err)
	}
	if n := o.calls.Load(); n != 1 {
		t.Errorf("the origin served %d downloads, want 1", n)
	}

	// A damaged file is not used: with the origin down, that is an error.
	if err := os.WriteFile(file, []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := s2.Module(ctx, d); err == nil || !strings.Contains(err.Error(), "fetching the module from the origin") {
		t.Fatalf("a damaged cached module with the origin down: %v", err)
	}
	if _, err := os.Stat(file); !os.IsNotExist(err) {
		t.Errorf("the damaged file was kept: %v", err)
	}
}

func TestDamagedCacheIsFetchedAgain(t *testing.T) {
	o := newFakeOrigin(t)
	dir := t.TempDir()
	mod := []byte("module bytes")
	d := o.add(mod)
	file := filepath.Join(dir, strings.TrimPrefix(d, "sha256:")+".wasm")
	if err := os.WriteFile(file, []byte("module byteZ"), 0o600); err != nil {
		t.Fatal(err)
	}
	got, err := o.source(t, dir).Module(context.Background(), d)
	if err != nil || !bytes.Equal(got, mod) {
		t.Fatalf("%q, %v", got, err)
	}
	if b, _ := os.ReadFile(file); !bytes.Equal(b, mod) {
		t.Errorf("the damaged file was not replaced: %q", b)
	}
}

func TestOriginErrors(t *testing.T) {
	ctx := context.Background()
	o := newFakeOrigin(t)
	s := o.source(t, t.TempDir())

	missing := "sha256:" + strings.Repeat("0", 64)
	_, err := s.Module(ctx, missing)
	if err == nil || !strings.Contains(err.Error(), "the origin has no such module (404): no module sha256:x is uploaded to this origin") {
		t.Errorf("missing module: %v", err)
	}
	if n := o.calls.Load(); n != 1 {
		t.Errorf("a 404 was retried: %d calls", n)
	}

	// Bytes that do not hash to the digest asked for are never used.
	d := o.add([]byte("right"))
	o.mu.Lock()
	o.modules[strings.TrimPrefix(d, "sha256:")] = []byte("wrong")
	o.mu.Unlock()
	o.calls.Store(0)
	_, err = s.Module(ctx, d)
	if err == nil || !strings.Contains(err.Error(), "not the module asked for") {
		t.Errorf("wrong bytes: %v", err)
	}
	if n := o.calls.Load(); n != 2 {
		t.Errorf("wrong bytes were tried %d times, want 2 (Attempts)", n)
	}

	o.mu.Lock()
	o.status = http.StatusServiceUnavailable
	o.mu.Unlock()
	if _, err := s.Module(ctx, d); err == nil || !strings.Contains(err.Error(), "503") {
		t.Errorf("origin failing: %v", err)
	}

	bad := o.source(t, t.TempDir())
	bad.o.Token = "wrong"
	o.mu.Lock()
	o.status = 0
	o.mu.Unlock()
	if _, err := bad.Module(ctx, d); err == nil || !strings.Contains(err.Error(), "refused the edge token") {
		t.Errorf("wrong token: %v", err)
	}

	for _, ref := range []string{"", "sha256:abc", strings.Repeat("a", 64), "sha256:" + strings.Repeat("A", 64), "sha256:" + strings.Repeat("g", 64)} {
		if _, err := s.Module(ctx, ref); err == nil || !strings.Contains(err.Error(), "is not a module digest") {
			t.Errorf("digest %q: %v", ref, err)
		}
	}
}

func TestTooLarge(t *testing.T) {
	o := newFakeOrigin(t)
	d := o.add(bytes.Repeat([]byte("x"), 2<<20))
	_, err := o.source(t, t.TempDir()).Module(context.Background(), d)
	if err == nil || !strings.Contains(err.Error(), "over this edge's 1048576-byte limit") {
		t.Errorf("%v", err)
	}
}

// TestConcurrentFetchesShareOneDownload: many policies naming one module
// at once cost one download.
func TestConcurrentFetchesShareOneDownload(t *testing.T) {
	o := newFakeOrigin(t)
	release := make(chan struct{})
	o.gate = release
	mod := []byte("shared")
	d := o.add(mod)
	s := o.source(t, t.TempDir())
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			got, err := s.Module(context.Background(), d)
			if err == nil && !bytes.Equal(got, mod) {
				err = os.ErrInvalid
			}
			errs <- err
		}()
	}
	// Wait (bounded) until the one download is in flight.
	deadline := time.Now().Add(5 * time.Second)
	for {
		s.mu.Lock()
		n := len(s.pending)
		s.mu.Unlock()
		if n == 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	if n := o.calls.Load(); n != 1 {
		t.Errorf("%d downloads for one module, want 1", n)
	}
}
