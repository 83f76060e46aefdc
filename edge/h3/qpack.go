package h3

import (
	"errors"
	"io"

	"github.com/quic-go/qpack"
)

// field is a decoded field line, checked once.
type field struct {
	Name, Value string
	canonical   string // the http.Header key of a valid regular field
	valid       bool   // validField passed
}

func (f *field) pseudo() bool { return len(f.Name) > 0 && f.Name[0] == ':' }

// Bounds of the per-stream field caches: entries, and the longest field
// line (encoded) or value kept.
const (
	maxCachedFields = 64
	maxCachedLine   = 128
)

// fieldDecoder decodes QPACK field sections with github.com/quic-go/qpack
// and remembers the field lines it decoded. Without a dynamic table a
// field line always decodes to the same field, and clients repeat most of
// theirs on every request (authority, user agent, accept-*, credentials):
// a line seen before costs a map lookup instead of Huffman decoding, a
// string allocation, validation and canonicalisation. Each pooled stream
// state has its own (no locking); the cache is bounded and starts over
// when full. Lines marked never-indexed and credentials (sensitiveField)
// are never cached: pooled state serves one client after another.
type fieldDecoder struct {
	dec     *qpack.Decoder
	names   *fieldNames
	cache   map[string]field
	scratch []byte
}

func newFieldDecoder(dec *qpack.Decoder, names *fieldNames) *fieldDecoder {
	return &fieldDecoder{dec: dec, names: names, cache: make(map[string]field, maxCachedFields)}
}

// decode decodes a field section into out (reused), and stops as soon as
// its decoded size passes limit: a small block of static-table references
// can expand a hundredfold (CVE-2025-64702, CVE-2026-40898), so the limit
// applies to what comes out, not to what went in (RFC 9114 §4.2.2:
// name, value and 32 bytes per field). A section QPACK cannot decode is a
// connection error (RFC 9204 §2.2.3): with a dynamic table of capacity
// zero, any reference into it is one.
func (d *fieldDecoder) decode(block []byte, limit int, out []field) ([]field, error) {
	// The section prefix of a section without dynamic references is two
	// zero bytes; anything else goes to qpack whole (and fails there).
	if len(block) < 2 || block[0] != 0 || block[1] != 0 {
		return d.decodeWhole(block, limit, out)
	}
	size, start := 0, len(out)
	for p := block[2:]; len(p) > 0; {
		n, ok := fieldLineLen(p)
		if !ok {
			return d.decodeWhole(block, limit, out[:start])
		}
		line := p[:n]
		p = p[n:]
		f, ok := d.cache[string(line)]
		if !ok {
			var err error
			if f, err = d.decodeLine(line); err == errLineMismatch {
				// This package read the line's length wrong (a bug):
				// the block may still be valid, so qpack decides.
				return d.decodeWhole(block, limit, out[:start])
			} else if err != nil {
				return out, err
			}
			if f.valid && n <= maxCachedLine && !neverIndexed(line) && !sensitiveField(f.Name) {
				if len(d.cache) >= maxCachedFields {
					clear(d.cache)
				}
				d.cache[string(line)] = f
			}
		}
		size += len(f.Name) + len(f.Value) + 32
		if size > limit {
			return out, errFieldSectionTooLarge
		}
		out = append(out, f)
	}
	return out, nil
}

// decodeLine decodes one field line with qpack, as a section of its own.
func (d *fieldDecoder) decodeLine(line []byte) (field, error) {
	d.scratch = append(append(d.scratch[:0], 0, 0), line...)
	next := d.dec.Decode(d.scratch)
	hf, err := next()
	if err == nil {
		if _, err2 := next(); err2 != io.EOF {
			return field{}, errLineMismatch
		}
	}
	if err != nil {
		return field{}, connErr(ErrQPACKDecompressionFailed, "decoding a field line: %v", err)
	}
	return d.check(hf), nil
}

// decodeWhole decodes a section with qpack alone, without the cache.
func (d *fieldDecoder) decodeWhole(block []byte, limit int, out []field) ([]field, error) {
	next := d.dec.Decode(block)
	size := 0
	for {
		hf, err := next()
		if err == io.EOF {
			return out, nil
		}
		if err != nil {
			return out, connErr(ErrQPACKDecompressionFailed, "decoding a field section: %v", err)
		}
		size += len(hf.Name) + len(hf.Value) + 32
		if size > limit {
			return out, errFieldSectionTooLarge
		}
		out = append(out, d.check(hf))
	}
}

func (d *fieldDecoder) check(hf qpack.HeaderField) field {
	f := field{Name: hf.Name, Value: hf.Value}
	f.valid = validField(f) == nil
	if f.valid && !f.pseudo() {
		f.canonical = d.names.canonicalKey(f.Name)
	}
	return f
}

// errLineMismatch is a field line whose length this package and qpack
// read differently (only a bug here can cause it): the section is then
// decoded by qpack alone.
var errLineMismatch = errors.New("h3: field line boundaries disagree between fieldLineLen and qpack")

// neverIndexed reports a literal field line with the N bit (RFC 9204
// §4.5.4, §4.5.6): the sender asks that the value never be kept in a
// table, which this package's cache honours too.
func neverIndexed(line []byte) bool {
	switch b := line[0]; {
	case b&0xc0 == 0x40: // literal with name reference: 0 1 N T
		return b&0x20 != 0
	case b&0xe0 == 0x20: // literal with literal name: 0 0 1 N H
		return b&0x10 != 0
	}
	return false
}

// sensitiveField reports the fields that carry credentials: their lines
// are never cached, so that pooled state serving one client after another
// holds none of them.
func sensitiveField(lower string) bool {
	switch lower {
	case "authorization", "proxy-authorization", "cookie", "set-cookie", "x-api-key":
		return true
	}
	return false
}

// fieldLineLen is the length of the field line at the start of p
// (RFC 9204 §4.5.2-4.5.4), for the three representations that need no
// dynamic table; false for anything else, or a line that does not fit.
func fieldLineLen(p []byte) (int, bool) {
	b := p[0]
	switch {
	case b&0x80 != 0: // indexed field line: 1 T index(6+)
		return prefixIntLen(p, 6)
	case b&0xc0 == 0x40: // literal with name reference: 0 1 N T index(4+), value
		n, ok := prefixIntLen(p, 4)
		if !ok {
			return 0, false
		}
		m, ok := stringLen(p[n:], 7)
		return n + m, ok
	case b&0xe0 == 0x20: // literal with literal name: 0 0 1 N H len(3+), name, value
		n, ok := stringLen(p, 3)
		if !ok {
			return 0, false
		}
		m, ok := stringLen(p[n:], 7)
		return n + m, ok
	}
	return 0, false
}

// prefixIntLen is the length of the prefix integer (RFC 7541 §5.1) of
// n-bit prefix at the start of p.
func prefixIntLen(p []byte, n uint) (int, bool) {
	_, l, ok := prefixInt(p, n)
	return l, ok
}

// prefixInt reads a prefix integer of n-bit prefix: its value and length.
func prefixInt(p []byte, n uint) (uint64, int, bool) {
	if len(p) == 0 {
		return 0, 0, false
	}
	mask := uint64(1)<<n - 1
	v := uint64(p[0]) & mask
	if v < mask {
		return v, 1, true
	}
	var shift uint
	for i := 1; i < len(p) && i <= 8; i++ {
		v += uint64(p[i]&0x7f) << shift
		shift += 7
		if p[i]&0x80 == 0 {
			return v, i + 1, true
		}
	}
	return 0, 0, false
}

// stringLen is the length of a string literal (length of n-bit prefix,
// then that many bytes) at the start of p.
func stringLen(p []byte, n uint) (int, bool) {
	l, m, ok := prefixInt(p, n)
	if !ok || l > uint64(len(p)-m) {
		return 0, false
	}
	return m + int(l), true
}

// fieldEncoder encodes field lines with github.com/quic-go/qpack (static
// table and literals, Huffman-coded) and remembers the ones it encoded:
// responses repeat most of their fields (content type, security headers,
// server, often the length), and a line seen before is a map lookup
// instead of Huffman coding. Bounded, per pooled stream state, as
// fieldDecoder.
type fieldEncoder struct {
	enc     *qpack.Encoder
	scratch appendWriter
	cache   map[[2]string][]byte
}

func newFieldEncoder() *fieldEncoder {
	e := &fieldEncoder{cache: make(map[[2]string][]byte, maxCachedFields)}
	e.enc = qpack.NewEncoder(&e.scratch)
	return e
}

// sectionPrefix opens a field section that references no dynamic table.
func sectionPrefix(dst []byte) []byte { return append(dst, 0, 0) }

// appendField appends the field line of name: value.
func (e *fieldEncoder) appendField(dst []byte, name, value string) []byte {
	key := [2]string{name, value}
	if b, ok := e.cache[key]; ok {
		return append(dst, b...)
	}
	e.scratch.b = e.scratch.b[:0]
	_ = e.enc.WriteField(qpack.HeaderField{Name: name, Value: value})
	_ = e.enc.Close()
	line := e.scratch.b[2:] // after the section prefix the encoder wrote
	if len(name)+len(value) <= maxCachedLine && !sensitiveField(name) {
		if len(e.cache) >= maxCachedFields {
			clear(e.cache)
		}
		e.cache[key] = append([]byte(nil), line...)
	}
	return append(dst, line...)
}
