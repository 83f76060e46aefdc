package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/coder/websocket"
)

func dialWS(t *testing.T, e *edgeNode, path string) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// HTTP/1.1 only: WebSockets are relayed over HTTP/1.1 upgrades.
	tr := e.client.Transport.(*http.Transport).Clone()
	tr.ForceAttemptHTTP2 = false
	tr.TLSClientConfig.NextProtos = []string{"http/1.1"}
	c, _, err := websocket.Dial(ctx, "wss://"+e.HTTPS+path, &websocket.DialOptions{
		HTTPClient: &http.Client{Transport: tr},
		Host:       "api.example.test",
	})
	return c, err
}

func TestWebSocketThroughEdgeAndOrigin(t *testing.T) {
	env := newShop(t)
	c, err := dialWS(t, env.e, "/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(4 << 20)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, size := range []int{5, 1 << 10, 64 << 10, 1 << 20} {
		for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
			msg := bytes.Repeat([]byte("p"), size)
			if err := c.Write(ctx, typ, msg); err != nil {
				t.Fatalf("write %d: %v", size, err)
			}
			gt, got, err := c.Read(ctx)
			if err != nil {
				t.Fatalf("read %d: %v", size, err)
			}
			if gt != typ || !bytes.Equal(got, msg) {
				t.Fatalf("echo of %d bytes (%v) came back as %d bytes (%v)", size, typ, len(got), gt)
			}
		}
	}
	// Over the default 1 MiB limit: the relay closes with 1009.
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1<<20+1)); err == nil {
		_, _, err = c.Read(ctx)
		if websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
			t.Errorf("oversized message: %v", err)
		}
	}
	// A normal close from the client.
	c2, err := dialWS(t, env.e, "/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	if err := c2.Close(websocket.StatusNormalClosure, "bye"); err != nil {
		t.Errorf("close 1000: %v", err)
	}
	// The backend going away reaches the client as 1001.
	c3, err := dialWS(t, env.e, "/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	c3.Write(ctx, websocket.MessageText, []byte("close-1001"))
	_, _, err = c3.Read(ctx)
	if websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("backend 1001: %v", err)
	}
}

func TestRefusedUpgradeIsNotATunnel(t *testing.T) {
	env := newShop(t)
	// /v1/items is a plain HTTP route: its backend answers 200 to the
	// upgrade, which must be relayed as a response, and the connection's
	// next request must be parsed and routed as HTTP.
	conn, err := tls.Dial("tcp", env.e.HTTPS, &tls.Config{InsecureSkipVerify: true, NextProtos: []string{"http/1.1"}})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	req := "GET /v1/items HTTP/1.1\r\nHost: api.example.test\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n" +
		"GET /v1/nothing HTTP/1.1\r\nHost: api.example.test\r\n\r\n"
	if _, err := conn.Write([]byte(req)); err != nil {
		t.Fatal(err)
	}
	br := bufio.NewReader(conn)
	res1, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	res1.Body.Close()
	if res1.StatusCode == http.StatusSwitchingProtocols {
		t.Fatal("a plain route switched protocols")
	}
	res2, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatalf("second request on the socket was not answered as HTTP: %v", err)
	}
	res2.Body.Close()
	if res2.StatusCode != 404 {
		t.Errorf("second request: %d, want the edge's 404 for /v1/nothing", res2.StatusCode)
	}
	// h2c upgrades are never honoured.
	h1 := env.e.http1()
	req2, _ := http.NewRequest("GET", env.e.url("/v1/items"), nil)
	req2.Host = "api.example.test"
	req2.Header = http.Header{"Upgrade": {"h2c"}, "Connection": {"Upgrade, HTTP2-Settings"}, "Http2-Settings": {"AAMAAABkAAQAAP__"}}
	res, err := h1.Do(req2)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	r := &response{Response: res}
	r.Body, _ = io.ReadAll(res.Body)
	var got echoed
	r.json(t, &got)
	if r.StatusCode != 200 || got.Headers.Get("Upgrade") != "" || got.Headers.Get("Http2-Settings") != "" {
		t.Errorf("h2c upgrade: %d, backend saw %v", r.StatusCode, got.Headers)
	}
}

// TestWebSocketLimitsAreConfigurable: --ws-max-message and
// --ws-idle-timeout bound relayed WebSockets.
func TestWebSocketLimitsAreConfigurable(t *testing.T) {
	env := newShop(t)
	e := startEdge(t, env.o, "", "--ws-max-message", "64KiB", "--ws-idle-timeout", "1s")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c, err := dialWS(t, e, "/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer c.CloseNow()
	c.SetReadLimit(4 << 20)
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 64<<10)); err != nil {
		t.Fatal(err)
	}
	if _, got, err := c.Read(ctx); err != nil || len(got) != 64<<10 {
		t.Fatalf("a message at the limit: %d bytes, %v", len(got), err)
	}
	c.Write(ctx, websocket.MessageBinary, make([]byte, 64<<10+1))
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Errorf("over --ws-max-message: %v", err)
	}
	idle, err := dialWS(t, e, "/v1/ws")
	if err != nil {
		t.Fatal(err)
	}
	defer idle.CloseNow()
	start := time.Now()
	if _, _, err := idle.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Errorf("idle WebSocket: %v after %s", err, time.Since(start))
	}
}
