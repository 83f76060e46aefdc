package hygiene

import (
	"net/http"
	"net/netip"
	"strings"
)

// canonicalHost returns the one host routing, policies and the cache key
// use. Go has already chosen it: the absolute-form target's host when there
// is one (RFC 9112 3.2.2), else the Host header, and :authority on HTTP/2
// and HTTP/3.
func canonicalHost(r *http.Request) (string, *Error) {
	host, err := parseHost(r.Host)
	if err != nil {
		return "", err
	}
	// Go removes the Host header of HTTP/1 requests after reading it, but
	// HTTP/2 and HTTP/3 requests may carry one beside :authority. Two
	// names for one request is one too many (RFC 9113 8.3.1).
	if hv, ok := r.Header["Host"]; ok {
		if len(hv) != 1 {
			return "", reject(http.StatusBadRequest, "the request has more than one Host header")
		}
		other, err := parseHost(hv[0])
		if err != nil || other != host {
			return "", reject(http.StatusBadRequest, "the Host header does not match the request's authority")
		}
	}
	return host, nil
}

const errBadHost = "the request's host is not a valid host name or IP address"

// parseHost checks a host[:port] and returns the host in canonical form:
// lower-case, no port, no trailing dot, IPv6 without brackets.
func parseHost(h string) (string, *Error) {
	if h == "" {
		return "", reject(http.StatusBadRequest, "the request has no host; send a Host header")
	}
	if h[0] == '[' {
		end := strings.IndexByte(h, ']')
		if end < 0 || !validPort(h[end+1:]) {
			return "", reject(http.StatusBadRequest, errBadHost)
		}
		a, err := netip.ParseAddr(h[1:end])
		if err != nil || !a.Is6() || a.Zone() != "" {
			return "", reject(http.StatusBadRequest, errBadHost)
		}
		return a.String(), nil
	}
	name := h
	if i := strings.IndexByte(h, ':'); i >= 0 {
		name = h[:i]
		if !validPort(h[i:]) {
			return "", reject(http.StatusBadRequest, errBadHost)
		}
	}
	if len(name) > 0 && name[len(name)-1] == '.' {
		name = name[:len(name)-1]
	}
	if name == "" || len(name) > 253 {
		return "", reject(http.StatusBadRequest, errBadHost)
	}
	upper := false
	label := 0
	for i := 0; i < len(name); i++ {
		c := name[i]
		switch {
		case 'a' <= c && c <= 'z', '0' <= c && c <= '9', c == '-', c == '_':
			label++
		case 'A' <= c && c <= 'Z':
			upper = true
			label++
		case c == '.':
			if label == 0 {
				return "", reject(http.StatusBadRequest, errBadHost)
			}
			label = 0
		case c == '@':
			return "", reject(http.StatusBadRequest, "the request's host must not hold user information")
		default:
			return "", reject(http.StatusBadRequest, errBadHost)
		}
		if label > 63 {
			return "", reject(http.StatusBadRequest, errBadHost)
		}
	}
	if label == 0 {
		return "", reject(http.StatusBadRequest, errBadHost)
	}
	if upper {
		name = strings.ToLower(name)
	}
	return name, nil
}

// validPort accepts "" or ":" followed by at most five digits up to 65535
// (RFC 3986 allows an empty port).
func validPort(s string) bool {
	if s == "" {
		return true
	}
	if s[0] != ':' || len(s) > 6 {
		return false
	}
	n := 0
	for i := 1; i < len(s); i++ {
		c := s[i]
		if c < '0' || c > '9' {
			return false
		}
		n = n*10 + int(c-'0')
	}
	return n <= 65535
}
