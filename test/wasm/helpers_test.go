// Package wasmtest runs the example and hostile plugins through the
// wasm-authorizer and wasm-transform policies in an edge-like server on
// 127.0.0.1.
package wasmtest

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/plugins/wasm"
	"github.com/portico-edge/portico/test/wasm/harness"
	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

type env struct {
	t       *testing.T
	src     *harness.MemSource
	host    *wasm.Host
	backend *harness.Backend
	client  *http.Client
}

func newEnv(t *testing.T) *env {
	t.Helper()
	src := &harness.MemSource{}
	// One compilation cache for all tests: compiling a standard-Go module
	// takes seconds, and the cache is keyed by the module's content.
	host, err := wasm.NewHost(context.Background(), wasm.HostConfig{DataDir: filepath.Join(wasmbuild.CacheDir(), "engine"), Source: src})
	if err != nil {
		t.Fatal(err)
	}
	b, err := harness.NewBackend(true)
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, src: src, host: host, backend: b, client: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{}}}
	t.Cleanup(func() {
		e.client.CloseIdleConnections()
		b.Close()
		_ = host.Close(context.Background())
	})
	return e
}

// spec builds a policy spec; cfg is the config object with "module" filled in.
func spec(typ string, cfg map[string]any) config.PolicySpec {
	b, _ := json.Marshal(cfg)
	return config.PolicySpec{Type: typ, Config: b}
}

func (e *env) edge(specs ...config.PolicySpec) *harness.Edge {
	e.t.Helper()
	ed, err := harness.NewEdge(context.Background(), harness.EdgeConfig{Host: e.host, Specs: specs, Backend: e.backend.URL})
	if err != nil {
		e.t.Fatal(err)
	}
	e.t.Cleanup(ed.Close)
	return ed
}

type resp struct {
	status int
	header http.Header
	body   string
}

func (e *env) do(method, url string, header map[string]string, body string) resp {
	e.t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		e.t.Fatal(err)
	}
	for k, v := range header {
		req.Header.Set(k, v)
	}
	res, err := e.client.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return resp{res.StatusCode, res.Header, string(b)}
}

// settle waits (bounded) for the goroutine count to come back near base.
func settle(t *testing.T, base int) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		n := runtime.NumGoroutine()
		if n <= base+2 {
			return
		}
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			buf = buf[:runtime.Stack(buf, true)]
			t.Fatalf("goroutines did not return to baseline: %d now, %d before\n%s", n, base, buf)
		}
		time.Sleep(20 * time.Millisecond)
	}
}
