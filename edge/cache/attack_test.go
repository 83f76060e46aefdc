package cache

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// Checklist H51: headers that change the response but are not in the key
// never reach the origin on a cacheable request, so no poisoned variant is
// stored for the next client.
func TestUnkeyedHeadersCannotPoison(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`, routes: []testRoute{{prefix: "/"}, {prefix: "/uncached", routeCfg: `{"enabled":false}`}}})
	edgeHost := strings.TrimPrefix(e.edge.URL, "http://")
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		// An origin that builds links from whatever it is told.
		host := r.Host
		for _, h := range []string{"X-Forwarded-Host", "X-Host", "X-Forwarded-Server", "X-Original-Host"} {
			if v := r.Header.Get(h); v != "" {
				host = v
			}
		}
		scheme := "https"
		if r.Header.Get("X-Forwarded-Scheme") == "http" {
			scheme = "http"
		}
		path := r.URL.Path
		if v := r.Header.Get("X-Original-Url"); v != "" {
			path = v
		}
		if v := r.Header.Get("X-Rewrite-Url"); v != "" {
			path = v
		}
		if r.Header.Get("X-Http-Method-Override") != "" {
			w.Header().Set("Cache-Control", "max-age=300")
			w.WriteHeader(http.StatusMethodNotAllowed)
			return
		}
		fmt.Fprintf(w, "<script src=%s://%s%s/app.js>", scheme, host, path)
	})
	attacks := [][]string{
		{"X-Forwarded-Host", "evil.example"},
		{"X-Host", "evil.example"},
		{"X-Forwarded-Server", "evil.example"},
		{"X-Original-Host", "evil.example"},
		{"X-Forwarded-Scheme", "http"},
		{"X-Original-URL", "/admin"},
		{"X-Rewrite-URL", "/admin"},
		{"X-HTTP-Method-Override", "DELETE"},
	}
	for i, a := range attacks {
		p := fmt.Sprintf("/page%d", i)
		want := "<script src=https://" + edgeHost + p + "/app.js>"
		// The attacker's request fills the cache...
		r := e.get(p, a...)
		if r.body != want {
			t.Errorf("%s: the origin acted on the unkeyed header: %q", a[0], r.body)
		}
		// ... and the victim gets the clean object.
		r = e.get(p)
		if r.status != 200 || r.body != want {
			t.Errorf("%s: victim got %d %q", a[0], r.status, r.body)
		}
	}
	// The origin really is vulnerable: without the cache the header gets through.
	if r := e.get("/uncached", "X-Host", "evil.example"); !strings.Contains(r.body, "evil.example") {
		t.Fatalf("the test origin ignores X-Host, so this test proves nothing: %q", r.body)
	}
}

// Checklist H52: requests that make the origin fail (oversize header, a
// meta character, method override) do not store the error for everyone.
func TestCPDoSErrorsAreNotStored(t *testing.T) {
	// An origin with a smaller header limit than the edge: a large header
	// makes it answer 431.
	e := newEnv(t, envOpts{stageCfg: `{"ttl":"300s"}`, originMaxHeaderBytes: 4 << 10})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		if v := r.Header.Get("X-Meta"); strings.ContainsAny(v, "\\^`") {
			http.Error(w, "bad header", http.StatusBadRequest)
			return
		}
		io.WriteString(w, "fine")
	})
	r := e.get("/hho", "X-Oversize", strings.Repeat("a", 8<<10))
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("oversize header: origin answered %d, the test needs 431", r.status)
	}
	expect(t, "after HHO", e.get("/hho"), 200, "Miss", "fine")

	r = e.get("/hmc", "X-Meta", `a\b`)
	if r.status != http.StatusBadRequest {
		t.Fatalf("meta character: %d", r.status)
	}
	expect(t, "after HMC", e.get("/hmc"), 200, "Miss", "fine")

	// A control character never gets past the edge's HTTP server.
	conn, err := net.Dial("tcp", strings.TrimPrefix(e.edge.URL, "http://"))
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	_ = conn.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprintf(conn, "GET /ctl HTTP/1.1\r\nHost: 127.0.0.1\r\nX-Meta: a\x07b\r\n\r\n")
	res, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	res.Body.Close()
	if res.StatusCode != http.StatusBadRequest {
		t.Fatalf("\\x07 in a header: %d", res.StatusCode)
	}
	hits := e.hits()
	expect(t, "after \\x07", e.get("/ctl"), 200, "Miss", "fine")
	e.wantHits(hits + 1)

	// Method override never reaches the origin (see the poisoning test);
	// an error the origin sends with explicit freshness for a status that
	// is not cacheable by default is still not stored.
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=300")
		if r.Header.Get("X-Trigger") != "" {
			w.WriteHeader(http.StatusInternalServerError)
			return
		}
		io.WriteString(w, "fine")
	})
	e.get("/explicit", "X-Trigger", "1")
	expect(t, "after explicit 500", e.get("/explicit"), 200, "Miss", "fine")
}

// Checklist H53: web cache deception. Whether a response is stored
// depends on the origin's Cache-Control and on the request's credentials,
// never on what the path looks like.
func TestWebCacheDeception(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{"ttl":"300s"}`})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		// The origin ignores the suffix and serves the account page.
		w.Header().Set("Content-Type", "text/css")
		if c, err := r.Cookie("session"); err == nil {
			io.WriteString(w, "account of "+c.Value)
			return
		}
		io.WriteString(w, "login page")
	})
	for _, p := range []string{"/account/x.css", "/account%2Fx.css", "/account;x.css", "/account%23x.css", "/account/..%2fstatic/x.css", "/account/x.js", "/account/x.png"} {
		victim := e.get(p, "Cookie", "session=victim")
		if victim.body != "account of victim" {
			t.Fatalf("%s: victim got %q", p, victim.body)
		}
		attacker := e.get(p)
		if strings.Contains(attacker.body, "victim") {
			t.Fatalf("%s: the victim's page was stored and served to another client: %q", p, attacker.body)
		}
	}
	// The same response marked public by the origin is shared: that is
	// the origin's decision to make.
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "public, max-age=60")
		io.WriteString(w, "static")
	})
	e.get("/static/x.css", "Cookie", "session=victim")
	expect(t, "public", e.get("/static/x.css"), 200, "Hit", "static")
}

// Checklist H54 is TestCredentials and TestGETWithBodyIsNotCached.

// The origin's listener is closed mid-stream: a truncated response is not
// stored.
func TestTruncatedResponseIsNotStored(t *testing.T) {
	e := newEnv(t, envOpts{stageCfg: `{}`})
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		io.WriteString(w, "only part")
		w.(http.Flusher).Flush()
		panic(http.ErrAbortHandler)
	})
	req, _ := http.NewRequest(http.MethodGet, e.edge.URL+"/cut", nil)
	if res, err := e.client.Do(req); err == nil {
		_, _ = io.ReadAll(res.Body)
		res.Body.Close()
	}
	e.origin.handle(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "whole") })
	expect(t, "after truncation", e.get("/cut"), 200, "Miss", "whole")
}
