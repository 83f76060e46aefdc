// Command portico is the Portico API gateway: one binary with roles.
//
//	portico origin   regional origin gateway: control plane and integrations
//	portico edge     edge node: TLS, routing, policies, forwarding to the origin
//	portico dev      origin, edge and an example backend in one process on loopback
//	portico ctl      the admin API's command-line client
//	portico version  print the version
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime/debug"
	"syscall"
)

// version is set at build time with -ldflags "-X main.version=...".
var version = "dev"

type command struct {
	name    string
	summary string
	run     func(ctx context.Context, args []string, stdout, stderr io.Writer) error
}

func commands() []command {
	return []command{
		{"origin", "run a regional origin gateway (control plane and integrations)", runOrigin},
		{"edge", "run an edge node that serves APIs and forwards to an origin", runEdge},
		{"dev", "run origin, edge and an example backend in one process on loopback", runDev},
		{"ctl", "manage an origin through its admin API (portico ctl help)", runCtl},
		{"dns", "run the authoritative DNS server (not available yet)", runDNS},
		{"version", "print the version", runVersion},
	}
}

func main() {
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	if err := run(ctx, os.Args[1:], os.Stdout, os.Stderr); err != nil {
		if errors.Is(err, errHelp) {
			return
		}
		var u usageError
		if errors.As(err, &u) {
			fmt.Fprintln(os.Stderr, "portico:", err)
			os.Exit(2)
		}
		fmt.Fprintln(os.Stderr, "portico:", err)
		os.Exit(1)
	}
}

// usageError is a mistake in the command line: exit status 2.
type usageError struct{ msg string }

func (u usageError) Error() string { return u.msg }

func run(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	if len(args) == 0 || args[0] == "help" || args[0] == "-h" || args[0] == "--help" {
		usage(stdout)
		return nil
	}
	for _, c := range commands() {
		if c.name == args[0] {
			rest, pprofAddr, err := extractPprof(args[1:])
			if err != nil {
				return err
			}
			if pprofAddr != "" {
				if err := servePprof(pprofAddr, stderr); err != nil {
					return err
				}
			}
			return c.run(ctx, rest, stdout, stderr)
		}
	}
	usage(stderr)
	return usageError{fmt.Sprintf("unknown command %q", args[0])}
}

func usage(w io.Writer) {
	fmt.Fprintln(w, "Portico: a self-hosted API gateway for the edge.")
	fmt.Fprintln(w, "\nUsage: portico <command> [flags]")
	fmt.Fprintln(w, "\nCommands:")
	for _, c := range commands() {
		fmt.Fprintf(w, "  %-8s %s\n", c.name, c.summary)
	}
	fmt.Fprintln(w, "\nRun 'portico <command> -h' for a command's flags.")
}

func runVersion(_ context.Context, _ []string, stdout, _ io.Writer) error {
	fmt.Fprintf(stdout, "portico %s\n", version)
	return nil
}

func runDNS(context.Context, []string, io.Writer, io.Writer) error {
	return errors.New("the authoritative DNS server is not available yet in this version of Portico; serve your zones with your current DNS provider and point the API hostnames at your edge nodes")
}

// newLogger returns the process logger: text on stderr, at the given level.
func newLogger(w io.Writer, level string) (*slog.Logger, error) {
	var l slog.Level
	if err := l.UnmarshalText([]byte(level)); err != nil {
		return nil, usageError{fmt.Sprintf("--log-level %q: use debug, info, warn or error", level)}
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: l})), nil
}

// tuneGC raises the GC target unless GOGC is set: a gateway allocates
// short-lived objects per request and keeps little live data. After the
// hot path's allocations were cut, GC costs ~3% of CPU at GOGC=100 and ~2%
// at 200, while each doubling adds memory (docs/performance.md): 200 is
// the balance. Deployments with a memory budget should also set GOMEMLIMIT.
func tuneGC() {
	if os.Getenv("GOGC") == "" {
		debug.SetGCPercent(200)
	}
}

func newFlagSet(name string, stderr io.Writer) *flag.FlagSet {
	fs := flag.NewFlagSet("portico "+name, flag.ContinueOnError)
	fs.SetOutput(stderr)
	return fs
}

func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return errHelp
		}
		return usageError{err.Error()}
	}
	if fs.NArg() > 0 {
		return usageError{fmt.Sprintf("unexpected argument %q", fs.Arg(0))}
	}
	return nil
}

// errHelp ends a command after it printed its help.
var errHelp = errors.New("help requested")
