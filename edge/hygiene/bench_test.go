package hygiene

import (
	"context"
	"net"
	"net/http"
	"testing"
)

const cleanRaw = "GET /v1/pets/123?limit=10&sort=name HTTP/1.1\r\n" +
	"Host: api.example.com\r\n" +
	"User-Agent: portico-bench/1.0\r\n" +
	"Accept: application/json\r\n" +
	"Accept-Encoding: gzip, br\r\n" +
	"Authorization: Bearer eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxMjMifQ.c2ln\r\n" +
	"X-Api-Key: k-0123456789abcdef\r\n" +
	"X-Request-Id: 6f1d2c3b-4a5e-4f60-8a7b-9c0d1e2f3a4b\r\n" +
	"Cookie: session=abc\r\n\r\n"

// messyRaw is accepted, but every rule has something to do: host case,
// port and trailing dot, dot segments, repeated slashes, escapes to decode
// and escapes to keep, spoofed and hop-by-hop headers.
const messyRaw = "GET /v1/./%70ets//12%33/../456/%E2%9C%93%3f?q=%20x HTTP/1.1\r\n" +
	"Host: API.Example.COM.:443\r\n" +
	"User-Agent: portico-bench/1.0\r\n" +
	"Accept: application/json\r\n" +
	"Connection: keep-alive, X-Hop\r\n" +
	"X-Hop: 1\r\n" +
	"X-Forwarded-For: 10.0.0.1\r\n" +
	"X-Real-IP: 10.0.0.1\r\n" +
	"X-HTTP-Method-Override: DELETE\r\n" +
	"Portico-Route: 3\r\n\r\n"

// reset puts back what Check and Sanitize change, without allocating.
type reset struct {
	host, path, rawPath string
	header              http.Header
}

func saveState(r *http.Request) reset {
	return reset{r.Host, r.URL.Path, r.URL.RawPath, r.Header.Clone()}
}

func (s reset) restore(r *http.Request) {
	r.Host, r.URL.Path, r.URL.RawPath = s.host, s.path, s.rawPath
	for k, v := range s.header {
		r.Header[k] = v
	}
}

func BenchmarkCheckClean(b *testing.B) {
	r := readH1(b, cleanRaw)
	lim := Limits{}
	b.ReportAllocs()
	for b.Loop() {
		if _, err := Check(r, lim); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkCheckMessy(b *testing.B) {
	r := readH1(b, messyRaw)
	s := saveState(r)
	lim := Limits{}
	b.ReportAllocs()
	for b.Loop() {
		s.restore(r)
		if _, err := Check(r, lim); err != nil {
			b.Fatal(err)
		}
	}
}

// The edge's whole sequence on a guarded HTTP/1 connection: the guard
// follows the head as it is read, then Check and Sanitize.
func BenchmarkGuardedCheckSanitizeClean(b *testing.B) {
	benchGuarded(b, cleanRaw)
}

func BenchmarkGuardedCheckSanitizeMessy(b *testing.B) {
	benchGuarded(b, messyRaw)
}

func benchGuarded(b *testing.B, raw string) {
	a, z := net.Pipe()
	defer a.Close()
	defer z.Close()
	g := NewConn(a)
	r := readH1(b, raw).WithContext(ConnContext(context.Background(), g))
	s := saveState(r)
	head := []byte(raw)
	lim := Limits{}
	b.ReportAllocs()
	for b.Loop() {
		s.restore(r)
		g.mu.Lock()
		g.s.feed(head)
		g.mu.Unlock()
		if _, err := Check(r, lim); err != nil {
			b.Fatal(err)
		}
		Sanitize(r.Header)
	}
}

func BenchmarkSanitizeClean(b *testing.B) {
	r := readH1(b, cleanRaw)
	b.ReportAllocs()
	for b.Loop() {
		Sanitize(r.Header)
	}
}

// Allocation counts are part of the contract on the hot path.
func TestCheckAllocations(t *testing.T) {
	for _, tc := range []struct {
		name string
		raw  string
		max  float64
	}{
		{"clean", cleanRaw, 0},
		// The lower-cased host and the one string holding both path forms.
		{"messy", messyRaw, 2},
	} {
		r := readH1(t, tc.raw)
		s := saveState(r)
		got := testing.AllocsPerRun(200, func() {
			s.restore(r)
			if _, err := Check(r, Limits{}); err != nil {
				t.Fatal(err)
			}
		})
		if got > tc.max {
			t.Errorf("%s: Check allocated %.1f times per request, want at most %.0f", tc.name, got, tc.max)
		}
	}
}
