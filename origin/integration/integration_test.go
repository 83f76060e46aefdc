package integration

import (
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins"
)

// echoed is what the echo backend answers.
type echoed struct {
	Method, URI, Host, Body string
	Header                  http.Header
}

// backend starts a real HTTP server on loopback.
func backend(t testing.TB, h http.Handler) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 5 * time.Second}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String()
}

func echoBackend(t testing.TB) string {
	return backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Header().Set("X-Backend-Secret", "s")
		w.Header().Set("X-Backend-Visible", "v")
		json.NewEncoder(w).Encode(echoed{Method: r.Method, URI: r.RequestURI, Host: r.Host, Body: string(b), Header: r.Header})
	}))
}

// originFront serves the invoker on a real listener, as the data plane
// does; route is the route every request runs.
func originFront(t testing.TB, iv *Invoker, call func(r *http.Request) *Call) string {
	t.Helper()
	return "http://" + backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		iv.Serve(w, r, call(r))
	}))
}

func newInvoker(t testing.TB) *Invoker {
	iv := New(Options{Logger: slog.New(slog.DiscardHandler)})
	t.Cleanup(iv.Close)
	return iv
}

func do(t *testing.T, method, url, body string, h http.Header) (*http.Response, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	r, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	for k, v := range h {
		r.Header[k] = v
	}
	res, err := (&http.Client{Timeout: 10 * time.Second}).Do(r)
	if err != nil {
		t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res, string(b)
}

func TestHTTPProxy(t *testing.T) {
	be := echoBackend(t)
	iv := newInvoker(t)
	route := &config.Route{Method: "ANY", Path: "/items/{id}", Integration: config.Integration{
		Type: config.IntegrationHTTPProxy, URI: "http://${stageVariables.backend}/base/{id}?from=uri",
	}}
	front := originFront(t, iv, func(r *http.Request) *Call {
		return &Call{Route: route, Variables: map[string]string{"backend": be}, Params: []plugins.Param{{Name: "id", Value: "a b"}}, RequestID: "rid"}
	})
	for _, c := range []struct{ method, body string }{{http.MethodGet, ""}, {http.MethodPost, `{"x":1}`}} {
		t.Run(c.method, func(t *testing.T) {
			res, body := do(t, c.method, front+"/items/x?q=1", c.body, http.Header{
				"X-Forwarded-For": {"192.0.2.1"}, "Connection": {"X-Hop"}, "X-Hop": {"1"}, "X-Client": {"kept"},
			})
			if res.StatusCode != 200 {
				t.Fatalf("status %d: %s", res.StatusCode, body)
			}
			var got echoed
			if err := json.Unmarshal([]byte(body), &got); err != nil {
				t.Fatalf("%v: %s", err, body)
			}
			if got.Method != c.method || got.URI != "/base/a%20b?from=uri&q=1" || got.Host != be || got.Body != c.body {
				t.Errorf("backend got %+v", got)
			}
			if got.Header.Get("X-Request-Id") != "rid" || got.Header.Get("X-Forwarded-For") != "192.0.2.1" || got.Header.Get("X-Client") != "kept" {
				t.Errorf("backend headers: %v", got.Header)
			}
			if got.Header.Get("X-Hop") != "" {
				t.Error("a header named in Connection reached the backend")
			}
			if res.Header.Get("X-Backend-Secret") != "s" {
				t.Errorf("http_proxy must pass the whole response: %v", res.Header)
			}
		})
	}
}

func TestHTTPMapsParametersAndResponses(t *testing.T) {
	be := echoBackend(t)
	iv := newInvoker(t)
	route := &config.Route{Method: "GET", Path: "/items/{id}", Integration: config.Integration{
		Type: config.IntegrationHTTP, URI: "http://" + be + "/items/{itemId}",
		Parameters: map[string]string{"path.itemId": "request.path.id", "header.X-Tenant": "stageVariables.tenant", "query.source": "'portico'"},
		Responses: []config.IntegrationResponse{
			{Pattern: "2\\d\\d", Status: 201, Headers: map[string]string{"X-Mapped": "integration.response.header.X-Backend-Visible"}},
		},
	}}
	front := originFront(t, iv, func(r *http.Request) *Call {
		return &Call{Route: route, Variables: map[string]string{"tenant": "acme"}, Params: []plugins.Param{{Name: "id", Value: "7"}}, RequestID: "rid"}
	})
	res, body := do(t, http.MethodGet, front+"/items/7?q=dropped", "", http.Header{"X-Client": {"dropped"}, "Accept": {"application/json"}})
	if res.StatusCode != 201 {
		t.Fatalf("status %d: %s", res.StatusCode, body)
	}
	var got echoed
	if err := json.Unmarshal([]byte(body), &got); err != nil {
		t.Fatal(err)
	}
	if got.URI != "/items/7?source=portico" || got.Header.Get("X-Tenant") != "acme" || got.Header.Get("X-Client") != "" || got.Header.Get("Accept") != "application/json" {
		t.Errorf("backend got %s %v", got.URI, got.Header)
	}
	if res.Header.Get("X-Mapped") != "v" || res.Header.Get("X-Backend-Secret") != "" {
		t.Errorf("mapped response headers: %v", res.Header)
	}
}

func TestStageVariablesPickTheBackend(t *testing.T) {
	one, two := echoBackend(t), echoBackend(t)
	iv := newInvoker(t)
	route := &config.Route{Method: "GET", Path: "/x", Integration: config.Integration{Type: config.IntegrationHTTPProxy, URI: "http://${stageVariables.backend}/x"}}
	for range 2 {
		for _, be := range []string{one, two} {
			front := originFront(t, iv, func(r *http.Request) *Call {
				return &Call{Route: route, Variables: map[string]string{"backend": be}, RequestID: "rid"}
			})
			_, body := do(t, http.MethodGet, front+"/x", "", nil)
			var got echoed
			json.Unmarshal([]byte(body), &got)
			if got.Host != be {
				t.Errorf("went to %q, want %q", got.Host, be)
			}
		}
	}
}

func TestErrors(t *testing.T) {
	slow := backend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(3 * time.Second):
		case <-r.Context().Done():
		}
	}))
	ln, _ := net.Listen("tcp", "127.0.0.1:0")
	dead := ln.Addr().String()
	ln.Close()
	iv := newInvoker(t)
	cases := []struct {
		name, uri string
		want      int
	}{
		{"timeout is 504", "http://" + slow + "/", http.StatusGatewayTimeout},
		{"refused is 502", "http://" + dead + "/", http.StatusBadGateway},
		{"not http is 502", "ftp://" + dead + "/", http.StatusBadGateway},
	}
	for _, c := range cases {
		route := &config.Route{Method: "ANY", Path: "/", Integration: config.Integration{
			Type: config.IntegrationHTTPProxy, URI: c.uri, Timeout: config.Duration(200 * time.Millisecond),
		}}
		front := originFront(t, iv, func(r *http.Request) *Call { return &Call{Route: route, RequestID: "rid"} })
		for _, m := range []struct{ method, body string }{{http.MethodGet, ""}, {http.MethodPost, "x"}} {
			t.Run(c.name+" "+m.method, func(t *testing.T) {
				res, body := do(t, m.method, front+"/", m.body, nil)
				if res.StatusCode != c.want {
					t.Errorf("status %d, want %d: %s", res.StatusCode, c.want, body)
				}
			})
		}
	}
}

func TestMock(t *testing.T) {
	iv := newInvoker(t)
	route := &config.Route{Method: "GET", Path: "/", Integration: config.Integration{
		Type: config.IntegrationMock, Mock: &config.MockResponse{Status: 202, Body: `{"ok":true}`},
	}}
	front := originFront(t, iv, func(r *http.Request) *Call { return &Call{Route: route} })
	res, body := do(t, http.MethodGet, front+"/", "", nil)
	if res.StatusCode != 202 || body != `{"ok":true}` || res.Header.Get("Content-Type") != "application/json" {
		t.Errorf("%d %q %v", res.StatusCode, body, res.Header)
	}
}
