package usage_test

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/usage"
	"github.com/portico-edge/portico/origin"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/plugins/apikey"
)

// testOrigin is a real origin serving its data plane on 127.0.0.1, with
// API keys to report usage for.
type testOrigin struct {
	o         *origin.Origin
	dataURL   *url.URL
	edgeToken string
	keys      []string
}

func startOrigin(t *testing.T, keys int) *testOrigin {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	noImport := func(context.Context, []byte, control.ImportOptions) (*config.API, error) {
		return nil, errors.New("no imports in this test")
	}
	o, first, err := origin.New(ctx, origin.Config{DataDir: t.TempDir(), AdminListen: "127.0.0.1:0", DataListen: "127.0.0.1:0",
		Importer: noImport, Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	if err := o.Listen(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- o.Serve(ctx, time.Second) }()
	t.Cleanup(func() {
		cancel()
		<-done
		o.Close()
	})
	to := &testOrigin{o: o, dataURL: &url.URL{Scheme: "http", Host: o.DataAddr()}, edgeToken: first.EdgeToken}
	for i := range keys {
		k, err := o.Control.CreateAPIKey(ctx, control.APIKeyInput{Name: fmt.Sprintf("key %d", i)})
		if err != nil {
			t.Fatal(err)
		}
		to.keys = append(to.keys, k.ID)
	}
	return to
}

// total returns a key's usage today as the origin has it.
func (to *testOrigin) total(t *testing.T, key string) int64 {
	t.Helper()
	day := time.Now().UTC().Format(time.DateOnly)
	u, err := to.o.Control.APIKeyUsage(context.Background(), key, day, day)
	if err != nil {
		t.Fatal(err)
	}
	return u.Total
}

func newReporter(t *testing.T, origin *url.URL, token string, src usage.Source, reg prometheus.Registerer) *usage.Reporter {
	t.Helper()
	r, err := usage.New(usage.Options{Origin: origin, Token: token, Source: src, Interval: 20 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Timeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler), Registerer: reg})
	if err != nil {
		t.Fatal(err)
	}
	return r
}

func TestReportsReachTheOrigin(t *testing.T) {
	to := startOrigin(t, 2)
	u := apikey.NewUsage()
	reg := prometheus.NewRegistry()
	r := newReporter(t, to.dataURL, to.edgeToken, u, reg)
	now := time.Now()
	u.Record(to.keys[0], "", now, 3)
	u.Record(to.keys[1], "", now, 1)
	u.Record(to.keys[0], "", now, 2)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if a, b := to.total(t, to.keys[0]), to.total(t, to.keys[1]); a != 5 || b != 1 {
		t.Errorf("origin has %d and %d, want 5 and 1", a, b)
	}
	// Nothing new: nothing is sent.
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := reports(t, reg, "sent"); got != 1 {
		t.Errorf("sent %v reports, want 1", got)
	}
	// A wrong token is an error that says so, and the counts are kept.
	bad := newReporter(t, to.dataURL, "ptc_edge_wrong", u, nil)
	u.Record(to.keys[1], "", now, 4)
	if err := bad.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), "edge token") {
		t.Errorf("wrong token: %v", err)
	}
	if bad.Pending() != 4 {
		t.Errorf("pending after a failure: %d, want 4", bad.Pending())
	}
}

// reports returns portico_usage_reports_total for a result.
func reports(t *testing.T, reg *prometheus.Registry, result string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "portico_usage_reports_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == "result" && l.GetValue() == result {
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	return 0
}

// lossy forwards to the origin, which counts the report, but answers the
// edge with an error for the first n calls: the answer was lost.
type lossy struct {
	proxy *httputil.ReverseProxy
	lose  atomic.Int32
	ids   sync.Map // report ID -> times seen
}

func (l *lossy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	body, _ := io.ReadAll(r.Body)
	var rep usage.Report
	_ = json.Unmarshal(body, &rep)
	n, _ := l.ids.LoadOrStore(rep.ID, new(atomic.Int32))
	n.(*atomic.Int32).Add(1)
	r.Body = io.NopCloser(strings.NewReader(string(body)))
	rec := httptest.NewRecorder()
	l.proxy.ServeHTTP(rec, r)
	if l.lose.Add(-1) >= 0 {
		http.Error(w, "answer lost on the way", http.StatusBadGateway)
		return
	}
	for k, v := range rec.Header() {
		w.Header()[k] = v
	}
	w.WriteHeader(rec.Code)
	w.Write(rec.Body.Bytes())
}

func TestLostAnswersAreNotCountedTwice(t *testing.T) {
	to := startOrigin(t, 1)
	l := &lossy{proxy: httputil.NewSingleHostReverseProxy(to.dataURL)}
	l.lose.Store(3)
	srv := httptest.NewServer(l)
	defer srv.Close()
	front, _ := url.Parse(srv.URL)
	u := apikey.NewUsage()
	r := newReporter(t, front, to.edgeToken, u, nil)
	key := to.keys[0]
	now := time.Now()
	u.Record(key, "", now, 7)
	for i := range 3 {
		if err := r.Flush(context.Background()); err == nil {
			t.Fatalf("flush %d succeeded through a lost answer", i)
		}
		// Requests keep being counted while the report is retried.
		u.Record(key, "", now, 1)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := to.total(t, key); got != 10 {
		t.Errorf("origin counted %d, want 10: a retried report was counted twice or lost", got)
	}
	retried := 0
	l.ids.Range(func(_, v any) bool {
		if v.(*atomic.Int32).Load() == 4 {
			retried++
		}
		return true
	})
	if retried != 1 {
		t.Error("the failed report was not retried under the same ID")
	}
}

func TestOriginDownKeepsCounts(t *testing.T) {
	to := startOrigin(t, 1)
	proxy := httputil.NewSingleHostReverseProxy(to.dataURL)
	var down atomic.Bool
	down.Store(true)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "origin unavailable", http.StatusServiceUnavailable)
			return
		}
		proxy.ServeHTTP(w, r)
	}))
	defer srv.Close()
	front, _ := url.Parse(srv.URL)
	u := apikey.NewUsage()
	r := newReporter(t, front, to.edgeToken, u, nil)
	key := to.keys[0]
	for range 5 {
		u.Record(key, "", time.Now(), 2)
		if err := r.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), "503") {
			t.Fatalf("flush while the origin is down: %v", err)
		}
	}
	if r.Pending() != 2 {
		t.Errorf("the first report should be pending (2), got %d", r.Pending())
	}
	// Once the origin is back, the pending report goes first, then
	// everything counted meanwhile.
	down.Store(false)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := to.total(t, key); got != 10 {
		t.Errorf("origin has %d, want 10", got)
	}

	// At shutdown with the origin unreachable, Close says how many
	// requests go unreported.
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := &url.URL{Scheme: "http", Host: ln.Addr().String()}
	ln.Close()
	var logged strings.Builder
	u2 := apikey.NewUsage()
	lr, _ := usage.New(usage.Options{Origin: dead, Token: to.edgeToken, Source: u2, Timeout: time.Second, Logger: slog.New(slog.NewTextHandler(&logged, nil))})
	u2.Record(key, "", time.Now(), 9)
	if err := lr.Close(context.Background()); err == nil || !strings.Contains(logged.String(), "requests=9") {
		t.Errorf("close with the origin down: %v; log: %s", err, logged.String())
	}
}

// recorder is a stand-in origin that records reports and answers with
// the statuses it is given, then 200.
type recorder struct {
	mu       sync.Mutex
	reports  []usage.Report
	statuses []int
}

func (rc *recorder) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	var rep usage.Report
	if r.URL.Path != usage.Path || r.Method != http.MethodPost || r.Header.Get("Authorization") != "Bearer tok" || r.Header.Get("Content-Type") != "application/json" {
		http.Error(w, "wrong call", http.StatusNotFound)
		return
	}
	if err := json.NewDecoder(r.Body).Decode(&rep); err != nil {
		http.Error(w, err.Error(), http.StatusBadRequest)
		return
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	rc.reports = append(rc.reports, rep)
	status := http.StatusOK
	if len(rc.statuses) > 0 {
		status, rc.statuses = rc.statuses[0], rc.statuses[1:]
	}
	w.WriteHeader(status)
	fmt.Fprint(w, `{"message":"test"}`)
}

func TestBatchesAndRefusedReports(t *testing.T) {
	rc := &recorder{statuses: []int{http.StatusBadRequest}}
	srv := httptest.NewServer(rc)
	defer srv.Close()
	base, _ := url.Parse(srv.URL)
	u := apikey.NewUsage()
	reg := prometheus.NewRegistry()
	r := newReporter(t, base, "tok", u, reg)
	now := time.Now()
	// A report the origin refuses as invalid is dropped, not retried
	// forever.
	u.Record("k-refused", "p", now, 1)
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	if r.Pending() != 0 || reports(t, reg, "dropped") != 1 {
		t.Errorf("a refused report should be dropped: pending %d", r.Pending())
	}
	// More counts than one report holds go in several reports.
	for i := range usage.MaxDeltas + 5 {
		u.Record(fmt.Sprintf("k%05d", i), "p", now, 1)
	}
	if err := r.Flush(context.Background()); err != nil {
		t.Fatal(err)
	}
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if len(rc.reports) != 3 || len(rc.reports[1].Deltas) != usage.MaxDeltas || len(rc.reports[2].Deltas) != 5 {
		t.Fatalf("got %d reports", len(rc.reports))
	}
	if rc.reports[1].ID == rc.reports[2].ID || rc.reports[0].ID == rc.reports[1].ID || !strings.HasPrefix(rc.reports[1].ID, "r") {
		t.Error("each report needs its own ID")
	}
	if d := rc.reports[2].Deltas[0]; d.PlanID != "p" || d.Day != now.UTC().Format(time.DateOnly) || d.Count != 1 {
		t.Errorf("delta: %+v", d)
	}
}

func TestRunReportsEveryInterval(t *testing.T) {
	to := startOrigin(t, 1)
	u := apikey.NewUsage()
	r := newReporter(t, to.dataURL, to.edgeToken, u, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); r.Run(ctx) }()
	defer func() { cancel(); <-done }()
	key := to.keys[0]
	u.Record(key, "", time.Now(), 4)
	deadline := time.Now().Add(10 * time.Second)
	for to.total(t, key) != 4 {
		if time.Now().After(deadline) {
			t.Fatal("the reporter did not report within 10s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	u.Record(key, "", time.Now(), 1)
	for to.total(t, key) != 5 {
		if time.Now().After(deadline) {
			t.Fatal("the reporter did not report again")
		}
		time.Sleep(10 * time.Millisecond)
	}
}
