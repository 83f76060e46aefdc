package wsrelay

import (
	"bufio"
	"bytes"
	"net/http"
	"net/url"
	"strings"
	"testing"
)

const testKey = "dGhlIHNhbXBsZSBub25jZQ=="

func clientRequest(mod func(r *http.Request)) *http.Request {
	r, _ := http.NewRequest(http.MethodGet, "http://example.test/chat", nil)
	r.Proto, r.ProtoMajor, r.ProtoMinor = "HTTP/1.1", 1, 1
	r.Header.Set("Upgrade", "websocket")
	r.Header.Set("Connection", "keep-alive, Upgrade")
	r.Header.Set("Sec-WebSocket-Key", testKey)
	r.Header.Set("Sec-WebSocket-Version", "13")
	if mod != nil {
		mod(r)
	}
	return r
}

func TestAcceptKey(t *testing.T) {
	// The example of RFC 6455 §1.3.
	if got := acceptKey(testKey); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("acceptKey = %q", got)
	}
}

func TestCheckClientHandshake(t *testing.T) {
	for _, tt := range []struct {
		name string
		mod  func(r *http.Request)
		want int
	}{
		{"valid", nil, 0},
		{"upgrade case", func(r *http.Request) { r.Header.Set("Upgrade", "WebSocket") }, 0},
		{"with subprotocols", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Protocol", "chat, v2.chat") }, 0},
		{"no upgrade", func(r *http.Request) { r.Header.Del("Upgrade") }, 400},
		{"h2c upgrade", func(r *http.Request) { r.Header.Set("Upgrade", "h2c") }, 400},
		{"no connection upgrade", func(r *http.Request) { r.Header.Set("Connection", "keep-alive") }, 400},
		{"POST", func(r *http.Request) { r.Method = http.MethodPost }, 400},
		{"HTTP/1.0", func(r *http.Request) { r.ProtoMinor = 0 }, 400},
		{"HTTP/2", func(r *http.Request) { r.ProtoMajor, r.ProtoMinor = 2, 0 }, 400},
		{"body", func(r *http.Request) { r.ContentLength = 5 }, 400},
		{"chunked body", func(r *http.Request) { r.TransferEncoding = []string{"chunked"} }, 400},
		{"no key", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Key") }, 400},
		{"short key", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "c2hvcnQ=") }, 400},
		{"two keys", func(r *http.Request) { r.Header.Add("Sec-WebSocket-Key", testKey) }, 400},
		{"key not base64", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Key", "!!!!!!!!!!!!!!!!!!!!!!!!") }, 400},
		{"version 8", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Version", "8") }, 426},
		{"no version", func(r *http.Request) { r.Header.Del("Sec-WebSocket-Version") }, 426},
		{"bad subprotocol", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Protocol", "a b") }, 400},
		{"empty subprotocol", func(r *http.Request) { r.Header.Set("Sec-WebSocket-Protocol", "a,,b") }, 400},
	} {
		t.Run(tt.name, func(t *testing.T) {
			r := clientRequest(tt.mod)
			got, msg := checkClientHandshake(r)
			if got != tt.want {
				t.Fatalf("status %d (%s), want %d", got, msg, tt.want)
			}
			if IsUpgrade(r) != (tt.want == 0) {
				t.Fatalf("IsUpgrade disagrees with the check")
			}
		})
	}
}

func TestUpstreamRequest(t *testing.T) {
	up := &http.Request{
		URL:  &url.URL{Path: "/ws/room 1", RawQuery: "a=1&b=2"},
		Host: "backend.internal:8080",
		Header: http.Header{
			"X-Request-Id": {"req-1"},
			// A client's Connection header copied by mistake must not
			// remove what the gateway added (checklist B15).
			"Connection":               {"close, X-Forwarded-For"},
			"X-Forwarded-For":          {"192.0.2.7"},
			"Keep-Alive":               {"timeout=5"},
			"Upgrade":                  {"h2c"},
			"Sec-Websocket-Extensions": {"permessage-deflate"},
			"Sec-Websocket-Key":        {"stale"},
			"Content-Length":           {"10"},
			"Origin":                   {"https://app.example"},
		},
	}
	b, err := upstreamRequest(up, testKey, []string{"chat", "v2"})
	if err != nil {
		t.Fatal(err)
	}
	req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(b)))
	if err != nil {
		t.Fatalf("rendered request does not parse: %v\n%s", err, b)
	}
	if req.RequestURI != "/ws/room%201?a=1&b=2" || req.Host != "backend.internal:8080" {
		t.Fatalf("request line or host wrong: %q %q", req.RequestURI, req.Host)
	}
	want := map[string]string{
		"X-Request-Id":           "req-1",
		"X-Forwarded-For":        "192.0.2.7",
		"Origin":                 "https://app.example",
		"Upgrade":                "websocket",
		"Connection":             "Upgrade",
		"Sec-WebSocket-Key":      testKey,
		"Sec-WebSocket-Version":  "13",
		"Sec-WebSocket-Protocol": "chat, v2",
	}
	for k, v := range want {
		if got := req.Header.Values(k); len(got) != 1 || got[0] != v {
			t.Errorf("%s = %q, want %q", k, got, v)
		}
	}
	for _, k := range []string{"Keep-Alive", "Sec-WebSocket-Extensions", "Content-Length"} {
		if req.Header.Get(k) != "" {
			t.Errorf("%s was forwarded: %q", k, req.Header.Get(k))
		}
	}

	for name, h := range map[string]http.Header{
		"CRLF in value": {"X-A": {"a\r\nX-Injected: 1"}},
		"NUL in value":  {"X-A": {"a\x00b"}},
		"bad name":      {"X A": {"b"}},
	} {
		up := &http.Request{URL: &url.URL{Path: "/"}, Host: "h", Header: h}
		if _, err := upstreamRequest(up, testKey, nil); err == nil {
			t.Errorf("%s: rendered without an error", name)
		}
	}
	if _, err := upstreamRequest(&http.Request{URL: &url.URL{Path: "/"}, Host: "a b"}, testKey, nil); err == nil {
		t.Error("a Host with a space was rendered")
	}
}

func TestCheck101(t *testing.T) {
	good := func() http.Header {
		return http.Header{
			"Upgrade":              {"websocket"},
			"Connection":           {"Upgrade"},
			"Sec-Websocket-Accept": {acceptKey(testKey)},
		}
	}
	for _, tt := range []struct {
		name    string
		mod     func(h http.Header)
		offered []string
		ok      bool
		proto   string
	}{
		{"valid", nil, nil, true, ""},
		{"protocol", func(h http.Header) { h.Set("Sec-WebSocket-Protocol", "chat") }, []string{"x", "chat"}, true, "chat"},
		{"protocol not offered", func(h http.Header) { h.Set("Sec-WebSocket-Protocol", "other") }, []string{"chat"}, false, ""},
		{"wrong accept", func(h http.Header) { h.Set("Sec-WebSocket-Accept", acceptKey("AAAAAAAAAAAAAAAAAAAAAA==")) }, nil, false, ""},
		{"no accept", func(h http.Header) { h.Del("Sec-WebSocket-Accept") }, nil, false, ""},
		{"extension not offered", func(h http.Header) { h.Set("Sec-WebSocket-Extensions", "permessage-deflate") }, nil, false, ""},
		{"no upgrade", func(h http.Header) { h.Del("Upgrade") }, nil, false, ""},
		{"no connection", func(h http.Header) { h.Del("Connection") }, nil, false, ""},
	} {
		t.Run(tt.name, func(t *testing.T) {
			h := good()
			if tt.mod != nil {
				tt.mod(h)
			}
			p, err := check101(&http.Response{StatusCode: 101, Header: h}, testKey, tt.offered)
			if (err == nil) != tt.ok || p != tt.proto {
				t.Fatalf("protocol %q, err %v; want ok=%v protocol %q", p, err, tt.ok, tt.proto)
			}
		})
	}
}

func TestSwitchingProtocols(t *testing.T) {
	own := http.Header{"X-Request-Id": {"req-1"}, "Content-Type": {"application/json"}}
	upstream := http.Header{
		"X-Request-Id":         {"backend-id"},
		"Set-Cookie":           {"s=1"},
		"Connection":           {"Upgrade, X-Hop"},
		"X-Hop":                {"1"},
		"Sec-Websocket-Accept": {"whatever"},
	}
	b, err := switchingProtocols(testKey, "chat", own, upstream)
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(bufio.NewReader(bytes.NewReader(b)), nil)
	if err != nil {
		t.Fatalf("101 does not parse: %v\n%s", err, b)
	}
	if resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != acceptKey(testKey) ||
		resp.Header.Get("Sec-WebSocket-Protocol") != "chat" {
		t.Fatalf("bad 101:\n%s", b)
	}
	if got := resp.Header.Values("X-Request-Id"); len(got) != 1 || got[0] != "req-1" {
		t.Fatalf("X-Request-Id = %q, want the gateway's own", got)
	}
	if resp.Header.Get("Set-Cookie") != "s=1" || resp.Header.Get("X-Hop") != "" || resp.Header.Get("Content-Type") != "" {
		t.Fatalf("end-to-end/hop-by-hop fields wrong:\n%s", b)
	}
	if strings.Count(string(b), "Sec-WebSocket-Accept") != 1 {
		t.Fatalf("two accept fields:\n%s", b)
	}
	if _, err := switchingProtocols(testKey, "", http.Header{"X-A": {"a\nb"}}, nil); err == nil {
		t.Fatal("a caller header with a newline was written")
	}
}

func TestCappedReader(t *testing.T) {
	big := "HTTP/1.1 101 Switching Protocols\r\nX-Big: " + strings.Repeat("a", maxResponseHeaderBytes) + "\r\n\r\n"
	cr := &cappedReader{r: strings.NewReader(big)}
	if _, err := readResponse(bufio.NewReaderSize(cr, readBufferSize), cr); err == nil {
		t.Fatal("a response header over the cap was read")
	}
	ok := "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\n\r\n\x81\x02hi"
	cr = &cappedReader{r: strings.NewReader(ok)}
	br := bufio.NewReaderSize(cr, readBufferSize)
	if _, err := readResponse(br, cr); err != nil {
		t.Fatal(err)
	}
	rest := make([]byte, 4)
	if n, _ := br.Read(rest); string(rest[:n]) != "\x81\x02hi" {
		t.Fatalf("bytes after the 101 lost: %q", rest[:n])
	}
}

func TestForwardHeader(t *testing.T) {
	in := http.Header{
		"Connection":               {"Upgrade, X-Secret"},
		"Upgrade":                  {"websocket"},
		"X-Secret":                 {"hop-by-hop by the client's choice"},
		"Keep-Alive":               {"timeout=5"},
		"Sec-Websocket-Key":        {testKey},
		"Sec-Websocket-Extensions": {"permessage-deflate"},
		"Authorization":            {"Bearer x"},
		"Origin":                   {"https://app.example"},
	}
	out := ForwardHeader(in)
	if len(out) != 2 || out.Get("Authorization") != "Bearer x" || out.Get("Origin") != "https://app.example" {
		t.Fatalf("ForwardHeader = %v, want only Authorization and Origin", out)
	}
	out.Set("Origin", "changed")
	if in.Get("Origin") != "https://app.example" {
		t.Fatal("ForwardHeader shares values with its input")
	}
}
