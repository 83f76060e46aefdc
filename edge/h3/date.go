package h3

import (
	"net/http"
	"sync/atomic"
	"time"

	"github.com/quic-go/qpack"
)

// dateCache holds the Date field of the current second, QPACK-encoded:
// every response carries one, and formatting and Huffman-coding it once a
// second instead of once a response is free speed.
type dateCache struct {
	v atomic.Pointer[dateField]
}

type dateField struct {
	unix    int64
	encoded []byte // the field line, without a field section prefix
}

// encoded returns the Date field line for now.
func (d *dateCache) encoded(now time.Time) []byte {
	sec := now.Unix()
	if f := d.v.Load(); f != nil && f.unix == sec {
		return f.encoded
	}
	var w appendWriter
	enc := qpack.NewEncoder(&w)
	_ = enc.WriteField(qpack.HeaderField{Name: "date", Value: now.UTC().Format(http.TimeFormat)})
	// The encoder wrote the section prefix (two zero bytes: no dynamic
	// table) before the field.
	f := &dateField{unix: sec, encoded: w.b[2:]}
	d.v.Store(f)
	return f.encoded
}

// appendWriter is an io.Writer that appends to b: the QPACK encoder's
// output goes straight into a reused buffer.
type appendWriter struct{ b []byte }

func (w *appendWriter) Write(p []byte) (int, error) {
	w.b = append(w.b, p...)
	return len(p), nil
}
