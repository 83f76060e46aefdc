package proxywasm

import (
	"net/http"
	"net/textproto"
	"strings"
	"testing"
	"unsafe"
)

// view returns b as a string sharing its bytes, the way readView hands
// guest memory to the header functions.
func view(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// TestHeaderSetCopiesViews: names and values arrive as views of guest
// memory, which the guest reuses as soon as it runs again; the map must
// not see that.
func TestHeaderSetCopiesViews(t *testing.T) {
	for _, tc := range []struct {
		name, key, value string
		replace          bool
	}{
		{"replace", "x-portico-user", "alice", true},
		{"replace empty value", "x-empty", "", true},
		{"replace long", "x-long-header-name-of-some-length", strings.Repeat("v", 100), true},
		{"replace name fills the buffer", strings.Repeat("a", 48), "", true},
		{"add", "x-added", "bob", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			guest := []byte(tc.key + tc.value)
			m := &HeaderMap{Header: http.Header{"Accept": {"*/*"}}}
			if !m.set(view(guest[:len(tc.key)]), view(guest[len(tc.key):]), tc.replace) {
				t.Fatal("set refused a valid field")
			}
			for i := range guest {
				guest[i] = '#'
			}
			ck := textproto.CanonicalMIMEHeaderKey(tc.key)
			if got := m.Header[ck]; len(got) != 1 || got[0] != tc.value {
				t.Fatalf("map holds %q under %q, want [%q]; all: %v", got, ck, tc.value, m.Header)
			}
			if len(m.Touched) != 1 || m.Touched[0] != ck {
				t.Fatalf("touched %q, want [%q]", m.Touched, ck)
			}
		})
	}
}

func TestHeaderReplaceThenAdd(t *testing.T) {
	m := &HeaderMap{Header: http.Header{}}
	m.set("x-a", "1", true)
	m.set("X-A", "2", false)
	m.set("x-a", "3", false)
	if got := m.Header["X-A"]; len(got) != 3 || got[0] != "1" || got[1] != "2" || got[2] != "3" {
		t.Fatalf("X-A: %q", got)
	}
	m.set("x-a", "4", true)
	if got := m.Header["X-A"]; len(got) != 1 || got[0] != "4" {
		t.Fatalf("X-A after replace: %q", got)
	}
}

func TestCanonicalKeyMatchesTextproto(t *testing.T) {
	for _, k := range []string{"x-portico-user", "X-PORTICO-USER", "content-type", "a", "A", "-a-", "x--y", "www-authenticate", "x_under_score", "dnt", "x-1-a", "!#$%&'*+-.^_`|~09"} {
		b := []byte(k)
		canonicalKey(b)
		if want := textproto.CanonicalMIMEHeaderKey(k); string(b) != want {
			t.Errorf("canonicalKey(%q) = %q, textproto says %q", k, b, want)
		}
	}
}

func TestHeaderRemoveCopiesView(t *testing.T) {
	guest := []byte("X-Gone")
	m := &HeaderMap{Header: http.Header{"X-Gone": {"1"}}}
	m.remove(view(guest))
	copy(guest, "######")
	if len(m.Removed) != 1 || m.Removed[0] != "X-Gone" {
		t.Fatalf("removed %q", m.Removed)
	}
	if _, ok := m.Header["X-Gone"]; ok {
		t.Fatal("header still there")
	}
}

func TestPseudoSetCopiesViews(t *testing.T) {
	guest := []byte(":path/new")
	m := &HeaderMap{Pseudo: []Pair{{":method", "GET"}, {":path", "/old"}}}
	m.set(view(guest[:5]), view(guest[5:]), true)
	guest2 := []byte(":x-newvalue")
	m.set(view(guest2[:6]), view(guest2[6:]), true)
	copy(guest, "#########")
	copy(guest2, "###########")
	if v, _ := m.PseudoValue(":path"); v != "/new" {
		t.Fatalf(":path %q", v)
	}
	if v, _ := m.PseudoValue(":x-new"); v != "value" {
		t.Fatalf(":x-new %q (pseudo %q)", v, m.Pseudo)
	}
}

func TestPropSetCopiesViews(t *testing.T) {
	var ps propSet
	guest := []byte("portico.principalalice")
	ps.set(view(guest[:17]), guest[17:])
	copy(guest, strings.Repeat("#", len(guest)))
	if v, ok := ps.get("portico.principal"); !ok || v != "alice" {
		t.Fatalf("get: %q %v (set %q)", v, ok, ps)
	}
	ps.set("portico.principal", []byte("bob"))
	if v, _ := ps.get("portico.principal"); v != "bob" || len(ps) != 1 {
		t.Fatalf("after update: %q", ps)
	}
}

func TestPropertyPath(t *testing.T) {
	for in, want := range map[string]string{
		"request\x00path":     "request.path",
		"request\x00path\x00": "request.path",
		"request.path":        "request.path",
		"":                    "",
	} {
		if got := propertyPath([]byte(in)); got != want {
			t.Errorf("propertyPath(%q) = %q, want %q", in, got, want)
		}
	}
}

// TestHeaderGet: guests ask in any case, usually lower; maps from net/http
// hold canonical names, but code may have put others in directly.
func TestHeaderGet(t *testing.T) {
	long := strings.Repeat("x-long", 12) // 72 bytes: past the stack buffer
	small := http.Header{
		"Authorization":                        {"Bearer t"},
		"Accept":                               {"a", "b"},
		"x-odd":                                {"odd"},       // not canonical
		"Bad Name":                             {"raw"},       // not a token: net/http keeps such names as they are
		"X-Dup":                                {"canonical"}, // preferred over its non-canonical twin
		"x-dup":                                {"other"},
		textproto.CanonicalMIMEHeaderKey(long): {"long"},
	}
	big := small.Clone()
	for i := range 20 {
		big["X-Filler-"+strings.Repeat("a", i+1)] = []string{"f"}
	}
	for _, tc := range []struct {
		key, want string
		found     bool
		bigToo    bool // also found in a map too big to scan
	}{
		{"authorization", "Bearer t", true, true},
		{"AUTHORIZATION", "Bearer t", true, true},
		{"Authorization", "Bearer t", true, true},
		{"accept", "a,b", true, true},
		{"x-odd", "odd", true, false},
		{"X-ODD", "odd", true, false},
		{"Bad Name", "raw", true, true},
		{"x-dup", "canonical", true, true},
		{long, "long", true, true},
		{"x-missing", "", false, false},
		{":method", "GET", true, true},
	} {
		for _, h := range []http.Header{small, big} {
			m := &HeaderMap{Header: h, Pseudo: []Pair{{":method", "GET"}}}
			v, ok := m.get(tc.key)
			wantOK := tc.found && (len(h) <= 16 || tc.bigToo)
			if ok != wantOK || (ok && v != tc.want) {
				t.Errorf("%d fields, get(%q) = %q, %v; want %q, %v", len(h), tc.key, v, ok, tc.want, wantOK)
			}
		}
	}
}

// A read allocates nothing when the name is found.
func TestHeaderGetAllocs(t *testing.T) {
	m := &HeaderMap{Header: http.Header{"Authorization": {"Bearer t"}, "Accept": {"*/*"}, "User-Agent": {"x"}}}
	key := []byte("authorization") // a view of guest memory, as readView gives
	if n := testing.AllocsPerRun(100, func() {
		if v, ok := m.get(view(key)); !ok || v != "Bearer t" {
			t.Fatal(v, ok)
		}
	}); n != 0 {
		t.Fatalf("%v allocations per read", n)
	}
}

func TestCanonicalToken(t *testing.T) {
	for _, k := range []string{"authorization", "X-PORTICO-USER", "x-b3-traceid", "content-type", "a--b", "-x", "x_y", "x.y!z", "WWW-Authenticate", "1abc"} {
		b := []byte(k)
		if !canonicalToken(b) || string(b) != textproto.CanonicalMIMEHeaderKey(k) {
			t.Errorf("canonicalToken(%q) = %q, want %q", k, b, textproto.CanonicalMIMEHeaderKey(k))
		}
	}
	for _, k := range []string{"bad name", "x:y", "é", "x\x00"} {
		if canonicalToken([]byte(k)) {
			t.Errorf("canonicalToken(%q) accepted a name that is not a token", k)
		}
	}
}
