package h3

import (
	"bytes"
	"fmt"
	"io"
	"strings"
	"testing"

	"github.com/quic-go/qpack"
)

// decodeWithQPACK is the reference: qpack alone, whole section.
func decodeWithQPACK(block []byte) ([]qpack.HeaderField, error) {
	next := qpack.NewDecoder().Decode(block)
	var out []qpack.HeaderField
	for {
		f, err := next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return nil, err
		}
		out = append(out, f)
	}
}

// sameAsQPACK checks that the caching decoder, cold and warm, gives what
// qpack gives for block, or fails where qpack fails.
func sameAsQPACK(t *testing.T, d *fieldDecoder, block []byte) {
	t.Helper()
	want, wantErr := decodeWithQPACK(block)
	for _, pass := range []string{"cold", "warm"} {
		got, err := d.decode(block, 1<<30, nil)
		if (err != nil) != (wantErr != nil) {
			t.Fatalf("%s: block %x: error %v, qpack's %v", pass, block, err, wantErr)
		}
		if err != nil {
			continue
		}
		if len(got) != len(want) {
			t.Fatalf("%s: block %x: %d fields, qpack %d", pass, block, len(got), len(want))
		}
		for i := range got {
			if got[i].Name != want[i].Name || got[i].Value != want[i].Value {
				t.Fatalf("%s: block %x: field %d is %q: %q, qpack's %q: %q", pass, block, i, got[i].Name, got[i].Value, want[i].Name, want[i].Value)
			}
			if got[i].valid != (validField(got[i]) == nil) {
				t.Fatalf("%s: field %q marked valid=%t", pass, got[i].Name, got[i].valid)
			}
		}
	}
}

// rawLiteral is a field line with a literal name and value, without
// Huffman coding (qpack's encoder always uses Huffman).
func rawLiteral(name, value string) []byte {
	b := appendPrefixInt(nil, 3, 0x20, uint64(len(name)))
	b = append(b, name...)
	b = appendPrefixInt(b, 7, 0, uint64(len(value)))
	return append(b, value...)
}

// rawNameRef is a literal field line naming static entry idx, with a
// value that is not Huffman coded.
func rawNameRef(idx uint64, value string) []byte {
	b := appendPrefixInt(nil, 4, 0x50, idx)
	b = appendPrefixInt(b, 7, 0, uint64(len(value)))
	return append(b, value...)
}

func appendPrefixInt(b []byte, n uint, flags byte, v uint64) []byte {
	mask := uint64(1)<<n - 1
	if v < mask {
		return append(b, flags|byte(v))
	}
	b = append(b, flags|byte(mask))
	v -= mask
	for v >= 0x80 {
		b = append(b, byte(v)|0x80)
		v >>= 7
	}
	return append(b, byte(v))
}

func TestFieldDecoderMatchesQPACK(t *testing.T) {
	d := newFieldDecoder(qpack.NewDecoder(), newFieldNames())
	long := strings.Repeat("v", 300)
	blocks := [][]byte{
		fields(),
		get("/"),
		get("/a/b?c=d", "user-agent", "x", "accept", "*/*", "x-long", long, "cookie", "a=b"),
		fields(":method", "GET", "x-Upper", "1", "bad name", "2", "x-nl", "a\nb"),
		append([]byte{0, 0}, rawLiteral("x-raw", "plain value")...),
		append([]byte{0, 0}, rawLiteral(strings.Repeat("n", 40), long)...),
		append([]byte{0, 0}, rawNameRef(2, "12")...),                                     // age: 12
		append([]byte{0, 0}, rawNameRef(98, "abc")...),                                   // the last static entry
		append([]byte{0, 0}, rawNameRef(99, "abc")...),                                   // past the static table
		append([]byte{0, 0}, 0xff, 0x24),                                                 // indexed static 99: out of range
		append([]byte{0, 0}, 0xc0|63, 0x00),                                              // indexed 63 as a long prefix int
		append([]byte{0, 0}, 0x80),                                                       // dynamic reference
		append([]byte{0, 0}, 0x10),                                                       // post-base index
		append([]byte{0, 0}, 0x00),                                                       // post-base name reference
		append([]byte{0, 0}, 0x51, 0x85, 'a'),                                            // value shorter than its length
		append([]byte{0, 0}, 0x51, 0x81, 0xff),                                           // bad Huffman
		append([]byte{0, 0}, 0xc0|29, 0xc0|29, 0xd1),                                     // repeats
		append([]byte{0, 0}, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), // overflowing int
		{0x01, 0x00, 0xd1},                                                               // required insert count 1
		{0x00, 0x80, 0xd1},                                                               // sign bit with a zero delta base
		{0x00},                                                                           // truncated prefix
	}
	for i, b := range blocks {
		t.Run(fmt.Sprint(i), func(t *testing.T) { sameAsQPACK(t, d, b) })
	}
}

// rawNeverIndexed is a literal field line with a literal name, the N bit
// set.
func rawNeverIndexed(name, value string) []byte {
	b := appendPrefixInt(nil, 3, 0x30, uint64(len(name)))
	b = append(b, name...)
	b = appendPrefixInt(b, 7, 0, uint64(len(value)))
	return append(b, value...)
}

// rawNameRefNeverIndexed is rawNameRef with the N bit set.
func rawNameRefNeverIndexed(idx uint64, value string) []byte {
	b := appendPrefixInt(nil, 4, 0x70, idx)
	b = appendPrefixInt(b, 7, 0, uint64(len(value)))
	return append(b, value...)
}

// Never-indexed lines and credentials are decoded but never cached: the
// pooled decoder serves one client after another.
func TestFieldDecoderCachesNoSecrets(t *testing.T) {
	d := newFieldDecoder(qpack.NewDecoder(), newFieldNames())
	block := fields(":method", "GET", "authorization", "Bearer s1", "proxy-authorization", "Basic s2", "cookie", "s3=1",
		"x-api-key", "s4", "set-cookie", "s5=1", "user-agent", "kept")
	block = append(block, rawNeverIndexed("x-secret", "s6")...)
	block = append(block, rawNameRefNeverIndexed(2, "s7")...) // age, N=1
	for range 2 {
		sameAsQPACK(t, d, block)
	}
	secret := map[string]bool{"Bearer s1": true, "Basic s2": true, "s3=1": true, "s4": true, "s5=1": true, "s6": true, "s7": true}
	kept := false
	for line, f := range d.cache {
		if secret[f.Value] {
			t.Errorf("cached %q: %q (line %x)", f.Name, f.Value, line)
		}
		kept = kept || f.Value == "kept"
	}
	if !kept {
		t.Error("an ordinary field was not cached")
	}
}

func TestFieldEncoderCachesNoSecrets(t *testing.T) {
	e := newFieldEncoder()
	for _, kv := range [][2]string{{"set-cookie", "session=secret"}, {"authorization", "Bearer x"}, {"content-type", "text/plain"}} {
		e.appendField(nil, kv[0], kv[1])
	}
	if _, ok := e.cache[[2]string{"set-cookie", "session=secret"}]; ok {
		t.Error("set-cookie cached")
	}
	if _, ok := e.cache[[2]string{"authorization", "Bearer x"}]; ok {
		t.Error("authorization cached")
	}
	if _, ok := e.cache[[2]string{"content-type", "text/plain"}]; !ok {
		t.Error("content-type not cached")
	}
}

// A line this package would split wrong (only a bug could) is reported as
// such, once, not as a decoding failure of the client's.
func TestDecodeLineMismatch(t *testing.T) {
	d := newFieldDecoder(qpack.NewDecoder(), newFieldNames())
	two := append(rawLiteral("a", "1"), rawLiteral("b", "2")...)
	if _, err := d.decodeLine(two); err != errLineMismatch {
		t.Fatalf("two lines as one: %v, want errLineMismatch itself", err)
	}
}

// Pooled stream state keeps no more than a small request or response
// needs.
func TestReleaseCapsRetention(t *testing.T) {
	s, err := New(Config{Handler: okHandler()})
	if err != nil {
		t.Fatal(err)
	}
	st := &stream{srv: s, rbuf: make([]byte, readBufSize), fields: make([]field, 2000),
		fdec: newFieldDecoder(s.decoder, s.names), fenc: newFieldEncoder(), trailerKeys: make([]string, 100)}
	st.fdec.scratch = make([]byte, 64<<10)
	st.fenc.scratch.b = make([]byte, 64<<10)
	st.release()
	if cap(st.fields) > 256 || cap(st.fdec.scratch) > 4<<10 || cap(st.fenc.scratch.b) > 4<<10 || cap(st.trailerKeys) > 32 {
		t.Fatalf("kept fields %d, decoder scratch %d, encoder scratch %d, trailer keys %d", cap(st.fields), cap(st.fdec.scratch), cap(st.fenc.scratch.b), cap(st.trailerKeys))
	}
}

func FuzzFieldDecoder(f *testing.F) {
	f.Add(get("/x?y", "user-agent", "fuzz"))
	f.Add(append([]byte{0, 0}, rawNeverIndexed("x-secret", "v")...))
	f.Add(append([]byte{0, 0}, rawNameRefNeverIndexed(2, "v")...))
	f.Add(fields("authorization", "Bearer t", "cookie", "a=b", "x-api-key", "k", "proxy-authorization", "p", "set-cookie", "s"))
	f.Add(append([]byte{0, 0}, rawLiteral("a", "b")...))
	f.Add(append([]byte{0, 0}, rawNameRef(5, "c=d")...))
	f.Add([]byte{0, 0, 0xff, 0x80, 0x01})
	d := newFieldDecoder(qpack.NewDecoder(), newFieldNames())
	f.Fuzz(func(t *testing.T, block []byte) {
		if len(block) > 4096 {
			return
		}
		sameAsQPACK(t, d, block)
	})
}

// The decoded-size limit holds on the cached path too.
func TestFieldDecoderLimit(t *testing.T) {
	d := newFieldDecoder(qpack.NewDecoder(), newFieldNames())
	block := append([]byte{0, 0}, bytes.Repeat([]byte{0xc0 | 29}, 100)...) // accept: */* (41 bytes counted)
	for range 2 {
		if _, err := d.decode(block, 100*41, nil); err != nil {
			t.Fatalf("at the limit: %v", err)
		}
		if _, err := d.decode(block, 100*41-1, nil); err != errFieldSectionTooLarge {
			t.Fatalf("one byte over the limit: %v", err)
		}
	}
}

func TestFieldEncoderMatchesQPACK(t *testing.T) {
	e := newFieldEncoder()
	for _, kv := range [][2]string{{":status", "200"}, {"content-type", "text/plain"}, {"x-custom", "value"}, {"x-long", strings.Repeat("l", 500)}, {":status", "200"}} {
		for range 2 {
			got := e.appendField(sectionPrefix(nil), kv[0], kv[1])
			fs, err := decodeWithQPACK(got)
			if err != nil || len(fs) != 1 || fs[0].Name != kv[0] || fs[0].Value != kv[1] {
				t.Fatalf("%q: decoded %v, %v", kv, fs, err)
			}
		}
	}
}
