// Package modules is an edge's source of WASM plugin modules: it fetches a
// module by digest from the origin's data plane, checks that the bytes
// hash to that digest, and keeps them on disk under the edge's data dir,
// so that an edge restarted while the origin is down serves its last good
// snapshot with the modules it had.
//
// A module file is trusted only as far as its hash: a cached file that no
// longer matches its name (a damaged disk, a partial copy) is discarded
// and fetched again.
package modules

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/portico-edge/portico/runtime"
)

// Options configure a Source.
type Options struct {
	// Origin is the origin's data-plane base URL; Token the edge token.
	Origin *url.URL
	Token  string
	// Dir holds the cached modules, one file per digest.
	Dir string
	// MaxBytes caps a module; zero means runtime.DefaultMaxModuleBytes.
	MaxBytes int
	// Client makes the downloads; nil means a client without proxy from
	// the environment (the data plane is reached directly).
	Client *http.Client
	// Attempts bounds the downloads tried for one module when the origin
	// cannot be reached or fails (default 3); AttemptTimeout bounds each
	// (default 2 minutes, enough for the largest module on a slow link).
	Attempts       int
	AttemptTimeout time.Duration
	Logger         *slog.Logger
}

// Source fetches and caches modules. It is safe for concurrent use; one
// download per digest is in flight at a time.
type Source struct {
	o      Options
	client *http.Client
	log    *slog.Logger

	mu      sync.Mutex
	pending map[string]*fetch
}

type fetch struct {
	done chan struct{}
	mod  []byte
	err  error
}

// New returns a Source, creating its directory.
func New(o Options) (*Source, error) {
	if o.Origin == nil || o.Dir == "" {
		return nil, errors.New("edge modules: an origin URL and a directory are required")
	}
	if o.MaxBytes <= 0 {
		o.MaxBytes = runtime.DefaultMaxModuleBytes
	}
	if o.Attempts <= 0 {
		o.Attempts = 3
	}
	if o.AttemptTimeout <= 0 {
		o.AttemptTimeout = 2 * time.Minute
	}
	if err := os.MkdirAll(o.Dir, 0o700); err != nil {
		return nil, fmt.Errorf("edge modules: creating the module cache %s: %w", o.Dir, err)
	}
	s := &Source{o: o, client: o.Client, log: o.Logger, pending: map[string]*fetch{}}
	if s.client == nil {
		s.client = &http.Client{Transport: &http.Transport{Proxy: nil, MaxIdleConnsPerHost: 2, IdleConnTimeout: 30 * time.Second}}
	}
	if s.log == nil {
		s.log = slog.Default()
	}
	return s, nil
}

// Module returns the module with the given digest ("sha256:<hex>"), from
// the disk cache or the origin.
func (s *Source) Module(ctx context.Context, digest string) ([]byte, error) {
	h, ok := strings.CutPrefix(digest, "sha256:")
	if !ok || len(h) != 64 || strings.ToLower(h) != h {
		return nil, fmt.Errorf("%q is not a module digest (sha256: and 64 lower-case hex digits)", digest)
	}
	if _, err := hex.DecodeString(h); err != nil {
		return nil, fmt.Errorf("%q is not a module digest: not hex", digest)
	}
	if mod, ok := s.cached(h); ok {
		return mod, nil
	}
	s.mu.Lock()
	f, ok := s.pending[h]
	if !ok {
		f = &fetch{done: make(chan struct{})}
		s.pending[h] = f
		s.mu.Unlock()
		// The download is not tied to the first caller: others may be
		// waiting for it too, and the cache is worth filling.
		go func() {
			f.mod, f.err = s.download(context.WithoutCancel(ctx), h)
			s.mu.Lock()
			delete(s.pending, h)
			s.mu.Unlock()
			close(f.done)
		}()
	} else {
		s.mu.Unlock()
	}
	select {
	case <-f.done:
		return f.mod, f.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (s *Source) path(h string) string { return filepath.Join(s.o.Dir, h+".wasm") }

// cached returns the cached module if its bytes still hash to its name.
func (s *Source) cached(h string) ([]byte, bool) {
	p := s.path(h)
	b, err := os.ReadFile(p)
	if err != nil {
		if !errors.Is(err, os.ErrNotExist) {
			s.log.Warn("cannot read a cached WASM module; fetching it again", "path", p, "err", err)
		}
		return nil, false
	}
	if sum := sha256.Sum256(b); hex.EncodeToString(sum[:]) != h {
		s.log.Warn("a cached WASM module does not match its digest; discarding it and fetching it again", "path", p)
		_ = os.Remove(p)
		return nil, false
	}
	return b, true
}

// permanentError is an answer that retrying will not change.
type permanentError struct{ err error }

func (e *permanentError) Error() string { return e.err.Error() }
func (e *permanentError) Unwrap() error { return e.err }

func (s *Source) download(ctx context.Context, h string) ([]byte, error) {
	backoff := 250 * time.Millisecond
	var err error
	for attempt := 1; attempt <= s.o.Attempts; attempt++ {
		var mod []byte
		mod, err = s.downloadOnce(ctx, h)
		if err == nil {
			if werr := writeAtomic(s.path(h), mod); werr != nil {
				s.log.Warn("cannot keep a WASM module on disk; a restart while the origin is down could not serve it", "digest", "sha256:"+h, "err", werr)
			}
			return mod, nil
		}
		var pe *permanentError
		if errors.As(err, &pe) || attempt == s.o.Attempts {
			break
		}
		s.log.Warn("module download failed; retrying", "digest", "sha256:"+h, "attempt", attempt, "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, ctx.Err()
		case <-t.C:
		}
		backoff *= 4
	}
	return nil, err
}

func (s *Source) downloadOnce(ctx context.Context, h string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, s.o.AttemptTimeout)
	defer cancel()
	u := *s.o.Origin
	u.Path = strings.TrimSuffix(u.Path, "/") + "/_portico/v1/modules/" + h
	u.RawPath, u.RawQuery = "", ""
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return nil, &permanentError{err}
	}
	req.Header.Set("Authorization", "Bearer "+s.o.Token)
	res, err := s.client.Do(req)
	if err != nil {
		return nil, fmt.Errorf("fetching the module from the origin %s: %w", s.o.Origin.Redacted(), err)
	}
	defer res.Body.Close()
	switch {
	case res.StatusCode == http.StatusOK:
	case res.StatusCode == http.StatusNotFound:
		return nil, &permanentError{fmt.Errorf("the origin has no such module (404): %s", originMessage(res.Body))}
	case res.StatusCode == http.StatusUnauthorized:
		return nil, &permanentError{errors.New("the origin refused the edge token (401) for a module download; check --token / PORTICO_EDGE_TOKEN")}
	case res.StatusCode >= 500:
		return nil, fmt.Errorf("the origin answered %s to a module download: %s", res.Status, originMessage(res.Body))
	default:
		return nil, &permanentError{fmt.Errorf("the origin answered %s to a module download: %s", res.Status, originMessage(res.Body))}
	}
	if res.ContentLength > int64(s.o.MaxBytes) {
		return nil, &permanentError{fmt.Errorf("the origin offers a module of %d bytes, over this edge's %d-byte limit (--wasm-max-module-bytes)", res.ContentLength, s.o.MaxBytes)}
	}
	mod, err := io.ReadAll(io.LimitReader(res.Body, int64(s.o.MaxBytes)+1))
	if err != nil {
		return nil, fmt.Errorf("reading the module from the origin: %w", err)
	}
	if len(mod) > s.o.MaxBytes {
		return nil, &permanentError{fmt.Errorf("the origin sent a module over this edge's %d-byte limit (--wasm-max-module-bytes)", s.o.MaxBytes)}
	}
	if sum := sha256.Sum256(mod); hex.EncodeToString(sum[:]) != h {
		// A damaged transfer is worth another try; the bytes are not
		// used either way.
		return nil, fmt.Errorf("the origin sent %d bytes whose digest is sha256:%s, not the module asked for", len(mod), hex.EncodeToString(sum[:]))
	}
	return mod, nil
}

// originMessage returns the message of the origin's JSON error, or its text.
func originMessage(body io.Reader) string {
	b, _ := io.ReadAll(io.LimitReader(body, 1024))
	var e struct {
		Message string `json:"message"`
	}
	msg := strings.TrimSpace(string(b))
	if json.Unmarshal(b, &e) == nil && e.Message != "" {
		msg = e.Message
	}
	if msg == "" {
		return ""
	}
	return msg
}

func writeAtomic(path string, data []byte) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+".*.tmp")
	if err != nil {
		return err
	}
	defer os.Remove(tmp.Name())
	if _, err := tmp.Write(data); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Sync(); err != nil {
		tmp.Close()
		return err
	}
	if err := tmp.Close(); err != nil {
		return err
	}
	return os.Rename(tmp.Name(), path)
}
