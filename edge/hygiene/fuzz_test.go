package hygiene

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// FuzzCheck feeds arbitrary request targets and hosts to Check, both as
// Go's HTTP/1 parser delivers them and raw as :path/:authority (HTTP/2,
// HTTP/3). Check must not panic, and whatever it accepts is in normal form:
// normalising it again changes nothing, and the path holds no "/../", "//",
// encoded slash or backslash.
func FuzzCheck(f *testing.F) {
	for _, s := range []string{
		"/", "/pets/1?limit=10", "/ok/../admin", "/./admin", "//admin", "/ok/%2e%2e/admin",
		"/x%2F..%2Fadmin", "/admin%5c..", "/%61dmin", "/ADMIN", "/admin;x", "/user/..;x=y/admin",
		"/a%00", "/a%zz", "/../x", "/a%3Fb%23c%20d?q=%23", "/é", "/a%252e", "/a/b/..",
		"http://internal.svc/x", "http://u@h/x", "*", "/a?x=1;y=2", "/.%2e/.%2E/%2e./x",
	} {
		f.Add(s, "api.example")
	}
	f.Add("/", "API.Example.:443")
	f.Add("/", "[::1]:80")
	f.Add("/", "u@h")
	f.Fuzz(func(t *testing.T, target, host string) {
		if target == "" {
			return
		}
		// As HTTP/2 and HTTP/3 deliver it.
		checkNormalForm(t, h2Req(t, 2, "GET", host, target, nil))
		// As Go's HTTP/1 server delivers it, when it accepts it.
		raw := "GET " + target + " HTTP/1.1\r\nHost: " + host + "\r\n\r\n"
		if r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw))); err == nil && r.RequestURI == target {
			delete(r.Header, "Host")
			checkNormalForm(t, r)
		}
	})
}

func checkNormalForm(t *testing.T, r *http.Request) {
	t.Helper()
	target := r.RequestURI
	req, herr := Check(r, Limits{})
	if herr != nil {
		if herr.Status < 400 || herr.Status > 599 || herr.Message == "" {
			t.Fatalf("%q: bad error %+v", target, herr)
		}
		return
	}
	p := req.EscapedPath
	if p == "" || p[0] != '/' {
		t.Fatalf("%q: escaped path %q does not start with /", target, p)
	}
	for _, bad := range []string{"//", "/../", "/./", "\\", ";", "#", "?"} {
		if strings.Contains(p, bad) {
			t.Fatalf("%q: escaped path %q holds %q", target, p, bad)
		}
	}
	if strings.HasSuffix(p, "/..") || strings.HasSuffix(p, "/.") {
		t.Fatalf("%q: escaped path %q ends in a dot segment", target, p)
	}
	up := strings.ToUpper(p)
	if strings.Contains(up, "%2F") || strings.Contains(up, "%5C") || strings.Contains(up, "%00") {
		t.Fatalf("%q: escaped path %q holds an encoded separator or NUL", target, p)
	}
	for i := 0; i < len(p); i++ {
		if c := p[i]; c <= ' ' || c >= 0x7f {
			t.Fatalf("%q: escaped path %q holds byte %#x", target, p, c)
		}
	}
	for _, bad := range []string{"//", "/../", "/./"} {
		if strings.Contains(req.Path, bad) {
			t.Fatalf("%q: path %q holds %q", target, req.Path, bad)
		}
	}
	if dec, err := url.PathUnescape(p); err != nil || dec != req.Path {
		t.Fatalf("%q: escaped path %q decodes to %q (%v), path is %q", target, p, dec, err, req.Path)
	}
	// Idempotent: the normal form checks to itself.
	again := p
	if req.RawQuery != "" || strings.HasSuffix(target, "?") {
		again += "?" + req.RawQuery
	}
	h := req.Host
	if strings.IndexByte(h, ':') >= 0 {
		h = "[" + h + "]"
	}
	req2, herr := Check(h2Req(t, 2, "GET", h, again, nil), Limits{})
	if herr != nil {
		t.Fatalf("%q: its normal form %q (host %q) is refused: %v", target, again, h, herr)
	}
	if req2.Path != req.Path || req2.EscapedPath != req.EscapedPath || req2.RawQuery != req.RawQuery || req2.Host != req.Host {
		t.Fatalf("%q: normalising again changed %+v to %+v", target, req, req2)
	}
}
