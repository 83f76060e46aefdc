package h2

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/url"
	"testing"
	"testing/iotest"

	"golang.org/x/net/http2"
)

// The frame reader finds every frame whatever the chunks the connection
// delivers them in, and hands out payloads that are exactly the frames'.
func TestFrameReaderChunks(t *testing.T) {
	var stream bytes.Buffer
	fr := http2.NewFramer(&stream, nil)
	fr.WriteHeaders(http2.HeadersFrameParam{StreamID: 1, BlockFragment: []byte("abc"), EndHeaders: true})
	fr.WriteRSTStream(1, http2.ErrCodeProtocol)
	fr.WriteData(3, true, bytes.Repeat([]byte("d"), 16384))
	fr.WritePing(false, [8]byte{1, 2, 3, 4, 5, 6, 7, 8})
	fr.WriteData(5, false, nil)
	want := []struct {
		typ    byte
		stream uint32
		n      int
	}{{frameHeaders, 1, 3}, {frameRSTStream, 1, 4}, {frameData, 3, 16384}, {framePing, 0, 8}, {frameData, 5, 0}}
	for _, r := range []struct {
		name string
		rd   io.Reader
	}{{"whole", bytes.NewReader(stream.Bytes())}, {"one byte at a time", iotest.OneByteReader(bytes.NewReader(stream.Bytes()))}, {"half", iotest.HalfReader(bytes.NewReader(stream.Bytes()))}} {
		t.Run(r.name, func(t *testing.T) {
			f := newFrameReader(bufio.NewReaderSize(r.rd, readBufSize), minMaxFrameSize)
			for i, w := range want {
				fh, p, err := f.next()
				if err != nil {
					t.Fatalf("frame %d: %v", i, err)
				}
				if fh.Type != w.typ || fh.StreamID != w.stream || len(p) != w.n || int(fh.Length) != w.n {
					t.Fatalf("frame %d: %+v with %d octets, want %+v", i, fh, len(p), w)
				}
			}
			if _, _, err := f.next(); err != io.EOF {
				t.Fatalf("after the last frame: %v, want EOF", err)
			}
		})
	}
}

func TestFrameReaderErrors(t *testing.T) {
	big := appendFrameHeader(nil, minMaxFrameSize+1, frameData, 0, 1)
	f := newFrameReader(bufio.NewReaderSize(bytes.NewReader(big), readBufSize), minMaxFrameSize)
	if fh, _, err := f.next(); err != errFrameTooLarge || fh.Length != minMaxFrameSize+1 {
		t.Fatalf("oversized frame: %+v %v", fh, err)
	}
	short := append(appendFrameHeader(nil, 10, frameData, 0, 1), "abc"...)
	f = newFrameReader(bufio.NewReaderSize(bytes.NewReader(short), readBufSize), minMaxFrameSize)
	if _, _, err := f.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated payload: %v", err)
	}
	f = newFrameReader(bufio.NewReaderSize(bytes.NewReader(short[:5]), readBufSize), minMaxFrameSize)
	if _, _, err := f.next(); !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("truncated header: %v", err)
	}
	// The reserved bit of the stream id is ignored (RFC 9113 §4.1).
	hdr := appendFrameHeader(nil, 0, framePing, 0, 1<<31|7)
	if fh := parseFrameHeader(hdr); fh.StreamID != 7 {
		t.Fatalf("reserved bit kept: stream %d", fh.StreamID)
	}
}

// What we write, x/net's Framer reads back as the frames we meant.
func TestFrameWritersRoundTrip(t *testing.T) {
	var b []byte
	b = appendSettings(b, setting{settingMaxConcurrentStreams, 100}, setting{settingInitialWindowSize, 1 << 16})
	b = appendSettingsAck(b)
	b = appendPingAck(b, []byte("12345678"))
	b = appendWindowUpdate(b, 3, 4096)
	b = appendRSTStream(b, 5, ErrCodeCancel)
	b = appendGoAway(b, 7, ErrCodeEnhanceYourCalm, "calm")
	b = appendData(b, 9, []byte("body"), true)
	block := bytes.Repeat([]byte{0x82}, 40000) // ":method: GET" 40000 times
	b = appendHeaderBlock(b, 11, block, true, minMaxFrameSize)
	fr := http2.NewFramer(nil, bytes.NewReader(b))
	var got []string
	var frag []byte
	for {
		f, err := fr.ReadFrame()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatalf("after %v: %v", got, err)
		}
		h := f.Header()
		got = append(got, h.Type.String())
		switch f := f.(type) {
		case *http2.SettingsFrame:
			if !f.IsAck() {
				if v, _ := f.Value(http2.SettingMaxConcurrentStreams); v != 100 {
					t.Errorf("MAX_CONCURRENT_STREAMS %d", v)
				}
			}
		case *http2.PingFrame:
			if !f.IsAck() || string(f.Data[:]) != "12345678" {
				t.Errorf("PING %+v", f)
			}
		case *http2.WindowUpdateFrame:
			if f.StreamID != 3 || f.Increment != 4096 {
				t.Errorf("WINDOW_UPDATE %+v", f)
			}
		case *http2.RSTStreamFrame:
			if f.StreamID != 5 || f.ErrCode != http2.ErrCodeCancel {
				t.Errorf("RST_STREAM %+v", f)
			}
		case *http2.GoAwayFrame:
			if f.LastStreamID != 7 || f.ErrCode != http2.ErrCodeEnhanceYourCalm || string(f.DebugData()) != "calm" {
				t.Errorf("GOAWAY %+v", f)
			}
		case *http2.DataFrame:
			if f.StreamID != 9 || string(f.Data()) != "body" || !f.StreamEnded() {
				t.Errorf("DATA %+v", f)
			}
		case *http2.HeadersFrame:
			if f.StreamID != 11 || !f.StreamEnded() || f.HeadersEnded() {
				t.Errorf("HEADERS %+v", f)
			}
			frag = append(frag, f.HeaderBlockFragment()...)
		case *http2.ContinuationFrame:
			frag = append(frag, f.HeaderBlockFragment()...)
			if int(f.Length) > minMaxFrameSize {
				t.Errorf("CONTINUATION of %d octets", f.Length)
			}
		}
	}
	want := "SETTINGS SETTINGS PING WINDOW_UPDATE RST_STREAM GOAWAY DATA HEADERS CONTINUATION CONTINUATION"
	if s := join(got); s != want {
		t.Fatalf("frames %s\nwant   %s", s, want)
	}
	if !bytes.Equal(frag, block) {
		t.Fatalf("header block of %d octets came back as %d", len(block), len(frag))
	}
}

func join(s []string) string {
	var b bytes.Buffer
	for i, x := range s {
		if i > 0 {
			b.WriteByte(' ')
		}
		b.WriteString(x)
	}
	return b.String()
}

func TestStripPadding(t *testing.T) {
	for _, c := range []struct {
		flags byte
		in    string
		data  string
		pad   int
		ok    bool
	}{
		{0, "abc", "abc", 0, true},
		{flagPadded, "\x02abcxx", "abc", 3, true},
		{flagPadded, "\x00abc", "abc", 1, true},
		{flagPadded, "\x03ab", "", 0, false}, // padding longer than what follows
		{flagPadded, "\x02ab", "", 3, true},  // all padding
		{flagPadded, "", "", 0, false},       // no pad length
	} {
		d, pad, err := stripPadding(frameHeader{Flags: c.flags}, []byte(c.in))
		if (err == nil) != c.ok || c.ok && (string(d) != c.data || pad != c.pad) {
			t.Errorf("%q flags %x: %q %d %v", c.in, c.flags, d, pad, err)
		}
		if err != nil {
			var ce connError
			if !errors.As(err, &ce) || ce.Code != ErrCodeProtocol {
				t.Errorf("%q: %v, want a PROTOCOL_ERROR connection error", c.in, err)
			}
		}
	}
}

// The fast path fills the URL exactly as url.ParseRequestURI does, and
// leaves everything it does not cover to it.
func TestParseRequestPath(t *testing.T) {
	for _, p := range []string{
		"/", "/a/b", "/a/b?x=1&y=2", "/a?", "/a??", "/a?b?c", "/a;b=c/d", "//double", "/~user/x.y-z_w",
		"/q?a=%zz", "/q?a b", "/%41", "/a b", "/a#frag", "/é", "*", "a/b", "/a\x7f", "/\"x\"", "/a?b#c",
		"/!$&'()*+,;=:@", "/$&+,;=:@", "/a/../b", "/a/./b",
	} {
		var u url.URL
		fast := parseRequestPath(p, &u)
		want, err := url.ParseRequestURI(p)
		if !fast {
			continue
		}
		if err != nil {
			t.Errorf("%q: fast path accepted what url rejects: %v", p, err)
			continue
		}
		if u != *want {
			t.Errorf("%q: fast path %#v, url %#v", p, u, *want)
		}
	}
	for _, p := range []string{"/a b", "/%41", "/é", "*", "a/b", "/\"x\""} {
		var u url.URL
		if parseRequestPath(p, &u) {
			t.Errorf("%q took the fast path", p)
		}
	}
}
