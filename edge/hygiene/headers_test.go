package hygiene

import (
	"net/http"
	"slices"
	"testing"
)

func TestSanitize(t *testing.T) {
	h := http.Header{
		// Hop-by-hop and what Connection names [15].
		"Connection":          {"close, X-Consumer-Id", " keep-alive ,X-Custom-Hop"},
		"Keep-Alive":          {"timeout=5"},
		"Proxy-Connection":    {"keep-alive"},
		"Te":                  {"trailers"},
		"Trailer":             {"X-T"},
		"Transfer-Encoding":   {"chunked"},
		"Upgrade":             {"websocket"},
		"Proxy-Authorization": {"Basic Zm9vOmJhcg=="},
		"X-Consumer-Id":       {"admin"},
		"X-Custom-Hop":        {"1"},
		// h2c [17].
		"Http2-Settings": {"AAMAAABkAAQCAAAAAAIAAAAA"},
		// Forwarding and URL overrides [16].
		"X-Forwarded-For":    {"10.0.0.1"},
		"X-Forwarded-Host":   {"evil.example"},
		"X-Forwarded-Proto":  {"https"},
		"X-Forwarded-Port":   {"443"},
		"X-Forwarded-Prefix": {"/admin"},
		"Forwarded":          {"for=10.0.0.1"},
		"X-Real-Ip":          {"10.0.0.1"},
		"X-Original-Url":     {"/admin"},
		"X-Rewrite-Url":      {"/admin"},
		"X-Original-Host":    {"internal"},
		"X-Host":             {"internal"},
		"Portico-Edge-Token": {"forged"},
		"Portico-Route":      {"0"},
		// Method overrides [23].
		"X-Http-Method-Override": {"DELETE"},
		"X-Http-Method":          {"DELETE"},
		"X-Method-Override":      {"DELETE"},
		// Non-canonical keys, as a handler could set them.
		"x-forwarded-for": {"10.0.0.2"},
		"portico-stage":   {"x"},
		// Kept.
		"Authorization":     {"Bearer t"},
		"X-Api-Key":         {"k"},
		"Content-Type":      {"application/json"},
		"Accept":            {"*/*"},
		"Cookie":            {"a=b"},
		"Portico":           {"not a prefix match"},
		"X-Portico-Thing":   {"dropped: the identity namespace"},
		"X-Porticos":        {"kept"},
		"Sec-Websocket-Key": {"dGhlIHNhbXBsZSBub25jZQ=="},
	}
	Sanitize(h)
	var kept []string
	for k := range h {
		kept = append(kept, k)
	}
	slices.Sort(kept)
	want := []string{"Accept", "Authorization", "Content-Type", "Cookie", "Portico", "Sec-Websocket-Key", "X-Api-Key", "X-Porticos"}
	if !slices.Equal(kept, want) {
		t.Fatalf("kept %v, want %v", kept, want)
	}
}

// [15] The gateway adds its own headers after sanitising: a client naming
// them in Connection cannot remove them.
func TestSanitizeForwardOrdering(t *testing.T) {
	out := readH1(t, "POST / HTTP/1.1\r\nHost: public.example\r\nConnection: close, X-Consumer-Id, X-Forwarded-For\r\n"+
		"X-Consumer-Id: forged\r\nTransfer-Encoding: chunked\r\nTrailer: X-Consumer-Id\r\n\r\n0\r\nX-Consumer-Id: forged\r\n\r\n")
	out.Trailer = http.Header{"X-Consumer-Id": {"forged"}}
	SanitizeForward(out)
	out.Header.Set("X-Consumer-Id", "key-123")
	out.Header.Set("X-Forwarded-For", "192.0.2.1")
	if got := out.Header.Values("X-Consumer-Id"); !slices.Equal(got, []string{"key-123"}) {
		t.Fatalf("X-Consumer-Id = %q", got)
	}
	if got := out.Header.Values("X-Forwarded-For"); !slices.Equal(got, []string{"192.0.2.1"}) {
		t.Fatalf("X-Forwarded-For = %q", got)
	}
	if out.Trailer != nil || out.Host != "" || out.Header.Get("Connection") != "" {
		t.Fatalf("trailer %v, host %q, connection %q", out.Trailer, out.Host, out.Header.Get("Connection"))
	}
	// The wrong order loses the gateway's header: that is why Sanitize
	// must come first.
	h := http.Header{"Connection": {"X-Consumer-Id"}}
	h.Set("X-Consumer-Id", "key-123")
	Sanitize(h)
	if h.Get("X-Consumer-Id") != "" {
		t.Fatal("Sanitize kept a header named in Connection")
	}
}

func TestSanitizeAllocations(t *testing.T) {
	h := http.Header{
		"Accept": {"*/*"}, "User-Agent": {"curl/8"}, "Authorization": {"Bearer x"},
		"Connection": {"keep-alive"}, "X-Forwarded-For": {"1.2.3.4"},
	}
	clean := func() http.Header { return h.Clone() }
	hs := make([]http.Header, 200)
	for i := range hs {
		hs[i] = clean()
	}
	i := 0
	allocs := testing.AllocsPerRun(100, func() {
		Sanitize(hs[i])
		i++
	})
	if allocs != 0 {
		t.Fatalf("Sanitize allocated %.1f times per call", allocs)
	}
}

func TestIsWebSocketUpgrade(t *testing.T) {
	const ok = "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\n" +
		"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n"
	if !IsWebSocketUpgrade(readH1(t, ok)) {
		t.Fatal("valid upgrade refused")
	}
	r := readH1(t, ok)
	req, err := Check(r, Limits{})
	if err != nil || !req.WebSocket {
		t.Fatalf("Check: %+v, %v", req, err)
	}
	for name, raw := range map[string]string{
		"POST":          "POST /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		"HTTP/1.0":      "GET /chat HTTP/1.0\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		"h2c":           "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\nConnection: Upgrade, HTTP2-Settings\r\nHTTP2-Settings: AAMAAABkAAQCAAAAAAIAAAAA\r\n\r\n",
		"two upgrades":  "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: h2c, websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		"no Connection": "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		"version 8":     "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 8\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
		"short key":     "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhl\r\n\r\n",
		"no key":        "GET /chat HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\n\r\n",
	} {
		if IsWebSocketUpgrade(readH1(t, raw)) {
			t.Errorf("%s: accepted", name)
		}
	}
	if IsWebSocketUpgrade(h2Req(t, 2, "GET", "a", "/", http.Header{"Upgrade": {"websocket"}})) {
		t.Error("HTTP/2 accepted")
	}
}

func TestHasToken(t *testing.T) {
	for _, tc := range []struct {
		v, tok string
		want   bool
	}{
		{"Upgrade", "upgrade", true},
		{"keep-alive, Upgrade", "upgrade", true},
		{" keep-alive ,\tUPGRADE\t", "upgrade", true},
		{"upgraded", "upgrade", false},
		{"", "upgrade", false},
		{",,", "upgrade", false},
		{"a,upgrade,", "upgrade", true},
	} {
		if got := hasToken(tc.v, tc.tok); got != tc.want {
			t.Errorf("hasToken(%q, %q) = %v", tc.v, tc.tok, got)
		}
	}
}
