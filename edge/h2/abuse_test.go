package h2

import (
	"bytes"
	"context"
	"crypto/tls"
	"fmt"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/net/http2"
	"golang.org/x/net/http2/hpack"
)

// gauge counts handler starts and the most handlers running at once.
type gauge struct {
	started, active, maxActive atomic.Int64
}

func (g *gauge) handler(hold time.Duration) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		g.started.Add(1)
		n := g.active.Add(1)
		defer g.active.Add(-1)
		for {
			m := g.maxActive.Load()
			if n <= m || g.maxActive.CompareAndSwap(m, n) {
				break
			}
		}
		// The worst case: a handler that keeps working after its client
		// went away (a slow origin call that ignores cancellation).
		time.Sleep(hold)
		w.Write([]byte("ok"))
	})
}

// flood sends frames built by next until the server ends the connection,
// n frames, or 10 s; it returns how many were sent.
func flood(c *rawConn, n int, next func(i int) []byte) int {
	deadline := time.Now().Add(10 * time.Second)
	sent := 0
	for i := 0; i < n && time.Now().Before(deadline); i++ {
		if c.raw(next(i)) != nil {
			break
		}
		sent++
		select {
		case <-c.closed:
			return sent
		default:
		}
	}
	return sent
}

func expectCalm(t *testing.T, c *rawConn, ts *testServer, what string, sent int) {
	t.Helper()
	ga, closed := c.waitEnd(5 * time.Second)
	t.Logf("%s: sent %d; GOAWAY %v; closed %t (%v)", what, sent, ga, closed, c.readErr)
	if ga == nil || ga.ErrCode != http2.ErrCodeEnhanceYourCalm {
		t.Errorf("%s: GOAWAY %v, want ENHANCE_YOUR_CALM", what, ga)
	}
	if !closed {
		t.Errorf("%s: connection still open", what)
	}
}

// Rapid reset (CVE-2023-44487): HEADERS then RST_STREAM, over and over.
// The handlers running stay within MAX_CONCURRENT_STREAMS, and the reset
// budget ends the connection.
func TestRapidReset(t *testing.T) {
	var g gauge
	var abusive atomic.Int64
	ts := startServer(t, Config{OnAbusive: func(string, string) { abusive.Add(1) }}, g.handler(200*time.Millisecond))
	c := ts.dialRaw(t)
	block := c.get("/")
	sent := flood(c, 20000, func(i int) []byte {
		id := uint32(1 + 2*i)
		return append(frame(frameHeaders, flagEndHeaders|flagEndStream, id, block...), frame(frameRSTStream, 0, id, u32(uint32(http2.ErrCodeCancel))...)...)
	})
	expectCalm(t, c, ts, "rapid reset", sent)
	if m := g.maxActive.Load(); m > 100 {
		t.Errorf("max concurrent handlers %d > 100", m)
	}
	if st := g.started.Load(); st > 300 {
		t.Errorf("handlers started %d: rapid reset not contained", st)
	}
	if abusive.Load() != 1 || ts.Abusive() != 1 {
		t.Errorf("OnAbusive called %d times, Abusive() %d; want 1", abusive.Load(), ts.Abusive())
	}
}

// MadeYouReset (CVE-2025-8671): the client provokes the server into
// resetting streams; those resets spend the same budget.
func TestMadeYouReset(t *testing.T) {
	var g gauge
	ts := startServer(t, Config{}, g.handler(200*time.Millisecond))
	c := ts.dialRaw(t)
	block := c.get("/")
	sent := flood(c, 20000, func(i int) []byte {
		id := uint32(1 + 2*i)
		return append(frame(frameHeaders, flagEndHeaders, id, block...), frame(frameWindowUpdate, 0, id, u32(0)...)...)
	})
	expectCalm(t, c, ts, "MadeYouReset", sent)
	if m := g.maxActive.Load(); m > 100 {
		t.Errorf("max concurrent handlers %d > 100", m)
	}
	if st := g.started.Load(); st > 300 {
		t.Errorf("handlers started %d: MadeYouReset not contained", st)
	}
}

// CONTINUATION flood (CVE-2023-45288): a header block that never ends.
func TestContinuationFlood(t *testing.T) {
	var g gauge
	ts := startServer(t, Config{MaxContinuationFrames: 8}, g.handler(0))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndStream, 1, c.get("/")...))
	frag := c.block("x-a", "b")
	sent := flood(c, 1000, func(int) []byte { return frame(frameContinuation, 0, 1, frag...) })
	expectCalm(t, c, ts, "CONTINUATION flood", sent)
	if n := g.started.Load(); n != 0 {
		t.Errorf("the handler ran %d times for a block that never ended", n)
	}
}

// Floods of frames that ask for no work the server is there to do each
// end the connection: PING, SETTINGS, PRIORITY, empty DATA, tiny
// WINDOW_UPDATEs, unknown frames.
func TestControlFrameFloods(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { holdIfAsked(r) }))
	cases := map[string]func(c *rawConn, i int) []byte{
		"PING":     func(c *rawConn, i int) []byte { return frame(framePing, 0, 0, make([]byte, 8)...) },
		"SETTINGS": func(c *rawConn, i int) []byte { return frame(frameSettings, 0, 0, settingsPayload(4, 65535)...) },
		"PRIORITY": func(c *rawConn, i int) []byte { return frame(framePriority, 0, uint32(1+2*i), 0, 0, 0, 0, 16) },
		"empty DATA": func(c *rawConn, i int) []byte {
			if i == 0 {
				return frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/", "x-hold", "1")...)
			}
			return frame(frameData, 0, 1)
		},
		"tiny WINDOW_UPDATE": func(c *rawConn, i int) []byte { return frame(frameWindowUpdate, 0, 0, u32(1)...) },
		"unknown frame":      func(c *rawConn, i int) []byte { return frame(0xfa, 0, 0, 1, 2, 3) },
	}
	for name, next := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := ts.dialRaw(t)
			sent := flood(c, 20000, func(i int) []byte { return next(c, i) })
			expectCalm(t, c, ts, name+" flood", sent)
		})
	}
}

// A stream reset before its handler starts never starts it; a reset
// stream whose handler still runs keeps its slot.
func TestResetStreamNeverStarts(t *testing.T) {
	release := make(chan struct{})
	var started atomic.Int64
	ts := startServer(t, Config{MaxConcurrentStreams: 2}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-release
	}))
	c := ts.dialRaw(t)
	// Two handlers run and are reset: they keep their slots.
	for _, id := range []uint32{1, 3} {
		c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.get("/")...))
	}
	waitUntil(t, func() bool { return started.Load() == 2 })
	for _, id := range []uint32{1, 3} {
		c.raw(frame(frameRSTStream, 0, id, u32(uint32(http2.ErrCodeCancel))...))
	}
	// Two more streams are within the protocol limit (the reset ones are
	// closed) but wait for a slot; reset, they never start.
	for _, id := range []uint32{5, 7} {
		c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.get("/")...))
	}
	c.ping(t) // the frame loop has taken them in
	sc := ts.connOf(t, c)
	queued := func() int {
		sc.mu.Lock()
		defer sc.mu.Unlock()
		return len(sc.pending)
	}
	if n, q := started.Load(), queued(); n != 2 || q != 2 {
		t.Fatalf("%d handlers started and %d streams waiting, with 2 slots held by reset streams; want 2 and 2", n, q)
	}
	for _, id := range []uint32{5, 7} {
		c.raw(frame(frameRSTStream, 0, id, u32(uint32(http2.ErrCodeCancel))...))
	}
	// A fifth waits too, then gets a slot once the handlers return.
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 9, c.get("/")...))
	c.ping(t)
	if q := queued(); q != 1 {
		t.Fatalf("%d streams waiting for a slot, want 1 (stream 9; 5 and 7 were reset)", q)
	}
	close(release)
	if c.next(5*time.Second, func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamID == 9 }) == nil {
		t.Fatal("stream 9 never answered")
	}
	if n := started.Load(); n != 3 {
		t.Fatalf("%d handlers started, want 3: reset streams 5 and 7 must never start", n)
	}
}

// More streams than SETTINGS_MAX_CONCURRENT_STREAMS are refused with
// REFUSED_STREAM, which the client may retry.
func TestMaxConcurrentStreams(t *testing.T) {
	release := make(chan struct{})
	ts := startServer(t, Config{MaxConcurrentStreams: 3}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	defer close(release)
	c := ts.dialRaw(t)
	for id := uint32(1); id <= 7; id += 2 {
		c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.get("/")...))
	}
	code, goAway, ok := c.rstOrGoAway(7, 5*time.Second)
	if !ok || goAway || code != http2.ErrCodeRefusedStream {
		t.Fatalf("fourth stream: %v (GOAWAY %t, seen %t), want REFUSED_STREAM", code, goAway, ok)
	}
}

func waitUntil(t *testing.T, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatal("condition not met in 5s")
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A header block still arriving for a stream that closes meanwhile (its
// handler answered without reading the body) must end on nothing: the
// stream object is pooled and may serve another connection's request by
// the time the block's last CONTINUATION arrives. Neither valid trailers
// (which would end the other request's body and inject values) nor
// malformed ones (which would reset it) may reach it.
func TestTrailersOfClosedStreamReachNoOtherStream(t *testing.T) {
	// One P makes the pool hand the recycled stream to the next request.
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	for _, tc := range []struct {
		name     string
		trailers func(c *rawConn) []byte // HEADERS without END_HEADERS
	}{
		{"valid trailers", func(c *rawConn) []byte { return frame(frameHeaders, flagEndStream, 1, c.block("x-sum", "injected")...) }},
		{"malformed trailers", func(c *rawConn) []byte { return frame(frameHeaders, 0, 1, c.block("x-sum", "1")...) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			type victim struct {
				st  *stream
				c   *conn
				ctx context.Context
			}
			attackerSt := make(chan *stream, 1)
			victimStarted := make(chan victim, 1)
			victimDone := make(chan string, 1)
			release := make(chan struct{})
			ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				st := w.(*responseWriter).st
				switch r.URL.Path {
				case "/reject":
					attackerSt <- st
					<-release
					w.WriteHeader(http.StatusUnauthorized) // the body is not read
				case "/victim":
					victimStarted <- victim{st, st.c, r.Context()}
					b, err := io.ReadAll(r.Body)
					victimDone <- fmt.Sprintf("body %q, %v, trailer %q, context %v", b, err, r.Trailer.Get("X-Sum"), context.Cause(r.Context()))
				}
			}))
			for attempt := 0; attempt < 50; attempt++ {
				a := ts.dialRaw(t)
				a.raw(frame(frameHeaders, flagEndHeaders, 1, a.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/reject")...))
				ast := <-attackerSt
				a.raw(tc.trailers(a))
				// No frame may follow in the block: give the server time
				// to take the HEADERS in.
				time.Sleep(50 * time.Millisecond)
				release <- struct{}{}
				if code, _, ok := a.rstOrGoAway(1, 5*time.Second); !ok || code != http2.ErrCodeNo {
					t.Fatalf("no RST_STREAM(NO_ERROR) after the response: %v %t", code, ok)
				}
				ac := ts.connOf(t, a)
				v := ts.dialRaw(t)
				v.raw(frame(frameHeaders, flagEndHeaders, 1, v.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/victim", "trailer", "x-sum")...))
				vs := <-victimStarted
				if vs.st != ast {
					v.raw(frame(frameData, flagEndStream, 1, 'x'))
					<-victimDone
					a.conn.Close()
					v.conn.Close()
					continue
				}
				// The attacker ends its block on its own connection.
				a.raw(frame(frameContinuation, flagEndHeaders, 1))
				for _, f := range a.ping(t) {
					if _, ok := f.(*http2.RSTStreamFrame); ok {
						t.Errorf("the attacker's connection got %v", f)
					}
				}
				select {
				case s := <-victimDone:
					t.Fatalf("the victim, whose client sent no DATA and no END_STREAM, saw %s", s)
				case <-vs.ctx.Done():
					t.Fatalf("the victim's request was cancelled: %v", context.Cause(vs.ctx))
				default:
				}
				vs.c.mu.Lock()
				vActive, vHas := vs.c.active, vs.c.streams[1] == vs.st
				vs.c.mu.Unlock()
				ac.mu.Lock()
				aActive := ac.active
				ac.mu.Unlock()
				if vActive != 1 || !vHas || aActive != 0 {
					t.Fatalf("victim connection: %d active, stream 1 in its table %t; attacker connection: %d active", vActive, vHas, aActive)
				}
				// The victim's request goes on as its client sends.
				v.raw(frame(frameData, 0, 1, []byte("abc")...))
				v.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, v.block("x-sum", "real")...))
				if s := <-victimDone; s != `body "abc", <nil>, trailer "real", context <nil>` {
					t.Fatalf("the victim saw %s", s)
				}
				return
			}
			t.Skip("the pool never handed the recycled stream to the next request")
		})
	}
}

// Resets the server decides on for its own reasons never spend the
// client's reset budget: a well-behaved client whose requests fail
// upstream (edge/forward panics with http.ErrAbortHandler when an origin
// fails mid-body), whose responses come out short, or whose handlers miss
// their write deadline is not cut as abusive. They are counted apart.
func TestServerResetsSpendNoClientBudget(t *testing.T) {
	var calm atomic.Int64
	ts := startServer(t, Config{ResetBurst: 2, ResetRate: 0.001, OnAbusive: func(string, string) { calm.Add(1) }},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			switch r.URL.Path {
			case "/abort":
				io.WriteString(w, "partial")
				w.(http.Flusher).Flush()
				panic(http.ErrAbortHandler)
			case "/short":
				w.Header().Set("Content-Length", "10")
				io.WriteString(w, "short")
			case "/late":
				http.NewResponseController(w).SetWriteDeadline(time.Now().Add(time.Millisecond))
				<-r.Context().Done()
			}
		}))
	c := ts.dialRaw(t)
	id := uint32(1)
	for range 10 {
		for _, path := range []string{"/abort", "/short", "/late"} {
			// One request at a time, each waited for.
			c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.get(path)...))
			code, goAway, ok := c.rstOrGoAway(id, 5*time.Second)
			if !ok || goAway || code != http2.ErrCodeInternal {
				t.Fatalf("%s on stream %d: %v (GOAWAY %t, seen %t), want RST_STREAM INTERNAL_ERROR", path, id, code, goAway, ok)
			}
			id += 2
		}
	}
	if n := ts.serverResets.Load(); n != 30 {
		t.Errorf("%d server resets counted, want 30", n)
	}
	if calm.Load() != 0 || ts.Abusive() != 0 {
		t.Errorf("OnAbusive called %d times, Abusive() %d: server resets spent the client's budget", calm.Load(), ts.Abusive())
	}
}

// Oversized header lists are cheap to send with HPACK's dynamic table
// (about 30 octets for one of 68 000): their 431 answers count as control
// replies and spend the reset budget, so a client that sends them without
// reading cannot grow the write queue beyond its bound.
func TestOversizedHeaderListsBounded(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	d := &net.Dialer{Control: func(_, _ string, rc syscall.RawConn) error {
		return rc.Control(func(fd uintptr) { syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_RCVBUF, 4096) })
	}}
	nc, err := tls.DialWithDialer(d, "tcp", ts.addr, ts.pki.clientTLS())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var ebuf bytes.Buffer
	enc := hpack.NewEncoder(&ebuf)
	big := strings.Repeat("a", 4000)
	block := func() []byte {
		ebuf.Reset()
		for _, kv := range [][2]string{{":method", "GET"}, {":scheme", "https"}, {":authority", "localhost"}, {":path", "/"}} {
			enc.WriteField(hpack.HeaderField{Name: kv[0], Value: kv[1]})
		}
		for range 17 {
			enc.WriteField(hpack.HeaderField{Name: "x-big", Value: big})
		}
		return append([]byte(nil), ebuf.Bytes()...)
	}
	nc.Write([]byte(http2.ClientPreface))
	nc.Write(frame(frameSettings, 0, 0))
	sc := ts.connWith(t, func(c *conn) bool { return c.remote == nc.LocalAddr().String() })
	nc.Write(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, block()...))
	again := block() // every field indexed now
	id := uint32(3)
	most := 0
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) && ts.Abusive() == 0 {
		var b []byte
		for range 100 {
			b = append(b, frame(frameHeaders, flagEndHeaders|flagEndStream, id, again...)...)
			id += 2
		}
		nc.SetWriteDeadline(time.Now().Add(2 * time.Second))
		if _, err := nc.Write(b); err != nil {
			break
		}
		sc.mu.Lock()
		most = max(most, len(sc.wbuf))
		sc.mu.Unlock()
	}
	t.Logf("%d oversized requests sent without reading; the write queue reached %d octets", id/2, most)
	if most > maxQueued+controlSlack {
		t.Errorf("the write queue grew to %d octets for a client that does not read", most)
	}
	if ts.Abusive() != 1 {
		t.Errorf("Abusive() = %d after %d oversized header lists, want 1", ts.Abusive(), id/2)
	}
}

// Work a client asks for that serves no request spends a budget too:
// header blocks decoded only to keep HPACK in step, WINDOW_UPDATEs on
// closed streams beyond one per stream, GOAWAYs after the first, SETTINGS
// entries (each may walk every stream), 431 answers.
func TestFloodsOfWorkWithoutRequests(t *testing.T) {
	ts := startServer(t, Config{MaxHeaderBytes: 1 << 10}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { holdIfAsked(r) }))
	hold := func(c *rawConn, id uint32) []byte {
		return frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/", "x-hold", "1")...)
	}
	cases := map[string]struct {
		n    int
		next func(c *rawConn, i int) []byte
	}{
		"header blocks on a reset stream": {20000, func(c *rawConn, i int) []byte {
			if i == 0 { // refused (malformed): stream 1 is reset
				return frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.block(":method", "GET")...)
			}
			return frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.block("x-a", "b")...)
		}},
		"WINDOW_UPDATE on a closed stream": {20000, func(c *rawConn, i int) []byte {
			if i == 0 {
				return frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...)
			}
			return frame(frameWindowUpdate, 0, 1, u32(1<<20)...)
		}},
		"repeated GOAWAY": {20000, func(c *rawConn, i int) []byte {
			if i == 0 { // a stream in flight keeps the connection open
				return hold(c, 1)
			}
			return frame(frameGoAway, 0, 0, make([]byte, 8)...)
		}},
		"SETTINGS of 1000 entries": {3, func(c *rawConn, i int) []byte {
			kv := make([]uint32, 0, 2000)
			for range 1000 {
				kv = append(kv, 4, 65535)
			}
			return frame(frameSettings, 0, 0, settingsPayload(kv...)...)
		}},
		"431 answers": {20000, func(c *rawConn, i int) []byte {
			return frame(frameHeaders, flagEndHeaders|flagEndStream, uint32(1+2*i), c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/", "x-big", strings.Repeat("b", 1500))...)
		}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			c := ts.dialRaw(t)
			sent := flood(c, tc.n, func(i int) []byte { return tc.next(c, i) })
			expectCalm(t, c, ts, name+" flood", sent)
		})
	}
}

// Config.OnAbusive is user code: it runs without the connection's lock.
func TestOnAbusiveCalledOutsideTheLock(t *testing.T) {
	var srv atomic.Pointer[testServer]
	locked := make(chan bool, 1)
	ts := startServer(t, Config{ResetBurst: 1, ResetRate: 0.001, OnAbusive: func(client, reason string) {
		ts := srv.Load()
		ts.mu.Lock()
		var c *conn
		for k := range ts.conns {
			if k.remote == client {
				c = k
			}
		}
		ts.mu.Unlock()
		for range 200 {
			if c.mu.TryLock() {
				c.mu.Unlock()
				locked <- false
				return
			}
			time.Sleep(time.Millisecond)
		}
		locked <- true
	}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	srv.Store(ts)
	c := ts.dialRaw(t)
	for id := uint32(1); id <= 5; id += 2 {
		c.raw(append(frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.get("/")...), frame(frameRSTStream, 0, id, u32(8)...)...))
	}
	select {
	case held := <-locked:
		if held {
			t.Fatal("OnAbusive was called with the connection's lock held")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OnAbusive not called")
	}
}

// Streams reset while they wait for a handler slot leave the queue at
// once: HEADERS+RST_STREAM pairs behind handlers that do not return hold
// no requests (the reset budget alone would allow thousands).
func TestResetPendingStreamsLeaveTheQueue(t *testing.T) {
	release := make(chan struct{})
	defer close(release)
	var started atomic.Int64
	ts := startServer(t, Config{MaxConcurrentStreams: 2, ResetBurst: 3000}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		started.Add(1)
		<-release
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.get("/")...))
	waitUntil(t, func() bool { return started.Load() == 2 })
	// The two handlers ignore the reset: both slots stay taken.
	c.raw(frame(frameRSTStream, 0, 1, u32(uint32(http2.ErrCodeCancel))...))
	c.raw(frame(frameRSTStream, 0, 3, u32(uint32(http2.ErrCodeCancel))...))
	var b []byte
	for i := range 2500 {
		id := uint32(5 + 2*i)
		b = append(b, frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.get("/")...)...)
		b = append(b, frame(frameRSTStream, 0, id, u32(uint32(http2.ErrCodeCancel))...)...)
	}
	c.raw(b)
	c.ping(t)
	sc := ts.connOf(t, c)
	sc.mu.Lock()
	pending, active, running := len(sc.pending), sc.active, sc.running
	sc.mu.Unlock()
	if pending != 0 || active != 0 || running != 2 {
		t.Fatalf("after 2500 streams reset while waiting: %d pending, %d active, %d handlers running; want 0, 0, 2", pending, active, running)
	}
	if ga := c.goAway.Load(); ga != nil {
		t.Fatalf("GOAWAY %v", ga.ErrCode)
	}
}

// The header-name caches hold client-chosen names: they are bounded in
// octets, not in entries (CVE-2021-44716), both ways.
func TestNameCachesBounded(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		for k := range r.Header {
			if strings.HasPrefix(k, "X") {
				w.Header().Set(k+"-Echo", "1") // through the lower-case cache
			}
		}
	}))
	c := ts.dialRaw(t)
	sc := ts.connOf(t, c)
	for i := range 64 {
		for _, n := range []int{20, 30000} {
			name := fmt.Sprintf("x%02d", i) + strings.Repeat("n", n)
			id := uint32(1 + 4*i)
			if n > 20 {
				id += 2
			}
			c.raw(appendHeaderBlock(nil, id, c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/", name, "v"), true, minMaxFrameSize))
			if c.next(5*time.Second, func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamID == id }) == nil {
				t.Fatalf("no response on stream %d", id)
			}
		}
	}
	size := func(m map[string]string) int {
		n := 0
		for k, v := range m {
			n += len(k) + len(v)
		}
		return n
	}
	sc.mu.Lock()
	canon, lower := size(sc.canon), size(sc.lower)
	sc.mu.Unlock()
	if canon > maxCachedNameBytes || lower > maxCachedNameBytes || canon == 0 || lower == 0 {
		t.Fatalf("name caches hold %d and %d octets, want some and at most %d each", canon, lower, maxCachedNameBytes)
	}
}

// A header block is bounded as sent, not only decoded: a string longer
// than twice MaxHeaderBytes is refused when its length arrives (the HPACK
// decoder would buffer it whole, waiting for the rest), and a block over
// twice MaxHeaderBytes ends the connection before 33 frames of it are
// decoded.
func TestHeaderBlockBoundedAsSent(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	// A literal field "x" whose value says it is 2^24 octets long, not
	// Huffman-coded; its first 16 KiB.
	block := []byte{0x00, 0x01, 'x', 0x7f}
	for v := uint64(1<<24 - 127); ; v /= 128 {
		if v < 128 {
			block = append(block, byte(v))
			break
		}
		block = append(block, byte(v%128+128))
	}
	block = append(block, bytes.Repeat([]byte("v"), minMaxFrameSize-len(block))...)
	long := ts.dialRaw(t)
	long.raw(frame(frameHeaders, 0, 1, block...))
	if ga, closed := long.waitEnd(5 * time.Second); ga == nil || ga.ErrCode != http2.ErrCodeProtocol || !closed {
		t.Fatalf("a field announcing 16 MiB: GOAWAY %v, closed %t; want PROTOCOL_ERROR after its first frame", ga, closed)
	}
	// Indexed fields (":method: GET", one octet each, 42 decoded): far
	// over MaxHeaderBytes, which HPACK must keep decoding.
	indexed := bytes.Repeat([]byte{0x82}, minMaxFrameSize)
	big := ts.dialRaw(t)
	b := frame(frameHeaders, 0, 1, indexed...)
	for range 9 { // 160 KiB: over 2 x 64 KiB, far below 33 frames
		b = append(b, frame(frameContinuation, 0, 1, indexed...)...)
	}
	big.raw(b)
	if ga, closed := big.waitEnd(5 * time.Second); ga == nil || ga.ErrCode != http2.ErrCodeProtocol || !closed {
		t.Fatalf("a 160 KiB header block: GOAWAY %v, closed %t; want PROTOCOL_ERROR", ga, closed)
	}
}

// TestStreamResetBeforeItsWorkerRuns guards the window between the frame
// loop handing a stream to the worker pool and a worker running it: a
// stream the client reset meanwhile runs no handler, and its slot and
// stream are given back.
func TestStreamResetBeforeItsWorkerRuns(t *testing.T) {
	var called atomic.Bool
	s := NewServer(Config{Logger: testLogger(t)}, http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called.Store(true) }))
	c := s.newConn(newFakeConn())
	st := s.getStream()
	rs := new(requestState)
	ctx, cancel := context.WithCancelCause(context.Background())
	req, _ := http.NewRequestWithContext(ctx, http.MethodGet, "https://localhost/", nil)
	st.c, st.id, st.req, st.rs, st.cancel = c, 1, req, rs, cancel
	rs.rw.st = st
	rs.body.cond.L = &c.mu
	c.mu.Lock()
	// As endHeaders leaves a stream it hands to a worker...
	st.inMap, st.started = true, true
	c.streams[1] = st
	c.active, c.running = 1, 1
	// ... and as processRSTStream leaves it before the worker runs.
	c.abortStreamLocked(st, fmt.Errorf("http2: stream reset by the client (%v)", ErrCodeCancel))
	c.mu.Unlock()
	st.Run()
	if called.Load() {
		t.Error("the handler ran for a stream reset before its worker started")
	}
	c.mu.Lock()
	running, active := c.running, c.active
	c.mu.Unlock()
	if running != 0 || active != 0 {
		t.Errorf("after the skipped stream: %d handlers running, %d streams active; want 0, 0", running, active)
	}
	if ctx.Err() != context.Canceled {
		t.Errorf("the request's context: %v, want context.Canceled", ctx.Err())
	}
}
