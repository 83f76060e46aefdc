// Command loadclient is a small closed-loop HTTP load generator that drives
// HTTP/1.1, HTTP/2 and HTTP/3 with the same code: C connections, each with
// M requests in flight (M is 1 for HTTP/1.1), for a fixed duration. It
// prints requests per second and latency percentiles. Debian's h2load and
// curl have no HTTP/3, so this is what measures it.
//
//	loadclient -proto h3 -c 16 -m 16 -d 10s -cacert cert.pem https://localhost:8443/
//	loadclient -c 64 -rate 5000 -H 'Host: api.test' -H 'Authorization: Bearer x' http://127.0.0.1:8080/
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/portico-edge/portico/edge/listen"
	"golang.org/x/net/http2"
)

func main() {
	proto := flag.String("proto", "h1", "protocol: h1, h2 or h3")
	conns := flag.Int("c", 16, "connections")
	streams := flag.Int("m", 16, "requests in flight per connection (h2, h3; h1 always 1)")
	dur := flag.Duration("d", 10*time.Second, "duration (at most 5m)")
	caFile := flag.String("cacert", "", "PEM file of the CA to trust (default: system roots)")
	insecure := flag.Bool("k", false, "do not verify the server's certificate")
	maxReqs := flag.Int64("n", 50_000_000, "stop after this many requests (a bound on runaway runs)")
	var headers headerFlags
	flag.Var(&headers, "H", "a request header, 'Name: value' (repeatable; 'Host: name' sets the request's host)")
	rate := flag.Float64("rate", 0, "requests per second in all, paced evenly over the workers (0: as fast as the server answers)")
	cpuProfile := flag.String("cpuprofile", "", "write a CPU profile of the load here")
	flag.Parse()
	if flag.NArg() != 1 {
		fmt.Fprintln(os.Stderr, "usage: loadclient [flags] URL")
		flag.PrintDefaults()
		os.Exit(2)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err == nil {
			err = pprof.StartCPUProfile(f)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "loadclient:", err)
			os.Exit(1)
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	r, err := run(*proto, flag.Arg(0), headers, *conns, *streams, *dur, *caFile, *insecure, *maxReqs, *rate)
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadclient:", err)
		os.Exit(1)
	}
	fmt.Printf("proto=%s conns=%d streams=%d duration=%s requests=%d errors=%d rps=%.0f p50=%s p99=%s max=%s\n",
		*proto, *conns, r.streams, r.elapsed.Round(time.Millisecond), r.n, r.errors, r.rps(), r.p(50), r.p(99), r.p(100))
	if r.n == 0 || r.errors*100 > r.n {
		os.Exit(1) // no answer, or more than 1% errors: the figure is not a measurement
	}
}

type result struct {
	n, errors int64
	streams   int
	elapsed   time.Duration
	lat       []time.Duration // sorted
}

func (r *result) rps() float64 { return float64(r.n) / r.elapsed.Seconds() }

func (r *result) p(q int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	i := (len(r.lat) - 1) * q / 100
	return r.lat[i].Round(time.Microsecond)
}

// headerFlags collects -H flags.
type headerFlags []string

func (h *headerFlags) String() string { return strings.Join(*h, ", ") }

func (h *headerFlags) Set(v string) error {
	name, _, ok := strings.Cut(v, ":")
	if !ok || strings.TrimSpace(name) == "" {
		return fmt.Errorf("%q: write a header as 'Name: value'", v)
	}
	*h = append(*h, v)
	return nil
}

// newRequest builds the GET that a worker sends again and again (a request
// may be reused once its response body is closed).
func newRequest(url string, headers headerFlags) (*http.Request, error) {
	req, err := http.NewRequest(http.MethodGet, url, nil)
	if err != nil {
		return nil, err
	}
	for _, h := range headers {
		name, value, _ := strings.Cut(h, ":")
		name, value = strings.TrimSpace(name), strings.TrimSpace(value)
		if strings.EqualFold(name, "Host") {
			req.Host = value
			continue
		}
		req.Header.Add(name, value)
	}
	return req, nil
}

func run(proto, url string, headers headerFlags, conns, streams int, dur time.Duration, caFile string, insecure bool, maxReqs int64, rate float64) (*result, error) {
	if dur <= 0 || dur > 5*time.Minute {
		return nil, fmt.Errorf("-d %v: give a duration between 1s and 5m", dur)
	}
	if rate < 0 || rate > 1e6 {
		return nil, fmt.Errorf("-rate %v: give 0 (no pacing) or up to 1000000 requests per second", rate)
	}
	if conns < 1 || conns > 1024 || streams < 1 || streams > 256 {
		return nil, errors.New("-c must be 1..1024 and -m 1..256")
	}
	tc := &tls.Config{InsecureSkipVerify: insecure}
	if caFile != "" {
		pem, err := os.ReadFile(caFile)
		if err != nil {
			return nil, err
		}
		tc.RootCAs = x509.NewCertPool()
		if !tc.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("%s holds no PEM certificate", caFile)
		}
	}
	if proto == "h1" {
		streams = 1
	}
	// One transport per connection: each keeps exactly one connection, so
	// the connection count is what -c says for every protocol.
	clients := make([]*http.Client, conns)
	var closers []io.Closer
	for i := range clients {
		rt, err := transport(proto, tc)
		if err != nil {
			return nil, err
		}
		if c, ok := rt.(io.Closer); ok {
			closers = append(closers, c)
		}
		clients[i] = &http.Client{Transport: rt, Timeout: 10 * time.Second}
	}
	defer func() {
		for _, c := range closers {
			c.Close()
		}
	}()
	// Warm up: open every connection before the clock starts.
	if _, err := newRequest(url, headers); err != nil {
		return nil, err
	}
	for _, c := range clients {
		req, _ := newRequest(url, headers)
		if err := get(c, req); err != nil {
			return nil, fmt.Errorf("warm-up request: %w", err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var total, errs atomic.Int64
	lats := make([][]time.Duration, conns*streams)
	var wg sync.WaitGroup
	start := time.Now()
	workers := conns * streams
	// With -rate, worker i sends its k-th request at start + (k + i/workers)
	// * interval; one that falls behind does not make up for it with a
	// burst, so the server sees at most the rate asked for. Comparing the
	// CPU a server spends per request is fair only at the same rate: at
	// saturation a slower variant also changes how the server's work
	// batches.
	var interval time.Duration
	if rate > 0 {
		interval = time.Duration(float64(workers) / rate * float64(time.Second))
	}
	for i := range workers {
		c := clients[i/streams]
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<14)
			req, _ := newRequest(url, headers) // checked above
			next := start.Add(interval * time.Duration(i) / time.Duration(workers))
		loop:
			for ctx.Err() == nil && total.Add(1) <= maxReqs {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						select {
						case <-time.After(d):
						case <-ctx.Done():
							break loop
						}
					} else {
						next = time.Now()
					}
					next = next.Add(interval)
				}
				t0 := time.Now()
				if err := get(c, req); err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				l = append(l, time.Since(t0))
			}
			lats[i] = l
		}()
	}
	wg.Wait()
	r := &result{elapsed: time.Since(start), errors: errs.Load(), streams: streams}
	for _, l := range lats {
		r.lat = append(r.lat, l...)
	}
	r.n = int64(len(r.lat))
	slices.Sort(r.lat)
	return r, nil
}

func transport(proto string, tc *tls.Config) (http.RoundTripper, error) {
	switch proto {
	case "h1":
		tc := tc.Clone()
		tc.NextProtos = []string{"http/1.1"}
		return &http.Transport{
			TLSClientConfig:     tc,
			MaxConnsPerHost:     1,
			MaxIdleConnsPerHost: 1,
			DisableCompression:  true,
			TLSNextProto:        map[string]func(string, *tls.Conn) http.RoundTripper{},
		}, nil
	case "h2":
		tc := tc.Clone()
		tc.NextProtos = []string{"h2"}
		return &http2.Transport{TLSClientConfig: tc, DisableCompression: true, StrictMaxConcurrentStreams: true}, nil
	case "h3":
		return listen.NewHTTP3Transport(tc), nil
	}
	return nil, fmt.Errorf("-proto %q: use h1, h2 or h3", proto)
}

func get(c *http.Client, req *http.Request) error {
	resp, err := c.Do(req)
	if err != nil {
		return err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if err == nil && resp.StatusCode != 200 {
		err = fmt.Errorf("status %d", resp.StatusCode)
	}
	return err
}
