package listen

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"
)

// echo answers with what it saw, minus the protocol, so that the three
// protocols' answers can be compared byte for byte.
func echo() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "text/plain")
		w.Header().Set("X-Echo-Method", r.Method)
		if r.URL.Path == "/status/418" {
			w.WriteHeader(http.StatusTeapot)
		}
		fmt.Fprintf(w, "method=%s path=%s query=%s host=%s x-test=%s tls=%t body=%s\n",
			r.Method, r.URL.Path, r.URL.RawQuery, r.Host, r.Header.Get("X-Test"), r.TLS != nil, body)
	})
}

type answer struct {
	status int
	hdr    string
	body   string
	altSvc string
	proto  string
}

func do(t *testing.T, c *http.Client, method, url, body string) answer {
	t.Helper()
	req, _ := http.NewRequest(method, url, strings.NewReader(body))
	req.Header.Set("X-Test", "yes")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, url, err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return answer{resp.StatusCode, resp.Header.Get("X-Echo-Method") + "|" + resp.Header.Get("Content-Type") + "|" + resp.Header.Get("Strict-Transport-Security"), string(b), resp.Header.Get("Alt-Svc"), resp.Proto}
}

func TestSameAnswersOverH1H2H3(t *testing.T) {
	s, pki := startServer(t, Config{}, echo())
	clients := map[string]*http.Client{"HTTP/1.1": h1Client(pki), "HTTP/2.0": h2Client(pki), "HTTP/3.0": h3Client(pki)}
	wantAlt := `h3=":` + strconv.Itoa(s.TLSAddr().Port) + `"; ma=86400`
	cases := []struct{ method, path, body string }{
		{"GET", "/a/b?x=1&y=2", ""},
		{"POST", "/post", strings.Repeat("p", 100<<10)},
		{"PUT", "/status/418", "small"},
		{"DELETE", "/x", ""},
	}
	for _, c := range cases {
		var ref *answer
		for _, proto := range []string{"HTTP/1.1", "HTTP/2.0", "HTTP/3.0"} {
			a := do(t, clients[proto], c.method, s.tlsURL()+c.path, c.body)
			if a.proto != proto {
				t.Fatalf("%s %s: client %s got a %s response", c.method, c.path, proto, a.proto)
			}
			if proto == "HTTP/3.0" {
				if a.altSvc != "" {
					t.Errorf("HTTP/3 response carries Alt-Svc %q; it is only for TCP responses", a.altSvc)
				}
			} else if a.altSvc != wantAlt {
				t.Errorf("%s response Alt-Svc = %q, want %q", proto, a.altSvc, wantAlt)
			}
			if ref == nil {
				ref = &a
				if !strings.Contains(a.hdr, "max-age=31536000") {
					t.Errorf("HSTS missing by default: headers %q", a.hdr)
				}
				continue
			}
			if a.status != ref.status || a.hdr != ref.hdr || a.body != ref.body {
				t.Errorf("%s %s over %s differs from HTTP/1.1:\n got  %d %q %q\n want %d %q %q",
					c.method, c.path, proto, a.status, a.hdr, trunc(a.body), ref.status, ref.hdr, trunc(ref.body))
			}
		}
	}
}

func trunc(s string) string {
	if len(s) > 120 {
		return s[:120] + "..."
	}
	return s
}

func TestAltSvcOnlyWhileHTTP3Up(t *testing.T) {
	t.Run("disabled", func(t *testing.T) {
		s, pki := startServer(t, Config{DisableHTTP3: true}, echo())
		if a := do(t, h2Client(pki), "GET", s.tlsURL()+"/", ""); a.altSvc != "" {
			t.Fatalf("Alt-Svc %q sent with HTTP/3 disabled", a.altSvc)
		}
	})
	t.Run("listener fails", func(t *testing.T) {
		s, pki := startServer(t, Config{}, echo())
		c := h2Client(pki)
		if a := do(t, c, "GET", s.tlsURL()+"/", ""); a.altSvc == "" {
			t.Fatal("no Alt-Svc while HTTP/3 is up")
		}
		// Pull the UDP socket from under quic-go: the HTTP/3 listener dies.
		s.udp.Close()
		if !waitFor(5*time.Second, func() bool { return !s.HTTP3Up() }) {
			t.Fatal("HTTP3Up still true after the UDP socket closed")
		}
		a := do(t, c, "GET", s.tlsURL()+"/", "")
		if a.altSvc != "" {
			t.Fatalf("Alt-Svc %q still sent after HTTP/3 went down", a.altSvc)
		}
		if a.status != 200 {
			t.Fatalf("HTTP/2 stopped working when HTTP/3 went down: %d", a.status)
		}
	})
}

func TestHSTSOptions(t *testing.T) {
	p := HSTSPolicy{MaxAge: 365 * 24 * time.Hour, IncludeSubDomains: true, Preload: true}
	if got, want := p.Header(), "max-age=31536000; includeSubDomains; preload"; got != want {
		t.Fatalf("Header() = %q, want %q", got, want)
	}
	s, pki := startServer(t, Config{HSTS: HSTSPolicy{MaxAge: time.Hour, IncludeSubDomains: true}, HTTPAddr: "127.0.0.1:0"}, echo())
	if a := do(t, h1Client(pki), "GET", s.tlsURL()+"/", ""); !strings.HasSuffix(a.hdr, "|max-age=3600; includeSubDomains") {
		t.Fatalf("HSTS header: %q", a.hdr)
	}
	resp, err := http.Get("http://" + s.HTTPAddr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if v := resp.Header.Get("Strict-Transport-Security"); v != "" {
		t.Fatalf("plain HTTP response carries HSTS %q", v)
	}
	if v := resp.Header.Get("Alt-Svc"); v != "" {
		t.Fatalf("plain HTTP response carries Alt-Svc %q", v)
	}
	_, pki2 := startServer(t, Config{HSTS: HSTSPolicy{Disabled: true}}, echo())
	_ = pki2
	if _, err := New(Config{TLSAddr: ":0", Certificates: pki.source(), HSTS: HSTSPolicy{Preload: true}}, echo()); err == nil || !strings.Contains(err.Error(), "Preload needs IncludeSubDomains") {
		t.Fatalf("preload without includeSubDomains accepted: %v", err)
	}
}

func TestHeaderLimitH1(t *testing.T) {
	s, pki := startServer(t, Config{MaxHeaderBytes: 8 << 10}, echo())
	req, _ := http.NewRequest("GET", s.tlsURL()+"/", nil)
	req.Header.Set("X-Big", string(bytes.Repeat([]byte("a"), 64<<10)))
	resp, err := h1Client(pki).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
		t.Fatalf("64 KiB header over an 8 KiB limit: status %d, want 431", resp.StatusCode)
	}
	// HTTP/2 and HTTP/3 answer 431 too (or the client itself refuses to
	// send more than the limit the server announced).
	for _, c := range []*http.Client{h2Client(pki), h3Client(pki)} {
		resp, err := c.Do(req)
		if err == nil {
			resp.Body.Close()
			if resp.StatusCode != http.StatusRequestHeaderFieldsTooLarge {
				t.Fatalf("%s: a 64 KiB header over an 8 KiB limit got %d, want 431", resp.Proto, resp.StatusCode)
			}
		}
	}
}

func TestConfigErrorsSayWhatToDo(t *testing.T) {
	_, err := New(Config{}, echo())
	if err == nil || !strings.Contains(err.Error(), "set at least one") {
		t.Fatalf("empty config: %v", err)
	}
	_, err = New(Config{TLSAddr: "443"}, echo())
	if err == nil || !strings.Contains(err.Error(), "not host:port") || !strings.Contains(err.Error(), "Certificates is nil") {
		t.Fatalf("bad addr and no certs: %v", err)
	}
	_, err = New(Config{HTTPAddr: ":0", Allow0RTT: true}, echo())
	if err == nil || !strings.Contains(err.Error(), "Allow0RTT") {
		t.Fatalf("0-RTT without TLS: %v", err)
	}
	// Named by listen's own field, not by edge/h3's.
	_, err = New(Config{TLSAddr: "127.0.0.1:0", Certificates: newTestPKI(t).source(), MaxHeaderBytes: 17 << 20}, echo())
	if err == nil || !strings.Contains(err.Error(), "listen: MaxHeaderBytes") || strings.Contains(err.Error(), "MaxFieldSectionSize") {
		t.Fatalf("MaxHeaderBytes above 16 MiB: %v", err)
	}
}
