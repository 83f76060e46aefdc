package forward

import (
	"bufio"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/hygiene"
	"github.com/portico-edge/portico/edge/wsrelay"
	"github.com/portico-edge/portico/plugins"
)

// seen is one request a raw origin received, as parsed from the wire.
type seen struct {
	Method, URI string
	Header      http.Header
	Body        string
	Trailer     http.Header
	BodyErr     error
	Conn        int32 // which connection (1, 2, ...)
}

// rawOrigin is an origin on a raw TCP listener: it parses each request
// from the wire (so the test sees exactly what the forwarder sent) and
// answers with whatever respond writes. respond returns false to close
// the connection afterwards.
type rawOrigin struct {
	URL   *url.URL
	ln    net.Listener
	reqs  chan seen
	conns atomic.Int32
	wg    sync.WaitGroup
}

type respondFunc func(c net.Conn, s seen) (keep bool)

func newRawOrigin(t *testing.T, respond respondFunc) *rawOrigin {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	o := &rawOrigin{URL: &url.URL{Scheme: "http", Host: ln.Addr().String()}, ln: ln, reqs: make(chan seen, 64)}
	var mu sync.Mutex
	var open []net.Conn
	o.wg.Add(1)
	go func() {
		defer o.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			open = append(open, c)
			mu.Unlock()
			n := o.conns.Add(1)
			o.wg.Add(1)
			go func() {
				defer o.wg.Done()
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					_ = c.SetReadDeadline(time.Now().Add(10 * time.Second))
					r, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					body, berr := io.ReadAll(r.Body)
					s := seen{Method: r.Method, URI: r.RequestURI, Header: r.Header, Body: string(body), Trailer: r.Trailer, BodyErr: berr, Conn: n}
					if r.Host != "" {
						s.Header["Host"] = []string{r.Host}
					}
					o.reqs <- s
					if berr != nil || !respond(c, s) {
						return
					}
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range open {
			c.Close()
		}
		mu.Unlock()
		o.wg.Wait()
	})
	return o
}

// next returns the next request the origin received (bounded wait).
func (o *rawOrigin) next(t *testing.T) seen {
	t.Helper()
	select {
	case s := <-o.reqs:
		return s
	case <-time.After(5 * time.Second):
		t.Fatal("the origin received no request within 5 s")
		return seen{}
	}
}

// none checks that the origin received no (complete) request.
func (o *rawOrigin) none(t *testing.T) {
	t.Helper()
	select {
	case s := <-o.reqs:
		if s.BodyErr == nil {
			t.Fatalf("the origin received a complete request: %+v", s)
		}
	case <-time.After(100 * time.Millisecond):
	}
}

// okResponse answers 200 with a short body and keeps the connection.
func okResponse(c net.Conn, s seen) bool {
	resp := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nContent-Length: 2\r\n\r\nok"
	if s.Method == http.MethodHead {
		resp = strings.TrimSuffix(resp, "ok")
	}
	_, err := io.WriteString(c, resp)
	return err == nil
}

// edgeFront is a real HTTP server on loopback whose handler does what the
// edge does before forwarding (wrap the body, build the exchange) and then
// calls Forward or, for a WebSocket handshake, Upgrade. It does not
// sanitise headers: the tests show what the forwarder itself does.
type edgeFront struct {
	URL   string
	f     *Forwarder
	relay *wsrelay.Relay
	// Identity is set on every exchange.
	Identity map[string][]string
	MaxBody  int64
}

func newEdgeFront(t *testing.T, o Options) *edgeFront {
	t.Helper()
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	f, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(f.Close)
	e := &edgeFront{f: f, relay: &wsrelay.Relay{}, MaxBody: 1 << 20}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: e, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	e.URL = "http://" + ln.Addr().String()
	return e
}

func (e *edgeFront) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	w.Header()["X-Request-Id"] = []string{"req-1"} // as the edge does
	hygiene.WrapBody(r, e.MaxBody)
	ex := testExchange(r)
	for k, vs := range e.Identity {
		for _, v := range vs {
			ex.Identity.SetHeader(k, v)
		}
	}
	if wsrelay.IsUpgrade(r) {
		e.f.Upgrade(r.Context(), w, ex, e.relay)
		return
	}
	e.f.Forward(w, ex)
}

func testExchange(r *http.Request) *plugins.Exchange {
	client := netip.MustParseAddr("192.0.2.7")
	return &plugins.Exchange{
		Request:    r,
		RequestID:  "req-1",
		Client:     client,
		Host:       "api.example.test",
		Path:       "/v1" + r.URL.EscapedPath(),
		RoutePath:  r.URL.EscapedPath(),
		TLS:        true,
		API:        &config.SnapshotAPI{ID: "api1"},
		Stage:      &config.Stage{Name: "prod"},
		Deployment: &config.Deployment{ID: "dep1"},
		Route:      &config.Route{Method: config.MethodAny, Path: "/{p+}"},
		RouteIndex: 3,
	}
}

// rawRequest sends raw bytes to addr and returns the first response.
func rawRequest(t *testing.T, addr, req string) *http.Response {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	_ = c.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(c, req); err != nil {
		t.Fatal(err)
	}
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("reading the response to %q: %v", strings.SplitN(req, "\r\n", 2)[0], err)
	}
	body, _ := io.ReadAll(res.Body)
	res.Body = io.NopCloser(strings.NewReader(string(body)))
	return res
}

func readAll(t *testing.T, res *http.Response) string {
	t.Helper()
	b, err := io.ReadAll(res.Body)
	res.Body.Close()
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}
