package plugins

import (
	"encoding/json"
	"net/http"
	"strconv"
)

// RequestIDHeader carries the request ID on every response and toward the
// origin and backend.
const RequestIDHeader = "X-Request-Id"

// WriteError writes the JSON error body every Portico error uses,
// {"message": "..."}, with the given status. Messages are for the API's
// callers: they say what was wrong with the request, never how the gateway
// is built.
func WriteError(w http.ResponseWriter, status int, message string) {
	body := ErrorBody(message)
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(status)
	_, _ = w.Write(body)
}

// ErrorBody returns {"message": message} followed by a newline.
func ErrorBody(message string) []byte {
	b, _ := json.Marshal(struct {
		Message string `json:"message"`
	}{message})
	return append(b, '\n')
}
