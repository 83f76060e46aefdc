package wasmtest

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/harness"
	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// TestRapidResetDoesNotRunPlugins opens HTTP/2 streams and resets each at
// once, thousands of times (bounded in count and time). Requests whose
// stream is gone must not run the plugin, so the plugin's call counter must
// stay far below one call per stream.
func TestRapidResetDoesNotRunPlugins(t *testing.T) {
	const streams = 5000
	withEnv(t, func(e *env) {
		d := e.src.Add(wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c"))
		ed, err := harness.NewEdge(context.Background(), harness.EdgeConfig{Host: e.host, Backend: e.backend.URL, HTTP2: true,
			Specs: []config.PolicySpec{spec(wasm.TypeAuthorizer, map[string]any{"module": d, "config": "s3cr3t=alice", "instances": 1})}})
		if err != nil {
			t.Fatal(err)
		}
		defer ed.Close()

		var hbuf bytes.Buffer
		enc := hpack.NewEncoder(&hbuf)
		for _, f := range [][2]string{{":method", "GET"}, {":scheme", "http"}, {":authority", ed.Addr}, {":path", "/pets"}, {"authorization", "Bearer s3cr3t"}} {
			_ = enc.WriteField(hpack.HeaderField{Name: f[0], Value: f[1]})
		}
		block := hbuf.Bytes()

		deadline := time.Now().Add(20 * time.Second)
		sent, conns := 0, 0
		for sent < streams && time.Now().Before(deadline) {
			c, err := net.Dial("tcp", ed.Addr)
			if err != nil {
				t.Fatal(err)
			}
			conns++
			go func() { _, _ = io.Copy(io.Discard, c) }() // drain the server's frames
			w := bufio.NewWriterSize(c, 64<<10)
			_, _ = w.WriteString(http2.ClientPreface)
			fr := http2.NewFramer(w, nil)
			_ = fr.WriteSettings()
			for id := uint32(1); sent < streams && id < 1<<20; id += 2 {
				if err := fr.WriteHeaders(http2.HeadersFrameParam{StreamID: id, BlockFragment: block, EndStream: true, EndHeaders: true}); err != nil {
					break
				}
				if err := fr.WriteRSTStream(id, http2.ErrCodeCancel); err != nil {
					break
				}
				sent++
				if sent%100 == 0 {
					if w.Flush() != nil {
						break
					}
				}
			}
			_ = w.Flush()
			time.Sleep(50 * time.Millisecond)
			_ = c.Close()
		}
		if sent < streams {
			t.Fatalf("sent only %d streams in 20 s", sent)
		}
		time.Sleep(200 * time.Millisecond)
		s := e.host.Stats()
		reached := e.backend.Count()
		t.Logf("%d streams opened and reset on %d connections: %d entered the plugin (%d callbacks), %d reached the backend", sent, conns, s.Streams, s.Calls, reached)
		// A handler can start before the server has read the reset that
		// follows its HEADERS frame: with two cores it runs beside the
		// server's frame loop, and its stream is still live when it asks
		// for the plugin. Those race through: 3–13% of the streams in this
		// harness under the race detector (2026-11-25), 24% once while a
		// second race-enabled test binary loaded both cores. One plugin run
		// per stream would be 5000; a request already cancelled never
		// reaches the plugin (TestCancelledRequestSkipsPlugin). (The edge's
		// listener also ends such a connection once its reset budget is
		// spent, and starts no handler for a stream already reset; this
		// harness serves h2c without it, to test the plugin path alone.)
		if s.Streams > streams/2 {
			t.Fatalf("reset streams entered the plugin %d times", s.Streams)
		}
		if !strings.Contains(ed.URL, "127.0.0.1") {
			t.Fatal("edge not on loopback")
		}
	})
}

// TestCancelledRequestSkipsPlugin: a request whose client is gone before
// the authorizer runs (its context is done) never enters the plugin, while
// the same request with a live context does.
func TestCancelledRequestSkipsPlugin(t *testing.T) {
	ctx := context.Background()
	reached := 0
	terminal := plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) { reached++; w.WriteHeader(200) })
	chain, host := authorizerChain(t, wasmbuild.C(t, "examples/plugins/authorizer-c/authorizer.c"), terminal)
	serve := func(rctx context.Context) {
		r, _ := http.NewRequestWithContext(rctx, "GET", "http://api.example.test/pets", nil)
		r.RemoteAddr = "127.0.0.1:40000"
		r.Header.Set("Authorization", "Bearer s3cr3t")
		ex := &plugins.Exchange{Request: r, RequestID: "1", Client: netip.MustParseAddr("127.0.0.1"), Host: "api.example.test", Path: "/pets"}
		chain.ServeExchange(httptest.NewRecorder(), ex)
	}
	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	for range 100 {
		serve(cancelled)
	}
	if n := host.Stats().Streams; n != 0 || reached != 0 {
		t.Fatalf("100 cancelled requests: %d entered the plugin, %d reached the origin", n, reached)
	}
	serve(ctx)
	if n := host.Stats().Streams; n != 1 || reached != 1 {
		t.Fatalf("a live request: %d entered the plugin, %d reached the origin; want 1 and 1", n, reached)
	}
}
