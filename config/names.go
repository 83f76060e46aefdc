package config

import (
	"fmt"
	"net/netip"
	"strings"
)

// The checks below are shared by the file loader and the admin API, so a
// name that one accepts the other accepts too. Each returns an error that
// says what is wrong and what a valid value looks like.

// CheckAPIName checks an API name: 1-64 letters, digits, '.', '_' or '-',
// starting with a letter or digit.
func CheckAPIName(s string) error {
	if !validIdent(s, 64, "._-") {
		return fmt.Errorf("API name %q is not valid: use 1-64 letters, digits, '.', '_' or '-', starting with a letter or digit (for example \"petstore\")", s)
	}
	return nil
}

// CheckStageName checks a stage name: 1-128 letters, digits, '_' or '-'
// (API Gateway's rule).
func CheckStageName(s string) error {
	if !validIdent(s, 128, "_-") {
		return fmt.Errorf("stage name %q is not valid: use 1-128 letters, digits, '_' or '-' (for example \"prod\")", s)
	}
	return nil
}

// CheckStageVariable checks a stage variable name and value. Values may not
// hold control characters, because they are substituted into URLs and
// headers.
func CheckStageVariable(name, value string) error {
	if !validIdent(name, 64, "_") {
		return fmt.Errorf("stage variable name %q is not valid: use 1-64 letters, digits or '_'", name)
	}
	if len(value) > 2048 {
		return fmt.Errorf("stage variable %q is %d bytes long; the limit is 2048", name, len(value))
	}
	for i := 0; i < len(value); i++ {
		if c := value[i]; c < 0x20 || c == 0x7f {
			return fmt.Errorf("stage variable %q holds a control character (byte %d); values are substituted into URLs and headers and may not", name, i)
		}
	}
	return nil
}

// NormalizeBasePath returns the canonical form of a base path: no leading or
// trailing slash, "" for the root. "(none)" and "/" also mean the root, as in
// API Gateway.
func NormalizeBasePath(s string) (string, error) {
	if s == "(none)" || s == "/" || s == "" {
		return "", nil
	}
	t := strings.Trim(s, "/")
	if len(t) > 256 {
		return "", fmt.Errorf("base path %q is longer than 256 bytes", s)
	}
	for _, seg := range strings.Split(t, "/") {
		if seg == "" || seg == "." || seg == ".." {
			return "", fmt.Errorf("base path %q has an empty, '.' or '..' segment; write it like \"v1\" or \"v1/beta\"", s)
		}
		for i := 0; i < len(seg); i++ {
			if !isUnreserved(seg[i]) {
				return "", fmt.Errorf("base path %q holds %q; use letters, digits, '-', '.', '_' and '~' between slashes (for example \"v1\")", s, seg[i])
			}
		}
	}
	return t, nil
}

// NormalizeDomainName returns the canonical (lower-case, no trailing dot)
// form of a custom domain name. It accepts DNS names, a single leading
// wildcard label ("*.example.com"), and IP literals (useful on loopback).
func NormalizeDomainName(s string) (string, error) {
	n := strings.TrimSuffix(strings.ToLower(s), ".")
	if _, err := netip.ParseAddr(n); err == nil {
		return n, nil
	}
	if len(n) == 0 || len(n) > 253 {
		return "", fmt.Errorf("domain name %q is not valid: it must be 1-253 bytes (for example \"api.example.com\")", s)
	}
	labels := strings.Split(n, ".")
	for i, l := range labels {
		if l == "*" && i == 0 && len(labels) > 1 {
			continue
		}
		if len(l) == 0 || len(l) > 63 || l[0] == '-' || l[len(l)-1] == '-' {
			return "", fmt.Errorf("domain name %q is not valid: label %q must be 1-63 letters, digits or '-', not starting or ending with '-'", s, l)
		}
		for j := 0; j < len(l); j++ {
			c := l[j]
			if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
				return "", fmt.Errorf("domain name %q is not valid: label %q holds %q; use letters, digits and '-' (a wildcard is allowed only as the whole first label, as in \"*.example.com\")", s, l, c)
			}
		}
	}
	return n, nil
}

// CheckEndpointType checks an endpoint type.
func CheckEndpointType(t EndpointType) error {
	switch t {
	case EndpointEdge, EndpointRegional, EndpointPrivate:
		return nil
	}
	return fmt.Errorf("endpoint type %q is not valid: use \"edge\", \"regional\" or \"private\"", t)
}

// CheckCIDR checks a network in CIDR notation ("10.0.0.0/8") or a single address.
func CheckCIDR(s string) (netip.Prefix, error) {
	if p, err := netip.ParsePrefix(s); err == nil {
		if p.Masked() != p {
			return p, fmt.Errorf("network %q has host bits set; did you mean %q?", s, p.Masked().String())
		}
		return p, nil
	}
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	return netip.Prefix{}, fmt.Errorf("network %q is not valid: write a CIDR such as \"10.0.0.0/8\" or a single address", s)
}

func validIdent(s string, max int, extra string) bool {
	if len(s) == 0 || len(s) > max {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		alnum := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		if i == 0 && !alnum {
			return false
		}
		if !alnum && !strings.ContainsRune(extra, rune(c)) {
			return false
		}
	}
	return true
}

func isUnreserved(c byte) bool {
	return c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '.' || c == '_' || c == '~'
}
