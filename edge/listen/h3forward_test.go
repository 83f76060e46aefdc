package listen

import (
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"

	"github.com/portico-edge/portico/edge/forward"
	"github.com/quic-go/quic-go"
)

// proxyTo is a handler forwarding every request to origin through
// edge/forward, as the edge does.
func proxyTo(origin string) http.Handler {
	p := forward.NewProxy(&http.Transport{}, nil)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		p.Serve(w, &forward.Outbound{In: r, Scheme: "http", Host: origin, Path: r.URL.Path})
	})
}

// An origin that answers an upload early (413 without reading it) gets its
// answer to the HTTP/3 client whole, although the forwarder's Transport is
// still reading the upload when the handler returns.
func TestH3ForwardEarlyAnswer(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	}))
	defer origin.Close()
	s, pki := startServer(t, Config{}, proxyTo(origin.Listener.Addr().String()))
	c := h3Client(pki)
	for i := range 20 {
		// 1000 bytes of a declared 1 MB, then nothing until the test ends.
		pr, pw := io.Pipe()
		go func() { pw.Write([]byte(strings.Repeat("u", 1000))) }()
		req, _ := http.NewRequest("POST", s.tlsURL()+"/upload/"+strconv.Itoa(i), pr)
		req.ContentLength = 1_000_000
		resp, err := c.Do(req)
		if err != nil {
			pw.Close()
			t.Fatalf("request %d: %v", i, err)
		}
		body, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		pw.Close()
		if err != nil || resp.StatusCode != http.StatusRequestEntityTooLarge || !strings.Contains(string(body), "too large") {
			t.Fatalf("request %d: status %d body %q error %v; want the origin's 413 whole", i, resp.StatusCode, body, err)
		}
	}
}

// An upstream body cut short (the origin closes its connection inside a
// chunked body) reaches the HTTP/3 client as a reset stream, as it does
// over HTTP/1.1 and HTTP/2, never as a clean end: edge/forward aborts the
// response because HTTP/3 requests carry http.ServerContextKey too.
func TestH3ForwardTruncatedBody(t *testing.T) {
	origin := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte(strings.Repeat("b", 1000)))
		w.(http.Flusher).Flush()
		conn, _, err := http.NewResponseController(w).Hijack()
		if err == nil {
			conn.Close()
		}
	}))
	defer origin.Close()
	var sawKey = make(chan bool, 4)
	pr := proxyTo(origin.Listener.Addr().String())
	s, pki := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, ok := r.Context().Value(http.ServerContextKey).(*http.Server)
		sawKey <- ok
		pr.ServeHTTP(w, r)
	}))
	for _, proto := range []string{"HTTP/2.0", "HTTP/3.0"} {
		c := map[string]*http.Client{"HTTP/2.0": h2Client(pki), "HTTP/3.0": h3Client(pki)}[proto]
		// The reset may overtake the response's HEADERS (quic-go then
		// drops what it had not delivered), so Get itself may fail.
		var body []byte
		resp, err := c.Get(s.tlsURL() + "/cut")
		if err == nil {
			body, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		if !<-sawKey {
			t.Errorf("%s: the request's context carries no *http.Server under http.ServerContextKey", proto)
		}
		if err == nil {
			t.Fatalf("%s: status %d, %d bytes, clean end: a truncated upstream body passed off as whole", proto, resp.StatusCode, len(body))
		}
		if proto == "HTTP/3.0" {
			var se *quic.StreamError
			if (!errors.As(err, &se) || !se.Remote) && !strings.Contains(err.Error(), "H3_INTERNAL_ERROR") {
				t.Fatalf("HTTP/3: %v; want the server's stream reset (H3_INTERNAL_ERROR)", err)
			}
		}
	}
}
