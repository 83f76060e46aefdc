package h2

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
)

// Frame types (RFC 9113 §6).
const (
	frameData         byte = 0x0
	frameHeaders      byte = 0x1
	framePriority     byte = 0x2
	frameRSTStream    byte = 0x3
	frameSettings     byte = 0x4
	framePushPromise  byte = 0x5
	framePing         byte = 0x6
	frameGoAway       byte = 0x7
	frameWindowUpdate byte = 0x8
	frameContinuation byte = 0x9
)

// Frame flags.
const (
	flagEndStream  byte = 0x1
	flagAck        byte = 0x1 // SETTINGS, PING
	flagEndHeaders byte = 0x4
	flagPadded     byte = 0x8
	flagPriority   byte = 0x20
)

// Settings (RFC 9113 §6.5.2, RFC 8441, RFC 9218).
const (
	settingHeaderTableSize       uint16 = 0x1
	settingEnablePush            uint16 = 0x2
	settingMaxConcurrentStreams  uint16 = 0x3
	settingInitialWindowSize     uint16 = 0x4
	settingMaxFrameSize          uint16 = 0x5
	settingMaxHeaderListSize     uint16 = 0x6
	settingEnableConnectProtocol uint16 = 0x8
	settingNoRFC7540Priorities   uint16 = 0x9
)

// Protocol constants.
const (
	frameHeaderLen   = 9
	minMaxFrameSize  = 1 << 14   // the protocol's initial and smallest SETTINGS_MAX_FRAME_SIZE
	maxMaxFrameSize  = 1<<24 - 1 // the largest a peer may announce
	maxWindow        = 1<<31 - 1 // the largest flow-control window
	initialWindow    = 65535     // every window before SETTINGS say otherwise
	hpackTableSize   = 4096      // the dynamic table size both sides start with; we never allow more
	clientPrefaceLen = len(clientPreface)
)

const clientPreface = "PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

// ErrCode is an HTTP/2 error code (RFC 9113 §7).
type ErrCode uint32

// The error codes.
const (
	ErrCodeNo                 ErrCode = 0x0
	ErrCodeProtocol           ErrCode = 0x1
	ErrCodeInternal           ErrCode = 0x2
	ErrCodeFlowControl        ErrCode = 0x3
	ErrCodeSettingsTimeout    ErrCode = 0x4
	ErrCodeStreamClosed       ErrCode = 0x5
	ErrCodeFrameSize          ErrCode = 0x6
	ErrCodeRefusedStream      ErrCode = 0x7
	ErrCodeCancel             ErrCode = 0x8
	ErrCodeCompression        ErrCode = 0x9
	ErrCodeConnect            ErrCode = 0xa
	ErrCodeEnhanceYourCalm    ErrCode = 0xb
	ErrCodeInadequateSecurity ErrCode = 0xc
	ErrCodeHTTP11Required     ErrCode = 0xd
)

var errCodeNames = [...]string{
	"NO_ERROR", "PROTOCOL_ERROR", "INTERNAL_ERROR", "FLOW_CONTROL_ERROR", "SETTINGS_TIMEOUT",
	"STREAM_CLOSED", "FRAME_SIZE_ERROR", "REFUSED_STREAM", "CANCEL", "COMPRESSION_ERROR",
	"CONNECT_ERROR", "ENHANCE_YOUR_CALM", "INADEQUATE_SECURITY", "HTTP_1_1_REQUIRED",
}

func (e ErrCode) String() string {
	if int(e) < len(errCodeNames) {
		return errCodeNames[e]
	}
	return fmt.Sprintf("unknown error code 0x%x", uint32(e))
}

// connError ends the whole connection with GOAWAY and Code.
type connError struct {
	Code   ErrCode
	Reason string
}

func (e connError) Error() string {
	return "http2: connection error " + e.Code.String() + ": " + e.Reason
}

// streamError resets one stream with RST_STREAM and Code.
type streamError struct {
	Stream uint32
	Code   ErrCode
	Reason string
}

func (e streamError) Error() string {
	return fmt.Sprintf("http2: stream %d error %v: %s", e.Stream, e.Code, e.Reason)
}

// frameHeader is the fixed 9-octet header every frame starts with.
type frameHeader struct {
	Length   uint32
	Type     byte
	Flags    byte
	StreamID uint32 // the reserved bit cleared
}

func parseFrameHeader(b []byte) frameHeader {
	return frameHeader{
		Length:   uint32(b[0])<<16 | uint32(b[1])<<8 | uint32(b[2]),
		Type:     b[3],
		Flags:    b[4],
		StreamID: binary.BigEndian.Uint32(b[5:9]) & (1<<31 - 1),
	}
}

// frameReader reads frames from a bufio.Reader without copying: a frame's
// payload is a slice of the reader's buffer, valid until the next call.
// The reader's buffer must hold the largest frame accepted (frameHeaderLen
// plus maxFrame).
type frameReader struct {
	br       *bufio.Reader
	maxFrame uint32 // the SETTINGS_MAX_FRAME_SIZE we announced
	pending  int    // bytes of the previous frame still to discard
}

// errFrameTooLarge is returned, with the header, for a frame longer than
// the announced SETTINGS_MAX_FRAME_SIZE; its payload is not read.
var errFrameTooLarge = errors.New("frame larger than SETTINGS_MAX_FRAME_SIZE")

func newFrameReader(br *bufio.Reader, maxFrame uint32) *frameReader {
	return &frameReader{br: br, maxFrame: maxFrame}
}

// next returns the next frame's header and payload.
func (fr *frameReader) next() (frameHeader, []byte, error) {
	if fr.pending > 0 {
		if _, err := fr.br.Discard(fr.pending); err != nil {
			return frameHeader{}, nil, err
		}
		fr.pending = 0
	}
	hb, err := fr.br.Peek(frameHeaderLen)
	if err != nil {
		if err == io.EOF && len(hb) > 0 {
			err = io.ErrUnexpectedEOF
		}
		return frameHeader{}, nil, err
	}
	fh := parseFrameHeader(hb)
	if fh.Length > fr.maxFrame {
		return fh, nil, errFrameTooLarge
	}
	full, err := fr.br.Peek(frameHeaderLen + int(fh.Length))
	if err != nil {
		if err == io.EOF {
			err = io.ErrUnexpectedEOF
		}
		return fh, nil, err
	}
	fr.pending = len(full)
	return fh, full[frameHeaderLen:], nil
}

// appendFrameHeader appends a frame header for a payload of length bytes.
func appendFrameHeader(b []byte, length int, typ, flags byte, stream uint32) []byte {
	return append(b, byte(length>>16), byte(length>>8), byte(length), typ, flags,
		byte(stream>>24), byte(stream>>16), byte(stream>>8), byte(stream))
}

func appendUint32(b []byte, v uint32) []byte {
	return append(b, byte(v>>24), byte(v>>16), byte(v>>8), byte(v))
}

func appendRSTStream(b []byte, stream uint32, code ErrCode) []byte {
	b = appendFrameHeader(b, 4, frameRSTStream, 0, stream)
	return appendUint32(b, uint32(code))
}

func appendWindowUpdate(b []byte, stream uint32, incr uint32) []byte {
	b = appendFrameHeader(b, 4, frameWindowUpdate, 0, stream)
	return appendUint32(b, incr)
}

func appendGoAway(b []byte, lastStream uint32, code ErrCode, debug string) []byte {
	b = appendFrameHeader(b, 8+len(debug), frameGoAway, 0, 0)
	b = appendUint32(b, lastStream)
	b = appendUint32(b, uint32(code))
	return append(b, debug...)
}

func appendPingAck(b []byte, data []byte) []byte {
	b = appendFrameHeader(b, 8, framePing, flagAck, 0)
	return append(b, data[:8]...)
}

func appendSettingsAck(b []byte) []byte {
	return appendFrameHeader(b, 0, frameSettings, flagAck, 0)
}

type setting struct {
	id  uint16
	val uint32
}

func appendSettings(b []byte, s ...setting) []byte {
	b = appendFrameHeader(b, 6*len(s), frameSettings, 0, 0)
	for _, x := range s {
		b = append(b, byte(x.id>>8), byte(x.id))
		b = appendUint32(b, x.val)
	}
	return b
}

// appendData appends one DATA frame carrying p.
func appendData(b []byte, stream uint32, p []byte, endStream bool) []byte {
	var fl byte
	if endStream {
		fl = flagEndStream
	}
	b = appendFrameHeader(b, len(p), frameData, fl, stream)
	return append(b, p...)
}

// appendHeaderBlock appends block as a HEADERS frame and as many
// CONTINUATION frames as maxFrame requires.
func appendHeaderBlock(b []byte, stream uint32, block []byte, endStream bool, maxFrame int) []byte {
	first := true
	for first || len(block) > 0 {
		n := min(len(block), maxFrame)
		chunk := block[:n]
		block = block[n:]
		var fl byte
		if len(block) == 0 {
			fl |= flagEndHeaders
		}
		typ := frameContinuation
		if first {
			typ = frameHeaders
			if endStream {
				fl |= flagEndStream
			}
			first = false
		}
		b = appendFrameHeader(b, len(chunk), typ, fl, stream)
		b = append(b, chunk...)
	}
	return b
}

// stripPadding removes the pad length octet and the padding of a PADDED
// frame. Padding as long as the rest of the payload or longer is a
// connection error (RFC 9113 §6.1, §6.2).
func stripPadding(fh frameHeader, p []byte) (data []byte, padding int, err error) {
	if fh.Flags&flagPadded == 0 {
		return p, 0, nil
	}
	if len(p) == 0 {
		return nil, 0, connError{ErrCodeProtocol, "PADDED frame without a pad length"}
	}
	pad := int(p[0])
	p = p[1:]
	if pad > len(p) {
		return nil, 0, connError{ErrCodeProtocol, fmt.Sprintf("pad length %d exceeds the payload (%d octets)", pad, len(p))}
	}
	return p[:len(p)-pad], pad + 1, nil
}
