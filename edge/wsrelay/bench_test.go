package wsrelay_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/portico-edge/portico/edge/wsrelay"
)

// BenchmarkEcho1KiB measures 1 KiB messages echoed through zero, one and two
// relays with coder/websocket at both ends; a writer and a reader run
// concurrently so that the pipe stays full. "direct" is the baseline: the
// relays' cost is the difference.
func BenchmarkEcho1KiB(b *testing.B) {
	for _, hops := range []int{0, 1, 2} {
		b.Run(fmt.Sprintf("relays=%d", hops), func(b *testing.B) {
			be := newBenchBackend(b)
			addr := be
			for i := 0; i < hops; i++ {
				addr = newBenchHop(b, addr)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
			defer cancel()
			c, _, err := websocket.Dial(ctx, "ws://"+addr+"/", nil)
			if err != nil {
				b.Fatal(err)
			}
			defer c.CloseNow()
			msg := make([]byte, 1<<10)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			b.ResetTimer()
			errc := make(chan error, 1)
			go func() {
				for i := 0; i < b.N; i++ {
					if err := c.Write(ctx, websocket.MessageBinary, msg); err != nil {
						errc <- err
						return
					}
				}
				errc <- nil
			}()
			for i := 0; i < b.N; i++ {
				if _, _, err := c.Read(ctx); err != nil {
					b.Fatalf("message %d: %v", i, err)
				}
			}
			if err := <-errc; err != nil {
				b.Fatal(err)
			}
		})
	}
}

// BenchmarkRelayOneWay1KiB isolates the relay: a raw client writes
// pre-masked 1 KiB frames and a raw upstream counts the bytes, so that
// allocations and time are the relay's own.
func BenchmarkRelayOneWay1KiB(b *testing.B) {
	const payload = 1 << 10
	frameBytes := len(maskedFrame(true, 0, 0x2, make([]byte, payload)))
	received := make(chan int64, 1)
	want := make(chan int64, 1)
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	go func() { // the upstream: accept the upgrade, count frame bytes
		for {
			conn, err := l.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReaderSize(conn, 64<<10)
				req, err := http.ReadRequest(br)
				if err != nil {
					return
				}
				fmt.Fprintf(conn, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: %s\r\n\r\n",
					acceptFor(req.Header.Get("Sec-WebSocket-Key")))
				n := <-want
				got, _ := io.CopyN(io.Discard, br, n)
				received <- got
			}()
		}
	}()
	addr := newBenchHop(b, l.Addr().String())

	batch := make([]byte, 0, 64*frameBytes)
	for i := 0; i < 64; i++ {
		batch = append(batch, maskedFrame(true, 0, 0x2, make([]byte, payload))...)
	}
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	fmt.Fprintf(conn, "GET / HTTP/1.1\r\nHost: bench\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil || resp.StatusCode != 101 {
		b.Fatalf("handshake: %v %v", resp, err)
	}
	b.SetBytes(payload)
	b.ReportAllocs()
	b.ResetTimer()
	want <- int64(b.N) * int64(frameBytes)
	for left := b.N; left > 0; {
		k := min(left, 64)
		if _, err := conn.Write(batch[:k*frameBytes]); err != nil {
			b.Fatal(err)
		}
		left -= k
	}
	if got := <-received; got != int64(b.N)*int64(frameBytes) {
		b.Fatalf("upstream got %d bytes, want %d", got, int64(b.N)*int64(frameBytes))
	}
}

func newBenchBackend(b *testing.B) string {
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, &websocket.AcceptOptions{InsecureSkipVerify: true})
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, p, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, p); err != nil {
				return
			}
		}
	})}
	return serveBench(b, srv)
}

func newBenchHop(b *testing.B, next string) string {
	ctx, cancel := context.WithCancel(context.Background())
	b.Cleanup(cancel)
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		up := wsrelay.Upstream{
			Dial: func(ctx context.Context) (net.Conn, error) {
				var d net.Dialer
				return d.DialContext(ctx, "tcp", next)
			},
			Request: &http.Request{URL: r.URL, Host: next, Header: wsrelay.ForwardHeader(r.Header)},
		}
		_ = wsrelay.Serve(ctx, w, r, up, wsrelay.Limits{})
	})}
	return serveBench(b, srv)
}

func serveBench(b *testing.B, srv *http.Server) string {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	go srv.Serve(l)
	b.Cleanup(func() { srv.Close() })
	return l.Addr().String()
}
