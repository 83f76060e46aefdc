package h2

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// dataOn collects DATA octets on a stream for d, and reports whether
// END_STREAM was seen.
func (c *rawConn) dataOn(id uint32, d time.Duration) (int, bool) {
	n := 0
	deadline := time.After(d)
	for {
		select {
		case f := <-c.frames:
			if df, ok := f.(*dataFrame); ok && df.StreamID == id {
				n += len(df.Data())
				if df.StreamEnded() {
					return n, true
				}
			}
		case <-deadline:
			return n, false
		}
	}
}

// The response follows the client's windows: the stream's initial window
// (SETTINGS_INITIAL_WINDOW_SIZE), changes to it that drive the window
// negative, and WINDOW_UPDATEs.
func TestSendFlowControl(t *testing.T) {
	body := bytes.Repeat([]byte("w"), 1000)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write(body) }))
	c := ts.dialRaw(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 100})
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.get("/")...))
	if n, end := c.dataOn(1, 300*time.Millisecond); n != 100 || end {
		t.Fatalf("with a 100-octet window: %d octets, end %t", n, end)
	}
	// 100 sent; a new initial window of 40 makes the window -60.
	c.raw(frame(frameSettings, 0, 0, settingsPayload(4, 40)...))
	c.raw(frame(frameWindowUpdate, 0, 1, u32(50)...))
	if n, _ := c.dataOn(1, 300*time.Millisecond); n != 0 {
		t.Fatalf("window -10: %d octets sent", n)
	}
	c.raw(frame(frameWindowUpdate, 0, 1, u32(30)...))
	if n, _ := c.dataOn(1, 300*time.Millisecond); n != 20 {
		t.Fatalf("window 20: %d octets sent", n)
	}
	c.raw(frame(frameWindowUpdate, 0, 1, u32(10000)...))
	if n, end := c.dataOn(1, 2*time.Second); n != 880 || !end {
		t.Fatalf("window open: %d octets, end %t; want the last 880", n, end)
	}
	// The connection window: 65535 - 1000 left; a response of 70000 on a
	// new stream stops at the connection window until it opens.
	big := strings.Repeat("b", 70000)
	ts2 := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, big) }))
	c2 := ts2.dialRaw(t, http2.Setting{ID: http2.SettingInitialWindowSize, Val: 1 << 20})
	c2.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c2.get("/")...))
	if n, end := c2.dataOn(1, 300*time.Millisecond); n != 65535 || end {
		t.Fatalf("connection window 65535: %d octets, end %t", n, end)
	}
	c2.raw(frame(frameWindowUpdate, 0, 0, u32(10000)...))
	if n, end := c2.dataOn(1, 2*time.Second); n != 70000-65535 || !end {
		t.Fatalf("after the connection WINDOW_UPDATE: %d octets, end %t", n, end)
	}
}

// Request bodies: the windows are given back as the handler reads, in
// WINDOW_UPDATEs of a quarter window at least, and the client is never
// allowed more than the windows.
func TestReceiveFlowControl(t *testing.T) {
	got := make(chan int, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		got <- int(n)
	}))
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")...))
	const total = 4 << 20
	streamWin, connWin := 65535, 65535 // what the client may send; grows with WINDOW_UPDATEs
	sent, updates := 0, 0
	chunk := make([]byte, 16384)
	deadline := time.Now().Add(10 * time.Second)
	for sent < total && time.Now().Before(deadline) {
		n := min(len(chunk), streamWin, connWin, total-sent)
		if n > 0 {
			flags := byte(0)
			if sent+n == total {
				flags = flagEndStream
			}
			if err := c.raw(frame(frameData, flags, 1, chunk[:n]...)); err != nil {
				t.Fatal(err)
			}
			sent += n
			streamWin -= n
			connWin -= n
			continue
		}
		f := c.next(2*time.Second, func(f http2.Frame) bool { _, ok := f.(*http2.WindowUpdateFrame); return ok })
		if f == nil {
			t.Fatalf("stalled after %d octets: no WINDOW_UPDATE", sent)
		}
		wu := f.(*http2.WindowUpdateFrame)
		updates++
		if wu.StreamID == 0 {
			connWin += int(wu.Increment)
		} else {
			streamWin += int(wu.Increment)
		}
	}
	select {
	case n := <-got:
		if n != total {
			t.Fatalf("handler read %d octets of %d", n, total)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("handler did not finish")
	}
	// One update per 16 KiB read on the stream, one per 256 KiB on the
	// connection, at most.
	if max := total/16384 + total/(256<<10) + 4; updates > max {
		t.Fatalf("%d WINDOW_UPDATEs for %d octets (at most %d expected)", updates, total, max)
	}
	t.Logf("%d octets in, %d WINDOW_UPDATEs seen", total, updates)
}

// A client that uploads to a handler that never reads cannot make the
// connection buffer more than its windows.
func TestUnreadBodyBounded(t *testing.T) {
	release := make(chan struct{})
	ts := startServer(t, Config{StreamWindow: 32 << 10, ConnWindow: 64 << 10}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
	}))
	defer close(release)
	c := ts.dialRaw(t)
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")...))
	c.raw(frame(frameHeaders, flagEndHeaders, 3, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")...))
	// The windows settle at 32 KiB per stream (once our SETTINGS are
	// acknowledged) and 64 KiB for the connection: 16 KiB more on stream 1
	// than its window is a stream error.
	for range 3 {
		c.raw(frame(frameData, 0, 1, make([]byte, 16384)...))
	}
	code, goAway, ok := c.rstOrGoAway(1, 5*time.Second)
	if !ok || goAway || code != http2.ErrCodeFlowControl {
		t.Fatalf("beyond the stream window: %v (GOAWAY %t, seen %t)", code, goAway, ok)
	}
	// The reset stream's octets went back to the connection window; the
	// second stream may fill it, not more.
	for range 4 {
		c.raw(frame(frameData, 0, 3, make([]byte, 8192)...))
	}
	c.raw(frame(frameData, 0, 3, make([]byte, 1)...))
	code, goAway, ok = c.rstOrGoAway(3, 5*time.Second)
	if !ok || goAway || code != http2.ErrCodeFlowControl {
		t.Fatalf("beyond the second stream's window: %v (GOAWAY %t, seen %t)", code, goAway, ok)
	}
}

// A big upload and download through Go's client on one connection.
func TestLargeBodiesBothWays(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(w, r.Body)
	}))
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<18) // 4 MiB
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	req, _ := http.NewRequestWithContext(ctx, "POST", ts.url()+"/", bytes.NewReader(body))
	resp, err := ts.client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil || !bytes.Equal(got, body) {
		t.Fatalf("echo of 4 MiB: %d octets, %v", len(got), err)
	}
}

// A handler that reads its body in small pieces while more keeps
// arriving does not make the body buffer grow beyond the stream window.
func TestBodyBufferBounded(t *testing.T) {
	maxCap := make(chan int, 1)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		st := w.(*responseWriter).st
		buf := make([]byte, 700)
		most := 0
		for {
			_, err := r.Body.Read(buf)
			time.Sleep(20 * time.Microsecond) // slower than the client sends
			st.c.mu.Lock()
			most = max(most, cap(st.body))
			st.c.mu.Unlock()
			if err != nil {
				break
			}
		}
		maxCap <- most
	}))
	body := bytes.Repeat([]byte("u"), 2<<20)
	resp, err := ts.client().Post(ts.url()+"/", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if most := <-maxCap; most > 2*(64<<10) {
		t.Fatalf("body buffer grew to %d octets for a 64 KiB stream window", most)
	}
}

// TestLateDataOnForgottenStream guards the answer to DATA on a stream the
// server reset so long ago that the reset ring no longer remembers it (the
// client sent it before it saw the reset): a stream error, RST_STREAM
// STREAM_CLOSED, never a connection error, and the octets still go back
// to the connection window.
func TestLateDataOnForgottenStream(t *testing.T) {
	const streams = resetRingSize + 44
	ts := startServer(t, Config{MaxConcurrentStreams: 1000}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusForbidden) // does not read the upload
	}))
	c := ts.dialRaw(t)
	sc := ts.connOf(t, c)
	post := c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")
	var b []byte
	for i := range streams {
		b = append(b, frame(frameHeaders, flagEndHeaders, uint32(1+2*i), post...)...)
	}
	c.raw(b)
	var first uint32
	for i := range streams {
		f := c.next(5*time.Second, func(f http2.Frame) bool { _, ok := f.(*http2.RSTStreamFrame); return ok })
		if f == nil {
			t.Fatalf("%d of %d streams reset", i, streams)
		}
		if i == 0 {
			first = f.(*http2.RSTStreamFrame).StreamID
		}
	}
	// The upload of the first stream reset, resets ago; then a PING, whose
	// ACK means the server has handled the DATA.
	c.raw(frame(frameData, 0, first, make([]byte, 100)...))
	c.raw(frame(frameData, 0, first, make([]byte, 100)...))
	frames := c.ping(t)
	var resets int
	for _, f := range frames {
		if r, ok := f.(*http2.RSTStreamFrame); ok && r.StreamID == first {
			resets++
			if r.ErrCode != http2.ErrCodeStreamClosed {
				t.Errorf("late DATA on stream %d: RST_STREAM %v, want STREAM_CLOSED", first, r.ErrCode)
			}
		}
	}
	if resets != 1 {
		t.Errorf("two late DATA frames on stream %d: %d RST_STREAMs, want 1 (the second is ignored)", first, resets)
	}
	if ga := c.goAway.Load(); ga != nil {
		t.Fatalf("late DATA on a stream the server reset: GOAWAY %v", ga.ErrCode)
	}

	// A stream closed on both sides, with no reset to remember: the
	// server cannot tell a client's late frame from a bug, and answers
	// as x/net does, with a stream error.
	id := uint32(1 + 2*streams)
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.get("/")...))
	if c.next(5*time.Second, func(f http2.Frame) bool {
		h, ok := f.(*http2.MetaHeadersFrame)
		return ok && h.StreamID == id && h.StreamEnded()
	}) == nil {
		t.Fatalf("no response on stream %d", id)
	}
	c.raw(frame(frameData, 0, id, make([]byte, 100)...))
	if code, goAway, ok := c.rstOrGoAway(id, 5*time.Second); !ok || goAway || code != http2.ErrCodeStreamClosed {
		t.Fatalf("DATA on closed stream %d: %v (GOAWAY %t, seen %t), want RST_STREAM STREAM_CLOSED", id, code, goAway, ok)
	}
	c.ping(t)
	sc.mu.Lock()
	window := sc.recvWindow + sc.recvUnacked
	sc.mu.Unlock()
	if window != int64(sc.cfg.ConnWindow) {
		t.Errorf("connection window %d after the late DATA was dropped, want all %d given back", window, sc.cfg.ConnWindow)
	}
}

// TestPaddedDataCountsAgainstWindows guards flow control for padded DATA
// (RFC 9113 §6.1): the whole frame payload, pad length and padding
// included, counts against the stream and connection windows; padding is
// given back at once, the data only when the handler reads it.
func TestPaddedDataCountsAgainstWindows(t *testing.T) {
	const window = 1000
	release := make(chan struct{})
	ts := startServer(t, Config{StreamWindow: window}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select { // does not read the body
		case <-release:
		case <-r.Context().Done():
		}
	}))
	defer close(release)
	c := ts.dialRaw(t)
	sc := ts.connOf(t, c)
	c.ping(t) // our SETTINGS ACK is in: streams get the 1000-octet window
	padded := func(data, pad int) []byte {
		p := append([]byte{byte(pad)}, make([]byte, data+pad)...)
		return frame(frameData, flagPadded, 1, p...)
	}
	c.raw(frame(frameHeaders, flagEndHeaders, 1, c.block(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")...))
	// 10 octets of data, 255 of padding and 1 of pad length: 266 octets
	// of the window. The padding comes back (256 octets, over a quarter
	// of the window), the data does not.
	c.raw(padded(10, 255))
	f := c.next(5*time.Second, func(f http2.Frame) bool { w, ok := f.(*http2.WindowUpdateFrame); return ok && w.StreamID == 1 })
	if f == nil {
		t.Fatal("no WINDOW_UPDATE on stream 1 for the padding")
	}
	if got := f.(*http2.WindowUpdateFrame).Increment; got != 256 {
		t.Errorf("WINDOW_UPDATE of %d for 10 data octets in a 266-octet padded frame, want 256", got)
	}
	sc.mu.Lock()
	connWindow := sc.recvWindow + sc.recvUnacked
	sc.mu.Unlock()
	if connWindow != int64(sc.cfg.ConnWindow)-10 {
		t.Errorf("connection window %d with 10 octets unread, want %d", connWindow, sc.cfg.ConnWindow-10)
	}
	// 900 more octets, unread: 90 of the stream window left. Then 257
	// octets with 1 of data: over the window, though its data would fit.
	// A stream error, not a connection one.
	c.raw(frame(frameData, 0, 1, make([]byte, 900)...))
	c.raw(padded(1, 255))
	if code, goAway, ok := c.rstOrGoAway(1, 5*time.Second); !ok || goAway || code != http2.ErrCodeFlowControl {
		t.Fatalf("padded DATA over the stream window: %v (GOAWAY %t, seen %t), want RST_STREAM FLOW_CONTROL_ERROR", code, goAway, ok)
	}
	c.ping(t)
	sc.mu.Lock()
	connWindow = sc.recvWindow + sc.recvUnacked
	sc.mu.Unlock()
	if connWindow != int64(sc.cfg.ConnWindow) {
		t.Errorf("connection window %d after the stream's reset, want all %d given back", connWindow, sc.cfg.ConnWindow)
	}
}
