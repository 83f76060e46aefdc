package wsrelay_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"

	"github.com/portico-edge/portico/edge/wsrelay"
	"github.com/portico-edge/portico/test/requiretool"
)

// Second and third WebSocket implementations, so that the relay is not only
// checked against the library its tests are written with.
const (
	wsVersion      = "8.18.3" // npm ws, installed into a temporary directory by the test
	npmInstallHint = "apt-get install -y nodejs npm (the test runs: npm install ws@" + wsVersion + ")"
	pythonHint     = "apt-get install -y python3-websockets"
)

// installWS installs npm ws into a temporary directory and returns the
// node_modules path for NODE_PATH.
func installWS(t *testing.T) (node, nodePath string) {
	t.Helper()
	node = requiretool.Path(t, "node", npmInstallHint)
	npm := requiretool.Path(t, "npm", npmInstallHint)
	dir := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--no-audit", "--no-fund", "--no-package-lock",
		"--prefix", dir, "ws@"+wsVersion)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("npm install ws@%s: %v\n%s", wsVersion, err, out)
	}
	return node, filepath.Join(dir, "node_modules")
}

// pythonWebsockets finds a Python with the websockets package (Debian's
// python3-websockets lives under /usr/bin/python3, which may not be first on
// PATH).
func pythonWebsockets(t *testing.T) string {
	t.Helper()
	candidates := []string{"/usr/bin/python3"}
	if p, err := exec.LookPath("python3"); err == nil {
		candidates = append(candidates, p)
	}
	for _, py := range candidates {
		if exec.Command(py, "-c", "import websockets").Run() == nil {
			return py
		}
	}
	requiretool.Missing(t, "python3 with the websockets package", pythonHint)
	return ""
}

func writeScript(t *testing.T, name, body string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), name)
	if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// runClient runs a peer's client script against A and wants "ok".
func runClient(t *testing.T, env []string, prog string, args ...string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), testTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, prog, args...)
	cmd.Env = append(os.Environ(), env...)
	out, err := cmd.CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("%s %v: %v\n%s", filepath.Base(prog), args, err, out)
	}
}

// peerServer runs a peer's echo server script, which prints "port N" when it
// listens and "close CODE" whenever a WebSocket ends.
type peerServer struct {
	addr   string
	closes chan string
}

func startPeerServer(t *testing.T, env []string, prog string, args ...string) *peerServer {
	t.Helper()
	cmd := exec.Command(prog, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = os.Stderr
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	ps := &peerServer{closes: make(chan string, 16)}
	ports := make(chan string, 1)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			switch {
			case strings.HasPrefix(line, "port "):
				ports <- strings.TrimPrefix(line, "port ")
			case strings.HasPrefix(line, "close "):
				ps.closes <- strings.TrimPrefix(line, "close ")
			}
		}
	}()
	select {
	case p := <-ports:
		ps.addr = "127.0.0.1:" + p
	case <-time.After(testTimeout):
		t.Fatalf("%s did not start listening", filepath.Base(prog))
	}
	return ps
}

func (ps *peerServer) closeCode(t *testing.T) string {
	t.Helper()
	select {
	case c := <-ps.closes:
		return c
	case <-time.After(testTimeout):
		t.Fatal("the peer server did not report the WebSocket's end")
		return ""
	}
}

// exercisePeerServer drives a peer's echo server through A and B with
// coder/websocket: echo at every size, a fragmented message, the server
// going away (1001) and a message over the limit (1009 at both ends).
func exercisePeerServer(t *testing.T, ps *peerServer) {
	b := newHop(t, "B", ps.addr, wsrelay.Limits{})
	a := newHop(t, "A", b.addr(), wsrelay.Limits{})
	ctx := testContext(t)
	url := "ws://" + a.addr() + "/"
	opts := &websocket.DialOptions{Subprotocols: []string{"chat"}}

	c := dial(t, ctx, url, opts)
	if c.Subprotocol() != "chat" {
		t.Fatalf("subprotocol %q", c.Subprotocol())
	}
	for _, size := range []int{5, 1 << 10, 64 << 10, 1 << 20} {
		for _, typ := range []websocket.MessageType{websocket.MessageText, websocket.MessageBinary} {
			msg := randomBytes(size)
			if typ == websocket.MessageText {
				msg = []byte(strings.Repeat("y", size))
			}
			if err := c.Write(ctx, typ, msg); err != nil {
				t.Fatal(err)
			}
			gotTyp, got, err := c.Read(ctx)
			if err != nil || gotTyp != typ || string(got) != string(msg) {
				t.Fatalf("%d-byte %v: echo %v %d bytes, %v", size, typ, gotTyp, len(got), err)
			}
		}
	}
	w, err := c.Writer(ctx, websocket.MessageText)
	if err != nil {
		t.Fatal(err)
	}
	for _, part := range []string{"frag", "men", "ted"} {
		w.Write([]byte(part))
	}
	w.Close()
	if _, got, err := c.Read(ctx); err != nil || string(got) != "fragmented" {
		t.Fatalf("fragmented echo %q, %v", got, err)
	}
	if err := c.Write(ctx, websocket.MessageText, []byte("goaway")); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusGoingAway {
		t.Fatalf("client read %v, want the server's 1001", err)
	}
	if got := ps.closeCode(t); got != "1001" {
		t.Fatalf("server ended with %s, want 1001", got)
	}

	c = dial(t, ctx, url, opts)
	if err := c.Write(ctx, websocket.MessageBinary, make([]byte, 1<<20+1)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := c.Read(ctx); websocket.CloseStatus(err) != websocket.StatusMessageTooBig {
		t.Fatalf("client read %v, want 1009", err)
	}
	if got := ps.closeCode(t); got != "1009" {
		t.Fatalf("server ended with %s, want 1009", got)
	}
	if err := a.result(t); err != nil {
		t.Fatalf("A after the server's 1001: %v", err)
	}
	if err := a.result(t); !errors.Is(err, wsrelay.ErrMessageTooBig) {
		t.Fatalf("A: %v, want ErrMessageTooBig", err)
	}
}

const nodeClient = `
const WebSocket = require('ws');
const crypto = require('crypto');
const fail = (m) => { console.log('FAIL ' + m); process.exit(1); };
const timer = setTimeout(() => fail('timeout'), 20000);
// ws offers permessage-deflate by default: the relay must strip the offer.
const ws = new WebSocket(process.argv[2], ['chat'], { maxPayload: 4 << 20 });
const queue = []; let waiter = null;
ws.on('message', (data, isBinary) => {
  const m = { data, isBinary };
  if (waiter) { const w = waiter; waiter = null; w(m); } else queue.push(m);
});
const next = () => new Promise((res) => { if (queue.length) res(queue.shift()); else waiter = res; });
ws.on('error', (e) => fail('error ' + e.message));
ws.on('open', async () => {
  if (ws.extensions !== '') fail('extensions negotiated: ' + ws.extensions);
  if (ws.protocol !== 'chat') fail('protocol ' + ws.protocol);
  for (const size of [5, 1024, 65536, 1 << 20]) {
    for (const binary of [false, true]) {
      const payload = binary ? crypto.randomBytes(size) : 'z'.repeat(size);
      ws.send(payload, { binary });
      const m = await next();
      if (m.isBinary !== binary) fail('type for ' + size);
      const same = binary ? payload.equals(m.data) : m.data.toString() === payload;
      if (!same) fail('echo of ' + size + ' bytes differs');
    }
  }
  ws.send('frag-', { fin: false });
  ws.send('ment', { fin: true });
  const f = await next();
  if (f.data.toString() !== 'frag-ment') fail('fragmented echo ' + f.data);
  await new Promise((res) => {
    ws.once('pong', (d) => { if (d.toString() !== 'hi') fail('pong ' + d); res(); });
    ws.ping('hi');
  });
  ws.close(1000, 'done');
});
ws.on('close', (code) => {
  clearTimeout(timer);
  if (code !== 1000) fail('closed with ' + code);
  console.log('ok');
  process.exit(0);
});
`

const nodeServer = `
const { WebSocketServer } = require('ws');
const wss = new WebSocketServer({ host: '127.0.0.1', port: 0, maxPayload: 4 << 20,
  handleProtocols: (ps) => (ps.has('chat') ? 'chat' : false) });
wss.on('listening', () => console.log('port ' + wss.address().port));
wss.on('connection', (ws) => {
  ws.on('message', (data, isBinary) => {
    if (!isBinary && data.toString() === 'goaway') { ws.close(1001, 'node going away'); return; }
    ws.send(data, { binary: isBinary });
  });
  ws.on('close', (code) => console.log('close ' + code));
});
`

func TestInteropNodeWS(t *testing.T) {
	node, nodePath := installWS(t)
	env := []string{"NODE_PATH=" + nodePath}
	t.Run("ws client", func(t *testing.T) {
		ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
		runClient(t, env, node, writeScript(t, "client.js", nodeClient), ch.url("/echo"))
		if got := ch.backend.closeStatus(t); got != websocket.StatusNormalClosure {
			t.Fatalf("backend saw %v, want 1000", got)
		}
		if h := ch.backend.lastHeader(); h.Get("Sec-WebSocket-Extensions") != "" {
			t.Fatalf("ws's deflate offer reached the backend: %q", h.Get("Sec-WebSocket-Extensions"))
		}
	})
	t.Run("ws server", func(t *testing.T) {
		exercisePeerServer(t, startPeerServer(t, env, node, writeScript(t, "server.js", nodeServer)))
	})
}

const pythonClient = `
import asyncio, os, sys
import websockets

async def main(url):
    # websockets offers permessage-deflate by default: the relay must strip it.
    async with websockets.connect(url, subprotocols=["chat"], max_size=4 << 20, open_timeout=20) as ws:
        assert ws.subprotocol == "chat", ws.subprotocol
        assert not ws.extensions, ws.extensions
        for size in (5, 1024, 65536, 1 << 20):
            for binary in (False, True):
                msg = os.urandom(size) if binary else "q" * size
                await ws.send(msg)
                got = await asyncio.wait_for(ws.recv(), 20)
                assert got == msg, "echo of %d bytes differs" % size
        await ws.send(["frag-", "ment"])  # an iterable is sent as fragments
        got = await asyncio.wait_for(ws.recv(), 20)
        assert got == "frag-ment", got
        pong = await ws.ping(b"hi")
        await asyncio.wait_for(pong, 20)
        await ws.close(1000, "done")
        assert ws.close_code == 1000, ws.close_code
    print("ok")

asyncio.run(main(sys.argv[1]))
`

const pythonServer = `
import asyncio
import websockets

async def handler(ws):
    try:
        async for msg in ws:
            if msg == "goaway":
                await ws.close(1001, "python going away")
                break
            await ws.send(msg)
    except websockets.ConnectionClosed:
        pass
    finally:
        await ws.wait_closed()
        print("close", ws.close_code, flush=True)

async def main():
    async with websockets.serve(handler, "127.0.0.1", 0, max_size=4 << 20, subprotocols=["chat"]) as server:
        print("port", server.sockets[0].getsockname()[1], flush=True)
        await asyncio.Future()

asyncio.run(main())
`

func TestInteropPythonWebsockets(t *testing.T) {
	py := pythonWebsockets(t)
	t.Run("websockets client", func(t *testing.T) {
		ch := newChain(t, wsrelay.Limits{}, wsrelay.Limits{})
		runClient(t, nil, py, writeScript(t, "client.py", pythonClient), ch.url("/echo"))
		if got := ch.backend.closeStatus(t); got != websocket.StatusNormalClosure {
			t.Fatalf("backend saw %v, want 1000", got)
		}
	})
	t.Run("websockets server", func(t *testing.T) {
		exercisePeerServer(t, startPeerServer(t, nil, py, "-u", writeScript(t, "server.py", pythonServer)))
	})
}
