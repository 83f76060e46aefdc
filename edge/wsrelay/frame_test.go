package wsrelay

import (
	"bytes"
	"encoding/binary"
	"testing"
)

// rawHeader builds a frame header; length encoding is minimal unless forced.
func rawHeader(fin bool, rsv, op byte, masked bool, length uint64, lenForm int) []byte {
	b0 := op | rsv
	if fin {
		b0 |= 0x80
	}
	var b1 byte
	if masked {
		b1 = 0x80
	}
	if lenForm == 0 {
		switch {
		case length < 126:
			lenForm = 7
		case length <= 0xffff:
			lenForm = 16
		default:
			lenForm = 64
		}
	}
	out := []byte{b0, 0}
	switch lenForm {
	case 7:
		out[1] = b1 | byte(length)
	case 16:
		out[1] = b1 | 126
		out = binary.BigEndian.AppendUint16(out, uint16(length))
	case 64:
		out[1] = b1 | 127
		out = binary.BigEndian.AppendUint64(out, length)
	}
	if masked {
		out = append(out, 1, 2, 3, 4)
	}
	return out
}

func TestParseHeader(t *testing.T) {
	tests := []struct {
		name    string
		b       []byte
		wantLen int64
		bad     bool
	}{
		{"small text", rawHeader(true, 0, opText, true, 5, 0), 5, false},
		{"16-bit length", rawHeader(true, 0, opBinary, false, 1024, 0), 1024, false},
		{"64-bit length", rawHeader(false, 0, opBinary, true, 1<<20, 0), 1 << 20, false},
		{"largest 7-bit", rawHeader(true, 0, opText, false, 125, 0), 125, false},
		{"non-minimal 16-bit", rawHeader(true, 0, opText, false, 100, 16), 0, true},
		{"non-minimal 64-bit", rawHeader(true, 0, opText, false, 1000, 64), 0, true},
		{"64-bit msb set", rawHeader(true, 0, opText, false, 1<<63, 64), 0, true},
		{"rsv1", rawHeader(true, 0x40, opText, true, 5, 0), 0, true},
		{"rsv3", rawHeader(true, 0x10, opText, true, 5, 0), 0, true},
		{"opcode 3", rawHeader(true, 0, 0x3, true, 5, 0), 0, true},
		{"opcode 0xB", rawHeader(true, 0, 0xB, true, 5, 0), 0, true},
		{"fragmented ping", rawHeader(false, 0, opPing, true, 5, 0), 0, true},
		{"ping 125", rawHeader(true, 0, opPing, true, 125, 0), 125, false},
		{"ping 126", rawHeader(true, 0, opPing, true, 126, 0), 0, true},
		{"close 126", rawHeader(true, 0, opClose, false, 126, 0), 0, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := headerSize(tt.b[1]); got != len(tt.b) {
				t.Fatalf("headerSize = %d, want %d", got, len(tt.b))
			}
			h, v := parseHeader(tt.b)
			if tt.bad {
				if v == nil || v.code != closeProtocolError {
					t.Fatalf("parseHeader accepted %x (%+v), want a 1002 violation", tt.b, h)
				}
				return
			}
			if v != nil {
				t.Fatalf("parseHeader: %v", v)
			}
			if h.length != tt.wantLen {
				t.Fatalf("length = %d, want %d", h.length, tt.wantLen)
			}
		})
	}
}

func TestStreamCheck(t *testing.T) {
	hdr := func(fin bool, op byte, masked bool, n int64) header {
		return header{fin: fin, op: op, masked: masked, length: n}
	}
	t.Run("masking", func(t *testing.T) {
		c := &stream{fromClient: true, max: 100}
		if v := c.check(hdr(true, opText, false, 1)); v == nil || v.code != closeProtocolError {
			t.Fatalf("unmasked client frame: %v", v)
		}
		s := &stream{fromClient: false, max: 100}
		if v := s.check(hdr(true, opText, true, 1)); v == nil || v.code != closeProtocolError {
			t.Fatalf("masked server frame: %v", v)
		}
	})
	t.Run("continuation order", func(t *testing.T) {
		s := &stream{max: 100}
		if v := s.check(hdr(true, opContinuation, false, 1)); v == nil {
			t.Fatal("continuation without a message accepted")
		}
		s = &stream{max: 100}
		if v := s.check(hdr(false, opText, false, 1)); v != nil {
			t.Fatal(v)
		}
		if v := s.check(hdr(true, opPing, false, 1)); v != nil {
			t.Fatalf("ping between fragments: %v", v)
		}
		if v := s.check(hdr(false, opBinary, false, 1)); v == nil {
			t.Fatal("new message inside a fragmented one accepted")
		}
	})
	t.Run("size across fragments", func(t *testing.T) {
		s := &stream{max: 100}
		for _, f := range []header{hdr(false, opText, false, 40), hdr(false, opContinuation, false, 40), hdr(true, opContinuation, false, 20)} {
			if v := s.check(f); v != nil {
				t.Fatalf("message of exactly the limit refused: %v", v)
			}
		}
		if v := s.check(hdr(false, opBinary, false, 60)); v != nil {
			t.Fatal(v)
		}
		if v := s.check(hdr(true, opContinuation, false, 41)); v == nil || v.code != closeMessageTooBig {
			t.Fatalf("101-byte message: %v, want 1009", v)
		}
	})
	t.Run("huge single frame", func(t *testing.T) {
		s := &stream{max: 1 << 20}
		if v := s.check(hdr(true, opBinary, false, 1<<62)); v == nil || v.code != closeMessageTooBig {
			t.Fatalf("got %v, want 1009", v)
		}
	})
}

func TestCheckClose(t *testing.T) {
	mk := func(code uint16, reason string) []byte {
		return append(binary.BigEndian.AppendUint16(nil, code), reason...)
	}
	for _, tt := range []struct {
		name    string
		payload []byte
		want    uint16 // violation code, 0 for valid
	}{
		{"empty", nil, 0},
		{"1000", mk(1000, "bye"), 0},
		{"1001", mk(1001, ""), 0},
		{"1009", mk(1009, ""), 0},
		{"1014", mk(1014, ""), 0},
		{"4999", mk(4999, ""), 0},
		{"one byte", []byte{3}, closeProtocolError},
		{"999", mk(999, ""), closeProtocolError},
		{"1004", mk(1004, ""), closeProtocolError},
		{"1005", mk(1005, ""), closeProtocolError},
		{"1006", mk(1006, ""), closeProtocolError},
		{"1015", mk(1015, ""), closeProtocolError},
		{"2999", mk(2999, ""), closeProtocolError},
		{"5000", mk(5000, ""), closeProtocolError},
		{"bad utf8", mk(1000, "\xff\xfe"), closeInvalidPayload},
	} {
		t.Run(tt.name, func(t *testing.T) {
			for _, masked := range []bool{false, true} {
				h := header{op: opClose, fin: true, masked: masked, mask: [4]byte{9, 8, 7, 6}}
				p := bytes.Clone(tt.payload)
				if masked {
					for i := range p {
						p[i] ^= h.mask[i&3]
					}
				}
				_, v := checkClose(h, p)
				var got uint16
				if v != nil {
					got = v.code
				}
				if got != tt.want {
					t.Fatalf("masked=%v: violation %v, want code %d", masked, v, tt.want)
				}
			}
		})
	}
}

func TestAppendClose(t *testing.T) {
	for _, masked := range []bool{false, true} {
		f := appendClose(nil, 1009, "message too big", masked)
		h, v := parseHeader(f[:headerSize(f[1])])
		if v != nil {
			t.Fatal(v)
		}
		if h.op != opClose || !h.fin || h.masked != masked || int(h.length) != 2+len("message too big") {
			t.Fatalf("header %+v", h)
		}
		code, v := checkClose(h, f[h.size:])
		if v != nil || code != 1009 {
			t.Fatalf("code %d, violation %v", code, v)
		}
	}
	long := appendClose(nil, 1000, string(bytes.Repeat([]byte("x"), 300)), false)
	if len(long) != 2+maxControlPayloadLen {
		t.Fatalf("long reason gave a %d-byte frame, want it cut to a 125-byte payload", len(long))
	}
}

func FuzzParseHeader(f *testing.F) {
	f.Add(rawHeader(true, 0, opText, true, 5, 0))
	f.Add(rawHeader(false, 0, opBinary, false, 70000, 0))
	f.Add(rawHeader(true, 0, opClose, true, 2, 0))
	f.Fuzz(func(t *testing.T, b []byte) {
		if len(b) < 2 || len(b) < headerSize(b[1]) {
			return
		}
		b = b[:headerSize(b[1])]
		h, v := parseHeader(b)
		if v != nil {
			return
		}
		if h.length < 0 || (h.control() && h.length > maxControlPayloadLen) || h.rsv != 0 {
			t.Fatalf("accepted an invalid header %x: %+v", b, h)
		}
		s := &stream{fromClient: h.masked, max: 1 << 20}
		if v := s.check(h); v == nil && s.msgBytes > s.max {
			t.Fatalf("message bytes %d over the limit without a violation", s.msgBytes)
		}
	})
}
