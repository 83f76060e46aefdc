package h3

import (
	"net/http"
	"strings"
)

// commonNames lists field names seen often enough to be worth a table: the
// names of QPACK's static table (RFC 9204 Appendix A) and a few more that
// API gateways see on every request. Requests carry names in lower case;
// http.Header wants them canonical. A lookup here turns one into the
// other without allocating; any other name goes through
// http.CanonicalHeaderKey (and strings.ToLower on the way out).
func commonNames() []string {
	return []string{
		"Accept", "Accept-Charset", "Accept-Encoding", "Accept-Language", "Accept-Ranges",
		"Access-Control-Allow-Credentials", "Access-Control-Allow-Headers", "Access-Control-Allow-Methods",
		"Access-Control-Allow-Origin", "Access-Control-Expose-Headers", "Access-Control-Max-Age",
		"Access-Control-Request-Headers", "Access-Control-Request-Method",
		"Age", "Allow", "Alt-Svc", "Authorization", "Cache-Control", "Content-Disposition",
		"Content-Encoding", "Content-Language", "Content-Length", "Content-Range", "Content-Security-Policy",
		"Content-Type", "Cookie", "Date", "Early-Data", "Etag", "Expect", "Expect-Ct", "Expires", "Forwarded",
		"From", "Host", "If-Match", "If-Modified-Since", "If-None-Match", "If-Range", "If-Unmodified-Since",
		"Last-Modified", "Link", "Location", "Max-Forwards", "Origin", "Pragma", "Priority",
		"Proxy-Authorization", "Purpose", "Range", "Referer", "Refresh", "Retry-After", "Server",
		"Set-Cookie", "Strict-Transport-Security", "Te", "Timing-Allow-Origin", "Trailer", "Upgrade-Insecure-Requests",
		"User-Agent", "Vary", "Via", "Www-Authenticate", "X-Api-Key", "X-Content-Type-Options",
		"X-Correlation-Id", "X-Forwarded-For", "X-Forwarded-Host", "X-Forwarded-Proto", "X-Frame-Options",
		"X-Real-Ip", "X-Request-Id", "X-Xss-Protection",
	}
}

// fieldNames maps lower-case field names to canonical header keys and
// back. It is built once and only read.
type fieldNames struct {
	canonical map[string]string // "content-type" -> "Content-Type"
	lower     map[string]string // "Content-Type" -> "content-type"
}

func newFieldNames() *fieldNames {
	names := commonNames()
	n := &fieldNames{canonical: make(map[string]string, len(names)), lower: make(map[string]string, len(names))}
	for _, c := range names {
		l := strings.ToLower(c)
		n.canonical[l] = c
		n.lower[c] = l
	}
	return n
}

// canonicalKey is http.CanonicalHeaderKey for a lower-case field name.
func (n *fieldNames) canonicalKey(lower string) string {
	if c, ok := n.canonical[lower]; ok {
		return c
	}
	return http.CanonicalHeaderKey(lower)
}

// lowerName is the field name to send for a header key.
func (n *fieldNames) lowerName(key string) string {
	if l, ok := n.lower[key]; ok {
		return l
	}
	return strings.ToLower(key)
}

// connectionSpecific reports the header fields HTTP/3 forbids (RFC 9114
// §4.2): a request carrying one is malformed; a response never sends one.
func connectionSpecific(lower string) bool {
	switch lower {
	case "connection", "keep-alive", "proxy-connection", "transfer-encoding", "upgrade":
		return true
	}
	return false
}
