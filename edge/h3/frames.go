package h3

import (
	"errors"
	"io"

	"github.com/quic-go/quic-go/quicvarint"
)

// Frame types (RFC 9114 §7.2, RFC 9218 §7).
const (
	frameData           = 0x0
	frameHeaders        = 0x1
	frameCancelPush     = 0x3
	frameSettings       = 0x4
	framePushPromise    = 0x5
	frameGoAway         = 0x7
	frameMaxPushID      = 0xd
	framePriorityUpdate = 0xf0700 // for a request stream
	framePriorityPush   = 0xf0701 // for a push stream
)

// http2Frame reports the frame types HTTP/2 has and HTTP/3 reserved
// (PRIORITY, PING, WINDOW_UPDATE, CONTINUATION): receiving one is a
// connection error H3_FRAME_UNEXPECTED (RFC 9114 §7.2.8).
func http2Frame(t uint64) bool { return t == 0x2 || t == 0x6 || t == 0x8 || t == 0x9 }

// Unidirectional stream types (RFC 9114 §6.2, RFC 9204 §4.2).
const (
	streamControl      = 0x00
	streamPush         = 0x01
	streamQPACKEncoder = 0x02
	streamQPACKDecoder = 0x03
)

// Settings identifiers (RFC 9114 §7.2.4.1, RFC 9204 §5).
const (
	settingQPACKMaxTableCapacity = 0x01
	settingMaxFieldSectionSize   = 0x06
	settingQPACKBlockedStreams   = 0x07
	settingEnableConnectProtocol = 0x08 // RFC 9220
	settingH3Datagram            = 0x33 // RFC 9297
)

// http2Setting reports the settings identifiers HTTP/2 has and HTTP/3
// reserved: receiving one is a connection error H3_SETTINGS_ERROR.
func http2Setting(id uint64) bool { return id == 0x0 || (id >= 0x2 && id <= 0x5) }

// errTruncated is a stream that ended inside a frame or a varint.
var errTruncated = errors.New("stream ended inside a frame")

// errBeyondBuffer is a read of more contiguous bytes than the buffer
// holds: a bug of the caller, which must use readFull or discard instead.
var errBeyondBuffer = errors.New("h3: contiguous read larger than the stream buffer")

// streamReader reads a QUIC stream through one buffer: frame headers,
// header blocks and small bodies come out of it without a call into
// quic-go (and its locks) per byte or per field.
type streamReader struct {
	src  io.Reader
	buf  []byte
	r, w int
	err  error // the source's error once seen (io.EOF after the FIN)
}

func (s *streamReader) reset(src io.Reader, buf []byte) {
	s.src, s.buf, s.r, s.w, s.err = src, buf, 0, 0, nil
}

func (s *streamReader) buffered() int { return s.w - s.r }

// atEOF reports whether the stream ended and everything was consumed.
func (s *streamReader) atEOF() bool { return s.r == s.w && s.err == io.EOF }

// fill reads once more from the source, after moving what is buffered to
// the buffer's start. It returns the source's error when nothing more can
// come.
func (s *streamReader) fill() error {
	if s.err != nil {
		return s.err
	}
	if s.r > 0 {
		s.w = copy(s.buf, s.buf[s.r:s.w])
		s.r = 0
	}
	for s.w < len(s.buf) {
		n, err := s.src.Read(s.buf[s.w:])
		s.w += n
		if err != nil {
			s.err = err
			if n > 0 {
				return nil
			}
			return err
		}
		if n > 0 {
			return nil
		}
	}
	return nil
}

// ensure makes n bytes (n <= len(buf)) available; a stream that ends
// first gives errTruncated, unless nothing at all was buffered and it
// ended cleanly, which gives io.EOF.
func (s *streamReader) ensure(n int) error {
	if n > len(s.buf) {
		return errBeyondBuffer
	}
	for s.w-s.r < n {
		if err := s.fill(); err != nil {
			if err == io.EOF && s.w-s.r > 0 {
				return errTruncated
			}
			return err
		}
	}
	return nil
}

// varint reads a QUIC variable-length integer.
func (s *streamReader) varint() (uint64, error) {
	if err := s.ensure(1); err != nil {
		return 0, err
	}
	l := 1 << (s.buf[s.r] >> 6)
	if err := s.ensure(l); err != nil {
		if err == io.EOF {
			err = errTruncated
		}
		return 0, err
	}
	v, n, err := quicvarint.Parse(s.buf[s.r : s.r+l])
	if err != nil {
		return 0, errTruncated
	}
	s.r += n
	return v, nil
}

// frameHeader reads a frame's type and length. A stream that ends cleanly
// before the frame gives io.EOF; one that ends inside the header gives
// errTruncated.
func (s *streamReader) frameHeader() (typ, length uint64, err error) {
	if typ, err = s.varint(); err != nil {
		return 0, 0, err
	}
	if length, err = s.varint(); err != nil {
		if err == io.EOF {
			err = errTruncated
		}
		return 0, 0, err
	}
	return typ, length, nil
}

// next returns the next n bytes (n <= len(buf)), consumed; they stay valid
// until the next read.
func (s *streamReader) next(n int) ([]byte, error) {
	if err := s.ensure(n); err != nil {
		if err == io.EOF {
			err = errTruncated
		}
		return nil, err
	}
	b := s.buf[s.r : s.r+n]
	s.r += n
	return b, nil
}

// readFull fills p, from the buffer first and then straight from the
// source.
func (s *streamReader) readFull(p []byte) error {
	n := copy(p, s.buf[s.r:s.w])
	s.r += n
	for n < len(p) {
		if s.err != nil {
			if s.err == io.EOF {
				return errTruncated
			}
			return s.err
		}
		m, err := s.src.Read(p[n:])
		n += m
		if err != nil {
			s.err = err
		}
	}
	return nil
}

// discard skips n bytes (an unknown frame's payload) without keeping them.
func (s *streamReader) discard(n uint64) error {
	for n > 0 {
		if s.r == s.w {
			if err := s.fill(); err != nil {
				if err == io.EOF {
					err = errTruncated
				}
				return err
			}
		}
		k := min(uint64(s.w-s.r), n)
		s.r += int(k)
		n -= k
	}
	return nil
}

// read reads up to len(p) bytes: from the buffer if it holds any, else
// straight from the source when p is at least as large as the buffer,
// else through the buffer. It returns the source's error (io.EOF at the
// stream's end) only when it has no bytes to give.
func (s *streamReader) read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.r == s.w {
		if s.err != nil {
			return 0, s.err
		}
		if len(p) >= len(s.buf) {
			n, err := s.src.Read(p)
			if err != nil {
				s.err = err
			}
			if n > 0 {
				return n, nil
			}
			return 0, err
		}
		if err := s.fill(); err != nil {
			return 0, err
		}
	}
	n := copy(p, s.buf[s.r:s.w])
	s.r += n
	return n, nil
}

// appendFrameHeader appends a frame's type and length.
func appendFrameHeader(b []byte, typ, length uint64) []byte {
	b = quicvarint.Append(b, typ)
	return quicvarint.Append(b, length)
}
