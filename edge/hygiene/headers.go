package hygiene

import (
	"net/http"
	"net/textproto"
	"strconv"
)

// checkHeaders checks the header fields' size, names and values, and the
// fields that say how the message is framed.
func checkHeaders(r *http.Request, lim Limits) *Error {
	// The host is a field line too (Go moves it out of the header map).
	count := 1
	size := len(r.Host) + len("Host: \r\n")
	h2 := r.ProtoMajor >= 2
	var bad *Error
	for k, vv := range r.Header {
		for _, v := range vv {
			count++
			size += len(k) + len(v) + 4
			if bad == nil && !validValue(v) {
				bad = reject(http.StatusBadRequest, "header "+strconv.Quote(k)+" holds NUL, CR, LF or another control character")
			}
		}
		if count > lim.MaxHeaderCount {
			return rejectClose(http.StatusRequestHeaderFieldsTooLarge, "the request has more than "+strconv.Itoa(lim.MaxHeaderCount)+" header fields")
		}
		if size > lim.MaxHeaderBytes {
			return rejectClose(http.StatusRequestHeaderFieldsTooLarge, "the request's header fields are larger than "+strconv.Itoa(lim.MaxHeaderBytes)+" bytes")
		}
		if bad != nil {
			continue
		}
		bad = checkName(k)
		if bad != nil {
			continue
		}
		switch k {
		case "Content-Length":
			bad = checkContentLength(vv)
		case "Transfer-Encoding":
			// Go removes it from HTTP/1 requests once it has framed the
			// body; HTTP/2 and HTTP/3 frame bodies themselves and forbid
			// it (RFC 9113 8.2.2, RFC 9114 4.2).
			bad = rejectClose(http.StatusBadRequest, "Transfer-Encoding is not allowed in this request")
		case "Connection", "Keep-Alive", "Proxy-Connection", "Upgrade":
			if h2 {
				bad = reject(http.StatusBadRequest, "connection-specific header "+strconv.Quote(k)+" is not allowed in HTTP/2 and HTTP/3")
			}
		case "Te":
			if h2 && (len(vv) != 1 || vv[0] != "trailers") {
				bad = reject(http.StatusBadRequest, `the TE header may only be "trailers" in HTTP/2 and HTTP/3`)
			}
		}
	}
	return bad
}

// checkName refuses names that are not tokens (RFC 9110 5.1) and names
// with '_': many servers (CGI, PHP, WSGI, Rack, nginx's) fold X_Api_Key and
// X-Api-Key into the same variable, so a client could pass a header under
// a name the gateway does not recognise and the backend does.
func checkName(k string) *Error {
	if k == "" {
		return reject(http.StatusBadRequest, "a header has an empty name")
	}
	for i := 0; i < len(k); i++ {
		c := k[i]
		if c == '_' {
			return reject(http.StatusBadRequest, "header names with underscores are not allowed ("+strconv.Quote(k)+"); use hyphens")
		}
		if !isTchar(c) {
			return reject(http.StatusBadRequest, "header name "+strconv.Quote(k)+" is not a valid token")
		}
	}
	return nil
}

// checkContentLength accepts exactly one run of decimal digits. Go has
// already refused worse on HTTP/1, but its HTTP/2 server reads only the
// first value and takes an unparsable one as zero.
func checkContentLength(vv []string) *Error {
	if len(vv) != 1 || vv[0] == "" || len(vv[0]) > 18 {
		return rejectClose(http.StatusBadRequest, "the Content-Length header is invalid")
	}
	for i := 0; i < len(vv[0]); i++ {
		if c := vv[0][i]; c < '0' || c > '9' {
			return rejectClose(http.StatusBadRequest, "the Content-Length header is invalid")
		}
	}
	return nil
}

// validValue refuses control characters other than HTAB (RFC 9110 5.5):
// a CR, LF or NUL would split or end a header line at the next hop.
func validValue(v string) bool {
	for i := 0; i < len(v); i++ {
		if c := v[i]; c < 0x20 && c != '\t' || c == 0x7f {
			return false
		}
	}
	return true
}

func isTchar(c byte) bool {
	if 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' {
		return true
	}
	switch c {
	case '!', '#', '$', '%', '&', '\'', '*', '+', '-', '.', '^', '_', '`', '|', '~':
		return true
	}
	return false
}

// Sanitize removes from h every header the client may not pass on: the
// hop-by-hop headers and every header the Connection header names (RFC 9110
// 7.6.1), the h2c upgrade headers, the forwarding and URL-override headers
// that backends and frameworks trust (X-Forwarded-*, Forwarded, X-Real-IP,
// X-Original-URL, ...), method overrides, and every Portico-* header. See
// README.md for the full list.
//
// Call it on the inbound request after Check (and after reading a trusted
// proxy's X-Forwarded-For, if the edge does), so that policies only see
// headers they can trust. Because it honours Connection, it also removes
// whatever the client names there: never call it after the gateway has
// added its own headers. SanitizeForward is the outbound form.
func Sanitize(h http.Header) {
	conn := h["Connection"]
	for k := range h {
		if dropped(k) || listed(conn, k) {
			delete(h, k)
		}
	}
}

// SanitizeForward prepares the outbound copy of a checked request. Call it
// first in ReverseProxy.Rewrite, then set the gateway's own headers
// (SetXForwarded, Portico-*, identity): nothing the client sent, not even
// "Connection: X-Consumer-Id", can then remove or replace them.
//
// Besides Sanitize it drops request trailers (fields that would reach the
// backend after the gateway's checks) and clears out.Host, so the outbound
// Host is the target's (pr.SetURL) or whatever the gateway sets, never the
// client's.
func SanitizeForward(out *http.Request) {
	Sanitize(out.Header)
	out.Trailer = nil
	out.Host = ""
}

func dropped(k string) bool {
	if !isCanonicalKey(k) {
		k = textproto.CanonicalMIMEHeaderKey(k)
	}
	switch k {
	case
		// Hop-by-hop (RFC 9110 7.6.1, RFC 9112). Proxy-Authorization
		// holds credentials for a forward proxy the client uses; the
		// gateway is the client's origin server, so they are nobody's
		// business past it (Go's ReverseProxy drops them too).
		"Connection", "Keep-Alive", "Proxy-Connection", "Te", "Trailer",
		"Transfer-Encoding", "Upgrade", "Proxy-Authorization", "Proxy-Authenticate",
		// h2c upgrade: never honoured, never passed on.
		"Http2-Settings",
		// Forwarding and URL overrides: the forwarder sets its own.
		"Forwarded", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto",
		"X-Forwarded-Port", "X-Forwarded-Prefix", "X-Forwarded-Scheme",
		"X-Forwarded-Ssl", "X-Forwarded-Server", "X-Forwarded-Uri", "X-Forwarded-Path",
		"X-Real-Ip", "X-Client-Ip", "True-Client-Ip", "X-Original-Url", "X-Original-Uri",
		"X-Rewrite-Url", "X-Original-Host", "X-Host",
		// Method overrides: the method the gateway authorised is the
		// method the backend runs.
		"X-Http-Method-Override", "X-Http-Method", "X-Method-Override":
		return true
	}
	// Portico-* is the edge-to-origin contract; X-Portico-* is where
	// policies put the caller's verified identity. A client may send
	// neither.
	return len(k) > len("Portico-") && k[:len("Portico-")] == "Portico-" ||
		len(k) > len("X-Portico-") && k[:len("X-Portico-")] == "X-Portico-"
}

// isCanonicalKey reports whether k is already in Go's canonical form, which
// is what every server in this process produces; anything else is
// canonicalised (and allocated) before matching.
func isCanonicalKey(k string) bool {
	up := true
	for i := 0; i < len(k); i++ {
		c := k[i]
		if up && 'a' <= c && c <= 'z' || !up && 'A' <= c && c <= 'Z' {
			return false
		}
		up = c == '-'
	}
	return true
}

// listed reports whether the Connection header values name k.
func listed(conn []string, k string) bool {
	for _, v := range conn {
		if hasToken(v, k) {
			return true
		}
	}
	return false
}

// hasToken reports whether the comma-separated list v holds tok, ignoring
// case and optional whitespace.
func hasToken(v, tok string) bool {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		t := v[:i]
		for len(t) > 0 && (t[0] == ' ' || t[0] == '\t') {
			t = t[1:]
		}
		for len(t) > 0 && (t[len(t)-1] == ' ' || t[len(t)-1] == '\t') {
			t = t[:len(t)-1]
		}
		if equalFold(t, tok) {
			return true
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return false
}

// IsWebSocketUpgrade reports whether r is a valid WebSocket opening
// handshake (RFC 6455 4.2.1): HTTP/1.1 GET, "Connection: upgrade",
// "Upgrade: websocket" alone, Sec-WebSocket-Version 13 and a
// Sec-WebSocket-Key of 16 bytes in base64. Any other Upgrade, h2c included,
// is not honoured: Sanitize removes it and the request is served as plain
// HTTP. WebSocket over HTTP/2 or HTTP/3 (extended CONNECT) is not supported.
func IsWebSocketUpgrade(r *http.Request) bool {
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 || r.Method != http.MethodGet {
		return false
	}
	up := r.Header["Upgrade"]
	if len(up) != 1 || !equalFold(trimOWS(up[0]), "websocket") {
		return false
	}
	if !listed(r.Header["Connection"], "upgrade") {
		return false
	}
	if v := r.Header["Sec-Websocket-Version"]; len(v) != 1 || trimOWS(v[0]) != "13" {
		return false
	}
	key := r.Header["Sec-Websocket-Key"]
	return len(key) == 1 && validWebSocketKey(trimOWS(key[0]))
}

// validWebSocketKey checks the base64 form of 16 bytes: 22 characters and
// "==".
func validWebSocketKey(k string) bool {
	if len(k) != 24 || k[22] != '=' || k[23] != '=' {
		return false
	}
	for i := 0; i < 22; i++ {
		c := k[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' || c == '+' || c == '/') {
			return false
		}
	}
	return true
}

func trimOWS(s string) string {
	for len(s) > 0 && (s[0] == ' ' || s[0] == '\t') {
		s = s[1:]
	}
	for len(s) > 0 && (s[len(s)-1] == ' ' || s[len(s)-1] == '\t') {
		s = s[:len(s)-1]
	}
	return s
}
