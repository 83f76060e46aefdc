package hygiene

import (
	"context"
	"math/rand/v2"
	"net"
	"strings"
	"testing"
)

type take struct {
	method, target string
	msg            string // "" for accepted, else part of the error message
}

// feedings returns the stream cut three ways: whole, byte by byte, and in
// random pieces, since the guard sees whatever Read returns.
func feedings(stream string) map[string][][]byte {
	whole := [][]byte{[]byte(stream)}
	var bytewise [][]byte
	for i := range len(stream) {
		bytewise = append(bytewise, []byte{stream[i]})
	}
	rnd := rand.New(rand.NewPCG(1, 2))
	var random [][]byte
	for s := stream; len(s) > 0; {
		n := 1 + rnd.IntN(min(len(s), 40))
		random = append(random, []byte(s[:n]))
		s = s[n:]
	}
	return map[string][][]byte{"whole": whole, "bytewise": bytewise, "random": random}
}

func TestSniffer(t *testing.T) {
	for _, tc := range []struct {
		name   string
		stream string
		takes  []take
	}{
		{
			name: "pipelined clean requests",
			stream: "GET /a HTTP/1.1\r\nHost: a\r\n\r\n" +
				"POST /b?x=1 HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello" +
				"\r\n" + // Go tolerates a CRLF after a POST body
				"GET /c HTTP/1.1\r\nHost: a\r\n\r\n",
			takes: []take{{"GET", "/a", ""}, {"POST", "/b?x=1", ""}, {"GET", "/c", ""}},
		},
		{
			name: "chunked with extensions and trailers",
			stream: "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5;ext=1\r\nhello\r\nA\r\n0123456789\r\n0\r\nX-T: 1\r\n\r\n" +
				"GET /y HTTP/1.1\r\nHost: a\r\n\r\n",
			takes: []take{{"POST", "/x", ""}, {"GET", "/y", ""}},
		},
		{
			name: "lenient spellings Go accepts",
			stream: "POST /x HTTP/1.1\nhost: a\ncontent-length:   3  \n\nabc" +
				"POST /y HTTP/1.1\r\nTransfer-Encoding:  CHUNKED \r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
				"POST /z HTTP/1.1\r\nContent-Length: 2\r\nContent-Length: 2\r\n\r\nhi" +
				"GET /w HTTP/1.1\r\n\r\n",
			takes: []take{{"POST", "/x", ""}, {"POST", "/y", ""}, {"POST", "/z", ""}, {"GET", "/w", ""}},
		},
		{
			name: "HTTP/1.0 with a body",
			stream: "POST /x HTTP/1.0\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nhi" +
				"GET /y HTTP/1.0\r\n\r\n",
			takes: []take{{"POST", "/x", ""}, {"GET", "/y", ""}},
		},
		{
			name: "[9] Content-Length with Transfer-Encoding",
			stream: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n" +
				"GET /admin HTTP/1.1\r\nHost: a\r\n\r\n",
			takes: []take{{"POST", "/", "both Content-Length and Transfer-Encoding"}, {"GET", "/admin", "could not be verified"}},
		},
		{
			name:   "[9] Transfer-Encoding before Content-Length",
			stream: "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 6\r\n\r\n0\r\n\r\n",
			takes:  []take{{"POST", "/", "both Content-Length and Transfer-Encoding"}},
		},
		{
			name: "[13] HTTP/1.0 with Transfer-Encoding",
			stream: "POST / HTTP/1.0\r\nHost: a\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n" +
				"5\r\nhello\r\n0\r\n\r\n",
			takes: []take{{"POST", "/", "HTTP/1.0 requests cannot use Transfer-Encoding"}},
		},
		{
			name:   "[10] folded Transfer-Encoding",
			stream: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n",
			takes:  []take{{"POST", "/", "obs-fold"}},
		},
		{
			name:   "[10] folded Transfer-Encoding with Content-Length",
			stream: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding:\r\n chunked\r\nContent-Length: 3\r\n\r\nabc",
			takes:  []take{{"POST", "/", "both Content-Length and Transfer-Encoding"}},
		},
		{
			name:   "[11] folded header",
			stream: "GET / HTTP/1.1\r\nHost: a\r\nX-A: a\r\n\tb\r\n\r\n",
			takes:  []take{{"GET", "/", "obs-fold"}},
		},
		{
			name:   "a request that skipped Check",
			stream: "GET /a HTTP/1.1\r\n\r\nGET /b HTTP/1.1\r\n\r\n",
			takes:  []take{{"GET", "/b", ""}, {"GET", "/c", "could not be verified"}},
		},
		{
			name:   "a request Check never saw",
			stream: "GET /a HTTP/1.1\r\n\r\n",
			takes:  []take{{"GET", "/other", "could not be verified"}},
		},
		{
			name:   "a bad head skipped before a good one",
			stream: "OPTIONS * HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
			takes:  []take{{"GET", "/", "both Content-Length"}},
		},
		{
			name:   "too deep a pipeline",
			stream: strings.Repeat("GET / HTTP/1.1\r\n\r\n", queueSize+1),
			takes: append(func() []take {
				var ts []take
				for range queueSize {
					ts = append(ts, take{"GET", "/", ""})
				}
				return ts
			}(), take{"GET", "/", "could not be verified"}),
		},
		{
			name:   "the HTTP/2 preface",
			stream: "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n",
			takes:  []take{{"PRI", "*", "could not be verified"}},
		},
	} {
		for how, pieces := range feedings(tc.stream) {
			var s sniffer
			for _, p := range pieces {
				s.feed(p)
			}
			for i, tk := range tc.takes {
				err := s.take(fingerprint(tk.method, tk.target))
				switch {
				case tk.msg == "" && err != nil:
					t.Errorf("%s (%s): take %d (%s %s): %v", tc.name, how, i, tk.method, tk.target, err)
				case tk.msg != "" && (err == nil || !strings.Contains(err.Message, tk.msg) || err.Status != 400 || !err.Close):
					t.Errorf("%s (%s): take %d (%s %s): got %v, want 400+close mentioning %q", tc.name, how, i, tk.method, tk.target, err, tk.msg)
				}
			}
		}
	}
}

// Garbage (a WebSocket stream after an upgrade, random bytes) keeps the
// sniffer bounded and never lets a later check pass.
func TestSnifferGarbage(t *testing.T) {
	rnd := rand.New(rand.NewPCG(3, 4))
	for range 200 {
		var s sniffer
		s.feed([]byte("GET /ws HTTP/1.1\r\nHost: a\r\n\r\n"))
		if err := s.take(fingerprint("GET", "/ws")); err != nil {
			t.Fatal(err)
		}
		buf := make([]byte, 1+rnd.IntN(4096))
		for i := range buf {
			buf[i] = byte(rnd.Uint32())
		}
		s.feed(buf)
		if s.qLen > queueSize {
			t.Fatalf("queue grew to %d", s.qLen)
		}
	}
}

func TestGuardOffUnderTLS(t *testing.T) {
	var s sniffer
	s.feed([]byte{0x16, 0x03, 0x01, 0x02, 0x00})
	s.feed([]byte("POST / HTTP/1.1\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"))
	if !s.off || s.qLen != 0 {
		t.Fatalf("off=%v queued=%d", s.off, s.qLen)
	}
}

func TestConnContext(t *testing.T) {
	a, b := net.Pipe()
	defer a.Close()
	defer b.Close()
	g := NewConn(a)
	if ctx := ConnContext(context.Background(), g); ctx.Value(connKey{}) != g {
		t.Fatal("guard not in the context")
	}
	if ctx := ConnContext(context.Background(), a); ctx.Value(connKey{}) != nil {
		t.Fatal("a plain conn got a guard")
	}
}
