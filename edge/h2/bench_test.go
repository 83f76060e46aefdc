package h2

import (
	"bufio"
	"bytes"
	"crypto/tls"
	"net/http"
	"testing"

	"golang.org/x/net/http2/hpack"
)

// BenchmarkServer measures the server's cost per request: GET / answered
// with a 1 KiB body over TLS, 16 requests in flight on each connection,
// as test/bench/protocols.sh's h2load does. The client is written for
// the purpose (pre-encoded requests, frames skipped without decoding) so
// that it costs little next to the server; allocs/op is nearly all the
// server's.
func BenchmarkServer(b *testing.B) {
	body := bytes.Repeat([]byte("x"), 1024)
	ts := startServer(b, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write(body)
	}))
	for _, conns := range []int{1, 4} {
		b.Run(map[int]string{1: "conns=1", 4: "conns=4"}[conns], func(b *testing.B) {
			clients := make([]*benchClient, conns)
			for i := range clients {
				clients[i] = dialBench(b, ts)
			}
			b.ReportAllocs()
			b.ResetTimer()
			done := make(chan error, conns)
			per := (b.N + conns - 1) / conns
			for _, c := range clients {
				go func() { done <- c.run(per, 16) }()
			}
			for range conns {
				if err := <-done; err != nil {
					b.Fatal(err)
				}
			}
			b.StopTimer()
			for _, c := range clients {
				c.conn.Close()
			}
		})
	}
}

type benchClient struct {
	conn  *tls.Conn
	br    *bufio.Reader
	block []byte
	next  uint32
	recv  int
	out   []byte
}

func dialBench(b *testing.B, ts *testServer) *benchClient {
	conn, err := tls.Dial("tcp", ts.addr, ts.pki.clientTLS())
	if err != nil {
		b.Fatal(err)
	}
	var buf bytes.Buffer
	enc := hpack.NewEncoder(&buf)
	enc.SetMaxDynamicTableSizeLimit(0) // no dynamic entries: the block can be sent again and again
	for _, f := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}, {"user-agent", "bench"}} {
		enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
	}
	c := &benchClient{conn: conn, br: bufio.NewReaderSize(conn, 64<<10), block: buf.Bytes(), next: 1}
	pre := []byte(clientPreface)
	pre = appendSettings(pre, setting{settingInitialWindowSize, 1 << 30}, setting{settingHeaderTableSize, 4096})
	pre = appendWindowUpdate(pre, 0, 1<<30)
	if _, err := conn.Write(pre); err != nil {
		b.Fatal(err)
	}
	return c
}

// run sends n requests, depth at a time, and reads their responses.
func (c *benchClient) run(n, depth int) error {
	inflight := 0
	for sent, done := 0, 0; done < n; {
		c.out = c.out[:0]
		for inflight < depth && sent < n {
			c.out = appendFrameHeader(c.out, len(c.block), frameHeaders, flagEndHeaders|flagEndStream, c.next)
			c.out = append(c.out, c.block...)
			c.next += 2
			inflight++
			sent++
		}
		if len(c.out) > 0 {
			if _, err := c.conn.Write(c.out); err != nil {
				return err
			}
		}
		// Read until at least one response completes, then refill.
		for {
			h, err := c.br.Peek(frameHeaderLen)
			if err != nil {
				return err
			}
			fh := parseFrameHeader(h)
			if _, err := c.br.Discard(frameHeaderLen); err != nil {
				return err
			}
			if fh.Type == frameSettings && fh.Flags&flagAck == 0 {
				c.conn.Write(appendSettingsAck(nil))
			}
			if _, err := c.br.Discard(int(fh.Length)); err != nil {
				return err
			}
			if fh.Type == frameData {
				c.recv += int(fh.Length)
				if c.recv > 1<<29 {
					c.conn.Write(appendWindowUpdate(nil, 0, uint32(c.recv)))
					c.recv = 0
				}
			}
			if (fh.Type == frameData || fh.Type == frameHeaders) && fh.Flags&flagEndStream != 0 || fh.Type == frameRSTStream {
				inflight--
				done++
				if c.br.Buffered() < frameHeaderLen {
					break
				}
			}
		}
	}
	return nil
}
