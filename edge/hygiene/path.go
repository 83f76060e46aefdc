package hygiene

import (
	"bytes"
	"net/http"
)

// The path rules, in the order they apply to each segment (README.md says
// why each exists):
//
//  1. A percent-escape must be '%' and two hex digits.
//  2. An encoded '/' or '\' (%2F, %5C) and a raw '\' are refused: decoding
//     them would create a separator that routing did not see, and servers
//     disagree on whether they do.
//  3. A raw ';' is refused: matrix parameters (/admin;x, /user/..;x=y/admin)
//     make some backends see a different path than routing.
//  4. Control characters, raw or encoded (%00 to %1F, %7F), are refused.
//  5. '%25' followed by two hex digits (double encoding) is refused: a
//     backend that decodes twice would see another path.
//  6. A raw '#' is refused: it starts a fragment, which clients never send.
//  7. Escaped unreserved characters (ALPHA DIGIT - . _ ~) are decoded:
//     /%61dmin is /admin. Every other escape stays an escape (with
//     upper-case hex) and is data: %3F, %23, %20 never act as delimiters.
//  8. Raw characters that may not appear in a path (space, '"', '<', '>',
//     '[', ']', '^', '`', '{', '|', '}', bytes >= 0x80) are escaped.
//  9. Dot segments are removed (RFC 3986 5.2.4) after step 7, so %2e%2e is
//     "..", and a path cannot climb above the root (/../x is /x).
//  10. Empty segments are merged: //admin is /admin; a trailing slash stays.
//
// Case is kept: routing is case-sensitive and so are most backends.

const errEncodedSlash = "encoded slash/backslash in path is not allowed"

// normalizePath returns the decoded and the escaped normal form of a raw
// path that starts with '/'.
func normalizePath(p string) (path, escaped string, err *Error) {
	if isCleanPath(p) {
		return p, p, nil
	}
	return normalizeSlow(p)
}

// isCleanPath reports whether p is already in normal form with nothing to
// decode, so that both forms are p itself and nothing is allocated.
func isCleanPath(p string) bool {
	for i := 0; i < len(p); i++ {
		c := p[i]
		if c != '/' {
			if !isPlainPath(c) {
				return false
			}
			continue
		}
		rest := p[i+1:]
		switch {
		case len(rest) == 0:
		case rest[0] == '/':
			return false
		case rest[0] == '.':
			if len(rest) == 1 || rest[1] == '/' {
				return false
			}
			if rest[1] == '.' && (len(rest) == 2 || rest[2] == '/') {
				return false
			}
		}
	}
	return true
}

func normalizeSlow(p string) (string, string, *Error) {
	// Both forms are built side by side in stack buffers; short paths
	// allocate only the final string.
	var buf [512]byte
	esc := buf[:0:256]
	dec := buf[256:256:512]
	trailing := false
	i := 1 // p[0] == '/'
	for {
		end := i
		for end < len(p) && p[end] != '/' {
			end++
		}
		last := end == len(p)
		seg := p[i:end]
		escStart, decStart := len(esc), len(dec)
		esc = append(esc, '/')
		dec = append(dec, '/')
		for k := 0; k < len(seg); k++ {
			c := seg[k]
			switch {
			case c == '%':
				if k+2 >= len(seg) || !isHex(seg[k+1]) || !isHex(seg[k+2]) {
					return "", "", reject(http.StatusBadRequest, "the path holds an invalid percent-encoding; write a percent sign as %25")
				}
				v := unhex(seg[k+1])<<4 | unhex(seg[k+2])
				switch {
				case v == '/' || v == '\\':
					return "", "", reject(http.StatusBadRequest, errEncodedSlash)
				case v < 0x20 || v == 0x7f:
					return "", "", reject(http.StatusBadRequest, "NUL and control characters in the path are not allowed")
				case v == '%' && k+4 < len(seg) && isHex(seg[k+3]) && isHex(seg[k+4]):
					return "", "", reject(http.StatusBadRequest, "double percent-encoding in the path is not allowed")
				case isUnreserved(v):
					esc = append(esc, v)
				default:
					esc = append(esc, '%', upperHex[v>>4], upperHex[v&15])
				}
				dec = append(dec, v)
				k += 2
			case c == '\\':
				return "", "", reject(http.StatusBadRequest, errEncodedSlash)
			case c == ';':
				return "", "", reject(http.StatusBadRequest, "a semicolon in the path is not allowed; encode it as %3B if it is data")
			case c < 0x20 || c == 0x7f:
				return "", "", reject(http.StatusBadRequest, "NUL and control characters in the path are not allowed")
			case c == '#':
				return "", "", reject(http.StatusBadRequest, "a fragment (#) in the request target is not allowed")
			case isPlainPath(c):
				esc = append(esc, c)
				dec = append(dec, c)
			default:
				esc = append(esc, '%', upperHex[c>>4], upperHex[c&15])
				dec = append(dec, c)
			}
		}
		s := esc[escStart+1:]
		switch {
		case len(s) == 0, len(s) == 1 && s[0] == '.':
			esc, dec = esc[:escStart], dec[:decStart]
			trailing = last
		case len(s) == 2 && s[0] == '.' && s[1] == '.':
			esc, dec = esc[:escStart], dec[:decStart]
			// Drop the previous segment; at the root there is none,
			// which clamps the path to the root.
			if j := bytes.LastIndexByte(esc, '/'); j >= 0 {
				esc = esc[:j]
			}
			if j := bytes.LastIndexByte(dec, '/'); j >= 0 {
				dec = dec[:j]
			}
			trailing = last
		default:
			trailing = false
		}
		if last {
			break
		}
		i = end + 1
	}
	if trailing || len(esc) == 0 {
		esc = append(esc, '/')
		dec = append(dec, '/')
	}
	if bytes.Equal(esc, dec) {
		s := string(esc)
		return s, s, nil
	}
	n := len(esc)
	s := string(append(esc, dec...))
	return s[n:], s[:n], nil
}

// checkQuery validates the raw query, which is forwarded exactly as sent.
func checkQuery(q string) *Error {
	for i := 0; i < len(q); i++ {
		c := q[i]
		switch {
		case c == '%':
			if i+2 >= len(q) || !isHex(q[i+1]) || !isHex(q[i+2]) {
				return reject(http.StatusBadRequest, "the query holds an invalid percent-encoding; write a percent sign as %25")
			}
			i += 2
		case c < 0x20 || c == 0x7f:
			return reject(http.StatusBadRequest, "control characters in the query are not allowed")
		case c == ' ':
			// Only HTTP/2 and HTTP/3 can carry it; forwarded raw it
			// would split the request line toward the origin.
			return reject(http.StatusBadRequest, "a space in the query is not allowed; encode it as %20")
		case c == '#':
			return reject(http.StatusBadRequest, "a fragment (#) in the request target is not allowed")
		case c == ';':
			// Go's query parser (and ReverseProxy, which re-encodes such
			// queries) drops pairs holding ';' while other servers split
			// on it: the same query would mean two things.
			return reject(http.StatusBadRequest, "a semicolon in the query is not allowed; encode it as %3B")
		}
	}
	return nil
}

const upperHex = "0123456789ABCDEF"

func isHex(c byte) bool {
	return '0' <= c && c <= '9' || 'a' <= c && c <= 'f' || 'A' <= c && c <= 'F'
}

func unhex(c byte) byte {
	switch {
	case '0' <= c && c <= '9':
		return c - '0'
	case 'a' <= c && c <= 'f':
		return c - 'a' + 10
	}
	return c - 'A' + 10
}

// isUnreserved reports RFC 3986 unreserved characters.
func isUnreserved(c byte) bool {
	return 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9' ||
		c == '-' || c == '.' || c == '_' || c == '~'
}

// isPlainPath reports the characters a normal path holds raw: RFC 3986
// pchar without pct-encoded and without ';'.
func isPlainPath(c byte) bool {
	if isUnreserved(c) {
		return true
	}
	switch c {
	case '!', '$', '&', '\'', '(', ')', '*', '+', ',', '=', ':', '@':
		return true
	}
	return false
}
