package h3

import (
	"io"
	"net/http"
	"strings"
	"testing"
)

// The response header is what the map held at WriteHeader, as with
// net/http: a Content-Length (or any field) set afterwards goes nowhere,
// so it can never escape the check of the body against it.
func TestHeaderSnapshotAtWriteHeader(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Early", "sent")
		w.Header()["X-Shared"] = []string{"before"}
		w.WriteHeader(http.StatusOK)
		w.Header().Set("Content-Length", "10")
		w.Header().Set("X-Late", "sent")
		w.Header()["X-Shared"][0] = "changed in place"
		io.WriteString(w, "abc")
	})})
	rc := ts.dial(t)
	r := mustResponse(t, rc.request(true, frame(frameHeaders, get("/"))))
	if string(r.body) != "abc" || r.header.Get("content-length") != "3" || r.header.Get("x-late") != "" ||
		r.header.Get("x-early") != "sent" || r.header.Get("x-shared") != "before" {
		t.Fatalf("body %q header %v: want abc, Content-Length 3, the fields set before WriteHeader only", r.body, r.header)
	}
	resp, err := ts.client(t).Get(ts.url("/"))
	if err != nil {
		t.Fatal(err)
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || string(b) != "abc" {
		t.Fatalf("quic-go client: %q, %v", b, err)
	}
}

// What net/http leaves out of 1xx, 204 and 304 answers, and of a 2xx
// answer to CONNECT (RFC 9110 §9.3.6), edge/h3 leaves out too; sniffing
// looks at up to 512 bytes, not only what was buffered before a large
// write.
func TestHeadersPerStatus(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		switch {
		case r.Method == http.MethodConnect:
			h.Set("Content-Length", "5")
			w.WriteHeader(http.StatusOK)
			io.WriteString(w, "tunnel")
		case r.URL.Path == "/304":
			h.Set("Content-Type", "text/css")
			h.Set("Content-Length", "100")
			h.Set("Etag", `"x"`)
			w.WriteHeader(http.StatusNotModified)
		case r.URL.Path == "/204":
			h.Set("Content-Type", "text/css")
			h.Set("Content-Length", "100")
			w.WriteHeader(http.StatusNoContent)
		case r.URL.Path == "/103":
			h.Set("Link", "</a.css>; rel=preload")
			h.Set("Content-Length", "2")
			w.WriteHeader(http.StatusEarlyHints)
			io.WriteString(w, "ok")
		case r.URL.Path == "/sniff":
			io.WriteString(w, strings.Repeat(" ", 10))
			w.Write([]byte("<html><body>" + strings.Repeat("x", 20_000)))
		}
	})})
	rc := ts.dial(t)
	do := func(kv ...string) *response {
		t.Helper()
		return mustResponse(t, rc.request(true, frame(frameHeaders, fields(kv...))))
	}
	path := func(p string) []string {
		return []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", p}
	}
	if r := do(path("/304")...); r.status != 304 || r.header["content-type"] != nil || r.header["content-length"] != nil || r.header.Get("etag") != `"x"` {
		t.Errorf("304: header %v; want no Content-Type nor Content-Length", r.header)
	}
	if r := do(path("/204")...); r.status != 204 || r.header["content-length"] != nil || r.header.Get("content-type") != "text/css" {
		t.Errorf("204: header %v; want no Content-Length, Content-Type kept", r.header)
	}
	if r := do(path("/103")...); len(r.interim) != 1 || r.interimH[0]["content-length"] != nil || r.interimH[0].Get("link") == "" ||
		r.status != 200 || r.header.Get("content-length") != "2" {
		t.Errorf("103 then 200: interim %v %v, status %d header %v; want the 103 without Content-Length", r.interim, r.interimH, r.status, r.header)
	}
	if r := do(":method", "CONNECT", ":authority", "example.test:443"); r.status != 200 || r.header["content-length"] != nil || string(r.body) != "tunnel" {
		t.Errorf("2xx to CONNECT: status %d header %v body %q; want no Content-Length", r.status, r.header, r.body)
	}
	if r := do(path("/sniff")...); r.header.Get("content-type") != "text/html; charset=utf-8" {
		t.Errorf("sniffed %q from 10 buffered bytes and a large write; want text/html as net/http", r.header.Get("content-type"))
	}
}

// Authorities that are hosts reach the handler as they came.
func TestValidAuthorities(t *testing.T) {
	got := make(chan string, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Host })})
	rc := ts.dial(t)
	for _, a := range []string{"localhost", "example.test:443", "127.0.0.1:8443", "[::1]:443", "[::1]", "xn--bcher-kva.example", "host:"} {
		r := mustResponse(t, rc.request(true, frame(frameHeaders, fields(":method", "GET", ":scheme", "https", ":authority", a, ":path", "/"))))
		if h := <-got; r.status != 200 || h != a {
			t.Errorf(":authority %q: status %d, r.Host %q", a, r.status, h)
		}
	}
	r := mustResponse(t, rc.request(true, frame(frameHeaders, fields(":method", "GET", ":scheme", "http", ":authority", "a", ":path", "/"))))
	if h := <-got; r.status != 200 || h != "a" {
		t.Errorf(":scheme http: status %d", r.status)
	}
}

// Request trailers fill the map the Trailer header announced, which every
// copy of the request shares (middleware's r.WithContext included), as
// with x/net/http2; trailers nobody announced are dropped, so that the
// server's own request and a copy never disagree.
func TestRequestTrailersSeenThroughCopies(t *testing.T) {
	got := make(chan [2]string, 1)
	inner := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		got <- [2]string{r.Trailer.Get("X-Sum"), r.Trailer.Get("X-Extra")}
	})
	var original *http.Request
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		original = r
		inner.ServeHTTP(w, r.WithContext(r.Context()))
	})})
	rc := ts.dial(t)
	post := func(kv ...string) []byte {
		return fields(append([]string{":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/"}, kv...)...)
	}
	mustResponse(t, rc.request(true, frame(frameHeaders, post("trailer", "X-Sum")), frame(frameData, []byte("x")), frame(frameHeaders, fields("x-sum", "1", "x-extra", "2"))))
	if v := <-got; v != [2]string{"1", "2"} {
		t.Fatalf("announced trailers through a copy: %q", v)
	}
	mustResponse(t, rc.request(true, frame(frameHeaders, post()), frame(frameData, []byte("x")), frame(frameHeaders, fields("x-sum", "1"))))
	if v := <-got; v != [2]string{} || original.Trailer != nil {
		t.Fatalf("unannounced trailers: the copy saw %q, the server's request %v; want both empty", v, original.Trailer)
	}
}
