package h3

import (
	"bytes"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"
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
