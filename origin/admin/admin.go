// Package admin serves the origin's admin API: JSON over HTTP, every call
// authenticated with an admin token, documented by its own OpenAPI document
// at /openapi.json, which is generated from the same route table that
// registers the handlers, so the two cannot drift apart.
package admin

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"mime"
	"net/http"
	"strings"
	"sync"

	"github.com/portico-edge/portico/origin/control"
	"github.com/portico-edge/portico/origin/store"
	"github.com/portico-edge/portico/plugins"
)

// MaxBodyBytes bounds request bodies (an OpenAPI document is the largest).
const MaxBodyBytes = 32 << 20

// Server is the admin API.
type Server struct {
	ctl   *control.Control
	store *store.Store
	log   *slog.Logger
	mux   *http.ServeMux
	// extra routes registered by other parts of the origin (keys, plans,
	// plugins, cache purge) through Handle.
	routes       []Route
	extraSchemas schemaSet

	mu     sync.Mutex
	hashes map[string]bool // admin token hashes; refreshed when tokens change
}

// Route is one admin call: the handler and what the OpenAPI document says
// about it.
type Route struct {
	Method, Path string // Path uses {name} wildcards, as http.ServeMux does
	Summary      string
	Tag          string
	Request      string // schema name in components, "" for none; "document" for a raw document; RequestBinary for a file
	Response     string // schema name, "" for 204
	Status       int    // success status; 0 means 200
	Query        []Param
	Handler      func(w http.ResponseWriter, r *http.Request) error
}

// RequestBinary as a Route's Request documents a body that is a file sent
// as is (a WASM module: application/wasm).
const RequestBinary = "binary"

// Param documents a query parameter.
type Param struct {
	Name, Description, Type string
}

// New returns the admin API over a control plane.
func New(ctx context.Context, ctl *control.Control, st *store.Store, log *slog.Logger) (*Server, error) {
	s := &Server{ctl: ctl, store: st, log: log, mux: http.NewServeMux()}
	if err := s.ReloadTokens(ctx); err != nil {
		return nil, err
	}
	for _, r := range s.coreRoutes() {
		s.Handle(r)
	}
	s.registerCacheRoutes()
	s.registerAccess()
	s.mux.HandleFunc("GET /openapi.json", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(s.OpenAPI())
	})
	return s, nil
}

// Handle registers an admin call.
func (s *Server) Handle(r Route) {
	s.routes = append(s.routes, r)
	s.mux.HandleFunc(r.Method+" "+r.Path, func(w http.ResponseWriter, req *http.Request) {
		if err := r.Handler(w, req); err != nil {
			s.writeErr(w, req, err)
		}
	})
}

// Routes returns the registered calls.
func (s *Server) Routes() []Route { return s.routes }

// ReloadTokens rereads the admin tokens from the store.
func (s *Server) ReloadTokens(ctx context.Context) error {
	hashes := map[string]bool{}
	err := s.store.View(ctx, func(tx *store.Tx) error {
		toks, err := tx.Tokens()
		for h, t := range toks {
			if t.Kind == store.TokenAdmin {
				hashes[h] = true
			}
		}
		return err
	})
	if err != nil {
		return fmt.Errorf("read admin tokens: %w", err)
	}
	s.mu.Lock()
	s.hashes = hashes
	s.mu.Unlock()
	return nil
}

// ServeHTTP authenticates every call, including on loopback: a process on
// the same host is not necessarily allowed to change the gateway.
func (s *Server) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if !s.authorized(r) {
		w.Header().Set("WWW-Authenticate", `Bearer realm="portico-admin"`)
		plugins.WriteError(w, http.StatusUnauthorized, "missing or wrong admin token: send Authorization: Bearer <token> (portico ctl reads it from PORTICO_TOKEN)")
		return
	}
	s.mux.ServeHTTP(w, r)
}

func (s *Server) authorized(r *http.Request) bool {
	tok, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok || tok == "" {
		return false
	}
	h := store.HashToken(strings.TrimSpace(tok))
	s.mu.Lock()
	defer s.mu.Unlock()
	found := 0
	// Compare against every hash in constant time: the set is small, and
	// this keeps timing independent of which token matched.
	for stored := range s.hashes {
		found |= subtle.ConstantTimeCompare([]byte(stored), []byte(h))
	}
	return found == 1
}

func (s *Server) writeErr(w http.ResponseWriter, r *http.Request, err error) {
	var he *httpError
	switch {
	case errors.As(err, &he):
		plugins.WriteError(w, he.status, he.msg)
		return
	}
	switch control.KindOf(err) {
	case control.Invalid:
		plugins.WriteError(w, http.StatusBadRequest, err.Error())
	case control.NotFound:
		plugins.WriteError(w, http.StatusNotFound, err.Error())
	case control.Conflict:
		plugins.WriteError(w, http.StatusConflict, err.Error())
	default:
		s.log.Error("admin call failed", "method", r.Method, "path", r.URL.Path, "err", err)
		plugins.WriteError(w, http.StatusInternalServerError, "internal error: "+err.Error())
	}
}

// httpError carries a status for request-level problems (bad JSON, wrong
// content type) that the control plane never sees.
type httpError struct {
	status int
	msg    string
}

func (e *httpError) Error() string { return e.msg }

// BadRequest returns an error the admin API answers with 400.
func BadRequest(format string, args ...any) error {
	return &httpError{http.StatusBadRequest, fmt.Sprintf(format, args...)}
}

// DecodeJSON reads a JSON request body strictly into v.
func DecodeJSON(r *http.Request, v any) error {
	if ct := r.Header.Get("Content-Type"); ct != "" {
		mt, _, _ := mime.ParseMediaType(ct)
		if mt != "application/json" {
			return &httpError{http.StatusUnsupportedMediaType, fmt.Sprintf("content type %q is not accepted here; send application/json", ct)}
		}
	}
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, MaxBodyBytes))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		if errors.Is(err, io.EOF) {
			return BadRequest("the request body is empty; send a JSON object")
		}
		var mbe *http.MaxBytesError
		if errors.As(err, &mbe) {
			return &httpError{http.StatusRequestEntityTooLarge, fmt.Sprintf("the request body is larger than %d bytes", MaxBodyBytes)}
		}
		return BadRequest("the request body is not valid JSON for this call: %v", err)
	}
	if dec.More() {
		return BadRequest("the request body holds more than one JSON value")
	}
	return nil
}

// WriteJSON writes v with the given status.
func WriteJSON(w http.ResponseWriter, status int, v any) error {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
