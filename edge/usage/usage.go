// Package usage reports the requests each API key made at this edge to the
// origin, which adds them up for the "get usage" admin calls.
//
// The api-key policy counts accepted requests per key, plan and UTC day in
// an apikey.Usage. A Reporter flushes those counts every interval and posts
// them to the origin's data plane (POST /_portico/v1/usage, with the edge
// token) as one report with an ID. A report that fails is retried, with the
// same ID and jittered back-off, until the origin acknowledges it: the
// origin remembers the IDs it counted, so a report whose answer was lost is
// never counted twice. Meanwhile new counts keep aggregating in the
// apikey.Usage (one number per key, plan and day), so memory stays bounded
// however long the origin is away.
package usage

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/base32"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/plugins/apikey"
)

// Path is where the origin's data plane takes usage reports
// (control.UsageReportPath on the origin side).
const Path = "/_portico/v1/usage"

// MaxDeltas is the most counts one report carries (the origin's limit);
// a larger flush is sent as several reports.
const MaxDeltas = 10000

// Source is where the counts come from: the node's *apikey.Usage.
type Source interface {
	Flush() []apikey.UsageDelta
	Restore([]apikey.UsageDelta)
}

// Report is the body of one usage report.
type Report struct {
	ID     string              `json:"id"`
	Deltas []apikey.UsageDelta `json:"deltas"`
}

// Options configure a Reporter.
type Options struct {
	// Origin is the origin's data-plane base URL; Token the edge token.
	Origin *url.URL
	Token  string
	Source Source
	// Interval between reports; default 10s.
	Interval time.Duration
	// MaxBackoff caps the wait between retries of a failed report;
	// default 2 minutes (or Interval, if longer).
	MaxBackoff time.Duration
	// Timeout bounds one post; default 10s.
	Timeout    time.Duration
	Client     *http.Client
	Logger     *slog.Logger
	Registerer prometheus.Registerer
}

// Reporter ships usage to the origin.
type Reporter struct {
	o   Options
	url string

	mu      sync.Mutex // one report at a time; guards pending
	pending *Report    // sent but not acknowledged: retried as is

	sent, failed, dropped prometheus.Counter
}

// New returns a Reporter; call Run to start it.
func New(o Options) (*Reporter, error) {
	if o.Origin == nil || o.Source == nil {
		return nil, errors.New("usage reporter: Origin and Source are required")
	}
	if o.Interval <= 0 {
		o.Interval = 10 * time.Second
	}
	if o.MaxBackoff <= 0 {
		o.MaxBackoff = max(2*time.Minute, o.Interval)
	}
	if o.Timeout <= 0 {
		o.Timeout = 10 * time.Second
	}
	if o.Client == nil {
		o.Client = &http.Client{}
	}
	if o.Logger == nil {
		o.Logger = slog.Default()
	}
	u := *o.Origin
	u.Path = strings.TrimSuffix(u.Path, "/") + Path
	u.RawQuery = ""
	vec := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "portico_usage_reports_total",
		Help: "Usage reports this edge sent to the origin, by result (sent, failed: retried later, dropped: refused by the origin as invalid).",
	}, []string{"result"})
	if o.Registerer != nil {
		if err := o.Registerer.Register(vec); err != nil {
			return nil, fmt.Errorf("usage reporter: register metrics: %w", err)
		}
	}
	return &Reporter{o: o, url: u.String(),
		sent: vec.WithLabelValues("sent"), failed: vec.WithLabelValues("failed"), dropped: vec.WithLabelValues("dropped")}, nil
}

// Run reports every interval until ctx ends; after a failure it retries
// sooner, backing off up to MaxBackoff. It does not make a last report:
// call Flush at shutdown, once requests have stopped.
func (r *Reporter) Run(ctx context.Context) {
	wait := r.o.Interval
	backoff := time.Duration(0)
	for {
		t := time.NewTimer(wait)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		if err := r.Flush(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			backoff = min(max(2*backoff, time.Second), r.o.MaxBackoff)
			wait = backoff/2 + rand.N(backoff/2+1)
			r.o.Logger.Warn("cannot report API key usage to the origin; the counts are kept and sent again", "origin", r.o.Origin.Redacted(), "err", err, "retry_in", wait.Round(time.Millisecond))
			continue
		}
		backoff, wait = 0, r.o.Interval
	}
}

// Flush sends what was counted so far: first a report still waiting for
// acknowledgement, then the new counts, in reports of at most MaxDeltas. It
// stops at the first failure, keeping the failed report to retry. Counts
// the origin refuses as invalid (400) are dropped, with an error logged,
// since sending them again cannot succeed.
func (r *Reporter) Flush(ctx context.Context) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for {
		if r.pending == nil {
			ds := r.o.Source.Flush()
			if len(ds) == 0 {
				return nil
			}
			if len(ds) > MaxDeltas {
				r.o.Source.Restore(ds[MaxDeltas:])
				ds = ds[:MaxDeltas]
			}
			r.pending = &Report{ID: newReportID(), Deltas: ds}
		}
		err := r.send(ctx, r.pending)
		var refused *refusedError
		switch {
		case errors.As(err, &refused):
			r.dropped.Inc()
			r.o.Logger.Error("the origin refused a usage report; its counts are dropped", "report", r.pending.ID, "requests", total(r.pending.Deltas), "err", err)
			r.pending = nil
		case err != nil:
			r.failed.Inc()
			return err
		default:
			r.sent.Inc()
			r.pending = nil
		}
	}
}

// Pending returns the number of requests counted but not yet acknowledged
// by the origin, in a report being retried.
func (r *Reporter) Pending() int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.pending == nil {
		return 0
	}
	return total(r.pending.Deltas)
}

// Close makes a last report, bounded by ctx, and logs what could not be
// sent. Call it at shutdown, after the listeners stopped taking requests.
func (r *Reporter) Close(ctx context.Context) error {
	err := r.Flush(ctx)
	if err != nil {
		lost := r.Pending()
		rest := r.o.Source.Flush()
		lost += total(rest)
		r.o.Logger.Error("usage not reported at shutdown; these requests will be missing from the keys' usage", "requests", lost, "err", err)
		return fmt.Errorf("report usage at shutdown: %w", err)
	}
	return nil
}

func total(ds []apikey.UsageDelta) int64 {
	var n int64
	for _, d := range ds {
		n += d.Count
	}
	return n
}

// refusedError is a report the origin will never accept as it is.
type refusedError struct {
	status int
	msg    string
}

func (e *refusedError) Error() string { return fmt.Sprintf("origin answered %d: %s", e.status, e.msg) }

func (r *Reporter) send(ctx context.Context, rep *Report) error {
	body, err := json.Marshal(rep)
	if err != nil {
		return &refusedError{0, err.Error()}
	}
	ctx, cancel := context.WithTimeout(ctx, r.o.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, r.url, bytes.NewReader(body))
	if err != nil {
		return err
	}
	req.Header.Set("Authorization", "Bearer "+r.o.Token)
	req.Header.Set("Content-Type", "application/json")
	res, err := r.o.Client.Do(req)
	if err != nil {
		return err
	}
	defer res.Body.Close()
	msg, _ := io.ReadAll(io.LimitReader(res.Body, 1024))
	switch {
	case res.StatusCode == http.StatusOK:
		return nil
	case res.StatusCode == http.StatusBadRequest || res.StatusCode == http.StatusRequestEntityTooLarge:
		return &refusedError{res.StatusCode, strings.TrimSpace(string(msg))}
	case res.StatusCode == http.StatusUnauthorized:
		return errors.New("the origin refused the edge token (401); check --token / PORTICO_EDGE_TOKEN")
	default:
		return fmt.Errorf("origin answered %s: %s", res.Status, strings.TrimSpace(string(msg)))
	}
}

// newReportID returns a random report ID (128 bits).
func newReportID() string {
	var b [16]byte
	_, _ = crand.Read(b[:])
	return "r" + strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b[:]))
}
