package hygiene

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"testing"
)

type failingReader struct {
	data string
	err  error
}

func (f *failingReader) Read(p []byte) (int, error) {
	if f.data == "" {
		return 0, f.err
	}
	n := copy(p, f.data)
	f.data = f.data[n:]
	return n, nil
}

func (f *failingReader) Close() error { return nil }

func bodyReq(body io.ReadCloser, te ...string) *http.Request {
	r := httptest.NewRequest("POST", "/", nil)
	r.Body = body
	r.TransferEncoding = te
	return r
}

func TestBodyLimit(t *testing.T) {
	for _, tc := range []struct {
		size    int
		max     int64
		tooBig  bool
		readLen int
	}{
		{size: 10, max: 10},
		{size: 0, max: 10},
		{size: 11, max: 10, tooBig: true},
		{size: 1 << 20, max: 1000, tooBig: true},
		{size: 1000, max: 1000, readLen: 1},
		{size: 1001, max: 1000, tooBig: true, readLen: 7},
	} {
		r := bodyReq(io.NopCloser(strings.NewReader(strings.Repeat("x", tc.size))), "chunked")
		b := WrapBody(r, tc.max)
		var got []byte
		var err error
		if tc.readLen > 0 {
			buf := make([]byte, tc.readLen)
			for {
				var n int
				n, err = r.Body.Read(buf)
				got = append(got, buf[:n]...)
				if err != nil {
					break
				}
			}
			if err == io.EOF {
				err = nil
			}
		} else {
			got, err = io.ReadAll(r.Body)
		}
		if !tc.tooBig {
			if err != nil || len(got) != tc.size || b.ClientError() != nil {
				t.Errorf("%d/%d: read %d, %v, %v", tc.size, tc.max, len(got), err, b.ClientError())
			}
			continue
		}
		var herr *Error
		if !errors.As(err, &herr) || herr.Status != 413 || !herr.Close {
			t.Errorf("%d/%d: got %v", tc.size, tc.max, err)
		}
		if int64(len(got)) != tc.max {
			t.Errorf("%d/%d: passed on %d bytes, want exactly the limit", tc.size, tc.max, len(got))
		}
		if BodyError(fmt.Errorf("net/http: wrapped: %w", err)) != herr || b.ClientError() != herr {
			t.Errorf("%d/%d: BodyError = %v", tc.size, tc.max, BodyError(err))
		}
		// It stays failed.
		if n, err := r.Body.Read(make([]byte, 8)); n != 0 || err != herr {
			t.Errorf("%d/%d: read after failure: %d, %v", tc.size, tc.max, n, err)
		}
	}
}

func TestBodyClassify(t *testing.T) {
	for _, tc := range []struct {
		err     error
		te      []string
		status  int
		message string
	}{
		{fmt.Errorf("invalid byte in chunk length"), []string{"chunked"}, 400, "chunked encoding is malformed"},
		{io.ErrUnexpectedEOF, nil, 400, "ended before"},
		{fmt.Errorf("read tcp: %w", os.ErrDeadlineExceeded), nil, 408, "not received in time"},
		{&http.MaxBytesError{Limit: 5}, nil, 413, "larger than 5 bytes"},
		{errors.New("http2: stream closed"), nil, 400, "could not be read"},
	} {
		r := bodyReq(&failingReader{data: "abc", err: tc.err}, tc.te...)
		WrapBody(r, 0)
		got, err := io.ReadAll(r.Body)
		herr := BodyError(err)
		if string(got) != "abc" || herr == nil || err != herr || herr.Status != tc.status || !strings.Contains(herr.Message, tc.message) || !herr.Close {
			t.Errorf("%v: read %q, err %v, client error %+v", tc.err, got, err, herr)
		}
	}
	// HTTP/2 and HTTP/3 streams fail alone: no Connection: close.
	r := bodyReq(&failingReader{err: io.ErrUnexpectedEOF})
	r.ProtoMajor = 2
	WrapBody(r, 0)
	_, err := io.ReadAll(r.Body)
	if herr := BodyError(err); herr == nil || herr.Close {
		t.Errorf("h2: %+v", herr)
	}
}

func TestBodyNone(t *testing.T) {
	r := httptest.NewRequest("GET", "/", nil)
	if b := WrapBody(r, 10); b != nil || r.Body != http.NoBody {
		t.Fatalf("WrapBody on no body: %v, %v", b, r.Body)
	}
	var b *Body
	if b.ClientError() != nil || BodyError(errors.New("dial tcp: refused")) != nil || BodyError(nil) != nil {
		t.Fatal("nil Body reports an error")
	}
}
