package main

import (
	"bytes"
	"testing"

	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go/quicvarint"
)

func headersFrame(kv ...string) []byte {
	var block bytes.Buffer
	enc := qpack.NewEncoder(&block)
	for i := 0; i < len(kv); i += 2 {
		enc.WriteField(qpack.HeaderField{Name: kv[i], Value: kv[i+1]})
	}
	b := quicvarint.Append(nil, 0x01)
	b = quicvarint.Append(b, uint64(block.Len()))
	return append(b, block.Bytes()...)
}

// Only a HEADERS frame whose :status is 200 counts as a success.
func TestAnswerStatus(t *testing.T) {
	data := append(quicvarint.Append(quicvarint.Append(nil, 0x00), 3), "abc"...)
	for _, c := range []struct {
		b    []byte
		want int
	}{
		{headersFrame(":status", "200", "content-type", "text/plain"), 200},
		{headersFrame(":status", "404"), 404},
		{headersFrame(":status", "503"), 503},
		{data, 0},
		{headersFrame(":status", "200")[:2], 0},
		{nil, 0},
	} {
		if got := answerStatus(c.b); got != c.want {
			t.Errorf("answerStatus(%x) = %d, want %d", c.b, got, c.want)
		}
	}
}
