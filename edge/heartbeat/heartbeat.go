// Package heartbeat reports a node's state to its origin: the snapshot
// version it serves and its certificates' status. The origin shows them in
// its admin API (which edges are behind, which certificates fail).
package heartbeat

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"time"

	"github.com/portico-edge/portico/origin/fleet"
)

// Path is where the origin's data plane receives heartbeats.
const Path = "/_portico/v1/heartbeat"

// Reporter sends heartbeats.
type Reporter struct {
	Origin   *url.URL
	Token    string
	Client   *http.Client
	Interval time.Duration // default 10s
	Log      *slog.Logger
	// State returns the heartbeat to send.
	State func() fleet.Heartbeat
}

// Run sends a heartbeat at once and then every Interval until ctx ends.
// Failures are logged at debug level: a node keeps serving without its
// origin, and the follower already reports an unreachable origin.
func (r *Reporter) Run(ctx context.Context) {
	iv := r.Interval
	if iv == 0 {
		iv = 10 * time.Second
	}
	t := time.NewTicker(iv)
	defer t.Stop()
	for {
		if err := r.Send(ctx); err != nil && ctx.Err() == nil && r.Log != nil {
			r.Log.Debug("heartbeat not delivered", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Send sends one heartbeat.
func (r *Reporter) Send(ctx context.Context) error {
	body, err := json.Marshal(r.State())
	if err != nil {
		return err
	}
	u := *r.Origin
	u.Path = Path
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.Token)
	req.Header.Set("Content-Type", "application/json")
	c := r.Client
	if c == nil {
		c = http.DefaultClient
	}
	res, err := c.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	if res.StatusCode != http.StatusNoContent {
		b, _ := io.ReadAll(io.LimitReader(res.Body, 512))
		return fmt.Errorf("origin answered %s: %s", res.Status, b)
	}
	return nil
}
