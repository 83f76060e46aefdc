// Package backend is the small pet-store service `portico dev` starts
// behind the quickstart API, so that the HTTP route has something real to
// call. It keeps pets in memory, echoes what it received on /echo (handy
// to see what the gateway sends a backend), and echoes WebSocket messages
// on /ws.
package backend

import (
	"context"
	"encoding/json"
	"net/http"
	"slices"
	"strconv"
	"sync"

	"github.com/coder/websocket"
)

// Pet is one pet.
type Pet struct {
	ID   int    `json:"id"`
	Name string `json:"name"`
	Tag  string `json:"tag,omitempty"`
}

// Handler returns the backend's handler with a few pets.
func Handler() http.Handler {
	s := &server{pets: []Pet{{1, "Rex", "dog"}, {2, "Tom", "cat"}, {3, "Nemo", "fish"}}, next: 4}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /pets", s.list)
	mux.HandleFunc("POST /pets", s.create)
	mux.HandleFunc("GET /pets/{id}", s.get)
	mux.HandleFunc("/echo", echo)
	mux.HandleFunc("/echo/{rest...}", echo)
	mux.HandleFunc("GET /ws", wsEcho)
	return mux
}

type server struct {
	mu   sync.Mutex
	pets []Pet
	next int
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}

func (s *server) list(w http.ResponseWriter, r *http.Request) {
	s.mu.Lock()
	pets := slices.Clone(s.pets)
	s.mu.Unlock()
	if limit, err := strconv.Atoi(r.URL.Query().Get("limit")); err == nil && limit >= 0 && limit < len(pets) {
		pets = pets[:limit]
	}
	writeJSON(w, http.StatusOK, pets)
}

func (s *server) get(w http.ResponseWriter, r *http.Request) {
	id, err := strconv.Atoi(r.PathValue("id"))
	if err != nil {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "pet id must be a number"})
		return
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, p := range s.pets {
		if p.ID == id {
			writeJSON(w, http.StatusOK, p)
			return
		}
	}
	writeJSON(w, http.StatusNotFound, map[string]string{"message": "no pet with id " + strconv.Itoa(id)})
}

func (s *server) create(w http.ResponseWriter, r *http.Request) {
	var p Pet
	if err := json.NewDecoder(http.MaxBytesReader(w, r.Body, 1<<16)).Decode(&p); err != nil || p.Name == "" {
		writeJSON(w, http.StatusBadRequest, map[string]string{"message": "send a JSON pet with a name"})
		return
	}
	s.mu.Lock()
	p.ID = s.next
	s.next++
	if len(s.pets) < 1000 {
		s.pets = append(s.pets, p)
	}
	s.mu.Unlock()
	writeJSON(w, http.StatusCreated, p)
}

// echo answers with what the backend received: method, path, query and
// headers.
func echo(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, http.StatusOK, map[string]any{
		"method":  r.Method,
		"path":    r.URL.EscapedPath(),
		"query":   r.URL.RawQuery,
		"host":    r.Host,
		"headers": r.Header,
	})
}

func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	c.SetReadLimit(2 << 20)
	ctx := context.Background()
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}
