package h3

import (
	"errors"
	"fmt"
	"net/http"
	"net/textproto"
	"net/url"
	"strconv"
	"strings"

	"golang.org/x/net/http/httpguts"
)

// errFieldSectionTooLarge is a field section over MaxFieldSectionSize,
// counted as RFC 9114 §4.2.2 does: every field's name and value plus 32.
var errFieldSectionTooLarge = errors.New("field section larger than MaxFieldSectionSize")

// validField checks what RFC 9114 §4.2 and §4.3 ask of every field: a
// lower-case token as its name (after the colon of a pseudo-header), and a
// value without NUL, CR or LF (nor any other control but tab).
func validField(f field) error {
	name := f.Name
	if strings.HasPrefix(name, ":") {
		name = name[1:]
	}
	if !httpguts.ValidHeaderFieldName(name) {
		return fmt.Errorf("field name %q is not a token", f.Name)
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; 'A' <= c && c <= 'Z' {
			return fmt.Errorf("field name %q is not lower case", f.Name)
		}
	}
	if !httpguts.ValidHeaderFieldValue(f.Value) {
		return fmt.Errorf("field %s has a value with control characters", f.Name)
	}
	return nil
}

// requestHead is a request's field section, checked.
type requestHead struct {
	method, scheme, authority, path string
	header                          http.Header
	trailer                         http.Header // announced in Trailer, values nil
	contentLength                   int64       // -1 if absent
	expectContinue                  bool
}

// parseRequestHead turns decoded fields into h. Every failure is a
// malformed request (RFC 9114 §4.1.2), a stream error H3_MESSAGE_ERROR:
// the handler never sees it.
func parseRequestHead(fields []field, h *requestHead) error {
	*h = requestHead{contentLength: -1}
	var seen struct{ method, scheme, authority, path bool }
	regular := 0
	var host string
	var hostSeen bool
	var cookies int
	for i := range fields {
		f := &fields[i]
		if !f.valid {
			return validField(*f)
		}
		if !f.pseudo() {
			regular++
			continue
		}
		if regular > 0 {
			return fmt.Errorf("pseudo-header %s after a regular field", f.Name)
		}
		var dup bool
		switch f.Name {
		case ":method":
			dup, seen.method, h.method = seen.method, true, f.Value
		case ":scheme":
			dup, seen.scheme, h.scheme = seen.scheme, true, f.Value
		case ":authority":
			dup, seen.authority, h.authority = seen.authority, true, f.Value
		case ":path":
			dup, seen.path, h.path = seen.path, true, f.Value
		case ":protocol":
			// Extended CONNECT (RFC 9220) is not offered: the server never
			// sends SETTINGS_ENABLE_CONNECT_PROTOCOL.
			return errors.New(":protocol without extended CONNECT, which this server does not offer")
		default:
			return fmt.Errorf("pseudo-header %s is not a request pseudo-header", f.Name)
		}
		if dup {
			return fmt.Errorf("pseudo-header %s repeated", f.Name)
		}
	}
	if !seen.method || h.method == "" || !httpguts.ValidHeaderFieldName(h.method) {
		return fmt.Errorf(":method %q is missing or not a token", h.method)
	}

	if regular > 0 {
		h.header = make(http.Header, regular)
		// One backing array for every value: a field seen once (nearly
		// all of them) costs no allocation of its own.
		values := make([]string, 0, regular)
		for i := len(fields) - regular; i < len(fields); i++ {
			f := &fields[i]
			switch f.Name {
			case "content-length":
				n, err := strconv.ParseUint(f.Value, 10, 63)
				if err != nil {
					return fmt.Errorf("content-length %q is not a number", f.Value)
				}
				if h.contentLength >= 0 && int64(n) != h.contentLength {
					return fmt.Errorf("content-length given twice, %d and %d", h.contentLength, n)
				}
				if h.contentLength >= 0 {
					continue // the same value again
				}
				h.contentLength = int64(n)
			case "host":
				if hostSeen {
					return errors.New("host given twice")
				}
				host, hostSeen = f.Value, true
				continue // it becomes r.Host, as with HTTP/1.1
			case "te":
				if f.Value != "trailers" {
					return fmt.Errorf("te %q: only \"trailers\" is allowed in HTTP/3", f.Value)
				}
			case "cookie":
				cookies++
			case "expect":
				if strings.EqualFold(f.Value, "100-continue") {
					h.expectContinue = true
				}
			default:
				if connectionSpecific(f.Name) {
					return fmt.Errorf("connection-specific field %s is not allowed in HTTP/3", f.Name)
				}
			}
			key := f.canonical
			if vv := h.header[key]; vv != nil {
				h.header[key] = append(vv, f.Value)
				continue
			}
			values = append(values, f.Value)
			h.header[key] = values[len(values)-1 : len(values) : len(values)]
		}
		if cookies > 1 {
			// RFC 9114 §4.2.1: one line for everything downstream.
			h.header["Cookie"] = []string{strings.Join(h.header["Cookie"], "; ")}
		}
		if vv, ok := h.header["Trailer"]; ok {
			h.trailer = announcedTrailers(vv)
			delete(h.header, "Trailer")
		}
	}

	if h.method == http.MethodConnect {
		// RFC 9114 §4.4: CONNECT names only the authority, host and port.
		if seen.scheme || seen.path || h.authority == "" {
			return errors.New("CONNECT must carry :authority and neither :scheme nor :path")
		}
		if port, err := checkAuthority(h.authority); err != nil {
			return err
		} else if port == "" {
			return fmt.Errorf("CONNECT :authority %q has no port", h.authority)
		}
		return nil
	}
	if !seen.scheme || h.scheme == "" || !seen.path || h.path == "" {
		return errors.New(":scheme and :path are required and must not be empty")
	}
	if h.scheme != "https" && h.scheme != "http" {
		// As x/net/http2: a gateway serves http(s) URIs, and forwards
		// nothing else.
		return fmt.Errorf(":scheme %q: only https and http are served", h.scheme)
	}
	if h.path[0] != '/' && (h.method != http.MethodOptions || h.path != "*") {
		return fmt.Errorf(":path %q must start with / (or be * for OPTIONS)", h.path)
	}
	switch {
	case seen.authority && hostSeen && host != h.authority:
		return fmt.Errorf(":authority %q and host %q differ", h.authority, host)
	case !seen.authority:
		h.authority = host
	}
	if h.authority == "" {
		return errors.New("an http(s) request needs :authority or host")
	}
	_, err := checkAuthority(h.authority)
	return err
}

// checkAuthority checks that a is a host, with an optional port, as
// r.Host may be given to the handler (and to every hop after it): the
// bytes a host may hold (httpguts.ValidHostHeader, which leaves out
// spaces, '/', '?', '@', controls and non-ASCII bytes), an IPv6 literal
// only in brackets, and a port of at most 65535. It returns the port.
func checkAuthority(a string) (port string, err error) {
	if !httpguts.ValidHostHeader(a) {
		if strings.Contains(a, "@") {
			return "", fmt.Errorf(":authority %q must not carry userinfo", a)
		}
		return "", fmt.Errorf(":authority %q is not a host[:port]", a)
	}
	host := a
	if i := strings.LastIndexByte(a, ':'); i >= 0 && !strings.Contains(a[i:], "]") {
		host, port = a[:i], a[i+1:]
	}
	if port != "" {
		if _, err := strconv.ParseUint(port, 10, 16); err != nil {
			return "", fmt.Errorf(":authority %q: port %q is not a number from 0 to 65535", a, port)
		}
	}
	if strings.Contains(host, ":") && !(strings.HasPrefix(host, "[") && strings.HasSuffix(host, "]")) {
		return "", fmt.Errorf(":authority %q: an IPv6 address must be in brackets", a)
	}
	return port, nil
}

// announcedTrailers is the Trailer header's list as http.Request.Trailer
// wants it: keys with nil values, filled when the trailers arrive.
func announcedTrailers(vv []string) http.Header {
	var t http.Header
	for _, v := range vv {
		for key := range strings.SplitSeq(v, ",") {
			key = http.CanonicalHeaderKey(textproto.TrimString(key))
			switch key {
			case "", "Transfer-Encoding", "Trailer", "Content-Length":
				continue // never trailers (as net/http)
			}
			if t == nil {
				t = make(http.Header)
			}
			t[key] = nil
		}
	}
	return t
}

// parseTrailers checks a trailer section (no pseudo-headers, nothing that
// may not be a trailer) and stores it in t, unless t is nil.
func parseTrailers(fields []field, t http.Header) error {
	for i := range fields {
		f := &fields[i]
		if !f.valid {
			return validField(*f)
		}
		if f.pseudo() {
			return fmt.Errorf("pseudo-header %s in trailers", f.Name)
		}
		if connectionSpecific(f.Name) {
			return fmt.Errorf("connection-specific field %s in trailers", f.Name)
		}
		key := f.canonical
		if !httpguts.ValidTrailerHeader(key) {
			return fmt.Errorf("field %s is not allowed as a trailer", f.Name)
		}
		if t != nil {
			t[key] = append(t[key], f.Value)
		}
	}
	return nil
}

// pathByteSafe marks the bytes url.ParseRequestURI keeps as they are in a
// path (it neither unescapes them nor records a RawPath for them).
func pathByteSafe(c byte) bool {
	switch {
	case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9':
		return true
	}
	switch c {
	case '-', '_', '.', '~', '$', '&', '+', ',', '/', ':', ';', '=', '@':
		return true
	}
	return false
}

// queryByteSafe marks the bytes a query can hold on the fast path.
func queryByteSafe(c byte) bool { return pathByteSafe(c) || c == '?' || c == '%' }

// parseRequestPath is url.ParseRequestURI(p) for a path beginning with /,
// without its work when the path is plain: only the bytes both leave
// alone, at most one '?', a non-empty query. Anything else goes through
// url.ParseRequestURI itself, so the result is always the same.
func parseRequestPath(p string) (*url.URL, error) {
	q := -1
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c == '?' {
			q = i
			break
		}
		if !pathByteSafe(c) {
			return url.ParseRequestURI(p)
		}
	}
	if q < 0 {
		return &url.URL{Path: p}, nil
	}
	if q == len(p)-1 {
		return url.ParseRequestURI(p)
	}
	for i := q + 1; i < len(p); i++ {
		if !queryByteSafe(p[i]) {
			return url.ParseRequestURI(p)
		}
	}
	return &url.URL{Path: p[:q], RawQuery: p[q+1:]}, nil
}
