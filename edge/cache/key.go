package cache

import (
	"encoding/binary"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"strings"

	"github.com/cespare/xxhash/v2"
)

// keySpec is a route's CacheKeyParameters, parsed once per route.
type keySpec struct {
	query   []string // query parameter names, in the order the route lists them
	headers []string // canonical header names
	path    []string // path parameter names
	err     error
}

// Prefixes of API Gateway's cache key parameter names. The multivalue forms
// are accepted as aliases: every value of a parameter is always keyed.
const (
	kpQuery       = "method.request.querystring."
	kpMultiQuery  = "method.request.multivaluequerystring."
	kpHeader      = "method.request.header."
	kpMultiHeader = "method.request.multivalueheader."
	kpPath        = "method.request.path."
)

func parseKeySpec(params []string) *keySpec {
	ks := &keySpec{}
	for _, p := range params {
		switch {
		case strings.HasPrefix(p, kpQuery) && len(p) > len(kpQuery):
			ks.query = appendUnique(ks.query, p[len(kpQuery):])
		case strings.HasPrefix(p, kpMultiQuery) && len(p) > len(kpMultiQuery):
			ks.query = appendUnique(ks.query, p[len(kpMultiQuery):])
		case strings.HasPrefix(p, kpHeader) && len(p) > len(kpHeader):
			ks.headers = appendUnique(ks.headers, http.CanonicalHeaderKey(p[len(kpHeader):]))
		case strings.HasPrefix(p, kpMultiHeader) && len(p) > len(kpMultiHeader):
			ks.headers = appendUnique(ks.headers, http.CanonicalHeaderKey(p[len(kpMultiHeader):]))
		case strings.HasPrefix(p, kpPath) && len(p) > len(kpPath):
			ks.path = appendUnique(ks.path, p[len(kpPath):])
		default:
			ks.err = fmt.Errorf("cache key parameter %q is not of the form method.request.querystring.NAME, method.request.header.NAME or method.request.path.NAME", p)
			return ks
		}
	}
	return ks
}

func appendUnique(s []string, v string) []string {
	if slices.Contains(s, v) {
		return s
	}
	return append(s, v)
}

func (ks *keySpec) hasHeader(name string) bool { return slices.Contains(ks.headers, name) }

func (ks *keySpec) hasQuery(name string) bool { return slices.Contains(ks.query, name) }

// Key layout. Every field is length-prefixed, so no value (a query value may
// hold any byte once decoded) can be confused with a separator.
//
//	version, api ID, stage, host, path, then per keyed query parameter its
//	name and values, per keyed header its name and values, per keyed path
//	parameter its name and value; a variant (Vary) key appends a marker and
//	per Vary'd header its name and values.
const keyVersion = 1

func appendField(b []byte, s string) []byte {
	b = binary.AppendUvarint(b, uint64(len(s)))
	return append(b, s...)
}

// keyParts records where the stage, host and path sit in a primary key, so
// that an object can keep them as substrings of its key at no extra cost.
type keyParts struct {
	apiStart, apiEnd     int
	stageStart, stageEnd int
	hostStart, hostEnd   int
	pathStart, pathEnd   int
}

// queryValues returns the values of the keyed query parameters from a raw
// query, and the raw query reduced to those parameters (kept byte for byte
// as the client sent them) for the request to the origin. It fails on a
// query that could be read two ways: a malformed escape, or a ';' that some
// origins treat as a separator ("parameter cloaking").
func queryValues(rawQuery string, ks *keySpec) (vals [][]string, keyedRaw string, err error) {
	if rawQuery == "" {
		return nil, "", nil
	}
	if strings.IndexByte(rawQuery, ';') >= 0 {
		return nil, "", fmt.Errorf("query contains ';'")
	}
	if len(ks.query) == 0 {
		return nil, "", nil
	}
	vals = make([][]string, len(ks.query))
	var kept strings.Builder
	rest := rawQuery
	for rest != "" {
		var seg string
		seg, rest, _ = strings.Cut(rest, "&")
		if seg == "" {
			continue
		}
		rawName, rawVal, _ := strings.Cut(seg, "=")
		name, err := url.QueryUnescape(rawName)
		if err != nil {
			return nil, "", err
		}
		i := slices.Index(ks.query, name)
		if i < 0 {
			continue
		}
		val, err := url.QueryUnescape(rawVal)
		if err != nil {
			return nil, "", err
		}
		vals[i] = append(vals[i], val)
		if kept.Len() > 0 {
			kept.WriteByte('&')
		}
		kept.WriteString(seg)
	}
	return vals, kept.String(), nil
}

// unkeyedRequestHeaders are headers that have changed responses in known
// cache-poisoning and CPDoS attacks without appearing in Vary. The edge's
// hygiene removes the forwarding ones before the pipeline; the cache
// removes them again from every request it may store the answer to,
// unless the route keys on them, so no unkeyed input of this kind can reach
// the origin on a cacheable request. Conditional and range headers are
// removed because the cache makes its own conditional requests and stores
// whole responses; Cache-Control and Pragma because the request to the
// origin is the cache's own.
var unkeyedRequestHeaders = [...]string{
	"X-Http-Method-Override", "X-Http-Method", "X-Method-Override",
	"X-Forwarded-Host", "X-Host", "X-Forwarded-Server", "X-Original-Url",
	"X-Rewrite-Url", "X-Forwarded-Scheme", "X-Forwarded-Port",
	"X-Forwarded-Prefix", "X-Original-Host", "X-Forwarded-Path",
	"If-None-Match", "If-Modified-Since", "If-Match", "If-Unmodified-Since",
	"If-Range", "Range", "Cache-Control", "Pragma",
}

// strippedHeader reports whether name is removed from fills (and so must
// not contribute to a variant key either).
func strippedHeader(name string, ks *keySpec) bool {
	for _, h := range unkeyedRequestHeaders {
		if h == name {
			return !ks.hasHeader(name)
		}
	}
	return false
}

// hashKey is the store's hash of a key: xxhash with a per-store random
// seed, so that nobody can choose keys that collide on purpose. A collision
// is harmless anyway: objects keep their full key and a lookup compares it.
func hashKey(seed uint64, b []byte) uint64 {
	var d xxhash.Digest
	d.ResetWithSeed(seed)
	_, _ = d.Write(b)
	return d.Sum64()
}

// appendVary appends the variant part of a key: the values the request has
// for each header the stored response varies on.
func appendVary(b []byte, h http.Header, names []string, ks *keySpec) []byte {
	b = append(b, 'V')
	for _, name := range names {
		b = appendField(b, name)
		if strippedHeader(name, ks) {
			b = binary.AppendUvarint(b, 0)
			continue
		}
		vs := h[name]
		b = binary.AppendUvarint(b, uint64(len(vs)))
		for _, v := range vs {
			b = appendField(b, strings.TrimSpace(v))
		}
	}
	return b
}

// parseVary returns the canonical, sorted, de-duplicated header names of
// Vary, and star when it contains "*".
func parseVary(values []string) (names []string, star bool) {
	for _, v := range values {
		for f := range strings.SplitSeq(v, ",") {
			f = strings.TrimSpace(f)
			if f == "" {
				continue
			}
			if f == "*" {
				return nil, true
			}
			names = append(names, http.CanonicalHeaderKey(f))
		}
	}
	slices.Sort(names)
	return slices.Compact(names), false
}
