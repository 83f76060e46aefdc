package hygiene

import (
	"bufio"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// readH1 parses a raw HTTP/1 request the way Go's server does before it
// calls a handler (http.ReadRequest, then the Host header moves to r.Host).
func readH1(t testing.TB, raw string) *http.Request {
	t.Helper()
	r, err := http.ReadRequest(bufio.NewReader(strings.NewReader(raw)))
	if err != nil {
		t.Fatalf("Go's parser refused %q: %v", raw, err)
	}
	delete(r.Header, "Host")
	return r
}

// h2Req builds a request the way Go's HTTP/2 server (and quic-go's HTTP/3
// server, with major 3) does: RequestURI is :path, Host is :authority.
// Unlike HTTP/1, :path can carry bytes the request line cannot.
func h2Req(t testing.TB, major int, method, authority, path string, hdr http.Header) *http.Request {
	t.Helper()
	u, err := url.ParseRequestURI(path)
	if err != nil {
		// url refuses control characters; the server would too, but
		// Check must not rely on it: build the URL by hand.
		u = &url.URL{Path: path}
		if i := strings.IndexByte(path, '?'); i >= 0 {
			u = &url.URL{Path: path[:i], RawQuery: path[i+1:]}
		}
	}
	if hdr == nil {
		hdr = http.Header{}
	}
	return &http.Request{
		Method:     method,
		URL:        u,
		Proto:      "HTTP/2.0",
		ProtoMajor: major,
		Header:     hdr,
		Host:       authority,
		RequestURI: path,
		Body:       http.NoBody,
	}
}

func get(t testing.TB, target string) *http.Request {
	return readH1(t, "GET "+target+" HTTP/1.1\r\nHost: api.example\r\n\r\n")
}
