package main

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/pprof"
	"strings"
	"time"
)

// pprofFlag is a hidden flag for profiling a running node
// (test/bench/gateway.sh, docs/performance.md): --pprof-listen ADDR serves
// net/http/pprof on ADDR. It is not in any command's help because it is a
// developer's tool; keep ADDR on loopback.
const pprofFlag = "pprof-listen"

// extractPprof removes --pprof-listen ADDR (or =ADDR) from args and
// returns the address, so that the commands' own flag sets never see it.
func extractPprof(args []string) (rest []string, addr string, err error) {
	for i := 0; i < len(args); i++ {
		a := args[i]
		name, val, hasVal := strings.Cut(strings.TrimLeft(a, "-"), "=")
		if !strings.HasPrefix(a, "-") || name != pprofFlag {
			rest = append(rest, a)
			continue
		}
		if !hasVal {
			if i+1 >= len(args) {
				return nil, "", usageError{"--pprof-listen needs an address such as 127.0.0.1:6060"}
			}
			i++
			val = args[i]
		}
		addr = val
	}
	return rest, addr, nil
}

// servePprof serves the profiling endpoints on addr until the process ends.
func servePprof(addr string, stderr io.Writer) error {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return fmt.Errorf("--pprof-listen: %w", err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", pprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", pprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", pprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", pprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", pprof.Trace)
	fmt.Fprintf(stderr, "pprof listening on http://%s/debug/pprof/\n", ln.Addr())
	go (&http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}).Serve(ln)
	return nil
}
