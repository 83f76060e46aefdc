package hygiene

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

func TestNormalizePath(t *testing.T) {
	for _, tc := range []struct {
		raw, path, escaped string
	}{
		{"/", "/", "/"},
		{"/pets/123", "/pets/123", "/pets/123"},
		// [20] dot segments and repeated slashes, before routing.
		{"/ok/../admin", "/admin", "/admin"},
		{"/./admin", "/admin", "/admin"},
		{"//admin", "/admin", "/admin"},
		{"/ok/%2e%2e/admin", "/admin", "/admin"},
		{"/ok/%2E%2E/admin", "/admin", "/admin"},
		{"/ok/.%2e/admin", "/admin", "/admin"},
		{"/ok/%2e/admin", "/ok/admin", "/ok/admin"},
		{"/a///b", "/a/b", "/a/b"},
		{"/a/b/../../../c", "/c", "/c"},
		// Climbing above the root is clamped (RFC 3986 5.2.4).
		{"/../x", "/x", "/x"},
		{"/..", "/", "/"},
		{"/../../", "/", "/"},
		{"/.", "/", "/"},
		// A trailing slash is kept, also after a dot segment.
		{"/a/", "/a/", "/a/"},
		{"/a//", "/a/", "/a/"},
		{"/a/b/..", "/a/", "/a/"},
		{"/a/.", "/a/", "/a/"},
		// Not dot segments.
		{"/a..b", "/a..b", "/a..b"},
		{"/..a/.b", "/..a/.b", "/..a/.b"},
		{"/.well-known/x", "/.well-known/x", "/.well-known/x"},
		// [22] unreserved characters are decoded; case is kept.
		{"/%61dmin", "/admin", "/admin"},
		{"/%7Euser/%2D%5F", "/~user/-_", "/~user/-_"},
		{"/ADMIN", "/ADMIN", "/ADMIN"},
		{"/%41DMIN", "/ADMIN", "/ADMIN"},
		// Other escapes are data, with upper-case hex.
		{"/a%3Fb", "/a?b", "/a%3Fb"},
		{"/a%3fb", "/a?b", "/a%3Fb"},
		{"/a%23b", "/a#b", "/a%23b"},
		{"/a%20b", "/a b", "/a%20b"},
		{"/a%3Bb", "/a;b", "/a%3Bb"},
		{"/a%25", "/a%", "/a%25"},
		{"/a%25zz", "/a%zz", "/a%25zz"},
		{"/%C3%A9t%C3%A9", "/été", "/%C3%A9t%C3%A9"},
		// Raw characters that may not appear in a path are escaped.
		{"/a b", "/a b", "/a%20b"},
		{"/été", "/été", "/%C3%A9t%C3%A9"},
		{"/a|b{c}", "/a|b{c}", "/a%7Cb%7Bc%7D"},
		// Sub-delimiters other than ';' stay raw.
		{"/a!$&'()*+,=:@b", "/a!$&'()*+,=:@b", "/a!$&'()*+,=:@b"},
		{"//user@host/is/a/path/", "/user@host/is/a/path/", "/user@host/is/a/path/"},
	} {
		path, escaped, err := normalizePath(tc.raw)
		if err != nil {
			t.Errorf("%q: %v", tc.raw, err)
			continue
		}
		if path != tc.path || escaped != tc.escaped {
			t.Errorf("%q: got (%q, %q), want (%q, %q)", tc.raw, path, escaped, tc.path, tc.escaped)
		}
		// The escaped form is stable: normalising it changes nothing.
		p2, e2, err := normalizePath(escaped)
		if err != nil || p2 != path || e2 != escaped {
			t.Errorf("%q: normalising %q again gave (%q, %q, %v)", tc.raw, escaped, p2, e2, err)
		}
		// And it means the same as the decoded form to Go's URL code,
		// which the forwarder uses to write the outbound request line.
		u := &url.URL{Path: path, RawPath: escaped}
		if got := u.EscapedPath(); got != escaped {
			t.Errorf("%q: url.URL.EscapedPath = %q, want %q", tc.raw, got, escaped)
		}
	}
}

func TestNormalizePathRejects(t *testing.T) {
	for _, tc := range []struct{ raw, msg string }{
		// [21] encoded or raw slash and backslash.
		{"/x%2F..%2Fadmin", "encoded slash/backslash"},
		{"/x%2f", "encoded slash/backslash"},
		{"/admin%5c..", "encoded slash/backslash"},
		{"/admin%5C", "encoded slash/backslash"},
		{`/a\b`, "encoded slash/backslash"},
		{`/a\..\admin`, "encoded slash/backslash"},
		// [22] matrix parameters.
		{"/admin;x", "semicolon"},
		{"/user/..;x=y/admin", "semicolon"},
		{"/a;", "semicolon"},
		// NUL and control characters, raw or encoded.
		{"/a%00", "control"},
		{"/a%0d%0aX-Injected:1", "control"},
		{"/a%7F", "control"},
		{"/a\x00", "control"},
		{"/a\x01b", "control"},
		{"/a\tb", "control"},
		{"/a\x7f", "control"},
		// Invalid percent-encoding.
		{"/a%zz", "invalid percent-encoding"},
		{"/a%", "invalid percent-encoding"},
		{"/a%4", "invalid percent-encoding"},
		{"/a%4/", "invalid percent-encoding"},
		{"/a%%41", "invalid percent-encoding"},
		// Double encoding.
		{"/a%252e%252e/admin", "double percent-encoding"},
		{"/a%252F", "double percent-encoding"},
		// A fragment.
		{"/a#b", "fragment"},
	} {
		_, _, err := normalizePath(tc.raw)
		if err == nil {
			t.Errorf("%q: accepted", tc.raw)
			continue
		}
		if err.Status != http.StatusBadRequest || !strings.Contains(err.Message, tc.msg) || err.Close {
			t.Errorf("%q: got %d %q close=%v, want 400 mentioning %q", tc.raw, err.Status, err.Message, err.Close, tc.msg)
		}
	}
}

func TestCheckQuery(t *testing.T) {
	for _, q := range []string{"", "a=1&b=2", "a=%20&b=%3B", "x=é", "a=1/2?3", "q=a+b", "f=%25"} {
		if err := checkQuery(q); err != nil {
			t.Errorf("%q: %v", q, err)
		}
	}
	for _, tc := range []struct{ q, msg string }{
		{"a=%zz", "invalid percent-encoding"},
		{"a=%", "invalid percent-encoding"},
		{"a=%4", "invalid percent-encoding"},
		{"a=\x00", "control"},
		{"a=\r\nX: y", "control"},
		{"a= b", "space"},
		{"a=1#frag", "fragment"},
		{"a=1;b=2", "semicolon"},
	} {
		err := checkQuery(tc.q)
		if err == nil || err.Status != http.StatusBadRequest || !strings.Contains(err.Message, tc.msg) {
			t.Errorf("%q: got %v, want 400 mentioning %q", tc.q, err, tc.msg)
		}
	}
}

// Through Check, with requests as Go's HTTP/1 server parses them.
func TestCheckPathAndQuery(t *testing.T) {
	for _, tc := range []struct {
		target, path, escaped, query string
		status                       int
	}{
		{target: "/pets?limit=10", path: "/pets", escaped: "/pets", query: "limit=10"},
		{target: "/ok/%2e%2e/admin?a=%3F", path: "/admin", escaped: "/admin", query: "a=%3F"},
		{target: "/a%3Fb?c", path: "/a?b", escaped: "/a%3Fb", query: "c"},
		{target: "/x?", path: "/x", escaped: "/x", query: ""},
		{target: "/%61dmin", path: "/admin", escaped: "/admin"},
		{target: "http://api.example", path: "/", escaped: "/"},
		{target: "http://api.example?q=1", path: "/", escaped: "/", query: "q=1"},
		{target: "HTTP://api.example/a/../b", path: "/b", escaped: "/b"},
		{target: "/x%2F..%2Fadmin", status: 400},
		{target: `/a\b`, status: 400},
		{target: "/admin;x", status: 400},
		{target: "/a#b?c", status: 400},
		{target: "/a?x=%zz", status: 400},
		{target: "/a?x=1;y=2", status: 400},
		{target: "*", status: 400},
		{target: "ftp://api.example/x", status: 400},
		{target: "http://user:pw@api.example/x", status: 400},
	} {
		r := get(t, tc.target)
		req, err := Check(r, Limits{})
		if tc.status != 0 {
			if err == nil || err.Status != tc.status {
				t.Errorf("%q: got %+v, %v; want %d", tc.target, req, err, tc.status)
			}
			continue
		}
		if err != nil {
			t.Errorf("%q: %v", tc.target, err)
			continue
		}
		if req.Path != tc.path || req.EscapedPath != tc.escaped || req.RawQuery != tc.query {
			t.Errorf("%q: got (%q, %q, %q), want (%q, %q, %q)", tc.target, req.Path, req.EscapedPath, req.RawQuery, tc.path, tc.escaped, tc.query)
		}
		// r now carries the canonical form, so the outbound copy does.
		if r.URL.Path != tc.path || r.URL.EscapedPath() != tc.escaped {
			t.Errorf("%q: r.URL is (%q, %q) after Check", tc.target, r.URL.Path, r.URL.EscapedPath())
		}
	}
}

// HTTP/2 and HTTP/3 carry the path in :path, which can hold what an
// HTTP/1 request line cannot; the rules are the same.
func TestCheckPathH2H3(t *testing.T) {
	for _, major := range []int{2, 3} {
		r := h2Req(t, major, "GET", "api.example", "/a b/./%2e%2e/c?x=1", nil)
		req, err := Check(r, Limits{})
		if err != nil || req.Path != "/c" || req.RawQuery != "x=1" {
			t.Errorf("HTTP/%d: got %+v, %v", major, req, err)
		}
		for _, p := range []string{"/a\x00b", "/a\r\nb", "/a?x=1 HTTP/1.1", "/a?x=\x7f", "/a%2fb"} {
			_, err := Check(h2Req(t, major, "GET", "api.example", p, nil), Limits{})
			if err == nil || err.Status != 400 || err.Close {
				t.Errorf("HTTP/%d %q: got %v, want 400 without close", major, p, err)
			}
		}
	}
}
