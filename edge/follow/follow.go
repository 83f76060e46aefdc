// Package follow keeps an edge's configuration in step with its origin: it
// long-polls the origin's snapshot endpoint, verifies each snapshot against
// its content-derived version, hands it to the edge, and keeps the last good
// one on disk so that an edge restarted while the origin is down serves
// what it served before.
package follow

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"time"

	"github.com/portico-edge/portico/config"
)

// LastGoodFile is the name of the last good snapshot in the data dir.
const LastGoodFile = "snapshot.json"

// MaxSnapshotBytes bounds what the follower reads from the origin.
const MaxSnapshotBytes = 256 << 20

// Apply installs a snapshot. An error rejects it (the edge keeps serving
// what it had), and the follower waits for a newer version.
type Apply func(*config.Snapshot) error

// Follower follows one origin.
type Follower struct {
	Origin  *url.URL // the origin's data-plane base URL
	Token   string   // edge token
	DataDir string   // where the last good snapshot is kept; "" keeps none
	Client  *http.Client
	Apply   Apply
	Log     *slog.Logger
	// Wait is how long one long-poll may wait for a change (default 30s).
	Wait time.Duration

	current string // version applied last
	refused string // version refused last, not fetched again until retryAt
	// A refusal may be transient (a plugin module that could not be
	// downloaded): the refused version is tried again after retryAt,
	// with a back-off that doubles up to 5 minutes.
	retryAt time.Time
	retryIn time.Duration
	now     func() time.Time
}

func (f *Follower) clock() time.Time {
	if f.now != nil {
		return f.now()
	}
	return time.Now()
}

// LoadLastGood applies the snapshot kept on disk, if any. It returns false
// when there is none.
func (f *Follower) LoadLastGood() (bool, error) {
	if f.DataDir == "" {
		return false, nil
	}
	b, err := os.ReadFile(filepath.Join(f.DataDir, LastGoodFile))
	if errors.Is(err, os.ErrNotExist) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read last good snapshot: %w", err)
	}
	var snap config.Snapshot
	if err := json.Unmarshal(b, &snap); err != nil {
		return false, fmt.Errorf("last good snapshot %s is damaged: %w", filepath.Join(f.DataDir, LastGoodFile), err)
	}
	if err := snap.Verify(); err != nil {
		return false, fmt.Errorf("last good snapshot %s: %w", filepath.Join(f.DataDir, LastGoodFile), err)
	}
	if err := f.Apply(&snap); err != nil {
		return false, fmt.Errorf("last good snapshot %s cannot be served: %w", filepath.Join(f.DataDir, LastGoodFile), err)
	}
	f.current = snap.Version
	f.log().Info("serving last good snapshot from disk", "version", snap.Version)
	return true, nil
}

func (f *Follower) log() *slog.Logger {
	if f.Log == nil {
		return slog.Default()
	}
	return f.Log
}

// Run follows the origin until ctx ends. Errors are logged and retried with
// capped, jittered back-off; they never stop the edge from serving.
func (f *Follower) Run(ctx context.Context) {
	backoff := 250 * time.Millisecond
	for ctx.Err() == nil {
		err := f.Poll(ctx)
		if err == nil {
			backoff = 250 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			return
		}
		f.log().Warn("cannot fetch configuration from the origin; serving the current one", "origin", f.Origin.String(), "err", err, "retry_in", backoff)
		t := time.NewTimer(backoff + rand.N(backoff/2))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(backoff*2, 30*time.Second)
	}
}

// Poll makes one long-poll request and applies what it gets.
func (f *Follower) Poll(ctx context.Context) error {
	wait := f.Wait
	if wait == 0 {
		wait = 30 * time.Second
	}
	after := f.current
	if f.refused != "" && f.clock().Before(f.retryAt) {
		after = f.refused
	}
	u := *f.Origin
	u.Path = "/_portico/v1/snapshot"
	u.RawQuery = url.Values{"after": {after}, "wait": {wait.String()}}.Encode()
	ctx, cancel := context.WithTimeout(ctx, wait+15*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+f.Token)
	client := f.Client
	if client == nil {
		client = http.DefaultClient
	}
	res, err := client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	switch res.StatusCode {
	case http.StatusNotModified:
		return nil
	case http.StatusOK:
	case http.StatusUnauthorized:
		return errors.New("the origin refused the edge token (401); check --token / PORTICO_EDGE_TOKEN")
	default:
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("origin answered %s: %s", res.Status, b)
	}
	body, err := io.ReadAll(io.LimitReader(res.Body, MaxSnapshotBytes+1))
	if err != nil {
		return fmt.Errorf("read snapshot: %w", err)
	}
	if len(body) > MaxSnapshotBytes {
		return fmt.Errorf("snapshot is larger than %d bytes", MaxSnapshotBytes)
	}
	var snap config.Snapshot
	if err := json.Unmarshal(body, &snap); err != nil {
		return fmt.Errorf("decode snapshot: %w", err)
	}
	if err := snap.Verify(); err != nil {
		return err
	}
	if snap.Version == f.current {
		return nil
	}
	if err := f.Apply(&snap); err != nil {
		// NACK: keep serving the current snapshot; wait for the next
		// version, or try this one again after the back-off.
		if f.refused == snap.Version {
			f.retryIn = min(f.retryIn*2, 5*time.Minute)
		} else {
			f.retryIn = 15 * time.Second
		}
		f.refused, f.retryAt = snap.Version, f.clock().Add(f.retryIn)
		f.log().Error("snapshot refused; serving the previous one", "version", snap.Version, "err", err, "retry_in", f.retryIn)
		return nil
	}
	f.current, f.refused, f.retryIn = snap.Version, "", 0
	if f.DataDir != "" {
		if err := writeAtomic(filepath.Join(f.DataDir, LastGoodFile), body); err != nil {
			f.log().Warn("cannot keep the snapshot on disk; a restart while the origin is down would start empty", "err", err)
		}
	}
	return nil
}

// Current returns the version applied last.
func (f *Follower) Current() string { return f.current }

func writeAtomic(path string, data []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return err
	}
	tmp := path + ".tmp"
	fh, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return err
	}
	if _, err := fh.Write(data); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Sync(); err != nil {
		fh.Close()
		return err
	}
	if err := fh.Close(); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}
