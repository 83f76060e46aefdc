package wsrelay

import (
	"bufio"
	"bytes"
	"crypto/sha1"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"maps"
	"net/http"
	"slices"
	"strconv"
	"strings"
)

const (
	// maxResponseHeaderBytes caps the upstream's handshake response headers.
	maxResponseHeaderBytes = 32 << 10
	// maxRefusalBodyBytes caps the body of a refused upgrade that is relayed
	// to the client; a larger one is answered with 502.
	maxRefusalBodyBytes = 64 << 10
	// acceptGUID is the fixed string of RFC 6455 §1.3.
	acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
)

// IsUpgrade reports whether r is a valid RFC 6455 client handshake that the
// relay accepts: GET over HTTP/1.1 without a body, Upgrade: websocket,
// Connection containing "upgrade", one Sec-WebSocket-Key of 16 base64
// bytes, Sec-WebSocket-Version: 13, and well-formed subprotocol tokens.
// WebSocket over HTTP/2 (RFC 8441) is not supported.
func IsUpgrade(r *http.Request) bool {
	status, _ := checkClientHandshake(r)
	return status == 0
}

// checkClientHandshake returns 0 for a valid handshake, or the status and
// message to answer with.
func checkClientHandshake(r *http.Request) (int, string) {
	if r.ProtoMajor != 1 || r.ProtoMinor != 1 {
		return http.StatusBadRequest, "WebSocket handshakes are accepted over HTTP/1.1 only"
	}
	if !hasToken(r.Header, "Upgrade", "websocket") {
		return http.StatusBadRequest, "this endpoint expects a WebSocket handshake: Upgrade: websocket is missing"
	}
	if r.Method != http.MethodGet {
		return http.StatusBadRequest, "a WebSocket handshake must use GET"
	}
	if !hasToken(r.Header, "Connection", "upgrade") {
		return http.StatusBadRequest, "a WebSocket handshake needs Connection: Upgrade"
	}
	// Bytes after the handshake's header are WebSocket frames once it
	// succeeds; a body would be read as something else by someone.
	if r.ContentLength != 0 || len(r.TransferEncoding) > 0 {
		return http.StatusBadRequest, "a WebSocket handshake must not carry a body"
	}
	if v := r.Header.Values("Sec-WebSocket-Version"); len(v) != 1 || strings.TrimSpace(v[0]) != "13" {
		return http.StatusUpgradeRequired, "unsupported WebSocket version: Sec-WebSocket-Version must be 13"
	}
	keys := r.Header.Values("Sec-WebSocket-Key")
	if len(keys) != 1 || !validKey(keys[0]) {
		return http.StatusBadRequest, "Sec-WebSocket-Key must be one base64-encoded 16-byte value"
	}
	if _, ok := subprotocols(r.Header); !ok {
		return http.StatusBadRequest, "Sec-WebSocket-Protocol must be a comma-separated list of tokens"
	}
	return 0, ""
}

func validKey(k string) bool {
	k = strings.TrimSpace(k)
	if len(k) != 24 {
		return false
	}
	b, err := base64.StdEncoding.DecodeString(k)
	return err == nil && len(b) == 16
}

// acceptKey computes Sec-WebSocket-Accept for a key (RFC 6455 §4.2.2).
func acceptKey(key string) string {
	h := sha1.Sum([]byte(strings.TrimSpace(key) + acceptGUID))
	return base64.StdEncoding.EncodeToString(h[:])
}

// hasToken reports whether a comma-separated header contains token,
// compared case-insensitively.
func hasToken(h http.Header, name, token string) bool {
	for _, v := range h.Values(name) {
		for t := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(t), token) {
				return true
			}
		}
	}
	return false
}

// subprotocols returns the client's offered subprotocols in order.
func subprotocols(h http.Header) ([]string, bool) {
	var out []string
	for _, v := range h.Values("Sec-WebSocket-Protocol") {
		for t := range strings.SplitSeq(v, ",") {
			t = strings.TrimSpace(t)
			if !isToken(t) {
				return nil, false
			}
			out = append(out, t)
		}
	}
	return out, true
}

func isToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c <= ' ' || c >= 0x7f || strings.IndexByte(`"(),/:;<=>?@[\]{}`, c) >= 0 {
			return false
		}
	}
	return true
}

// validFieldValue rejects control characters other than horizontal tab, so
// that a value can never end the header line it is written on.
func validFieldValue(s string) bool {
	for i := 0; i < len(s); i++ {
		if c := s[i]; (c < ' ' && c != '\t') || c == 0x7f {
			return false
		}
	}
	return true
}

// hopByHop are the fields that describe one connection, never a message
// (RFC 9110 §7.6.1), plus the handshake fields the relay writes itself.
var hopByHop = map[string]bool{
	"Connection":          true,
	"Keep-Alive":          true,
	"Proxy-Connection":    true,
	"Proxy-Authenticate":  true,
	"Proxy-Authorization": true,
	"Te":                  true,
	"Trailer":             true,
	"Transfer-Encoding":   true,
	"Upgrade":             true,
}

// skipFixed reports whether a field is never copied from one hop to the
// next: hop-by-hop fields, framing, Host, and the WebSocket handshake fields,
// which the relay sets itself.
func skipFixed(name string) bool {
	return hopByHop[name] || name == "Content-Length" || name == "Host" ||
		strings.HasPrefix(name, "Sec-Websocket-")
}

// skipField is skipFixed plus the fields a message's own Connection header
// names. It applies to messages received from a peer (the upstream's
// responses, a client's request in ForwardHeader), never to headers the
// gateway built: honouring Connection there would let a client's
// "Connection: X-Forwarded-For" delete what the gateway added.
func skipField(h http.Header, name string) bool {
	return skipFixed(name) || hasToken(h, "Connection", name)
}

// ForwardHeader returns a copy of a client's request header for
// Upstream.Request: without hop-by-hop fields, without the fields the
// client's Connection header names, and without the handshake fields the
// relay sets itself. Add the gateway's own headers (request ID, forwarded
// and identity headers) to the copy after calling it, never before.
func ForwardHeader(in http.Header) http.Header {
	out := make(http.Header, len(in))
	for name, vs := range in {
		if !skipField(in, name) {
			out[name] = slices.Clone(vs)
		}
	}
	return out
}

// writeFields writes h's fields except those skip rejects, in name order.
// It refuses names that are not tokens and values that could split a line:
// they would be a header injection on the next hop.
func writeFields(b *bytes.Buffer, h http.Header, skip func(string) bool) error {
	for _, name := range slices.Sorted(maps.Keys(h)) {
		if skip(name) {
			continue
		}
		if !isToken(name) {
			return fmt.Errorf("header name %q is not a valid token", name)
		}
		for _, v := range h[name] {
			if !validFieldValue(v) {
				return fmt.Errorf("header %s has a control character in its value", name)
			}
			b.WriteString(name)
			b.WriteString(": ")
			b.WriteString(v)
			b.WriteString("\r\n")
		}
	}
	return nil
}

// upstreamRequest renders the upgrade request for the upstream: the caller's
// request line target, Host and headers (hop-by-hop and handshake fields
// dropped), then the handshake fields from the client. Sec-WebSocket-Extensions
// is never offered, so that every message crosses the relay uncompressed and
// its size is the sum of its payloads (see README.md).
func upstreamRequest(up *http.Request, key string, protocols []string) ([]byte, error) {
	if up.URL == nil {
		return nil, errors.New("the upstream request has no URL")
	}
	target := up.URL.RequestURI()
	for i := 0; i < len(target); i++ {
		if c := target[i]; c <= ' ' || c == 0x7f {
			return nil, fmt.Errorf("the upstream request target %q has a space or control character", target)
		}
	}
	host := up.Host
	if host == "" {
		host = up.URL.Host
	}
	if host == "" || !validFieldValue(host) || strings.ContainsAny(host, " \t") {
		return nil, fmt.Errorf("the upstream request has an empty or invalid Host %q", host)
	}
	var b bytes.Buffer
	b.Grow(512)
	b.WriteString("GET ")
	b.WriteString(target)
	b.WriteString(" HTTP/1.1\r\nHost: ")
	b.WriteString(host)
	b.WriteString("\r\n")
	// The caller's headers are the gateway's: their Connection field, if
	// any, is not honoured (see skipField).
	if err := writeFields(&b, up.Header, skipFixed); err != nil {
		return nil, fmt.Errorf("upstream request: %w", err)
	}
	b.WriteString("Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: ")
	b.WriteString(strings.TrimSpace(key))
	b.WriteString("\r\n")
	if len(protocols) > 0 {
		b.WriteString("Sec-WebSocket-Protocol: ")
		b.WriteString(strings.Join(protocols, ", "))
		b.WriteString("\r\n")
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

// check101 validates the upstream's 101 against what was sent (RFC 6455
// §4.1, the client's checks) and returns the selected subprotocol.
func check101(resp *http.Response, key string, offered []string) (string, error) {
	if !hasToken(resp.Header, "Upgrade", "websocket") {
		return "", errors.New("upstream answered 101 without Upgrade: websocket")
	}
	if !hasToken(resp.Header, "Connection", "upgrade") {
		return "", errors.New("upstream answered 101 without Connection: Upgrade")
	}
	if a := resp.Header.Values("Sec-WebSocket-Accept"); len(a) != 1 || strings.TrimSpace(a[0]) != acceptKey(key) {
		return "", fmt.Errorf("upstream answered 101 with Sec-WebSocket-Accept %q, want %q", a, acceptKey(key))
	}
	if ext := resp.Header.Values("Sec-WebSocket-Extensions"); len(ext) > 0 {
		return "", fmt.Errorf("upstream answered 101 with extensions %q that were not offered", ext)
	}
	p := resp.Header.Values("Sec-WebSocket-Protocol")
	switch {
	case len(p) == 0:
		return "", nil
	case len(p) == 1 && slices.Contains(offered, strings.TrimSpace(p[0])):
		return strings.TrimSpace(p[0]), nil
	}
	return "", fmt.Errorf("upstream selected subprotocol %q, offered were %q", p, offered)
}

// switchingProtocols renders the 101 for the client: the handshake fields,
// then the caller's response headers (request ID and the like), then the
// upstream's end-to-end fields for names the caller did not set.
func switchingProtocols(key, protocol string, own, upstream http.Header) ([]byte, error) {
	var b bytes.Buffer
	b.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: ")
	b.WriteString(acceptKey(key))
	b.WriteString("\r\n")
	if protocol != "" {
		b.WriteString("Sec-WebSocket-Protocol: ")
		b.WriteString(protocol)
		b.WriteString("\r\n")
	}
	skipFraming := func(name string) bool {
		return name == "Content-Type" || name == "Content-Encoding" || name == "Transfer-Encoding"
	}
	if err := writeFields(&b, own, func(name string) bool { return skipFixed(name) || skipFraming(name) }); err != nil {
		return nil, fmt.Errorf("response headers set before the relay: %w", err)
	}
	if err := writeFields(&b, upstream, func(name string) bool {
		_, mine := own[name]
		return mine || skipField(upstream, name) || skipFraming(name)
	}); err != nil {
		return nil, fmt.Errorf("upstream 101: %w", err)
	}
	b.WriteString("\r\n")
	return b.Bytes(), nil
}

// relayRefusal sends a refused upgrade's response to the client as an
// ordinary HTTP response. The client connection is never hijacked on this
// path, so net/http parses the client's next bytes as its next request.
func relayRefusal(w http.ResponseWriter, resp *http.Response) error {
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxRefusalBodyBytes+1))
	if err != nil {
		return fmt.Errorf("reading the body of the upstream's %d answer: %w", resp.StatusCode, err)
	}
	if len(body) > maxRefusalBodyBytes {
		return fmt.Errorf("the upstream's %d answer has a body over %d bytes", resp.StatusCode, maxRefusalBodyBytes)
	}
	h := w.Header()
	for name, vs := range resp.Header {
		if _, mine := h[name]; mine || skipField(resp.Header, name) {
			continue
		}
		h[name] = slices.Clone(vs)
	}
	// Sec-WebSocket-Version on a 426 tells the client what to retry with.
	if v := resp.Header.Get("Sec-WebSocket-Version"); v != "" && h.Get("Sec-WebSocket-Version") == "" {
		h.Set("Sec-WebSocket-Version", v)
	}
	h.Set("Content-Length", strconv.Itoa(len(body)))
	w.WriteHeader(resp.StatusCode)
	if len(body) > 0 {
		_, _ = w.Write(body)
	}
	return nil
}

// cappedReader is the upstream connection as seen by the relay's reader.
// During the handshake it fails after limit bytes, bounding what a
// misbehaving upstream can make http.ReadResponse buffer; afterwards
// (limit < 0) it only records activity.
type cappedReader struct {
	r     io.Reader
	limit int64
	seen  func() // called after every read that returned data
}

var errResponseTooLarge = fmt.Errorf("the upstream's handshake response header is over %d bytes", maxResponseHeaderBytes)

func (c *cappedReader) Read(p []byte) (int, error) {
	if c.limit == 0 {
		return 0, errResponseTooLarge
	}
	if c.limit > 0 && int64(len(p)) > c.limit {
		p = p[:c.limit]
	}
	n, err := c.r.Read(p)
	if c.limit > 0 {
		c.limit -= int64(n)
	}
	if n > 0 && c.seen != nil {
		c.seen()
	}
	return n, err
}

// readResponse reads the upstream's answer to the upgrade request.
func readResponse(br *bufio.Reader, cr *cappedReader) (*http.Response, error) {
	cr.limit = maxResponseHeaderBytes
	resp, err := http.ReadResponse(br, &http.Request{Method: http.MethodGet})
	if err != nil {
		return nil, err
	}
	// The header is read. What follows is frames (after a 101), limited by
	// the relay, or a refusal's body, limited by maxRefusalBodyBytes.
	cr.limit = -1
	return resp, nil
}
