package proxywasm

import (
	"net/http"
	"net/textproto"
	"net/url"
	"slices"
	"strings"
	"unsafe"

	"golang.org/x/net/http/httpguts"
)

// HeaderMap is a header map as a guest sees it: the HTTP/2-style pseudo
// fields (":method", ":path", ":authority", ":scheme" or ":status") followed
// by the header fields with lower-case names. It works on the http.Header it
// wraps, so a guest that reads one header costs no conversion of the rest.
type HeaderMap struct {
	Header http.Header
	Pseudo []Pair
	// Touched lists the (canonical) names the guest added or replaced,
	// in order; Removed the ones it removed. The adapter turns Touched into
	// identity headers.
	Touched []string
	Removed []string
	// PseudoChanged is set when the guest changed a pseudo field.
	PseudoChanged bool

	// req, when set, is the request whose pseudo fields Pseudo does not
	// hold yet, and scheme its ":scheme": Stream.RequestHeaderMap defers
	// them until something reads them, which most guests never do (filling
	// them in cost every request about 60 instructions, under callgrind, 1%
	// of BenchmarkStreamC's, and 2-5% of its time in Go benchmarks). url,
	// when set, is where ":path" comes from, deferred further: with a
	// query, building it costs an allocation.
	req    *http.Request
	scheme string
	url    *url.URL
}

// pseudo fills in the deferred pseudo fields but for the value of ":path".
func (m *HeaderMap) pseudo() {
	r := m.req
	if r == nil {
		return
	}
	m.req = nil
	m.url = r.URL
	m.Pseudo = append(m.Pseudo[:0], Pair{":method", r.Method}, Pair{":path", ""}, Pair{":authority", r.Host}, Pair{":scheme", m.scheme})
	m.scheme = ""
}

// resolvePath fills in every deferred pseudo field, ":path" included.
func (m *HeaderMap) resolvePath() {
	m.pseudo()
	if m.url == nil {
		return
	}
	u := m.url
	m.url = nil
	for i := range m.Pseudo {
		if m.Pseudo[i].Key == ":path" {
			m.Pseudo[i].Value = u.RequestURI()
			return
		}
	}
}

// PseudoValue returns a pseudo field's value. Read pseudo fields through it
// (not Pseudo) on a map from Stream.RequestHeaderMap.
func (m *HeaderMap) PseudoValue(name string) (string, bool) {
	if name == ":path" {
		m.resolvePath()
	} else {
		m.pseudo()
	}
	for _, p := range m.Pseudo {
		if p.Key == name {
			return p.Value, true
		}
	}
	return "", false
}

func (m *HeaderMap) get(key string) (string, bool) {
	if strings.HasPrefix(key, ":") {
		return m.PseudoValue(key)
	}
	if m.Header == nil {
		return "", false
	}
	vs := m.lookup(key)
	switch len(vs) {
	case 0:
		return "", false
	case 1:
		return vs[0], true
	}
	return strings.Join(vs, ","), true
}

// lookup returns the values of a field; key may be a view of guest memory.
// Guests ask in lower case, and maps from net/http hold canonical names, so
// the canonical form of key is looked up first, built on the stack. A small
// map that holds a name in another case (set by code that bypassed
// canonicalization) is then scanned. Scanning first, as this did before,
// cost a randomised map iteration on every read: a fifth of the host's
// share of a small authorizer's request.
func (m *HeaderMap) lookup(key string) []string {
	var buf [64]byte
	if len(key) <= len(buf) {
		b := buf[:copy(buf[:], key)]
		if canonicalToken(b) {
			if vs, ok := m.Header[string(b)]; ok { // no allocation for a lookup
				return vs
			}
		} else if vs, ok := m.Header[key]; ok {
			// Names with bytes outside the token set are not
			// canonicalised.
			return vs
		}
	} else if vs, ok := m.Header[textproto.CanonicalMIMEHeaderKey(key)]; ok {
		return vs
	}
	if len(m.Header) > 16 {
		return nil
	}
	for k, vs := range m.Header {
		if len(k) == len(key) && strings.EqualFold(k, key) {
			return vs
		}
	}
	return nil
}

// canonicalToken puts a field name in canonical form in place
// (textproto.CanonicalMIMEHeaderKey) and reports true, or reports false,
// leaving b as it was, when a byte is not a token byte (such names are not
// canonicalised by net/http).
func canonicalToken(b []byte) bool {
	upper := true
	for i, c := range b {
		switch {
		case 'a' <= c && c <= 'z':
			if upper {
				b[i] = c - ('a' - 'A')
			}
		case 'A' <= c && c <= 'Z':
			if !upper {
				b[i] = c + ('a' - 'A')
			}
		case c == '-' || '0' <= c && c <= '9':
		case !httpguts.IsTokenRune(rune(c)):
			return false
		}
		upper = c == '-'
	}
	return true
}

func (m *HeaderMap) pairs() []Pair {
	m.resolvePath()
	n := len(m.Pseudo)
	for _, vs := range m.Header {
		n += len(vs)
	}
	ps := make([]Pair, 0, n)
	ps = append(ps, m.Pseudo...)
	keys := make([]string, 0, len(m.Header))
	for k := range m.Header {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		lk := strings.ToLower(k)
		for _, v := range m.Header[k] {
			ps = append(ps, Pair{lk, v})
		}
	}
	return ps
}

func (m *HeaderMap) size() int {
	n := len(m.Pseudo)
	if m.req != nil {
		n = 4 // deferred: :method, :path, :authority, :scheme
	}
	for _, vs := range m.Header {
		n += len(vs)
	}
	return n
}

func validField(k, v string) bool {
	if strings.HasPrefix(k, ":") {
		return len(k) > 1 && httpguts.ValidHeaderFieldName(k[1:]) && httpguts.ValidHeaderFieldValue(v)
	}
	return httpguts.ValidHeaderFieldName(k) && httpguts.ValidHeaderFieldValue(v)
}

func (m *HeaderMap) touch(ck string) {
	if !slices.Contains(m.Touched, ck) {
		m.Touched = append(m.Touched, ck)
	}
}

// setPseudo sets a pseudo field from strings that may be views of guest
// memory.
func (m *HeaderMap) setPseudo(k, v string) {
	m.resolvePath()
	m.PseudoChanged = true
	for i := range m.Pseudo {
		if m.Pseudo[i].Key == k {
			m.Pseudo[i].Value = strings.Clone(v)
			return
		}
	}
	m.Pseudo = append(m.Pseudo, Pair{strings.Clone(k), strings.Clone(v)})
}

// set adds a field, or with replace sets it to this one value. k and v may
// be views of guest memory (see readView): what the map keeps is copied.
func (m *HeaderMap) set(k, v string, replace bool) bool {
	if !validField(k, v) {
		return false
	}
	if strings.HasPrefix(k, ":") {
		m.setPseudo(k, v)
		return true
	}
	if m.Header == nil {
		m.Header = make(http.Header)
	}
	var ck string
	if replace {
		var vs []string
		ck, vs = newField(k, v)
		m.Header[ck] = vs
	} else {
		var cv string
		ck, cv = ownField(k, v)
		m.Header[ck] = append(m.Header[ck], cv)
	}
	m.touch(ck)
	return true
}

// ownField copies a valid field's name, in canonical form, and its value in
// one allocation.
func ownField(k, v string) (ck, cv string) {
	b := make([]byte, len(k)+len(v))
	copy(b[copy(b, k):], v)
	canonicalKey(b[:len(k)])
	s := unsafe.String(unsafe.SliceData(b), len(b))
	return s[:len(k)], s[len(k):]
}

// field holds a header's name, its value and the one-element slice the map
// keeps the value in, in one allocation instead of three: replacing a
// header is the write guests make on most requests (an authorizer's
// identity header).
type field struct {
	vs  [1]string
	buf [48]byte
}

// newField returns a valid field's canonical name and a slice holding its
// value, copied out of k and v.
func newField(k, v string) (string, []string) {
	if len(k)+len(v) > len(field{}.buf) {
		ck, cv := ownField(k, v)
		return ck, []string{cv}
	}
	f := new(field)
	n := copy(f.buf[:], k)
	copy(f.buf[n:], v)
	canonicalKey(f.buf[:n])
	if len(v) > 0 {
		f.vs[0] = unsafe.String(&f.buf[n], len(v))
	}
	return unsafe.String(&f.buf[0], n), f.vs[:]
}

// canonicalKey is textproto.CanonicalMIMEHeaderKey in place, for a name
// validField accepted (so made of token bytes only).
func canonicalKey(b []byte) {
	upper := true
	for i, c := range b {
		if upper && 'a' <= c && c <= 'z' {
			b[i] = c - ('a' - 'A')
		} else if !upper && 'A' <= c && c <= 'Z' {
			b[i] = c + ('a' - 'A')
		}
		upper = c == '-'
	}
}

// remove deletes a field; k may be a view of guest memory.
func (m *HeaderMap) remove(k string) {
	if strings.HasPrefix(k, ":") {
		// Pseudo fields cannot be removed; the request would be malformed.
		return
	}
	ck := textproto.CanonicalMIMEHeaderKey(k) // k itself when already canonical
	if _, ok := m.Header[ck]; ok {
		delete(m.Header, ck)
		m.Removed = append(m.Removed, strings.Clone(ck))
	}
	if i := slices.Index(m.Touched, ck); i >= 0 {
		m.Touched = slices.Delete(m.Touched, i, i+1)
	}
}

func (m *HeaderMap) setPairs(ps []Pair) bool {
	for _, p := range ps {
		if !validField(p.Key, p.Value) {
			return false
		}
	}
	for k := range m.Header {
		m.remove(k)
	}
	for _, p := range ps {
		m.set(p.Key, p.Value, false)
	}
	return true
}
