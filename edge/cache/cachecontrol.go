package cache

import (
	"net/http"
	"strconv"
	"strings"
	"time"
)

// directives is what the cache needs from a Cache-Control header (RFC 9111
// §5.2 and RFC 5861). Durations are -1 when the directive is absent.
type directives struct {
	noStore         bool
	noCache         bool // unqualified or qualified: both are treated as unqualified (RFC 9111 §5.2.2.4 allows it)
	private         bool
	public          bool
	mustRevalidate  bool
	proxyRevalidate bool
	maxAge          time.Duration
	sMaxAge         time.Duration
	staleWhileReval time.Duration
	staleIfError    time.Duration
}

// maxDelta is the largest delta-seconds value a cache must handle (RFC 9111
// §1.2.2); larger values are clamped to it.
const maxDelta = 2147483648 * time.Second

func parseCacheControl(values []string) directives {
	d := directives{maxAge: -1, sMaxAge: -1, staleWhileReval: -1, staleIfError: -1}
	for _, v := range values {
		for len(v) > 0 {
			var part string
			part, v = nextDirective(v)
			name, arg, hasArg := strings.Cut(part, "=")
			name = strings.ToLower(strings.TrimSpace(name))
			arg = strings.TrimSpace(arg)
			switch name {
			case "no-store":
				d.noStore = true
			case "no-cache":
				d.noCache = true
			case "private":
				d.private = true
			case "public":
				d.public = true
			case "must-revalidate":
				d.mustRevalidate = true
			case "proxy-revalidate":
				d.proxyRevalidate = true
			case "max-age":
				d.maxAge = deltaSeconds(arg, hasArg)
			case "s-maxage":
				d.sMaxAge = deltaSeconds(arg, hasArg)
			case "stale-while-revalidate":
				d.staleWhileReval = deltaSeconds(arg, hasArg)
			case "stale-if-error":
				d.staleIfError = deltaSeconds(arg, hasArg)
			}
		}
	}
	return d
}

// nextDirective splits off one comma-separated directive, keeping commas
// inside a quoted argument (no-cache="a, b") in the directive.
func nextDirective(s string) (part, rest string) {
	inQuote := false
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '"':
			inQuote = !inQuote
		case '\\':
			if inQuote {
				i++
			}
		case ',':
			if !inQuote {
				return s[:i], s[i+1:]
			}
		}
	}
	return s, ""
}

// deltaSeconds parses a delta-seconds argument. A directive whose argument
// is missing or malformed gets 0: RFC 9111 §4.2.1 says such a response is to
// be treated as stale, which 0 does, and it is the safe reading either way.
func deltaSeconds(arg string, hasArg bool) time.Duration {
	if !hasArg {
		return 0
	}
	arg = strings.Trim(arg, `"`)
	if arg == "" {
		return 0
	}
	for i := 0; i < len(arg); i++ {
		if arg[i] < '0' || arg[i] > '9' {
			return 0
		}
	}
	n, err := strconv.ParseInt(arg, 10, 64)
	if err != nil || n > int64(maxDelta/time.Second) {
		return maxDelta
	}
	return time.Duration(n) * time.Second
}

// requestWantsFresh reports whether a client's Cache-Control asks for an
// answer straight from the origin: max-age=0 (API Gateway's invalidation
// request) or no-cache.
func requestWantsFresh(h http.Header) bool {
	v := h["Cache-Control"]
	if len(v) == 0 {
		return false
	}
	d := parseCacheControl(v)
	return d.noCache || d.maxAge == 0
}
