package h2

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
)

func TestBasicGetPost(t *testing.T) {
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		if err != nil {
			t.Errorf("reading body: %v", err)
		}
		w.Header().Set("X-Method", r.Method)
		fmt.Fprintf(w, "%s %s %s %q %d %d host=%s tls=%t", r.Proto, r.Method, r.URL.String(), b, len(b), r.ContentLength, r.Host, r.TLS != nil)
	}))
	c := ts.client()
	resp, err := c.Get(ts.url() + "/a/b?x=1")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	want := `HTTP/2.0 GET /a/b?x=1 "" 0 0 host=` + ts.addr + " tls=true"
	if string(b) != want {
		t.Fatalf("got %q, want %q", b, want)
	}
	if resp.ContentLength != int64(len(want)) || resp.Header.Get("Content-Type") != "text/plain; charset=utf-8" || resp.Header.Get("Date") == "" {
		t.Fatalf("headers: cl=%d %v", resp.ContentLength, resp.Header)
	}
	body := strings.Repeat("p", 300<<10)
	resp, err = c.Post(ts.url()+"/post", "text/plain", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), fmt.Sprintf(" %d ", len(body))) {
		t.Fatalf("POST: %.200s", b)
	}
}

func TestManyConcurrentRequests(t *testing.T) {
	big := bytes.Repeat([]byte("z"), 200<<10)
	ts := startServer(t, Config{}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.Copy(w, r.Body)
	}))
	c := ts.client()
	var wg sync.WaitGroup
	errs := make(chan error, 400)
	for i := range 400 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if i%4 == 0 {
				resp, err := c.Get(ts.url() + "/big")
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !bytes.Equal(b, big) {
					errs <- fmt.Errorf("big: %d bytes", len(b))
				}
				return
			}
			msg := strings.Repeat(fmt.Sprint(i), 1000)
			resp, err := c.Post(ts.url()+"/echo", "text/plain", strings.NewReader(msg))
			if err != nil {
				errs <- err
				return
			}
			b, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if string(b) != msg {
				errs <- fmt.Errorf("echo %d: got %d bytes", i, len(b))
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	_ = time.Second
}
