package h3

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/quic-go/quic-go"
)

// A handler that answers while a goroutine of its own still reads the
// upload (as net/http's Transport does when the origin answered early) gets
// its answer to the client: the read that fails when the handler returns
// leaves the finished response alone.
func TestEarlyAnswerWhileBodyIsRead(t *testing.T) {
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/still-open" {
			return
		}
		// The reader has the first bytes and waits for more when the
		// handler answers and returns.
		first := make(chan struct{})
		go func() {
			r.Body.Read(make([]byte, 1))
			close(first)
			io.Copy(io.Discard, r.Body)
		}()
		<-first
		http.Error(w, "too large", http.StatusRequestEntityTooLarge)
	})})
	rc := ts.dial(t)
	rc.control()
	head := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/upload", "content-length", "1000000")
	chunk := frame(frameData, bytes.Repeat([]byte("u"), 1000))
	for i := range 20 {
		s := rc.request(false, frame(frameHeaders, head), chunk)
		r, err := readResponse(t, s)
		if err != nil {
			t.Fatalf("request %d: %v (want the 413)", i, err)
		}
		if r.status != http.StatusRequestEntityTooLarge || !strings.Contains(string(r.body), "too large") {
			t.Fatalf("request %d: status %d body %q", i, r.status, r.body)
		}
	}
	rc.wantOpen()
}

// A client that resets only its upload fails the handler's body read; the
// handler can still answer, and the answer arrives whole.
func TestClientResetsUploadOnly(t *testing.T) {
	readErr := make(chan error, 1)
	started := make(chan struct{})
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadFull(r.Body, make([]byte, 4))
		close(started)
		_, err := io.ReadAll(r.Body)
		readErr <- err
		http.Error(w, "upload cut short", http.StatusBadRequest)
	})})
	rc := ts.dial(t)
	post := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/")
	s := rc.request(false, frame(frameHeaders, post), frame(frameData, []byte("part")))
	<-started
	s.CancelWrite(strCode(ErrRequestCancelled))
	select {
	case err := <-readErr:
		if err == nil {
			t.Fatal("body read of a reset upload succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("body read did not fail when the client reset its upload")
	}
	r, err := readResponse(t, s)
	if err != nil {
		t.Fatalf("answer to a reset upload: %v (want the 400)", err)
	}
	if r.status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400", r.status)
	}
}

// A goroutine the handler left behind, blocked in a Write when the handler
// returns, gets the response reset (its Write fails) instead of racing the
// end of the response or touching the stream state after it went back to
// the pool; later calls panic, and the connection serves on.
func TestWriterKeptPastHandler(t *testing.T) {
	writeErr := make(chan error, 1)
	kept := make(chan http.ResponseWriter, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/leak" {
			io.WriteString(w, "ok")
			return
		}
		inWrite := make(chan struct{})
		go func() {
			close(inWrite)
			// More than the client's flow control allows: blocks.
			_, err := w.Write(make([]byte, 1<<20))
			writeErr <- err
			kept <- w
		}()
		<-inWrite
		time.Sleep(50 * time.Millisecond) // the goroutine is inside Write (the test holds either way)
	})})
	rc := ts.dialQUIC(t, &quic.Config{MaxIdleTimeout: 30 * time.Second, InitialStreamReceiveWindow: 64 << 10, MaxStreamReceiveWindow: 64 << 10})
	s := rc.request(true, frame(frameHeaders, get("/leak")))
	select {
	case err := <-writeErr:
		if err == nil {
			t.Fatal("a 1 MiB write to a client that reads nothing succeeded")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the kept writer's Write still blocks after its handler returned")
	}
	wantStreamError(t, s, ErrInternalError)
	w := <-kept
	func() {
		defer func() {
			if v := recover(); v == nil || !strings.Contains(fmt.Sprint(v), "after its handler returned") {
				t.Errorf("Write after the handler returned: recovered %v, want the package's panic", v)
			}
		}()
		w.Write([]byte("late"))
	}()
	for range 3 {
		rc.wantOpen()
	}
}

// Closing the body while another goroutine is blocked reading it (a
// forwarder's transport still copying the upload when the origin has
// answered) returns at once: it wakes the reader instead of waiting for
// the client's next byte or the read deadline.
func TestCloseWhileBodyIsRead(t *testing.T) {
	closed := make(chan time.Duration, 1)
	ts := startServer(t, Config{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		first := make(chan struct{})
		readDone := make(chan struct{})
		go func() {
			defer close(readDone)
			r.Body.Read(make([]byte, 1))
			close(first)
			io.Copy(io.Discard, r.Body) // blocks: the client sends no more
		}()
		<-first
		time.Sleep(20 * time.Millisecond) // let the reader block in Read
		start := time.Now()
		r.Body.Close()
		closed <- time.Since(start)
		<-readDone
		http.Error(w, "no thanks", http.StatusForbidden)
	})})
	rc := ts.dial(t)
	rc.control()
	head := fields(":method", "POST", ":scheme", "https", ":authority", "localhost", ":path", "/upload", "content-length", "1000000")
	s := rc.request(false, frame(frameHeaders, head), frame(frameData, bytes.Repeat([]byte("u"), 1000)))
	select {
	case d := <-closed:
		if d > 2*time.Second {
			t.Fatalf("Close waited %v for the blocked reader", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Close did not return while another goroutine was blocked reading the body")
	}
	r, err := readResponse(t, s)
	if err != nil {
		t.Fatalf("answer after Close: %v (want the 403)", err)
	}
	if r.status != http.StatusForbidden {
		t.Fatalf("status %d, want 403", r.status)
	}
}
