// Command cacheserver is the small Go server test/bench/cache.sh measures:
// the cache policy (edge/cache) built into a plugins chain in front of a
// pooled reverse proxy, the way the edge runs it, and, with -origin-listen,
// the origin every cache in the comparison fetches from.
//
// It is a benchmark harness, not the edge: cache.sh measures the real edge
// by default and this stand-in with MODE=cacheserver, which isolates the
// policy from hygiene, routing and the forwarder.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	_ "net/http/pprof"
	"net/url"
	"os"
	"strings"
	"time"

	"github.com/portico-edge/portico/config"
	"github.com/portico-edge/portico/edge/cache"
	"github.com/portico-edge/portico/plugins"
	"github.com/prometheus/client_golang/prometheus"
)

func main() {
	listen := flag.String("listen", "", "address of the caching server (with -origin)")
	originURL := flag.String("origin", "", "origin URL the caching server fetches from")
	originListen := flag.String("origin-listen", "", "run the origin on this address instead")
	budget := flag.Int64("budget", 256<<20, "cache memory budget in bytes")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (for profiling a run)")
	flag.Parse()
	if *pprofAddr != "" {
		go func() { log.Println(http.ListenAndServe(*pprofAddr, nil)) }()
	}
	switch {
	case *originListen != "":
		log.Fatal(serve(*originListen, origin()))
	case *listen != "" && *originURL != "":
		h, err := edge(*originURL, *budget)
		if err != nil {
			log.Fatal(err)
		}
		log.Fatal(serve(*listen, h))
	default:
		fmt.Fprintln(os.Stderr, "usage: cacheserver -origin-listen ADDR | -listen ADDR -origin URL")
		os.Exit(2)
	}
}

func serve(addr string, h http.Handler) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return err
	}
	srv := &http.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second, ErrorLog: log.New(io.Discard, "", 0)}
	return srv.Serve(ln)
}

// origin serves /1k and /100k (any path whose first segment is a size)
// as cacheable JSON-ish bodies.
func origin() http.Handler {
	bodies := map[string][]byte{
		"1k":   bytes.Repeat([]byte("a"), 1<<10),
		"100k": bytes.Repeat([]byte("b"), 100<<10),
	}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		size, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/"), "/")
		b, ok := bodies[size]
		if !ok {
			http.NotFound(w, r)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("Cache-Control", "public, max-age=3600")
		w.Header().Set("ETag", `"`+size+`"`)
		_, _ = w.Write(b)
	})
}

// edge is the cache policy in a plugins chain before a reverse proxy, with
// a stand-in for hygiene and routing that fills the Exchange.
func edge(originURL string, budget int64) (http.Handler, error) {
	target, err := url.Parse(originURL)
	if err != nil {
		return nil, err
	}
	f, err := cache.NewFactory(cache.Options{
		MaxBytes:   budget,
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		return nil, err
	}
	reg, err := plugins.NewRegistry(f)
	if err != nil {
		return nil, err
	}
	proxy := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(target)
			pr.Out.Host = pr.In.Host
		},
		Transport: &http.Transport{MaxIdleConnsPerHost: 256, IdleConnTimeout: 90 * time.Second},
		ErrorLog:  log.New(io.Discard, "", 0),
	}
	terminal := plugins.HandlerFunc(func(w http.ResponseWriter, ex *plugins.Exchange) {
		proxy.ServeHTTP(w, ex.Request)
	})
	chain, _, err := reg.Build(context.Background(), []plugins.Attached{{
		Spec:  config.PolicySpec{Type: cache.Type, Config: json.RawMessage(`{"ttl":"3600s","maxObjectBytes":1048576}`)},
		Scope: plugins.Scope{APIID: "bench", Stage: "prod"},
	}}, terminal)
	if err != nil {
		return nil, err
	}
	stage := &config.Stage{APIID: "bench", Name: "prod"}
	route := &config.Route{Method: config.MethodAny, Path: "/{proxy+}"}
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		host := strings.ToLower(r.Host)
		if i := strings.LastIndexByte(host, ':'); i >= 0 {
			host = host[:i]
		}
		ex := plugins.Exchange{
			Request: r, Host: host, Path: r.URL.Path, RoutePath: r.URL.Path,
			Stage: stage, Route: route, Start: time.Now(),
		}
		chain.ServeExchange(w, &ex)
	}), nil
}
