package h3

import (
	"bytes"
	"context"
	"crypto/sha256"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// quic-go's own HTTP/3 client, as a real client: methods, paths, queries,
// headers, bodies both ways, many requests at once.
func TestRealClient(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := io.ReadAll(r.Body)
		if err != nil {
			http.Error(w, err.Error(), 500)
			return
		}
		sum := sha256.Sum256(body)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Proto", r.Proto)
		w.Header().Add("X-Multi", "a")
		w.Header().Add("X-Multi", "b")
		fmt.Fprintf(w, "%s %s query=%s host=%s ua=%s cl=%d len=%d sum=%x tls=%t remote=%t",
			r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Get("User-Agent"), r.ContentLength, len(body), sum[:4],
			r.TLS != nil && r.TLS.HandshakeComplete, r.RemoteAddr != "")
	})})
	c := ts.client(t)
	big := bytes.Repeat([]byte("0123456789"), 300_000) // 3 MB, past every flow-control window
	for _, tc := range []struct {
		method, path string
		body         []byte
	}{
		{"GET", "/", nil},
		{"GET", "/a/b?x=1&y=%20z", nil},
		{"GET", "/%7Euser/a%2Fb", nil},
		{"POST", "/upload", []byte("hello")},
		{"PUT", "/big", big},
		{"DELETE", "/x", nil},
		{"OPTIONS", "/", nil},
	} {
		t.Run(tc.method+" "+tc.path, func(t *testing.T) {
			req, _ := http.NewRequest(tc.method, ts.url(tc.path), bytes.NewReader(tc.body))
			req.Header.Set("User-Agent", "h3-test")
			resp, err := c.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			got, _ := io.ReadAll(resp.Body)
			sum := sha256.Sum256(tc.body)
			want := fmt.Sprintf("%s %s query=%s host=localhost:", tc.method, req.URL.Path, req.URL.RawQuery)
			if resp.StatusCode != 200 || !strings.HasPrefix(string(got), want) ||
				!strings.Contains(string(got), fmt.Sprintf("len=%d sum=%x tls=true remote=true", len(tc.body), sum[:4])) ||
				!strings.Contains(string(got), "ua=h3-test") {
				t.Fatalf("status %d body %q", resp.StatusCode, got)
			}
			if resp.Proto != "HTTP/3.0" || resp.Header.Get("X-Proto") != "HTTP/3.0" {
				t.Fatalf("proto %s, handler saw %s", resp.Proto, resp.Header.Get("X-Proto"))
			}
			if v := resp.Header.Values("X-Multi"); len(v) != 2 {
				t.Fatalf("X-Multi %v, want a and b", v)
			}
			if resp.Header.Get("Date") == "" {
				t.Fatal("no Date header")
			}
			if cl := resp.Header.Get("Content-Length"); cl != strconv.Itoa(len(got)) {
				t.Fatalf("Content-Length %q for a %d-byte body", cl, len(got))
			}
		})
	}

	// Many requests at once, on one connection.
	var wg sync.WaitGroup
	errs := make(chan error, 200)
	for i := range 200 {
		wg.Go(func() {
			resp, err := c.Get(ts.url("/n/" + strconv.Itoa(i)))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if !strings.HasPrefix(string(b), "GET /n/"+strconv.Itoa(i)+" ") {
				errs <- fmt.Errorf("request %d got %q", i, b)
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
}

// A body is streamed to the handler as it arrives, and flow control holds
// the client back while the handler does not read.
func TestRequestBodyStreaming(t *testing.T) {
	gotFirst := make(chan []byte, 1)
	release := make(chan struct{})
	var total atomic.Int64
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, 5)
		n, err := io.ReadFull(r.Body, buf)
		if err != nil {
			t.Errorf("first read: %v", err)
		}
		gotFirst <- buf[:n]
		<-release
		rest, err := io.Copy(io.Discard, r.Body)
		if err != nil {
			t.Errorf("rest: %v", err)
		}
		total.Store(int64(n) + rest)
		io.WriteString(w, "done")
	})})
	rc := ts.dial(t)
	post := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")
	s := rc.request(false, frame(frameHeaders, post), frame(frameData, []byte("first")))
	select {
	case b := <-gotFirst:
		if string(b) != "first" {
			t.Fatalf("handler read %q", b)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the handler did not get the body's first bytes before the body ended")
	}
	// The handler does not read now: writing 20 MB must stall on flow
	// control long before it is all sent.
	var sent atomic.Int64
	writeDone := make(chan error, 1)
	go func() {
		chunk := frame(frameData, make([]byte, 64<<10))
		for range 320 {
			if _, err := s.Write(chunk); err != nil {
				writeDone <- err
				return
			}
			sent.Add(64 << 10)
		}
		writeDone <- s.Close()
	}()
	time.Sleep(300 * time.Millisecond)
	if n := sent.Load(); n >= 20<<20 {
		t.Fatalf("client sent %d bytes while the handler read nothing: no flow control", n)
	}
	close(release)
	if err := <-writeDone; err != nil {
		t.Fatal(err)
	}
	r := mustResponse(t, s)
	if r.status != 200 || string(r.body) != "done" || total.Load() != 5+320*(64<<10) {
		t.Fatalf("status %d body %q, handler read %d bytes", r.status, r.body, total.Load())
	}
}

// Trailers both ways: the client's fill Request.Trailer when the body is
// read; the handler's declared and TrailerPrefix ones follow the body.
func TestTrailers(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		declared := fmt.Sprint(len(r.Trailer), r.Trailer.Get("X-Sum") == "")
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Trailer", "X-Checksum")
		w.Header().Set("X-Checksum", "early") // replaced below, sent as a trailer only
		w.Write(body)
		w.(http.Flusher).Flush()
		w.Write([]byte("+more"))
		w.Header().Set("X-Checksum", "abc")
		w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		w.Header().Set("X-After-Headers", "ignored")
		fmt.Fprintf(w, " declared=%s got=%s", declared, r.Trailer.Get("X-Sum"))
	})})
	rc := ts.dial(t)
	post := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/", "trailer", "X-Sum")
	s := rc.request(true, frame(frameHeaders, post), frame(frameData, []byte("body")), frame(frameHeaders, fields("x-sum", "42")))
	r := mustResponse(t, s)
	if string(r.body) != "body+more declared=1 true got=42" {
		t.Fatalf("body %q", r.body)
	}
	if r.header.Get("x-checksum") != "" || r.header.Get("trailer") != "X-Checksum" {
		t.Fatalf("headers %v: the declared trailer went out early, or Trailer is missing", r.header)
	}
	if r.trailer.Get("x-checksum") != "abc" || r.trailer.Get("x-late") != "late" || r.trailer.Get("x-after-headers") != "" {
		t.Fatalf("trailers %v", r.trailer)
	}

	// And through quic-go's client.
	resp, err := ts.client(t).Post(ts.url("/"), "text/plain", strings.NewReader("x"))
	if err != nil {
		t.Fatal(err)
	}
	io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.Trailer.Get("X-Checksum") != "abc" || resp.Trailer.Get("X-Late") != "late" {
		t.Fatalf("quic-go client saw trailers %v", resp.Trailer)
	}
}

func TestInterimResponses(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.WriteHeader(http.StatusSwitchingProtocols) // no such thing in HTTP/3: dropped
		w.Header().Del("Link")
		w.WriteHeader(http.StatusCreated)
		io.WriteString(w, "made")
	})})
	rc := ts.dial(t)
	r := mustResponse(t, rc.request(true, frame(frameHeaders, get("/"))))
	if fmt.Sprint(r.interim) != "[103]" || r.status != 201 || string(r.body) != "made" || r.header.Get("link") != "" {
		t.Fatalf("interim %v status %d body %q header %v", r.interim, r.status, r.body, r.header)
	}

	var got1xx []int
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, _ textproto.MIMEHeader) error {
		got1xx = append(got1xx, code)
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET", ts.url("/"), nil)
	resp, err := ts.client(t).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 201 || fmt.Sprint(got1xx) != "[103]" {
		t.Fatalf("quic-go client: status %d, 1xx %v", resp.StatusCode, got1xx)
	}
}

// Expect: 100-continue gets 100 when the handler starts reading the body,
// and none when it answers without reading.
func TestExpectContinue(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/reject" {
			http.Error(w, "no", http.StatusForbidden)
			return
		}
		b, _ := io.ReadAll(r.Body)
		w.Write(b)
	})})
	rc := ts.dial(t)
	head := fields(":method", "PUT", ":scheme", "https", ":authority", "localhost", ":path", "/", "expect", "100-continue", "content-length", "4")
	s := rc.request(false, frame(frameHeaders, head))
	// The client waits for 100 before sending the body.
	buf := make([]byte, 64)
	_ = s.SetReadDeadline(time.Now().Add(5 * time.Second))
	n, err := s.Read(buf)
	if err != nil || n < 2 || buf[0] != frameHeaders {
		t.Fatalf("no 100 Continue: %d bytes, %v", n, err)
	}
	s.Write(frame(frameData, []byte("body")))
	s.Close()
	rest, err := io.ReadAll(s)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Contains(rest, []byte("body")) {
		t.Fatalf("response %q", rest)
	}

	reject := fields(":method", "PUT", ":scheme", "https", ":authority", "localhost", ":path", "/reject", "expect", "100-continue", "content-length", "4")
	r := mustResponse(t, rc.request(false, frame(frameHeaders, reject)))
	if len(r.interim) != 0 || r.status != 403 {
		t.Fatalf("rejected upload: interim %v status %d", r.interim, r.status)
	}
}

// Date, Content-Type sniffing and Content-Length as net/http; HEAD, 204
// and 304 carry no body.
func TestResponseHeadersAndBodies(t *testing.T) {
	var writeErr atomic.Pointer[error]
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/html":
			io.WriteString(w, "<!DOCTYPE html><html><body>hi</body></html>")
		case "/big-html":
			w.Write([]byte("<!DOCTYPE html><html><body>" + strings.Repeat("x", 20_000)))
		case "/typed":
			w.Header().Set("Content-Type", "application/json")
			io.WriteString(w, `{"a":1}`)
		case "/no-sniff":
			w.Header()["Content-Type"] = nil
			io.WriteString(w, "<html></html>")
		case "/gzip":
			w.Header().Set("Content-Encoding", "gzip")
			w.Write([]byte{0x1f, 0x8b, 0, 0})
		case "/no-date":
			w.Header()["Date"] = nil
			io.WriteString(w, "x")
		case "/204", "/304":
			code, _ := strconv.Atoi(r.URL.Path[1:])
			w.WriteHeader(code)
			_, err := io.WriteString(w, "nope")
			writeErr.Store(&err)
		case "/empty":
		case "/declared":
			w.Header().Set("Content-Length", "5")
			io.WriteString(w, "12345")
			if _, err := io.WriteString(w, "6"); !errors.Is(err, http.ErrContentLength) {
				t.Errorf("write past Content-Length: %v", err)
			}
		case "/connection-headers":
			w.Header().Set("Connection", "close")
			w.Header().Set("Transfer-Encoding", "chunked")
			w.Header().Set("Keep-Alive", "5")
			w.Header().Set("Upgrade", "h2c")
			w.Header().Set("Bad Name", "x")
			w.Header().Set("X-Bad-Value", "a\r\nb")
			w.Header().Set("X-Good", "y")
			io.WriteString(w, "x")
		default:
			io.WriteString(w, strings.Repeat("z", 100))
		}
	})})
	rc := ts.dial(t)
	do := func(method, path string) *response {
		t.Helper()
		h := fields(":method", method, ":scheme", "https", ":authority", "localhost", ":path", path)
		return mustResponse(t, rc.request(true, frame(frameHeaders, h)))
	}
	if r := do("GET", "/html"); r.header.Get("content-type") != "text/html; charset=utf-8" {
		t.Errorf("sniffed %q", r.header.Get("content-type"))
	}
	if r := do("GET", "/big-html"); r.header.Get("content-type") != "text/html; charset=utf-8" || r.header.Get("content-length") != "" {
		t.Errorf("large first write: Content-Type %q, Content-Length %q", r.header.Get("content-type"), r.header.Get("content-length"))
	}
	if r := do("HEAD", "/html"); r.header.Get("content-type") != "text/html; charset=utf-8" || r.header.Get("content-length") != "43" || r.dataSeen != 0 {
		t.Errorf("HEAD: Content-Type %q, Content-Length %q, %d DATA frames", r.header.Get("content-type"), r.header.Get("content-length"), r.dataSeen)
	}
	if r := do("GET", "/typed"); r.header.Get("content-type") != "application/json" {
		t.Errorf("typed %q", r.header.Get("content-type"))
	}
	if r := do("GET", "/no-sniff"); r.header["content-type"] != nil {
		t.Errorf("Content-Type set to nil was sniffed: %v", r.header)
	}
	if r := do("GET", "/gzip"); r.header["content-type"] != nil {
		t.Errorf("encoded body was sniffed: %v", r.header)
	}
	if r := do("GET", "/no-date"); r.header["date"] != nil {
		t.Errorf("Date set to nil was sent: %v", r.header)
	}
	r := do("GET", "/")
	if d, err := http.ParseTime(r.header.Get("date")); err != nil || time.Since(d) > 5*time.Second {
		t.Errorf("Date %q", r.header.Get("date"))
	}
	if r.header.Get("content-length") != "100" || len(r.body) != 100 {
		t.Errorf("Content-Length %q, body %d", r.header.Get("content-length"), len(r.body))
	}
	if r.dataSeen != 1 {
		t.Errorf("a 100-byte response came in %d DATA frames", r.dataSeen)
	}
	r = do("HEAD", "/")
	if r.status != 200 || len(r.body) != 0 || r.dataSeen != 0 || r.header.Get("content-length") != "100" {
		t.Errorf("HEAD: status %d, %d DATA frames, %d bytes, Content-Length %q", r.status, r.dataSeen, len(r.body), r.header.Get("content-length"))
	}
	for _, code := range []string{"204", "304"} {
		writeErr.Store(nil)
		r := do("GET", "/"+code)
		if strconv.Itoa(r.status) != code || r.dataSeen != 0 || r.header.Get("content-length") != "" {
			t.Errorf("%s: status %d, %d DATA frames, Content-Length %q", code, r.status, r.dataSeen, r.header.Get("content-length"))
		}
		if err := writeErr.Load(); err == nil || !errors.Is(*err, http.ErrBodyNotAllowed) {
			t.Errorf("%s: Write returned %v, want ErrBodyNotAllowed", code, err)
		}
	}
	if r := do("GET", "/empty"); r.status != 200 || r.header.Get("content-length") != "0" || r.dataSeen != 0 {
		t.Errorf("empty: status %d Content-Length %q DATA %d", r.status, r.header.Get("content-length"), r.dataSeen)
	}
	if r := do("GET", "/declared"); string(r.body) != "12345" || r.header.Get("content-length") != "5" {
		t.Errorf("declared: %q %v", r.body, r.header)
	}
	r = do("GET", "/connection-headers")
	for _, h := range []string{"connection", "transfer-encoding", "keep-alive", "upgrade", "bad name", "x-bad-value"} {
		if r.header[h] != nil {
			t.Errorf("response carries %s: %v", h, r.header)
		}
	}
	if r.header.Get("x-good") != "y" {
		t.Errorf("x-good missing: %v", r.header)
	}
}

// A handler that writes less than its Content-Length gets its stream
// reset rather than a truncated answer passed off as whole.
func TestShortContentLength(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "10")
		io.WriteString(w, "12345")
	})})
	rc := ts.dial(t)
	wantStreamError(t, rc.request(true, frame(frameHeaders, get("/"))), ErrInternalError)
}

// Large responses stream out in DATA frames with the header first;
// Flush sends what was written before the handler returns.
func TestStreamingResponse(t *testing.T) {
	next := make(chan struct{})
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			for range 100 {
				w.Write(bytes.Repeat([]byte("b"), 10_000))
			}
			return
		}
		io.WriteString(w, "part1")
		w.(http.Flusher).Flush()
		<-next
		io.WriteString(w, "part2")
	})})
	c := ts.client(t)
	resp, err := c.Get(ts.url("/big"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if len(b) != 1_000_000 || resp.Header.Get("Content-Length") != "" {
		t.Fatalf("big: %d bytes, Content-Length %q", len(b), resp.Header.Get("Content-Length"))
	}

	resp, err = c.Get(ts.url("/flush"))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	buf := make([]byte, 5)
	if _, err := io.ReadFull(resp.Body, buf); err != nil || string(buf) != "part1" {
		t.Fatalf("flushed part: %q %v", buf, err)
	}
	close(next)
	rest, _ := io.ReadAll(resp.Body)
	if string(rest) != "part2" {
		t.Fatalf("rest %q", rest)
	}
}

func TestResponseController(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rc := http.NewResponseController(w)
		var errs []string
		for name, err := range map[string]error{
			"SetReadDeadline":  rc.SetReadDeadline(time.Now().Add(time.Minute)),
			"SetWriteDeadline": rc.SetWriteDeadline(time.Now().Add(time.Minute)),
			"EnableFullDuplex": rc.EnableFullDuplex(),
		} {
			if err != nil {
				errs = append(errs, name+": "+err.Error())
			}
		}
		if _, _, err := rc.Hijack(); !errors.Is(err, http.ErrNotSupported) {
			errs = append(errs, fmt.Sprintf("Hijack: %v", err))
		}
		io.WriteString(w, "flushed")
		if err := rc.Flush(); err != nil {
			errs = append(errs, "Flush: "+err.Error())
		}
		io.WriteString(w, strings.Join(errs, "; "))
	})})
	rc := ts.dial(t)
	r := mustResponse(t, rc.request(true, frame(frameHeaders, get("/"))))
	if string(r.body) != "flushed" {
		t.Fatalf("body %q", r.body)
	}
}

// A read deadline set through the ResponseController ends a body read
// with a timeout; only the reading side is stopped, so the handler's 408
// reaches the client.
func TestReadDeadline(t *testing.T) {
	errc := make(chan error, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.NewResponseController(w).SetReadDeadline(time.Now().Add(100 * time.Millisecond))
		_, err := io.ReadAll(r.Body)
		errc <- err
		http.Error(w, "body too slow", http.StatusRequestTimeout)
	})})
	rc := ts.dial(t)
	post := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")
	s := rc.request(false, frame(frameHeaders, post), frame(frameData, []byte("x")))
	select {
	case err := <-errc:
		var ne net.Error
		if !errors.As(err, &ne) || !ne.Timeout() {
			t.Fatalf("body read at the deadline: %v; want a timeout (net.Error)", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("body read did not end at its deadline")
	}
	r, err := readResponse(t, s)
	if err != nil {
		t.Fatalf("the handler's answer after a read timeout: %v; want its 408", err)
	}
	if r.status != http.StatusRequestTimeout || !strings.Contains(string(r.body), "body too slow") {
		t.Fatalf("status %d body %q, want the handler's 408", r.status, r.body)
	}
	// The client is told to stop sending: STOP_SENDING H3_REQUEST_INCOMPLETE.
	if !waitFor(2*time.Second, func() bool {
		_, err := s.Write(frame(frameData, []byte("late")))
		var se *quic.StreamError
		return errors.As(err, &se) && ErrCode(se.ErrorCode) == ErrRequestIncomplete
	}) {
		t.Fatal("no STOP_SENDING H3_REQUEST_INCOMPLETE after the read deadline")
	}
}

// Panics: http.ErrAbortHandler resets the stream quietly, anything else
// is logged too; runtime.Goexit resets the stream; the server goes on.
func TestHandlerPanics(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/abort":
			io.WriteString(w, "partial")
			w.(http.Flusher).Flush()
			panic(http.ErrAbortHandler)
		case "/panic":
			panic("boom")
		case "/goexit":
			runtime.Goexit()
		}
		io.WriteString(w, "ok")
	})})
	rc := ts.dial(t)
	wantStreamError(t, rc.request(true, frame(frameHeaders, get("/abort"))), ErrInternalError)
	if strings.Contains(ts.logs.String(), "panic") {
		t.Fatalf("ErrAbortHandler was logged: %s", ts.logs.String())
	}
	wantStreamError(t, rc.request(true, frame(frameHeaders, get("/panic"))), ErrInternalError)
	if l := ts.logs.String(); !strings.Contains(l, "panic serving request") || !strings.Contains(l, "boom") || !strings.Contains(l, "goroutine") {
		t.Fatalf("panic not logged with its stack: %s", l)
	}
	for range 3 {
		wantStreamError(t, rc.request(true, frame(frameHeaders, get("/goexit"))), ErrInternalError)
	}
	rc.wantOpen()
}

// The request's context ends when the client abandons the request, and
// when the connection goes.
func TestRequestContextCancelled(t *testing.T) {
	started := make(chan struct{}, 1)
	ended := make(chan error, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/done":
			go func() {
				<-r.Context().Done()
				ended <- nil
			}()
			return
		case "/still-open":
			return
		}
		started <- struct{}{}
		select {
		case <-r.Context().Done():
			ended <- r.Context().Err()
		case <-time.After(5 * time.Second):
			ended <- errors.New("not cancelled")
		}
	})})
	t.Run("client resets", func(t *testing.T) {
		rc := ts.dial(t)
		s := rc.request(true, frame(frameHeaders, get("/")))
		<-started
		s.CancelRead(strCode(ErrRequestCancelled))
		s.CancelWrite(strCode(ErrRequestCancelled))
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("context: %v", err)
		}
		rc.wantOpen()
	})
	t.Run("connection closes", func(t *testing.T) {
		rc := ts.dial(t)
		rc.request(true, frame(frameHeaders, get("/")))
		<-started
		rc.qc.CloseWithError(0x100, "")
		if err := <-ended; !errors.Is(err, context.Canceled) {
			t.Fatalf("context: %v", err)
		}
	})
	t.Run("handler returns", func(t *testing.T) {
		rc := ts.dial(t)
		mustResponse(t, rc.request(true, frame(frameHeaders, get("/done"))))
		select {
		case <-ended:
		case <-time.After(5 * time.Second):
			t.Fatal("context not cancelled after the handler returned")
		}
	})
}

// Graceful shutdown: GOAWAY naming the first unserved stream, requests in
// flight answered, later streams refused with H3_REQUEST_REJECTED, then
// the connection closed with H3_NO_ERROR.
func TestShutdownGoAway(t *testing.T) {
	release := make(chan struct{})
	running := make(chan struct{}, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			running <- struct{}{}
			<-release
		}
		io.WriteString(w, "answered")
	})})
	rc := ts.dial(t)
	rc.control()
	rc.wantOpen() // stream 0
	slow := rc.request(true, frame(frameHeaders, get("/slow")))
	<-running
	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		shut <- ts.Shutdown(ctx)
	}()
	if !waitFor(2*time.Second, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return len(rc.goAways) > 0
	}) {
		t.Fatal("no GOAWAY")
	}
	rc.mu.Lock()
	goAway := rc.goAways[0]
	rc.mu.Unlock()
	if goAway != uint64(slow.StreamID())+4 {
		t.Fatalf("GOAWAY %d, want %d (the stream after the one in flight)", goAway, slow.StreamID()+4)
	}
	late := rc.request(true, frame(frameHeaders, get("/late")))
	wantStreamError(t, late, ErrRequestRejected)
	close(release)
	if r := mustResponse(t, slow); string(r.body) != "answered" {
		t.Fatalf("in-flight request: %q", r.body)
	}
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	rc.wantConnError(ErrNoError)
}

// Shutdown with a request that does not end: cut at the deadline.
func TestShutdownDeadline(t *testing.T) {
	running := make(chan struct{}, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		running <- struct{}{}
		<-r.Context().Done()
	})})
	rc := ts.dial(t)
	s := rc.request(true, frame(frameHeaders, get("/")))
	<-running
	ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	if err := ts.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := readResponse(t, s); err == nil {
		t.Fatal("request outlived Shutdown's deadline")
	}
}

// With RequireStreamCreditRelease, MaxIncomingStreams caps the handlers
// running on a connection, even when the client abandons its requests:
// here each handler sees the client's STOP_SENDING in a failed write (so
// for QUIC the stream is over) and goes on working.
func TestConcurrentRequestCap(t *testing.T) {
	const limit = 4
	release := make(chan struct{})
	var running, peak atomic.Int32
	ts := startServerQUIC(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/still-open" {
			return
		}
		rc := http.NewResponseController(w)
		io.WriteString(w, "x")
		for rc.Flush() == nil {
			io.WriteString(w, "y")
			time.Sleep(5 * time.Millisecond)
		}
		n := running.Add(1)
		for {
			p := peak.Load()
			if n <= p || peak.CompareAndSwap(p, n) {
				break
			}
		}
		<-release
		running.Add(-1)
	})}, &quic.Config{MaxIdleTimeout: 30 * time.Second}, limit)
	rc := ts.dial(t)
	for i := range limit {
		s := rc.request(true, frame(frameHeaders, get("/")))
		s.Read(make([]byte, 1))
		s.CancelRead(0x10c)
		s.CancelWrite(0x10c)
		if !waitFor(2*time.Second, func() bool { return running.Load() == int32(i+1) }) {
			t.Fatalf("%d handlers running, want %d", running.Load(), i+1)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if _, err := rc.qc.OpenStreamSync(ctx); err == nil {
		t.Fatal("a new request stream was granted while every handler still runs")
	}
	close(release)
	rc.wantOpen()
	if p := peak.Load(); p > limit {
		t.Fatalf("%d handlers ran at once, limit %d", p, limit)
	}
}

// WriteTimeout ends a response the client does not take (it grants no
// flow control), and ReadTimeout a body that does not come.
func TestReadWriteTimeouts(t *testing.T) {
	writeErr := make(chan error, 1)
	readErr := make(chan error, 1)
	ts := startServer(t, Config{ReadTimeout: 300 * time.Millisecond, WriteTimeout: 300 * time.Millisecond,
		Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.Method == "POST" {
				_, err := io.ReadAll(r.Body)
				readErr <- err
				return
			}
			chunk := make([]byte, 64<<10)
			for range 100 {
				if _, err := w.Write(chunk); err != nil {
					writeErr <- err
					return
				}
			}
			writeErr <- nil
		})})
	rc := ts.dialQUIC(t, &quic.Config{MaxIdleTimeout: 30 * time.Second, InitialStreamReceiveWindow: 64 << 10, MaxStreamReceiveWindow: 64 << 10})
	s := rc.request(true, frame(frameHeaders, get("/big")))
	select {
	case err := <-writeErr:
		if err == nil || !strings.Contains(err.Error(), "WriteTimeout") {
			t.Fatalf("write to a client that reads nothing: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("write did not end at WriteTimeout")
	}
	wantStreamError(t, s, ErrRequestCancelled)

	post := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")
	rc.request(false, frame(frameHeaders, post), frame(frameData, []byte("part")))
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("body read without its end succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("body read did not end at ReadTimeout")
	}
}

// The idle close is graceful: GOAWAY naming the next stream, then
// H3_NO_ERROR.
func TestIdleTimeout(t *testing.T) {
	ts := startServer(t, Config{Handler: okHandler(), IdleTimeout: 200 * time.Millisecond})
	rc := ts.dial(t)
	rc.control()
	rc.wantOpen() // stream 0
	t0 := time.Now()
	if !waitFor(3*time.Second, func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		return len(rc.goAways) > 0
	}) {
		t.Fatalf("no GOAWAY before the idle close (connection: %v)", context.Cause(rc.qc.Context()))
	}
	rc.mu.Lock()
	goAway := rc.goAways[0]
	rc.mu.Unlock()
	if goAway != 4 {
		t.Fatalf("GOAWAY %d, want 4 (the stream after the one served)", goAway)
	}
	rc.wantConnError(ErrNoError)
	if d := time.Since(t0); d < 150*time.Millisecond {
		t.Fatalf("closed after %v idle, IdleTimeout 200ms", d)
	}
}

// A request in flight keeps the connection open even when the idle
// bookkeeping says otherwise (idleSince and inFlight are two atomics, and
// requests that end and start at once can leave idleSince set while one
// runs).
func TestIdleTimeoutWithRequestInFlight(t *testing.T) {
	running := make(chan struct{})
	ts := startServer(t, Config{IdleTimeout: 100 * time.Millisecond, Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(running)
			time.Sleep(500 * time.Millisecond)
		}
		io.WriteString(w, "done")
	})})
	rc := ts.dial(t)
	s := rc.request(true, frame(frameHeaders, get("/slow")))
	<-running
	// What the race leaves: idle since long ago, with the request running.
	ts.mu.Lock()
	for c := range ts.conns {
		c.idleSince.Store(time.Now().Add(-time.Hour).UnixNano())
	}
	ts.mu.Unlock()
	r, err := readResponse(t, s)
	if err != nil || string(r.body) != "done" {
		t.Fatalf("request in flight: %v (connection: %v)", err, context.Cause(rc.qc.Context()))
	}
}

// The ResponseWriter and Body are cut off when the handler returns.
func TestUseAfterHandlerReturned(t *testing.T) {
	type kept struct {
		w http.ResponseWriter
		r *http.Request
	}
	got := make(chan kept, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- kept{w, r}
	})})
	rc := ts.dial(t)
	post := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")
	s := rc.request(false, frame(frameHeaders, post), frame(frameData, []byte("x")))
	k := <-got
	mustResponse(t, s)
	// The stream is cut off right after the response's end went out.
	writePanics := func() (msg string) {
		defer func() { msg = fmt.Sprint(recover()) }()
		k.w.Header()
		return ""
	}
	var msg string
	if !waitFor(2*time.Second, func() bool { msg = writePanics(); return msg != "" && msg != "<nil>" }) || !strings.Contains(msg, "after its handler returned") {
		t.Fatalf("ResponseWriter used after the handler returned: %q", msg)
	}
	if _, err := k.r.Body.Read(make([]byte, 1)); err == nil {
		t.Fatal("Body.Read after the handler returned succeeded")
	}
}

func TestRequestFields(t *testing.T) {
	type seen struct {
		host, uri, cookie, path, query string
		header                         http.Header
		cl                             int64
		body                           bool
		local                          bool
	}
	got := make(chan seen, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, local := r.Context().Value(http.LocalAddrContextKey).(interface{ String() string })
		got <- seen{r.Host, r.RequestURI, r.Header.Get("Cookie"), r.URL.Path, r.URL.RawQuery, r.Header, r.ContentLength, r.Body != http.NoBody, local}
	})})
	rc := ts.dial(t)
	h := fields(":method", "GET", ":scheme", "https", ":path", "/p%20q?a=1", "host", "example.test", "cookie", "a=1", "cookie", "b=2", "x-a", "1", "x-a", "2")
	mustResponse(t, rc.request(true, frame(frameHeaders, h)))
	s := <-got
	if s.host != "example.test" || s.uri != "/p%20q?a=1" || s.path != "/p q" || s.query != "a=1" || s.cookie != "a=1; b=2" {
		t.Fatalf("%+v", s)
	}
	if s.header.Get("Host") != "" || len(s.header["X-A"]) != 2 || s.cl != 0 || s.body || !s.local {
		t.Fatalf("%+v", s)
	}
}

func TestConfigErrors(t *testing.T) {
	if _, err := New(Config{}); err == nil || !strings.Contains(err.Error(), "Handler is nil") {
		t.Fatalf("no handler: %v", err)
	}
	if _, err := New(Config{Handler: okHandler(), MaxFieldSectionSize: 10}); err == nil || !strings.Contains(err.Error(), "MaxFieldSectionSize") {
		t.Fatalf("tiny limit: %v", err)
	}
	if _, err := New(Config{Handler: okHandler(), Workers: -1}); err == nil {
		t.Fatal("negative Workers accepted")
	}
}

// A plain CONNECT (RFC 9114 §4.4) reaches the handler with its authority;
// what to do with it is the handler's business.
func TestConnectMethod(t *testing.T) {
	got := make(chan string, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got <- r.Method + " " + r.Host + " " + r.URL.Host + " " + r.RequestURI
		http.Error(w, "no tunnels here", http.StatusMethodNotAllowed)
	})})
	rc := ts.dial(t)
	r := mustResponse(t, rc.request(true, frame(frameHeaders, fields(":method", "CONNECT", ":authority", "example.test:443"))))
	if s := <-got; s != "CONNECT example.test:443 example.test:443 example.test:443" || r.status != 405 {
		t.Fatalf("handler saw %q, status %d", s, r.status)
	}
}

// Config.BaseContext's values reach every request's context (edge/listen
// puts http.ServerContextKey there); without it there are none.
func TestBaseContext(t *testing.T) {
	type key struct{}
	hs := &http.Server{}
	got := make(chan [3]any, 1)
	handler := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx := r.Context()
		got <- [3]any{ctx.Value(http.ServerContextKey), ctx.Value(key{}), ctx.Value(http.LocalAddrContextKey)}
	})
	ts := startServer(t, Config{Handler: handler, BaseContext: func(*quic.Conn) context.Context {
		return context.WithValue(context.WithValue(context.Background(), http.ServerContextKey, hs), key{}, "v")
	}})
	mustResponse(t, ts.dial(t).request(true, frame(frameHeaders, get("/"))))
	if v := <-got; v[0] != hs || v[1] != "v" || v[2] == nil {
		t.Fatalf("context values %v: want the BaseContext's server and value, and the local address", v)
	}
	plain := startServer(t, Config{Handler: handler})
	mustResponse(t, plain.dial(t).request(true, frame(frameHeaders, get("/"))))
	if v := <-got; v[0] != nil || v[1] != nil {
		t.Fatalf("context values %v without a BaseContext", v)
	}
}
