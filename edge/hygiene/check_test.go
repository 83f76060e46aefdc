package hygiene

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

func TestParseHost(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"api.example", "api.example"},
		{"API.Example.COM", "api.example.com"},
		{"api.example:8443", "api.example"},
		{"api.example.", "api.example"},
		{"A.Example.:8080", "a.example"},
		{"api.example:", "api.example"}, // RFC 3986 allows an empty port
		{"127.0.0.1:80", "127.0.0.1"},
		{"[::1]:443", "::1"},
		{"[2001:DB8:0:0::1]", "2001:db8::1"},
		{"my_service", "my_service"},
		{"xn--bcher-kva.example", "xn--bcher-kva.example"},
	} {
		got, err := parseHost(tc.in)
		if err != nil || got != tc.want {
			t.Errorf("%q: got %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
	for _, tc := range []struct{ in, msg string }{
		{"", "no host"},
		{"user@api.example", "user information"},
		{"u:p@api.example", "not a valid host"}, // the ':' ends the name first
		{"api.example:99999", "not a valid"},
		{"api.example:80:80", "not a valid"},
		{"api.example:8o", "not a valid"},
		{"api..example", "not a valid"},
		{".api.example", "not a valid"},
		{"api.example..", "not a valid"},
		{".", "not a valid"},
		{"api example", "not a valid"},
		{"api.example/x", "not a valid"},
		{"api%2eexample", "not a valid"},
		{"[::1", "not a valid"},
		{"[fe80::1%25eth0]", "not a valid"},
		{"[127.0.0.1]", "not a valid"},
		{"[::1]x", "not a valid"},
		{strings.Repeat("a", 64) + ".example", "not a valid"},
		{strings.Repeat("a.", 127) + "ab", "not a valid"},
	} {
		_, err := parseHost(tc.in)
		if err == nil || err.Status != 400 || !strings.Contains(err.Message, tc.msg) {
			t.Errorf("%q: got %v, want 400 mentioning %q", tc.in, err, tc.msg)
		}
	}
}

func TestCheckHost(t *testing.T) {
	// [14] absolute form: Go takes the host from the target (RFC 9112
	// 3.2.2) and so does everything after Check.
	r := readH1(t, "GET http://Internal.SVC:8080/x HTTP/1.1\r\nHost: public.example\r\n\r\n")
	req, err := Check(r, Limits{})
	if err != nil || req.Host != "internal.svc" || r.Host != "internal.svc" || req.Path != "/x" {
		t.Fatalf("absolute form: got %+v, %v (r.Host %q)", req, err, r.Host)
	}
	for _, tc := range []struct {
		name string
		r    *http.Request
	}{
		{"absolute form with user info", readH1(t, "GET http://user@internal.svc/x HTTP/1.1\r\nHost: public.example\r\n\r\n")},
		{"HTTP/1.0 without Host", readH1(t, "GET / HTTP/1.0\r\n\r\n")},
		{"empty Host", readH1(t, "GET / HTTP/1.1\r\nHost: \r\n\r\n")},
		{"h2 :authority differs from Host", h2Req(t, 2, "GET", "a.example", "/", http.Header{"Host": {"b.example"}})},
		{"h2 two Host headers", h2Req(t, 2, "GET", "a.example", "/", http.Header{"Host": {"a.example", "a.example"}})},
		{"h3 user info", h2Req(t, 3, "GET", "u@a.example", "/", nil)},
	} {
		if _, err := Check(tc.r, Limits{}); err == nil || err.Status != 400 {
			t.Errorf("%s: got %v, want 400", tc.name, err)
		}
	}
	// The same host spelt twice is fine.
	r = h2Req(t, 2, "GET", "A.example:443", "/", http.Header{"Host": {"a.example"}})
	if req, err := Check(r, Limits{}); err != nil || req.Host != "a.example" {
		t.Errorf("h2 matching Host: %+v, %v", req, err)
	}
}

func TestCheckMethodsAndVersions(t *testing.T) {
	for _, m := range []string{"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"} {
		r := readH1(t, m+" / HTTP/1.1\r\nHost: a\r\n\r\n")
		if _, err := Check(r, Limits{}); err != nil {
			t.Errorf("%s: %v", m, err)
		}
	}
	for _, m := range []string{"TRACE", "CONNECT", "PROPFIND", "get", "BREW", "TRACK"} {
		target := "/"
		if m == "CONNECT" {
			target = "a:443"
		}
		r := readH1(t, m+" "+target+" HTTP/1.1\r\nHost: a\r\n\r\n")
		_, err := Check(r, Limits{})
		if err == nil || err.Status != http.StatusNotImplemented {
			t.Errorf("%s: got %v, want 501", m, err)
		}
	}
	r := readH1(t, "GET / HTTP/1.2\r\nHost: a\r\n\r\n")
	if _, err := Check(r, Limits{}); err == nil || err.Status != http.StatusHTTPVersionNotSupported || !err.Close {
		t.Errorf("HTTP/1.2: got %v, want 505 and close", err)
	}
	for _, v := range [][2]int{{2, 0}, {3, 0}} {
		r := h2Req(t, v[0], "GET", "a", "/", nil)
		if _, err := Check(r, Limits{}); err != nil {
			t.Errorf("HTTP/%d: %v", v[0], err)
		}
	}
	r = h2Req(t, 2, "GET", "a", "/", nil)
	r.ProtoMinor = 1
	if _, err := Check(r, Limits{}); err == nil || err.Status != 505 || err.Close {
		t.Errorf("HTTP/2.1: got %v, want 505 without close", err)
	}
}

func TestCheckHeaders(t *testing.T) {
	for _, tc := range []struct {
		name   string
		r      *http.Request
		status int
		close  bool
	}{
		// [19]
		{"underscore", readH1(t, "GET / HTTP/1.1\r\nHost: a\r\nX_Api_Key: k\r\n\r\n"), 400, false},
		{"underscore h2", h2Req(t, 2, "GET", "a", "/", http.Header{"X_api_key": {"k"}}), 400, false},
		// [11] what HTTP/2 and HTTP/3 could carry past a lax server.
		{"NUL in value", h2Req(t, 2, "GET", "a", "/", http.Header{"X-A": {"a\x00b"}}), 400, false},
		{"bare CR in value", h2Req(t, 3, "GET", "a", "/", http.Header{"X-A": {"a\rb"}}), 400, false},
		{"LF in value", h2Req(t, 2, "GET", "a", "/", http.Header{"X-A": {"a\nb"}}), 400, false},
		{"space in name", h2Req(t, 2, "GET", "a", "/", http.Header{"Content-Length ": {"5"}}), 400, false},
		{"empty name", h2Req(t, 2, "GET", "a", "/", http.Header{"": {"5"}}), 400, false},
		// [10] Content-Length that Go's HTTP/2 server would misread.
		{"CL +5 h2", h2Req(t, 2, "POST", "a", "/", http.Header{"Content-Length": {"+5"}}), 400, false},
		{"CL twice h2", h2Req(t, 2, "POST", "a", "/", http.Header{"Content-Length": {"5", "6"}}), 400, false},
		{"CL empty h3", h2Req(t, 3, "POST", "a", "/", http.Header{"Content-Length": {""}}), 400, false},
		// RFC 9113 8.2.2: connection-specific fields make an HTTP/2
		// request malformed.
		{"TE chunked h2", h2Req(t, 2, "POST", "a", "/", http.Header{"Transfer-Encoding": {"chunked"}}), 400, false},
		{"Connection h2", h2Req(t, 2, "GET", "a", "/", http.Header{"Connection": {"close"}}), 400, false},
		{"Upgrade h3", h2Req(t, 3, "GET", "a", "/", http.Header{"Upgrade": {"h2c"}}), 400, false},
		{"TE gzip h2", h2Req(t, 2, "GET", "a", "/", http.Header{"Te": {"gzip"}}), 400, false},
		// Sizes.
		{"too many fields", readH1(t, "GET / HTTP/1.1\r\nHost: a\r\n"+strings.Repeat("X-A: 1\r\n", 100)+"\r\n"), 431, true},
		{"too many bytes", readH1(t, "GET / HTTP/1.1\r\nHost: a\r\nX-Big: "+strings.Repeat("b", 32<<10)+"\r\n\r\n"), 431, true},
		{"too many fields h2", h2Req(t, 2, "GET", "a", "/", http.Header{"X-A": make([]string, 101)}), 431, false},
		{"URI too long", get(t, "/"+strings.Repeat("a", 8<<10)), 414, false},
		{"CL over the limit", readH1(t, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10485761\r\n\r\n"), 413, true},
	} {
		_, err := Check(tc.r, Limits{})
		if err == nil || err.Status != tc.status || err.Close != tc.close {
			t.Errorf("%s: got %v, want %d close=%v", tc.name, err, tc.status, tc.close)
		}
	}
	// At the limits, and fine.
	for _, tc := range []struct {
		name string
		r    *http.Request
	}{
		{"99 fields", readH1(t, "GET / HTTP/1.1\r\nHost: a\r\n"+strings.Repeat("X-A: 1\r\n", 99)+"\r\n")},
		{"URI at the limit", get(t, "/"+strings.Repeat("a", 8<<10-1))},
		{"CL at the limit", readH1(t, "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10485760\r\n\r\n")},
		{"TE trailers h2", h2Req(t, 2, "GET", "a", "/", http.Header{"Te": {"trailers"}})},
		{"tab in value", h2Req(t, 2, "GET", "a", "/", http.Header{"X-A": {"a\tb"}})},
		{"obs-text in value", h2Req(t, 2, "GET", "a", "/", http.Header{"X-A": {"caf\xc3\xa9"}})},
		{"h1 Upgrade", readH1(t, "GET / HTTP/1.1\r\nHost: a\r\nConnection: Upgrade\r\nUpgrade: h2c\r\n\r\n")},
	} {
		if _, err := Check(tc.r, Limits{}); err != nil {
			t.Errorf("%s: %v", tc.name, err)
		}
	}
	// Limits are configurable.
	lim := Limits{MaxHeaderCount: 2, MaxHeaderBytes: 64, MaxURIBytes: 4, MaxBodyBytes: 4}
	for _, tc := range []struct {
		raw    string
		status int
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", 431},
		{"GET / HTTP/1.1\r\nHost: a\r\nA: " + strings.Repeat("x", 60) + "\r\n\r\n", 431},
		{"GET /abcd HTTP/1.1\r\nHost: a\r\n\r\n", 414},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\n", 413},
	} {
		if _, err := Check(readH1(t, tc.raw), lim); err == nil || err.Status != tc.status {
			t.Errorf("%q: got %v, want %d", tc.raw, err, tc.status)
		}
	}
}

func TestErrorWrite(t *testing.T) {
	rec := httptest.NewRecorder()
	(&Error{Status: 400, Message: "bad framing", Close: true}).Write(rec)
	var body struct{ Message string }
	if err := json.Unmarshal(rec.Body.Bytes(), &body); err != nil || body.Message != "bad framing" {
		t.Fatalf("body %q: %v", rec.Body.String(), err)
	}
	if rec.Code != 400 || rec.Header().Get("Connection") != "close" || rec.Header().Get("Content-Type") != "application/json" {
		t.Fatalf("got %d %v", rec.Code, rec.Header())
	}
	rec = httptest.NewRecorder()
	(&Error{Status: 431, Message: "x"}).Write(rec)
	if rec.Code != 431 || rec.Header().Get("Connection") != "" {
		t.Fatalf("got %d %v", rec.Code, rec.Header())
	}
}

// Without a guard (Go parses HTTP/1 from a *tls.Conn), Check cannot see a
// Content-Length that came with Transfer-Encoding, nor Transfer-Encoding
// on HTTP/1.0: it asks for the connection to be closed after any request
// they could hide in.
func TestCheckUnguardedClose(t *testing.T) {
	for _, tc := range []struct {
		raw   string
		close bool
	}{
		{"GET / HTTP/1.1\r\nHost: a\r\n\r\n", false},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 2\r\n\r\nhi", false},
		{"POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", true},
		{"GET / HTTP/1.0\r\nHost: a\r\n\r\n", true},
	} {
		req, err := Check(readH1(t, tc.raw), Limits{})
		if err != nil || req.Close != tc.close {
			t.Errorf("%q: got %+v, %v; want Close=%v", tc.raw, req, err, tc.close)
		}
	}
	req, err := Check(h2Req(t, 2, "POST", "a", "/", nil), Limits{})
	if err != nil || req.Close {
		t.Errorf("h2: got %+v, %v", req, err)
	}
}

func TestCheckSetsCanonicalRequest(t *testing.T) {
	r := readH1(t, "GET /v1/./%61pi//x!y?q=%3B HTTP/1.1\r\nHost: API.Example.:443\r\n\r\n")
	req, err := Check(r, Limits{})
	if err != nil {
		t.Fatal(err)
	}
	want := Request{Host: "api.example", Path: "/v1/api/x!y", EscapedPath: "/v1/api/x!y", RawQuery: "q=%3B"}
	if req != want {
		t.Fatalf("got %+v, want %+v", req, want)
	}
	if r.Host != "api.example" || r.URL.EscapedPath() != "/v1/api/x!y" || r.URL.RawQuery != "q=%3B" || r.RequestURI != "/v1/./%61pi//x!y?q=%3B" {
		t.Fatalf("r after Check: host %q, path %q, query %q, uri %q", r.Host, r.URL.EscapedPath(), r.URL.RawQuery, r.RequestURI)
	}
	// Check is idempotent on what it produced.
	req2, err := Check(r, Limits{})
	if err != nil || req2 != req {
		t.Fatalf("second Check: %+v, %v", req2, err)
	}
}
