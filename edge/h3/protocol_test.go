package h3

import (
	"bytes"
	"errors"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

func varints(v ...uint64) []byte {
	var b []byte
	for _, x := range v {
		b = quicvarint.Append(b, x)
	}
	return b
}

// The client's control stream: every way to get it wrong is a connection
// error with the code RFC 9114 names.
func TestControlStreamErrors(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler()})
	for _, c := range []struct {
		name string
		send func(rc *rawConn)
		want ErrCode
	}{
		{"first frame not SETTINGS", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameGoAway, varints(0)))
		}, ErrMissingSettings},
		{"second control stream", func(rc *rawConn) {
			rc.control()
			ts.serverConn(rc, func(c *conn) bool { return c.peerControl.Load() })
			rc.control()
		}, ErrStreamCreationError},
		{"second SETTINGS", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(frameSettings, nil))
		}, ErrFrameUnexpected},
		{"DATA on the control stream", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(frameData, []byte("x")))
		}, ErrFrameUnexpected},
		{"HEADERS on the control stream", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(frameHeaders, get("/")))
		}, ErrFrameUnexpected},
		{"PUSH_PROMISE on the control stream", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(framePushPromise, varints(0)))
		}, ErrFrameUnexpected},
		{"HTTP/2 PRIORITY frame", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(0x2, []byte{0}))
		}, ErrFrameUnexpected},
		{"HTTP/2 PING frame", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(0x6, make([]byte, 8)))
		}, ErrFrameUnexpected},
		{"HTTP/2 WINDOW_UPDATE frame", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(0x8, make([]byte, 4)))
		}, ErrFrameUnexpected},
		{"HTTP/2 CONTINUATION frame", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(0x9, nil))
		}, ErrFrameUnexpected},
		{"control stream closed", func(rc *rawConn) {
			rc.control().Close()
		}, ErrClosedCriticalStream},
		{"control stream reset", func(rc *rawConn) {
			s := rc.control()
			// Reset once the server has read the stream's type (a reset
			// stream whose type never arrived is simply dropped).
			if !ts.serverConn(rc, func(c *conn) bool { return c.peerControl.Load() }) {
				rc.t.Fatal("the server never read the control stream's type")
			}
			s.CancelWrite(0x100)
		}, ErrClosedCriticalStream},
		{"control stream closed before SETTINGS", func(rc *rawConn) {
			rc.uni(streamControl).Close()
		}, ErrClosedCriticalStream},
		{"control stream ends inside a frame", func(rc *rawConn) {
			s := rc.uni(streamControl, frame(frameSettings, nil), []byte{0x21, 0x05, 1, 2})
			s.Close()
		}, ErrClosedCriticalStream},
		{"HTTP/2 setting", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, varints(0x2, 1)))
		}, ErrSettingsError},
		{"setting given twice", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, varints(settingMaxFieldSectionSize, 100, settingMaxFieldSectionSize, 100)))
		}, ErrSettingsError},
		{"SETTINGS ends inside a setting", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, varints(settingMaxFieldSectionSize)))
		}, ErrFrameError},
		{"huge SETTINGS", func(rc *rawConn) {
			rc.uni(streamControl, appendFrameHeader(nil, frameSettings, 1<<20))
		}, ErrExcessiveLoad},
		{"CANCEL_PUSH", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(frameCancelPush, varints(0)))
		}, ErrIDError},
		{"MAX_PUSH_ID going down", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(frameMaxPushID, varints(10)), frame(frameMaxPushID, varints(5)))
		}, ErrIDError},
		{"GOAWAY going up", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(frameGoAway, varints(4)), frame(frameGoAway, varints(8)))
		}, ErrIDError},
		{"ENABLE_CONNECT_PROTOCOL neither 0 nor 1", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, varints(settingEnableConnectProtocol, 2)))
		}, ErrSettingsError},
		{"H3_DATAGRAM neither 0 nor 1", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, varints(settingH3Datagram, 7)))
		}, ErrSettingsError},
		{"STOP_SENDING on the server's control stream", func(rc *rawConn) {
			rc.control()
			var ctrl *quic.ReceiveStream
			waitFor(2*time.Second, func() bool {
				rc.mu.Lock()
				defer rc.mu.Unlock()
				ctrl = rc.ctrl
				return ctrl != nil
			})
			if ctrl == nil {
				rc.t.Fatal("the server opened no control stream")
			}
			ctrl.CancelRead(0x100)
		}, ErrClosedCriticalStream},
		{"GOAWAY with two IDs", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(frameGoAway, varints(0, 0)))
		}, ErrFrameError},
		{"PRIORITY_UPDATE for a push", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(framePriorityPush, append(varints(0), "u=1"...)))
		}, ErrIDError},
		{"PRIORITY_UPDATE for a stream that is not a request stream", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(framePriorityUpdate, append(varints(2), "u=1"...)))
		}, ErrIDError},
		{"PRIORITY_UPDATE too long", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(framePriorityUpdate, append(varints(0), make([]byte, 5000)...)))
		}, ErrExcessiveLoad},
		{"frames after a PRIORITY_UPDATE longer than the read buffer are still read", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(framePriorityUpdate, append(varints(0), make([]byte, 3000)...)), frame(frameSettings, nil))
		}, ErrFrameUnexpected},
		{"empty PRIORITY_UPDATE", func(rc *rawConn) {
			rc.uni(streamControl, frame(frameSettings, nil), frame(framePriorityUpdate, nil))
		}, ErrFrameError},
		{"push stream from a client", func(rc *rawConn) {
			rc.uni(streamPush, varints(0))
		}, ErrStreamCreationError},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := ts.dial(t)
			c.send(rc)
			rc.wantConnError(c.want)
		})
	}
}

// What a control stream may carry besides SETTINGS, and unknown or
// reserved frame types, leave the connection serving.
func TestControlStreamAllowedFrames(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler()})
	rc := ts.dial(t)
	ctrl := rc.uni(streamControl,
		frame(frameSettings, varints(settingMaxFieldSectionSize, 1<<14, 0x21, 7, settingQPACKMaxTableCapacity, 0, settingEnableConnectProtocol, 1, settingH3Datagram, 0)),
		frame(0x21, []byte("grease")),
		frame(0x1f*3+0x21, nil),
		frame(frameMaxPushID, varints(3)),
		frame(frameMaxPushID, varints(3)),
		frame(framePriorityUpdate, append(varints(0), "u=2"...)),
		frame(framePriorityUpdate, append(varints(4), bytes.Repeat([]byte("u=3, i"), 500)...)), // longer than the read buffer
		frame(frameGoAway, varints(8)),
		frame(frameGoAway, varints(8)),
		frame(frameGoAway, varints(0)),
		frame(0xabcdef, bytes.Repeat([]byte("x"), 10000)),
	)
	rc.wantOpen()
	// A second SETTINGS is an error: that it is the one the connection
	// closes for shows every frame before it was read and accepted.
	ctrl.Write(frame(frameSettings, nil))
	rc.wantConnErrorReason(ErrFrameUnexpected, "a second SETTINGS frame")
}

// The server's own control stream opens with SETTINGS: its field section
// limit, and no QPACK dynamic table.
func TestServerSettings(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler(), MaxFieldSectionSize: 12345})
	rc := ts.dial(t)
	rc.control()
	rc.wantOpen()
	var got []byte
	waitFor(2*time.Second, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		got = rc.settings
		return got != nil
	})
	settings := map[uint64]uint64{}
	for b := got; len(b) > 0; {
		id, n, _ := quicvarint.Parse(b)
		b = b[n:]
		v, n, _ := quicvarint.Parse(b)
		b = b[n:]
		settings[id] = v
	}
	if settings[settingMaxFieldSectionSize] != 12345 {
		t.Fatalf("SETTINGS %v: want MAX_FIELD_SECTION_SIZE 12345", settings)
	}
	if v, ok := settings[settingQPACKMaxTableCapacity]; ok && v != 0 {
		t.Fatalf("SETTINGS %v offer a QPACK dynamic table", settings)
	}
	for _, id := range []uint64{0x8, 0x33} { // extended CONNECT, H3 datagrams
		if _, ok := settings[id]; ok {
			t.Fatalf("SETTINGS %v announce 0x%x, which the server does not do", settings, id)
		}
	}
}

func TestQPACKStreams(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler()})
	for _, c := range []struct {
		name string
		send func(rc *rawConn)
		want ErrCode // 0: the connection stays open
	}{
		// The accepted cases end with a byte that is an error: the error
		// has to be that byte's, so everything before it was accepted.
		{"encoder: capacity 0 is fine", func(rc *rawConn) { rc.uni(streamQPACKEncoder, []byte{0x20, 0x20, 0x3f}) }, 0},
		{"encoder: capacity above 0", func(rc *rawConn) { rc.uni(streamQPACKEncoder, []byte{0x21}) }, ErrQPACKEncoderStreamError},
		{"encoder: insert with name reference", func(rc *rawConn) {
			rc.uni(streamQPACKEncoder, []byte{0xc0 | 17, 0x03, 'a', 'b', 'c'})
		}, ErrQPACKEncoderStreamError},
		{"encoder: insert with literal name", func(rc *rawConn) {
			rc.uni(streamQPACKEncoder, []byte{0x41, 'a', 0x01, 'b'})
		}, ErrQPACKEncoderStreamError},
		{"encoder: duplicate", func(rc *rawConn) { rc.uni(streamQPACKEncoder, []byte{0x00}) }, ErrQPACKEncoderStreamError},
		{"encoder stream twice", func(rc *rawConn) {
			rc.uni(streamQPACKEncoder)
			ts.serverConn(rc, func(c *conn) bool { return c.peerEncoder.Load() })
			rc.uni(streamQPACKEncoder)
		}, ErrStreamCreationError},
		{"encoder stream closed", func(rc *rawConn) { rc.uni(streamQPACKEncoder).Close() }, ErrClosedCriticalStream},
		{"decoder: stream cancellation is fine", func(rc *rawConn) {
			rc.uni(streamQPACKDecoder, []byte{0x40 | 4, 0x7f, 0x80, 0x01, 0x80})
		}, 0},
		{"decoder: section acknowledgment", func(rc *rawConn) { rc.uni(streamQPACKDecoder, []byte{0x80}) }, ErrQPACKDecoderStreamError},
		{"decoder: insert count increment", func(rc *rawConn) { rc.uni(streamQPACKDecoder, []byte{0x01}) }, ErrQPACKDecoderStreamError},
		{"decoder stream twice", func(rc *rawConn) {
			rc.uni(streamQPACKDecoder)
			ts.serverConn(rc, func(c *conn) bool { return c.peerDecoder.Load() })
			rc.uni(streamQPACKDecoder)
		}, ErrStreamCreationError},
		{"decoder stream reset", func(rc *rawConn) {
			s := rc.uni(streamQPACKDecoder)
			if !ts.serverConn(rc, func(c *conn) bool { return c.peerDecoder.Load() }) {
				rc.t.Fatal("the server never read the decoder stream's type")
			}
			s.CancelWrite(0x100)
		}, ErrClosedCriticalStream},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := ts.dial(t)
			rc.control()
			c.send(rc)
			if c.want == 0 {
				if strings.HasPrefix(c.name, "encoder") {
					rc.wantConnErrorReason(ErrQPACKEncoderStreamError, "0x3f")
				} else {
					rc.wantConnErrorReason(ErrQPACKDecoderStreamError, "Section Acknowledgment")
				}
				return
			}
			rc.wantConnError(c.want)
		})
	}
}

// A unidirectional stream that never says its type is refused after
// ReadHeaderTimeout (STOP_SENDING H3_STREAM_CREATION_ERROR) instead of
// holding a goroutine and a buffer until the connection ends.
func TestSilentUniStream(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler(), ReadHeaderTimeout: 200 * time.Millisecond})
	rc := ts.dial(t)
	rc.control()
	s, err := rc.qc.OpenUniStream()
	if err != nil {
		t.Fatal(err)
	}
	s.Write([]byte{0x40}) // the first byte of a two-byte type, and no more
	if !waitFor(5*time.Second, func() bool {
		_, err := s.Write(nil)
		var se *quic.StreamError
		return errors.As(err, &se) && ErrCode(se.ErrorCode) == ErrStreamCreationError
	}) {
		t.Fatal("a stream that never sent its type was not refused")
	}
	rc.wantOpen()
}

// A client that lets the server open no unidirectional stream is still
// served while the server waits to open its control stream, and then
// closed with H3_GENERAL_PROTOCOL_ERROR (an HTTP/3 server must send
// SETTINGS), not H3_INTERNAL_ERROR, which would blame the server.
func TestClientAllowsNoUniStreams(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler(), ReadHeaderTimeout: 500 * time.Millisecond})
	rc := ts.dialQUIC(t, &quic.Config{MaxIdleTimeout: 30 * time.Second, MaxIncomingUniStreams: -1})
	rc.wantOpen()
	rc.wantConnError(ErrGeneralProtocolError)
}

// An unknown unidirectional stream type (here a reserved one) is refused
// with STOP_SENDING H3_STREAM_CREATION_ERROR; the connection serves on.
func TestUnknownUniStream(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler()})
	rc := ts.dial(t)
	rc.control()
	s := rc.uni(0x1f*5+0x21, []byte("hello"))
	if !waitFor(2*time.Second, func() bool {
		_, err := s.Write([]byte("more"))
		var se *quic.StreamError
		return errors.As(err, &se) && ErrCode(se.ErrorCode) == ErrStreamCreationError
	}) {
		t.Fatal("unknown stream type not refused with H3_STREAM_CREATION_ERROR")
	}
	rc.wantOpen()
}

// Frames that do not belong on a request stream are connection errors
// H3_FRAME_UNEXPECTED; the handler never runs.
func TestRequestStreamUnexpectedFrames(t *testing.T) {
	var calls atomic.Int32
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		readAll(r)
	})})
	for _, c := range []struct {
		name   string
		frames [][]byte
	}{
		{"DATA before HEADERS", [][]byte{frame(frameData, []byte("x")), frame(frameHeaders, get("/"))}},
		{"SETTINGS", [][]byte{frame(frameSettings, nil)}},
		{"GOAWAY", [][]byte{frame(frameGoAway, varints(0))}},
		{"MAX_PUSH_ID", [][]byte{frame(frameMaxPushID, varints(1))}},
		{"CANCEL_PUSH", [][]byte{frame(frameCancelPush, varints(1))}},
		{"PUSH_PROMISE", [][]byte{frame(framePushPromise, varints(1))}},
		{"PRIORITY_UPDATE", [][]byte{frame(framePriorityUpdate, varints(0))}},
		{"HTTP/2 PRIORITY", [][]byte{frame(0x2, []byte{0}), frame(frameHeaders, get("/"))}},
		{"HTTP/2 CONTINUATION", [][]byte{frame(0x9, nil)}},
		{"SETTINGS in the body", [][]byte{frame(frameHeaders, get("/", "content-length", "1")), frame(frameSettings, nil), frame(frameData, []byte("x"))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := ts.dial(t)
			rc.control()
			rc.request(false, c.frames...)
			rc.wantConnError(ErrFrameUnexpected)
		})
	}
	// Only "SETTINGS in the body" reaches the handler, whose body read
	// meets the SETTINGS frame.
	if n := calls.Load(); n != 1 {
		t.Fatalf("handler ran %d times for bad requests, want exactly 1", n)
	}
}

// Unknown and reserved frame types are skipped anywhere on a request
// stream.
func TestRequestStreamUnknownFrames(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := readAll(r)
		if err != nil {
			t.Errorf("body: %v", err)
		}
		w.Write(b)
	})})
	rc := ts.dial(t)
	rc.control()
	s := rc.request(true,
		frame(0x21, []byte("before")),
		frame(frameHeaders, fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")),
		frame(0x1f*9+0x21, []byte("between")),
		frame(frameData, []byte("hel")),
		frame(0x7777, nil),
		frame(frameData, []byte("lo")),
		frame(0x21, []byte("after")),
	)
	r := mustResponse(t, s)
	if r.status != 200 || string(r.body) != "hello" {
		t.Fatalf("status %d body %q, want 200 hello", r.status, r.body)
	}
}

func readAll(r *http.Request) ([]byte, error) {
	var b bytes.Buffer
	_, err := b.ReadFrom(r.Body)
	return b.Bytes(), err
}

func TestRequestStreamEnds(t *testing.T) {
	var calls atomic.Int32
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/still-open" {
			calls.Add(1)
		}
	})})
	t.Run("FIN before any frame", func(t *testing.T) {
		rc := ts.dial(t)
		wantStreamError(t, rc.request(true), ErrRequestIncomplete)
		rc.wantOpen()
	})
	t.Run("FIN inside HEADERS", func(t *testing.T) {
		rc := ts.dial(t)
		rc.request(true, frame(frameHeaders, get("/"))[:5])
		rc.wantConnError(ErrFrameError)
	})
	t.Run("FIN inside a frame header", func(t *testing.T) {
		rc := ts.dial(t)
		rc.request(true, []byte{0x40})
		rc.wantConnError(ErrFrameError)
	})
	t.Run("FIN inside an unknown frame", func(t *testing.T) {
		rc := ts.dial(t)
		rc.request(true, frame(0x21, []byte("12345"))[:4])
		rc.wantConnError(ErrFrameError)
	})
	t.Run("client resets before HEADERS", func(t *testing.T) {
		rc := ts.dial(t)
		s := rc.request(false, []byte{0x01})
		s.CancelWrite(0x10c)
		rc.wantOpen()
	})
	if n := calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times", n)
	}
}

func TestReadHeaderTimeout(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler(), ReadHeaderTimeout: 200 * time.Millisecond})
	rc := ts.dial(t)
	s := rc.request(false, []byte{0x01, 0x10}) // a HEADERS frame that never comes
	t0 := time.Now()
	wantStreamError(t, s, ErrRequestIncomplete)
	if d := time.Since(t0); d > 3*time.Second {
		t.Fatalf("stream reset after %v with a 200ms ReadHeaderTimeout", d)
	}
	rc.wantOpen()
}

// Malformed requests (RFC 9114 §4.1.2) are reset with H3_MESSAGE_ERROR and
// never reach the handler.
func TestMalformedRequests(t *testing.T) {
	var calls atomic.Int32
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		readAll(r)
	})})
	base := []string{":method", "GET", ":scheme", "https", ":authority", "localhost", ":path", "/"}
	with := func(kv ...string) []string { return append(append([]string{}, base...), kv...) }
	without := func(name string) []string {
		var out []string
		for i := 0; i < len(base); i += 2 {
			if base[i] != name {
				out = append(out, base[i], base[i+1])
			}
		}
		return out
	}
	for _, c := range []struct {
		name   string
		fields []string
		body   [][]byte
	}{
		{"no :method", without(":method"), nil},
		{"no :scheme", without(":scheme"), nil},
		{"no :path", without(":path"), nil},
		{"no :authority nor host", without(":authority"), nil},
		{"empty :path", []string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", ""}, nil},
		{"relative :path", []string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", "x/y"}, nil},
		{"* :path with GET", []string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", "*"}, nil},
		{"method not a token", []string{":method", "G T", ":scheme", "https", ":authority", "a", ":path", "/"}, nil},
		{"duplicate :path", with(":path", "/x"), nil},
		{"duplicate :method", []string{":method", "GET", ":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/"}, nil},
		{"pseudo after regular", []string{":method", "GET", "accept", "*/*", ":scheme", "https", ":authority", "a", ":path", "/"}, nil},
		{":status in a request", with(":status", "200"), nil},
		{"unknown pseudo-header", []string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/", ":foo", "x"}, nil},
		{":protocol without extended CONNECT", []string{":method", "CONNECT", ":protocol", "websocket", ":scheme", "https", ":authority", "a", ":path", "/"}, nil},
		{"upper-case field name", with("X-Upper", "1"), nil},
		{"field name not a token", with("a b", "1"), nil},
		{"value with a newline", with("x-a", "1\r\nx-b: 2"), nil},
		{"value with NUL", with("x-a", "1\x002"), nil},
		{"connection", with("connection", "keep-alive"), nil},
		{"transfer-encoding", with("transfer-encoding", "chunked"), nil},
		{"upgrade", with("upgrade", "h2c"), nil},
		{"keep-alive", with("keep-alive", "5"), nil},
		{"proxy-connection", with("proxy-connection", "close"), nil},
		{"te other than trailers", with("te", "gzip"), nil},
		{"host differs from :authority", with("host", "other"), nil},
		{"two hosts", []string{":method", "GET", ":scheme", "https", ":path", "/", "host", "a", "host", "a"}, nil},
		{"userinfo in :authority", []string{":method", "GET", ":scheme", "https", ":authority", "u@a", ":path", "/"}, nil},
		{"space in :authority", []string{":method", "GET", ":scheme", "https", ":authority", "a b", ":path", "/"}, nil},
		{"path in :authority", []string{":method", "GET", ":scheme", "https", ":authority", "evil.example/x?y", ":path", "/"}, nil},
		{"tab in :authority", []string{":method", "GET", ":scheme", "https", ":authority", "x\ty", ":path", "/"}, nil},
		{"non-ASCII :authority", []string{":method", "GET", ":scheme", "https", ":authority", "h\x80st", ":path", "/"}, nil},
		{"port out of range", []string{":method", "GET", ":scheme", "https", ":authority", "host:99999999", ":path", "/"}, nil},
		{"IPv6 without brackets", []string{":method", "GET", ":scheme", "https", ":authority", "::1", ":path", "/"}, nil},
		{"bad host header", []string{":method", "GET", ":scheme", "https", ":path", "/", "host", "a/b"}, nil},
		{"gopher :scheme", []string{":method", "GET", ":scheme", "gopher", ":authority", "a", ":path", "/"}, nil},
		{"CONNECT without a port", []string{":method", "CONNECT", ":authority", "example.test"}, nil},
		{"CONNECT to a bad authority", []string{":method", "CONNECT", ":authority", "a b:443"}, nil},
		{"content-length not a number", with("content-length", "x"), nil},
		{"content-length negative", with("content-length", "-1"), nil},
		{"content-lengths differ", with("content-length", "1", "content-length", "2"), [][]byte{frame(frameData, []byte("x"))}},
		{"content-length without a body", with("content-length", "3"), nil},
		{"content-length larger than the body", with("content-length", "3"), [][]byte{frame(frameData, []byte("x"))}},
		{"content-length smaller than the body", with("content-length", "1"), [][]byte{frame(frameData, []byte("xyz"))}},
		{"CONNECT with :path", []string{":method", "CONNECT", ":authority", "a:443", ":path", "/"}, nil},
		{"CONNECT without :authority", []string{":method", "CONNECT"}, nil},
		{"path with a control character", []string{":method", "GET", ":scheme", "https", ":authority", "a", ":path", "/a\tb"}, nil},
		{"pseudo-header in trailers", with(), [][]byte{frame(frameData, []byte("x")), frame(frameHeaders, fields(":path", "/"))}},
		{"forbidden trailer", with(), [][]byte{frame(frameData, []byte("x")), frame(frameHeaders, fields("content-length", "1"))}},
		{"connection-specific trailer", with(), [][]byte{frame(frameHeaders, fields("connection", "close"))}},
	} {
		t.Run(c.name, func(t *testing.T) {
			before := calls.Load()
			rc := ts.dial(t)
			frames := append([][]byte{frame(frameHeaders, fields(c.fields...))}, c.body...)
			s := rc.request(true, frames...)
			wantStreamError(t, s, ErrMessageError)
			rc.wantOpen()
			// A body that breaks the rules is found while the handler
			// reads it; everything else is refused before the handler.
			inBody := c.body != nil || c.name == "content-length without a body"
			if got := calls.Load() - before; !inBody && got != 1 { // 1: wantOpen's request
				t.Fatalf("handler ran for a malformed request")
			}
		})
	}
}

// QPACK references to a dynamic table that has capacity zero, or garbage,
// cannot be decoded: connection error QPACK_DECOMPRESSION_FAILED.
func TestQPACKDecompressionFailed(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler()})
	for _, c := range []struct {
		name  string
		block []byte
	}{
		{"required insert count", []byte{0x01, 0x00, 0xd1}},
		{"dynamic table reference", []byte{0x00, 0x00, 0x80}},
		{"post-base reference", []byte{0x00, 0x00, 0x10}},
		{"static index out of range", []byte{0x00, 0x00, 0xff, 0x7f}},
		{"truncated literal", []byte{0x00, 0x00, 0x51, 0x85, 'a'}},
		{"bad Huffman", []byte{0x00, 0x00, 0x51, 0x81, 0xff}},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := ts.dial(t)
			rc.request(true, frame(frameHeaders, c.block))
			rc.wantConnError(ErrQPACKDecompressionFailed)
		})
	}
}

// MAX_FIELD_SECTION_SIZE holds for the decoded header section (a small
// block of static-table references expands a lot: CVE-2025-64702,
// CVE-2026-40898): 431, and the handler never runs. Over-large trailers
// reset the stream.
func TestFieldSectionLimits(t *testing.T) {
	var calls atomic.Int32
	var bodyErr atomic.Value
	ts := startServer(t, Config{MaxFieldSectionSize: 4 << 10, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		calls.Add(1)
		if _, err := readAll(r); err != nil {
			bodyErr.Store(err)
		}
	})})
	rc := ts.dial(t)

	// A frame longer than the limit: refused before reading it.
	big := frame(frameHeaders, get("/", "x-big", strings.Repeat("a", 5000)))
	r := mustResponse(t, rc.request(true, big))
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("5 KB header block: status %d, want 431", r.status)
	}

	// 200 bytes that decode to more than 4 KiB: each 0xdd is the static
	// entry "accept: */*" (6 + 3 + 32 bytes once decoded).
	block := append(get("/"), bytes.Repeat([]byte{0xc0 | 29}, 200)...)
	if len(block) > 4<<10 {
		t.Fatal("test block too large")
	}
	r = mustResponse(t, rc.request(true, frame(frameHeaders, block)))
	if r.status != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("expanding header block: status %d, want 431", r.status)
	}
	if n := calls.Load(); n != 0 {
		t.Fatalf("handler ran %d times for over-large headers", n)
	}

	// Trailers: the same limit, decoded.
	post := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")
	trailers := append([]byte{0, 0}, bytes.Repeat([]byte{0xc0 | 29}, 200)...)
	s := rc.request(true, frame(frameHeaders, post), frame(frameData, []byte("x")), frame(frameHeaders, trailers))
	wantStreamError(t, s, ErrExcessiveLoad)
	if !waitFor(2*time.Second, func() bool { return bodyErr.Load() != nil }) {
		t.Fatal("the handler's body read did not fail on over-large trailers")
	}
	// A trailer frame longer than the limit.
	s = rc.request(true, frame(frameHeaders, post), frame(frameHeaders, append([]byte{0, 0}, fields("x-big", strings.Repeat("b", 5000))[2:]...)))
	wantStreamError(t, s, ErrExcessiveLoad)
	rc.wantOpen()
}

// DATA or HEADERS after the trailers are connection errors.
func TestFramesAfterTrailers(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { readAll(r) })})
	post := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")
	for _, c := range []struct {
		name string
		last []byte
	}{
		{"DATA", frame(frameData, []byte("late"))},
		{"HEADERS", frame(frameHeaders, fields("x-more", "1"))},
	} {
		t.Run(c.name, func(t *testing.T) {
			rc := ts.dial(t)
			rc.request(true, frame(frameHeaders, post), frame(frameData, []byte("x")), frame(frameHeaders, fields("x-t", "1")), c.last)
			rc.wantConnError(ErrFrameUnexpected)
		})
	}
}

// An unknown frame type on the control stream is skipped: the connection
// serves on, and reads on (a second SETTINGS after it is what closes it).
func TestUnknownFramesDoNotCloseTheConnection(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler()})
	rc := ts.dial(t)
	ctrl := rc.uni(streamControl, frame(frameSettings, nil), frame(0x21, nil))
	rc.wantOpen()
	ctrl.Write(frame(frameSettings, nil))
	rc.wantConnErrorReason(ErrFrameUnexpected, "a second SETTINGS frame")
}
