package wsrelay

import (
	"crypto/rand"
	"encoding/binary"
	"fmt"
	"unicode/utf8"
)

// Opcodes (RFC 6455 §5.2).
const (
	opContinuation = 0x0
	opText         = 0x1
	opBinary       = 0x2
	opClose        = 0x8
	opPing         = 0x9
	opPong         = 0xA
)

// Close codes the relay sends itself (RFC 6455 §7.4.1).
const (
	closeGoingAway       = 1001
	closeProtocolError   = 1002
	closeInvalidPayload  = 1007
	closeMessageTooBig   = 1009
	maxHeaderLen         = 14  // 2 + 8 (64-bit length) + 4 (masking key)
	maxControlPayloadLen = 125 // RFC 6455 §5.5
)

// header is a parsed frame header. The relay never needs more than this:
// payloads are streamed from one peer to the other without being unmasked,
// except for close frames, whose status code it reads.
type header struct {
	fin    bool
	rsv    byte // RSV1-3 as the top three bits of the first byte
	op     byte
	masked bool
	length int64 // payload length
	size   int   // header length in bytes, masking key included
	mask   [4]byte
}

func (h header) control() bool { return h.op&0x8 != 0 }

// headerSize returns the length of a header from its first two bytes.
func headerSize(b1 byte) int {
	n := 2
	switch b1 & 0x7f {
	case 126:
		n += 2
	case 127:
		n += 8
	}
	if b1&0x80 != 0 {
		n += 4
	}
	return n
}

// violation is a reason to fail the WebSocket connection with a close code.
type violation struct {
	code   uint16
	reason string // sent in the close frame: short, fixed text, ≤ 123 bytes
	detail string // for the error Serve returns
}

func (v *violation) Error() string {
	return fmt.Sprintf("close %d (%s): %s", v.code, v.reason, v.detail)
}

func protocolError(format string, args ...any) *violation {
	return &violation{code: closeProtocolError, reason: "protocol error", detail: fmt.Sprintf(format, args...)}
}

// parseHeader parses the header held in b, which is exactly headerSize(b[1])
// bytes long. It enforces the framing rules that do not depend on the
// connection's state: reserved bits (no extension is ever negotiated through
// the relay), known opcodes, control frame size and fragmentation, and the
// minimal length encoding.
func parseHeader(b []byte) (header, *violation) {
	h := header{
		fin:    b[0]&0x80 != 0,
		rsv:    b[0] & 0x70,
		op:     b[0] & 0x0f,
		masked: b[1]&0x80 != 0,
		size:   len(b),
	}
	p := 2
	switch l := b[1] & 0x7f; l {
	case 126:
		h.length = int64(binary.BigEndian.Uint16(b[2:4]))
		p = 4
		if h.length < 126 {
			return h, protocolError("16-bit payload length %d should have used the 7-bit form", h.length)
		}
	case 127:
		u := binary.BigEndian.Uint64(b[2:10])
		p = 10
		if u>>63 != 0 {
			return h, protocolError("64-bit payload length has its most significant bit set")
		}
		if u <= 0xffff {
			return h, protocolError("64-bit payload length %d should have used a shorter form", u)
		}
		h.length = int64(u)
	default:
		h.length = int64(l)
	}
	if h.masked {
		copy(h.mask[:], b[p:p+4])
	}
	if h.rsv != 0 {
		return h, protocolError("reserved bits 0x%02x set but no extension was negotiated", h.rsv)
	}
	switch h.op {
	case opContinuation, opText, opBinary:
	case opClose, opPing, opPong:
		if !h.fin {
			return h, protocolError("fragmented control frame (opcode 0x%x)", h.op)
		}
		if h.length > maxControlPayloadLen {
			return h, protocolError("control frame (opcode 0x%x) with a %d-byte payload, the limit is 125", h.op, h.length)
		}
	default:
		return h, protocolError("unknown opcode 0x%x", h.op)
	}
	return h, nil
}

// stream is the framing state of one direction: who sends, and the message in
// progress.
type stream struct {
	fromClient bool  // the sender is the WebSocket client: its frames must be masked
	max        int64 // largest message, in payload bytes summed over fragments
	inMessage  bool  // a fragmented message has started and not finished
	msgBytes   int64 // payload bytes of the message in progress so far
}

// check applies the rules that depend on the direction and on earlier frames:
// masking, continuation order, and the message size limit. It updates the
// message state as if the frame were delivered.
func (s *stream) check(h header) *violation {
	if h.masked != s.fromClient {
		if s.fromClient {
			return protocolError("unmasked frame from the client")
		}
		return protocolError("masked frame from the server")
	}
	if h.control() {
		return nil
	}
	switch h.op {
	case opContinuation:
		if !s.inMessage {
			return protocolError("continuation frame with no message in progress")
		}
	default: // text or binary
		if s.inMessage {
			return protocolError("new data frame (opcode 0x%x) while a fragmented message is in progress", h.op)
		}
		s.msgBytes = 0
	}
	s.inMessage = !h.fin
	if h.length > s.max-s.msgBytes {
		total := s.msgBytes + h.length
		if total < 0 { // overflow: only the sign matters for the message
			total = h.length
		}
		s.msgBytes = s.max // later fragments of this message stay over the limit
		return &violation{code: closeMessageTooBig, reason: "message too big",
			detail: fmt.Sprintf("message of at least %d bytes, the limit is %d", total, s.max)}
	}
	s.msgBytes += h.length
	return nil
}

// checkClose validates a close frame's payload (unmasking a copy when
// needed) and returns its status code, 0 when it has none.
func checkClose(h header, payload []byte) (uint16, *violation) {
	if len(payload) == 0 {
		return 0, nil
	}
	if len(payload) == 1 {
		return 0, protocolError("close frame with a 1-byte payload")
	}
	var buf [maxControlPayloadLen]byte
	p := buf[:copy(buf[:], payload)]
	if h.masked {
		for i := range p {
			p[i] ^= h.mask[i&3]
		}
	}
	code := binary.BigEndian.Uint16(p)
	if !validCloseCode(code) {
		return code, protocolError("close frame with status code %d, which may not be sent", code)
	}
	if !utf8.Valid(p[2:]) {
		return code, &violation{code: closeInvalidPayload, reason: "invalid close reason",
			detail: "close frame reason is not valid UTF-8"}
	}
	return code, nil
}

// validCloseCode reports whether code may appear in a close frame: the
// codes RFC 6455 and the IANA registry define for the wire (1004, 1005,
// 1006 and 1015 are reserved), and the ranges for libraries and applications.
func validCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1014:
		return code != 1004 && code != 1005 && code != 1006
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// appendClose appends a close frame with code and reason. Frames toward the
// upstream are masked, as every client frame must be; the key comes from
// crypto/rand as RFC 6455 §5.3 asks.
func appendClose(dst []byte, code uint16, reason string, masked bool) []byte {
	if len(reason) > maxControlPayloadLen-2 {
		reason = reason[:maxControlPayloadLen-2]
	}
	n := 2 + len(reason)
	b1 := byte(n)
	if masked {
		b1 |= 0x80
	}
	dst = append(dst, 0x80|opClose, b1)
	var key [4]byte
	if masked {
		_, _ = rand.Read(key[:]) // crypto/rand.Read never fails (Go ≥ 1.24)
		dst = append(dst, key[:]...)
	}
	start := len(dst)
	dst = binary.BigEndian.AppendUint16(dst, code)
	dst = append(dst, reason...)
	if masked {
		for i := start; i < len(dst); i++ {
			dst[i] ^= key[(i-start)&3]
		}
	}
	return dst
}
