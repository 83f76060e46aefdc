package h2

import (
	"encoding/binary"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/net/http2"
)

// frame builds a raw frame.
func frame(typ, flags byte, stream uint32, payload ...byte) []byte {
	return append(appendFrameHeader(nil, len(payload), typ, flags, stream), payload...)
}

// holdIfAsked keeps a handler (and its stream) busy, without reading the
// body, until the stream ends or 5 s pass, when the request says x-hold.
func holdIfAsked(r *http.Request) {
	if r.Header.Get("X-Hold") == "" {
		return
	}
	select {
	case <-r.Context().Done():
	case <-time.After(5 * time.Second):
	}
}

func u32(v uint32) []byte { return binary.BigEndian.AppendUint32(nil, v) }

func settingsPayload(kv ...uint32) []byte {
	var b []byte
	for i := 0; i+1 < len(kv); i += 2 {
		b = append(b, byte(kv[i]>>8), byte(kv[i]))
		b = binary.BigEndian.AppendUint32(b, kv[i+1])
	}
	return b
}

// Every connection error ends the connection with GOAWAY and the code
// RFC 9113 asks for, and the handler never sees the offending request.
func TestConnectionErrors(t *testing.T) {
	var served atomic.Int64
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		holdIfAsked(r)
		w.Write([]byte("ok"))
	}))
	cases := []struct {
		name string
		send func(c *rawConn) []byte
		code http2.ErrCode
	}{
		{"DATA on stream 0", func(c *rawConn) []byte { return frame(frameData, 0, 0, 'x') }, http2.ErrCodeProtocol},
		{"DATA on an idle stream", func(c *rawConn) []byte { return frame(frameData, 0, 1, 'x') }, http2.ErrCodeProtocol},
		{"HEADERS on stream 0", func(c *rawConn) []byte { return frame(frameHeaders, flagEndHeaders, 0, c.get("/")...) }, http2.ErrCodeProtocol},
		{"HEADERS on an even stream", func(c *rawConn) []byte { return frame(frameHeaders, flagEndHeaders, 2, c.get("/")...) }, http2.ErrCodeProtocol},
		{"stream id going down", func(c *rawConn) []byte {
			return append(frame(frameHeaders, flagEndHeaders|flagEndStream, 5, c.get("/")...), frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.get("/")...)...)
		}, http2.ErrCodeProtocol},
		{"invalid HPACK", func(c *rawConn) []byte { return frame(frameHeaders, flagEndHeaders, 1, 0xff, 0xff, 0xff, 0xff) }, http2.ErrCodeCompression},
		{"HPACK table size above ours", func(c *rawConn) []byte {
			return frame(frameHeaders, flagEndHeaders, 1, 0x3f, 0xe1, 0x7f) // size update to 16384
		}, http2.ErrCodeCompression},
		{"truncated header block", func(c *rawConn) []byte {
			b := c.get("/")
			return frame(frameHeaders, flagEndHeaders, 1, append(b, 0x40, 0x05, 'a')...) // literal cut short
		}, http2.ErrCodeCompression},
		{"frame in a header block", func(c *rawConn) []byte {
			return append(frame(frameHeaders, 0, 1, c.get("/")...), frame(framePing, 0, 0, make([]byte, 8)...)...)
		}, http2.ErrCodeProtocol},
		{"CONTINUATION on another stream", func(c *rawConn) []byte {
			return append(frame(frameHeaders, 0, 1, c.get("/")...), frame(frameContinuation, flagEndHeaders, 3)...)
		}, http2.ErrCodeProtocol},
		{"CONTINUATION without HEADERS", func(c *rawConn) []byte { return frame(frameContinuation, flagEndHeaders, 1) }, http2.ErrCodeProtocol},
		{"frame larger than SETTINGS_MAX_FRAME_SIZE", func(c *rawConn) []byte {
			return frame(frameData, 0, 1, make([]byte, minMaxFrameSize+1)...)
		}, http2.ErrCodeFrameSize},
		{"DATA padding too long", func(c *rawConn) []byte {
			return append(frame(frameHeaders, flagEndHeaders, 1, c.get("/")...), frame(frameData, flagPadded, 1, 5, 'a', 'b')...)
		}, http2.ErrCodeProtocol},
		{"HEADERS padding too long", func(c *rawConn) []byte {
			return frame(frameHeaders, flagEndHeaders|flagPadded, 1, append([]byte{200}, c.get("/")...)...)
		}, http2.ErrCodeProtocol},
		{"PRIORITY on stream 0", func(c *rawConn) []byte { return frame(framePriority, 0, 0, 0, 0, 0, 1, 10) }, http2.ErrCodeProtocol},
		{"RST_STREAM on stream 0", func(c *rawConn) []byte { return frame(frameRSTStream, 0, 0, u32(8)...) }, http2.ErrCodeProtocol},
		{"RST_STREAM on an idle stream", func(c *rawConn) []byte { return frame(frameRSTStream, 0, 9, u32(8)...) }, http2.ErrCodeProtocol},
		{"RST_STREAM of 3 octets", func(c *rawConn) []byte {
			return append(frame(frameHeaders, flagEndHeaders, 1, c.get("/")...), frame(frameRSTStream, 0, 1, 0, 0, 8)...)
		}, http2.ErrCodeFrameSize},
		{"SETTINGS on a stream", func(c *rawConn) []byte { return frame(frameSettings, 0, 1) }, http2.ErrCodeProtocol},
		{"SETTINGS of 5 octets", func(c *rawConn) []byte { return frame(frameSettings, 0, 0, 0, 1, 0, 0, 0) }, http2.ErrCodeFrameSize},
		{"SETTINGS ACK with payload", func(c *rawConn) []byte { return frame(frameSettings, flagAck, 0, settingsPayload(1, 1)...) }, http2.ErrCodeFrameSize},
		{"ENABLE_PUSH 2", func(c *rawConn) []byte { return frame(frameSettings, 0, 0, settingsPayload(2, 2)...) }, http2.ErrCodeProtocol},
		{"INITIAL_WINDOW_SIZE 2^31", func(c *rawConn) []byte { return frame(frameSettings, 0, 0, settingsPayload(4, 1<<31)...) }, http2.ErrCodeFlowControl},
		{"MAX_FRAME_SIZE too small", func(c *rawConn) []byte { return frame(frameSettings, 0, 0, settingsPayload(5, 16383)...) }, http2.ErrCodeProtocol},
		{"MAX_FRAME_SIZE too large", func(c *rawConn) []byte { return frame(frameSettings, 0, 0, settingsPayload(5, 1<<24)...) }, http2.ErrCodeProtocol},
		{"PUSH_PROMISE", func(c *rawConn) []byte { return frame(framePushPromise, flagEndHeaders, 1, u32(2)...) }, http2.ErrCodeProtocol},
		{"PING on a stream", func(c *rawConn) []byte { return frame(framePing, 0, 1, make([]byte, 8)...) }, http2.ErrCodeProtocol},
		{"PING of 7 octets", func(c *rawConn) []byte { return frame(framePing, 0, 0, make([]byte, 7)...) }, http2.ErrCodeFrameSize},
		{"GOAWAY on a stream", func(c *rawConn) []byte { return frame(frameGoAway, 0, 1, make([]byte, 8)...) }, http2.ErrCodeProtocol},
		{"WINDOW_UPDATE of 0 on the connection", func(c *rawConn) []byte { return frame(frameWindowUpdate, 0, 0, u32(0)...) }, http2.ErrCodeProtocol},
		{"WINDOW_UPDATE of 3 octets", func(c *rawConn) []byte { return frame(frameWindowUpdate, 0, 0, 0, 0, 1) }, http2.ErrCodeFrameSize},
		{"WINDOW_UPDATE on an idle stream", func(c *rawConn) []byte { return frame(frameWindowUpdate, 0, 7, u32(1000)...) }, http2.ErrCodeProtocol},
		{"connection window overflow", func(c *rawConn) []byte {
			return append(frame(frameWindowUpdate, 0, 0, u32(1<<31-1)...), frame(frameWindowUpdate, 0, 0, u32(1<<31-1)...)...)
		}, http2.ErrCodeFlowControl},
		{"stream window overflow by SETTINGS", func(c *rawConn) []byte {
			b := frame(frameSettings, 0, 0, settingsPayload(4, 0)...) // responses wait
			b = append(b, frame(frameHeaders, flagEndHeaders|flagEndStream, 1, c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/", "x-hold", "1")...)...)
			b = append(b, frame(frameWindowUpdate, 0, 1, u32(1<<31-1)...)...)
			return append(b, frame(frameSettings, 0, 0, settingsPayload(4, 10)...)...)
		}, http2.ErrCodeFlowControl},
		{"DATA beyond the connection window", func(c *rawConn) []byte {
			var b []byte
			hold := c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/", "x-hold", "1")
			for id := uint32(1); id <= 41; id += 2 {
				b = append(b, frame(frameHeaders, flagEndHeaders, id, hold...)...)
				// 4 x 16 KiB per stream: each stream's 64 KiB window,
				// 21 streams: beyond the 1 MiB connection window.
				for range 4 {
					b = append(b, frame(frameData, 0, id, make([]byte, 16384)...)...)
				}
			}
			return b
		}, http2.ErrCodeFlowControl},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel() // each waits out the server's linger after GOAWAY
			c := ts.dialRaw(t)
			if err := c.raw(tc.send(c)); err != nil {
				t.Fatal(err)
			}
			ga, closed := c.waitEnd(5 * time.Second)
			if ga == nil || ga.ErrCode != tc.code {
				t.Fatalf("GOAWAY %v, want %v", ga, tc.code)
			}
			if !closed {
				t.Fatal("connection left open after GOAWAY")
			}
		})
	}
}

// Stream errors reset the stream with the right code; the connection
// goes on, and malformed requests never reach the handler.
func TestStreamErrors(t *testing.T) {
	var served atomic.Int64
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		holdIfAsked(r)
		w.Write([]byte("ok"))
	}))
	req := []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/"}
	with := func(kv ...string) []string { return append(append([]string(nil), req...), kv...) }
	malformed := map[string][]string{
		"uppercase field name":           with("X-Upper", "1"),
		"connection header":              with("connection", "keep-alive"),
		"keep-alive header":              with("keep-alive", "5"),
		"transfer-encoding header":       with("transfer-encoding", "chunked"),
		"upgrade header":                 with("upgrade", "websocket"),
		"te other than trailers":         with("te", "gzip"),
		"unknown pseudo-header":          with(":foo", "bar"),
		"response pseudo-header":         with(":status", "200"),
		"missing :method":                req[2:],
		"missing :scheme":                {":method", "GET", ":authority", "localhost", ":path", "/"},
		"missing :path":                  req[:6],
		"empty :path":                    {":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", ""},
		"duplicate :method":              with(":method", "GET"),
		"duplicate :path":                {":method", "GET", ":scheme", "https", ":path", "/", ":path", "/"},
		"pseudo-header after regular":    {":method", "GET", ":scheme", "https", "x-a", "b", ":path", "/"},
		"CR in a value":                  with("x-a", "b\rc"),
		"NUL in a value":                 with("x-a", "b\x00c"),
		"leading space in a value":       with("x-a", " b"),
		"space in a name":                with("x a", "b"),
		"host differs from :authority":   with("host", "other.example"),
		"host differs in case":           with("host", "LOCALHOST"),
		"two host fields":                with("host", "localhost", "host", "localhost"),
		"userinfo in :authority":         {":method", "GET", ":scheme", "https", ":authority", "user@localhost", ":path", "/"},
		"extended CONNECT":               {":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", "localhost", ":path", "/"},
		"CONNECT with :path":             {":method", "CONNECT", ":authority", "localhost:443", ":path", "/"},
		"CONNECT without :authority":     {":method", "CONNECT"},
		"invalid content-length":         with("content-length", "abc"),
		"conflicting content-lengths":    with("content-length", "1", "content-length", "2"),
		"content-length without a body":  with("content-length", "5"),
		"absolute-form :path":            {":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "http://x/"},
		"invalid method":                 {":method", "G T", ":scheme", "https", ":authority", "localhost", ":path", "/"},
		"invalid authority":              {":method", "GET", ":scheme", "https", ":authority", "a b", ":path", "/"},
		"control octet in :path":         {":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/a\x01"},
		"self-dependent HEADERS (below)": nil,
	}
	c := ts.dialRaw(t)
	id := uint32(1)
	for name, kv := range malformed {
		var b []byte
		if kv == nil {
			// PRIORITY flag with a dependency on the stream itself.
			b = frame(frameHeaders, flagEndHeaders|flagEndStream|flagPriority, id, append(append(u32(id), 16), c.block(req...)...)...)
		} else {
			b = frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.block(kv...)...)
		}
		if err := c.raw(b); err != nil {
			t.Fatal(err)
		}
		code, goAway, ok := c.rstOrGoAway(id, 5*time.Second)
		if !ok || goAway || code != http2.ErrCodeProtocol {
			t.Errorf("%s: got %v (GOAWAY %t, seen %t), want RST_STREAM PROTOCOL_ERROR", name, code, goAway, ok)
		}
		id += 2
	}
	if n := served.Load(); n != 0 {
		t.Errorf("the handler saw %d malformed requests", n)
	}

	// The streams stay open (x-hold): a handler that answered at once
	// would close them before the offending frame arrives.
	streamCases := []struct {
		name string
		send func(id uint32) []byte
		code http2.ErrCode
	}{
		{"content-length above the DATA", func(id uint32) []byte {
			b := frame(frameHeaders, flagEndHeaders, id, c.block(with("content-length", "10", "x-hold", "1")...)...)
			return append(b, frame(frameData, flagEndStream, id, 'a', 'b')...)
		}, http2.ErrCodeProtocol},
		{"DATA beyond content-length", func(id uint32) []byte {
			b := frame(frameHeaders, flagEndHeaders, id, c.block(with("content-length", "1", "x-hold", "1")...)...)
			return append(b, frame(frameData, 0, id, 'a', 'b')...)
		}, http2.ErrCodeProtocol},
		{"trailers without END_STREAM", func(id uint32) []byte {
			b := frame(frameHeaders, flagEndHeaders, id, c.block(with("x-hold", "1")...)...)
			return append(b, frame(frameHeaders, flagEndHeaders, id, c.block("x-t", "1")...)...)
		}, http2.ErrCodeProtocol},
		{"pseudo-header in trailers", func(id uint32) []byte {
			b := frame(frameHeaders, flagEndHeaders, id, c.block(with("x-hold", "1")...)...)
			return append(b, frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.block(":path", "/x")...)...)
		}, http2.ErrCodeProtocol},
		{"DATA after END_STREAM", func(id uint32) []byte {
			// A handler that holds the response keeps the stream
			// half-closed (remote).
			b := frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.block(with("x-hold", "1")...)...)
			return append(b, frame(frameData, 0, id, 'a')...)
		}, http2.ErrCodeStreamClosed},
		{"HEADERS after END_STREAM", func(id uint32) []byte {
			b := frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.block(with("x-hold", "1")...)...)
			return append(b, frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.block("x-t", "1")...)...)
		}, http2.ErrCodeStreamClosed},
		{"WINDOW_UPDATE of 0 on a stream", func(id uint32) []byte {
			b := frame(frameHeaders, flagEndHeaders, id, c.block(with("x-hold", "1")...)...)
			return append(b, frame(frameWindowUpdate, 0, id, u32(0)...)...)
		}, http2.ErrCodeProtocol},
		{"stream window overflow", func(id uint32) []byte {
			b := frame(frameHeaders, flagEndHeaders, id, c.block(with("x-hold", "1")...)...)
			b = append(b, frame(frameWindowUpdate, 0, id, u32(1<<31-1)...)...)
			return append(b, frame(frameWindowUpdate, 0, id, u32(1<<31-1)...)...)
		}, http2.ErrCodeFlowControl},
		{"DATA beyond the stream window", func(id uint32) []byte {
			b := frame(frameHeaders, flagEndHeaders, id, c.block(with("x-hold", "1")...)...)
			for range 5 {
				b = append(b, frame(frameData, 0, id, make([]byte, 16384)...)...)
			}
			return b
		}, http2.ErrCodeFlowControl},
		{"PRIORITY of 4 octets", func(id uint32) []byte { return frame(framePriority, 0, id, 0, 0, 0, 0) }, http2.ErrCodeFrameSize},
		{"PRIORITY depending on itself", func(id uint32) []byte { return frame(framePriority, 0, id, append(u32(id), 1)...) }, http2.ErrCodeProtocol},
	}
	for _, sc := range streamCases {
		if err := c.raw(sc.send(id)); err != nil {
			t.Fatal(err)
		}
		code, goAway, ok := c.rstOrGoAway(id, 5*time.Second)
		if !ok || goAway || code != sc.code {
			t.Errorf("%s: got %v (GOAWAY %t, seen %t), want RST_STREAM %v", sc.name, code, goAway, ok, sc.code)
		}
		id += 2
	}
	// The connection still serves.
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, id, c.get("/after")...))
	if f := c.next(5*time.Second, func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamID == id }); f == nil {
		t.Fatal("no response after the stream errors")
	}
	if ga := c.goAway.Load(); ga != nil {
		t.Fatalf("GOAWAY %v after stream errors", ga)
	}
}

// A header list over MaxHeaderBytes is answered 431 without reaching the
// handler, and the HPACK state stays in step: the connection goes on.
func TestHeaderListTooLarge(t *testing.T) {
	var served atomic.Int64
	ts := startServer(t, Config{MaxHeaderBytes: 4 << 10}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		served.Add(1)
		w.Header().Set("X-Indexed", r.Header.Get("X-Indexed"))
	}))
	c := ts.dialRaw(t)
	// Fields added to the HPACK table while over the limit must still be
	// in the table for the next request.
	big := c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/",
		"x-indexed", "yes", "x-big", strings.Repeat("a", 5000))
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 1, big...))
	f := c.next(5*time.Second, func(f http2.Frame) bool { _, ok := f.(*http2.MetaHeadersFrame); return ok })
	if h, ok := f.(*http2.MetaHeadersFrame); !ok || h.PseudoValue("status") != "431" {
		t.Fatalf("over the header limit: %v", f)
	}
	// "x-indexed: yes" is now an indexed field (the encoder indexes it);
	// the server must have indexed it too.
	c.raw(frame(frameHeaders, flagEndHeaders|flagEndStream, 3, c.block(":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/", "x-indexed", "yes")...))
	f = c.next(5*time.Second, func(f http2.Frame) bool { h, ok := f.(*http2.MetaHeadersFrame); return ok && h.StreamID == 3 })
	h, ok := f.(*http2.MetaHeadersFrame)
	if !ok || h.PseudoValue("status") != "200" {
		t.Fatalf("next request: %v", f)
	}
	for _, hf := range h.RegularFields() {
		if hf.Name == "x-indexed" && hf.Value != "yes" {
			t.Fatalf("x-indexed %q: HPACK state out of step", hf.Value)
		}
	}
	if served.Load() != 1 {
		t.Fatalf("handler ran %d times, want 1", served.Load())
	}
}
