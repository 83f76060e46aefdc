// Package dataplane serves what edges call on the origin: requests they
// forward, which run integrations, and the snapshot stream they follow.
// Every call needs an edge token: the data plane trusts the routing and
// identity headers an edge sends, so nothing else may send them.
package dataplane

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/router"
	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/integration"
	"github.com/portico-edge/portico/origin/store"
	"github.com/portico-edge/portico/plugins"
)

// Headers of the edge-to-origin contract (docs/architecture.md).
const (
	HeaderEdgeToken  = "Portico-Edge-Token"
	HeaderDeployment = "Portico-Deployment"
	HeaderStage      = "Portico-Stage"
	HeaderRoute      = "Portico-Route"
)

// SnapshotPath is where edges fetch and long-poll snapshots.
const SnapshotPath = "/_portico/v1/snapshot"

// MaxWait bounds a snapshot long-poll.
const MaxWait = 60 * time.Second

// Server is the origin's data plane.
type Server struct {
	ctl     *control.Control
	store   *store.Store
	invoker *integration.Invoker
	log     *slog.Logger

	tokens     atomic.Pointer[map[string]bool] // edge token hashes
	known      sync.Map                        // token -> struct{}: verified tokens, so each is hashed once
	lastReload atomic.Int64                    // unix nanos of the last reload caused by a miss

	deployments sync.Map // deployment ID -> *deploymentEntry (deployments are immutable)
	extra       *http.ServeMux
}

type deploymentEntry struct {
	d *config.Deployment
}

// New returns a data plane.
func New(ctx context.Context, ctl *control.Control, st *store.Store, iv *integration.Invoker, log *slog.Logger) (*Server, error) {
	s := &Server{ctl: ctl, store: st, invoker: iv, log: log, extra: http.NewServeMux()}
	if err := s.ReloadTokens(ctx); err != nil {
		return nil, err
	}
	return s, nil
}

// HandleEdgeCall registers another edge-facing call under /_portico/ (for
// example module downloads or usage reports); it gets the same token check.
func (s *Server) HandleEdgeCall(pattern string, h http.HandlerFunc) { s.extra.HandleFunc(pattern, h) }

// ReloadTokens rereads the edge tokens from the store; revoked tokens stop
// working at once.
func (s *Server) ReloadTokens(ctx context.Context) error {
	m := map[string]bool{}
	err := s.store.View(ctx, func(tx *store.Tx) error {
		toks, err := tx.Tokens()
		for h, t := range toks {
			if t.Kind == store.TokenEdge {
				m[h] = true
			}
		}
		return err
	})
	if err != nil {
		return err
	}
	s.tokens.Store(&m)
	s.known.Clear()
	return nil
}

func (s *Server) authorized(r *http.Request) bool {
	tok := r.Header.Get(HeaderEdgeToken)
	if tok == "" {
		if t, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer "); ok {
			tok = t
		}
	}
	if tok == "" {
		return false
	}
	if _, ok := s.known.Load(tok); ok {
		return true
	}
	h := store.HashToken(tok)
	if s.check(h) {
		s.known.Store(tok, struct{}{})
		return true
	}
	// A token created since the last reload: reload, but at most once a
	// second, so that wrong tokens cannot make the origin read its store
	// in a loop.
	now := time.Now().UnixNano()
	last := s.lastReload.Load()
	if now-last > int64(time.Second) && s.lastReload.CompareAndSwap(last, now) {
		if err := s.ReloadTokens(r.Context()); err == nil && s.check(h) {
			s.known.Store(tok, struct{}{})
			return true
		}
	}
	return false
}

func (s *Server) check(hash string) bool {
	found := 0
	for stored := range *s.tokens.Load() {
		found |= subtle.ConstantTimeCompare([]byte(stored), []byte(hash))
	}
	return found == 1
}

// ServeHTTP dispatches edge calls.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !s.authorized(r) {
		plugins.WriteError(w, http.StatusUnauthorized, "this is a Portico origin's data plane: only edges with an edge token may call it")
		return
	}
	if r.Header.Get(HeaderDeployment) != "" {
		s.serveForwarded(w, r)
		return
	}
	if r.URL.Path == SnapshotPath {
		s.serveSnapshot(w, r)
		return
	}
	s.extra.ServeHTTP(w, r)
}

func (s *Server) serveSnapshot(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", "GET")
		plugins.WriteError(w, http.StatusMethodNotAllowed, "use GET")
		return
	}
	after := r.URL.Query().Get("after")
	wait := time.Duration(0)
	if v := r.URL.Query().Get("wait"); v != "" {
		d, err := time.ParseDuration(v)
		if err != nil || d < 0 {
			plugins.WriteError(w, http.StatusBadRequest, "wait must be a duration such as 30s")
			return
		}
		wait = min(d, MaxWait)
	}
	ctx, cancel := context.WithTimeout(r.Context(), wait)
	defer cancel()
	snap := s.ctl.Wait(ctx, after)
	if snap == nil {
		if r.Context().Err() != nil {
			return
		}
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Portico-Snapshot-Version", snap.Version)
	_ = json.NewEncoder(w).Encode(snap)
}

func (s *Server) deployment(ctx context.Context, id string) (*config.Deployment, error) {
	if e, ok := s.deployments.Load(id); ok {
		return e.(*deploymentEntry).d, nil
	}
	d, err := s.ctl.Deployment(ctx, id)
	if err != nil {
		return nil, err
	}
	s.deployments.Store(id, &deploymentEntry{d: d})
	return d, nil
}

func (s *Server) serveForwarded(w http.ResponseWriter, r *http.Request) {
	h := r.Header
	reqID := h.Get(plugins.RequestIDHeader)
	if reqID != "" {
		w.Header().Set(plugins.RequestIDHeader, reqID)
	}
	d, err := s.deployment(r.Context(), h.Get(HeaderDeployment))
	if err != nil {
		plugins.WriteError(w, http.StatusNotFound, "the deployment this request was routed with no longer exists")
		return
	}
	apiID, stageName, _ := strings.Cut(h.Get(HeaderStage), "/")
	idx, err := strconv.Atoi(h.Get(HeaderRoute))
	if err != nil || idx < 0 || idx >= len(d.API.Routes) || apiID != d.APIID {
		plugins.WriteError(w, http.StatusBadRequest, "the edge sent routing headers that do not match the deployment")
		return
	}
	var vars map[string]string
	if api := s.ctl.Snapshot().API(apiID); api != nil {
		if st := api.Stage(stageName); st != nil {
			vars = st.Variables
		}
	}
	route := &d.API.Routes[idx]
	params, ok := router.MatchTemplate(route.Path, r.URL.EscapedPath(), make([]plugins.Param, 0, 4))
	if !ok {
		plugins.WriteError(w, http.StatusBadRequest, "the forwarded path does not match the route the edge chose")
		return
	}
	for _, k := range []string{HeaderEdgeToken, HeaderDeployment, HeaderStage, HeaderRoute} {
		delete(h, k)
	}
	s.invoker.Serve(w, r, &integration.Call{Route: route, Variables: vars, Params: params, RequestID: reqID})
}
