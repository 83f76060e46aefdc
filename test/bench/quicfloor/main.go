// Command quicfloor measures an approximate floor under HTTP/3 servers
// built on quic-go: the requests per second that raw quic-go streams
// carrying the benchmark's exact bytes reach on one core with this
// server loop, which does nothing per request beyond what any HTTP/3
// server must (read the request stream to its end, write the answer,
// close).
//
// Its server speaks raw QUIC (quic-go's quic package, no HTTP/3 layer):
// each bidirectional stream gets a goroutine of its own, is read to its
// end into a reused buffer and answered with a prebuilt byte string by a
// blocking Write, then closed and its stream credit released. Its client
// opens C connections with M streams in flight each and sends a prebuilt
// request on every stream. Both byte strings are what HTTP/3 really
// carries for the benchmark's exchange, taken at start-up from a real
// exchange (capture, below): the request's HEADERS frame exactly as
// quic-go's HTTP/3 client (loadclient's) sends GET on the URL, and the
// answer exactly as quic-go's HTTP/3 server sends listenmock's 1 KiB
// response (HEADERS with :status, content-type, date, content-length and
// strict-transport-security, then one DATA frame). The QUIC and TLS
// settings are edge/listen's (ALPN h3, TLS 1.3, the caller's certificate,
// the same quic.Config, RequireStreamCreditRelease included), and both
// sides open a control stream with SETTINGS as HTTP/3 peers do, so the
// packets on the wire are those of the HTTP/3 benchmark.
//
// What the figure is, precisely: the transport's cost for these bytes
// plus this loop's (a goroutine per stream, quic-go's Read, Write and
// Close). It is not a strict lower bound on any HTTP/3 layer's cost: a
// layer that serves streams on long-lived workers, or queues its answer
// with TryWriteAll, saves some of the loop's cost and can come close to
// it or pass it slightly. Whatever an HTTP/3 layer adds (frame parsing,
// QPACK, the http.Request, the response writer) comes on top of the
// transport's share.
//
//	quicfloor server -tls 127.0.0.1:8443 -cert cert.pem -key key.pem
//	quicfloor client -c 16 -m 16 -d 10s -cacert cert.pem https://localhost:8443/
//	quicfloor capture -cacert cert.pem https://localhost:8443/   # print the captured bytes
//
// The client also drives any HTTP/3 server with that request (it counts
// an answer as a success only when it is a HEADERS frame with :status 200
// holding at least -min bytes in all), which shows whether loadclient's
// HTTP/3 client limits a run.
package main

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime/debug"
	"runtime/pprof"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/portico-edge/portico/edge/h3"
	"github.com/quic-go/qpack"
	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

func main() {
	if len(os.Args) < 2 {
		usage()
	}
	var err error
	switch os.Args[1] {
	case "server":
		err = serverMain(os.Args[2:])
	case "client":
		err = clientMain(os.Args[2:])
	case "capture":
		err = captureMain(os.Args[2:])
	default:
		usage()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "quicfloor:", err)
		os.Exit(1)
	}
}

func usage() {
	fmt.Fprintln(os.Stderr, "usage: quicfloor server|client|capture [flags] (quicfloor CMD -h for the flags)")
	os.Exit(2)
}

// quicConfig is edge/listen's quic.Config with its defaults (no 0-RTT, 10
// s handshake, 120 s idle timeout), through the same h3.QUICConfig:
// RequireStreamCreditRelease, 100 concurrent request streams.
func quicConfig() *quic.Config {
	return h3.QUICConfig(&quic.Config{
		HandshakeIdleTimeout: 10 * time.Second,
		MaxIdleTimeout:       120 * time.Second,
	}, 100)
}

// clientQUICConfig is the quic.Config of listen.NewHTTP3Transport, which
// loadclient uses.
func clientQUICConfig() *quic.Config {
	return &quic.Config{
		HandshakeIdleTimeout: 5 * time.Second,
		MaxIdleTimeout:       90 * time.Second,
		KeepAlivePeriod:      15 * time.Second,
	}
}

// settingsBytes opens a control stream: the stream type, then a SETTINGS
// frame with SETTINGS_MAX_FIELD_SECTION_SIZE, as an HTTP/3 server sends.
func settingsBytes() []byte {
	var payload []byte
	payload = quicvarint.Append(payload, 0x06) // SETTINGS_MAX_FIELD_SECTION_SIZE
	payload = quicvarint.Append(payload, 64<<10)
	b := quicvarint.Append(nil, 0x00) // control stream
	b = quicvarint.Append(b, 0x04)    // SETTINGS
	b = quicvarint.Append(b, uint64(len(payload)))
	return append(b, payload...)
}

// openControl opens the connection's control stream and sends SETTINGS,
// and reads the peer's unidirectional streams to their end, as an HTTP/3
// endpoint does (the peer's control stream stays open).
func openControl(ctx context.Context, conn *quic.Conn) error {
	ctrl, err := conn.OpenUniStream()
	if err != nil {
		return fmt.Errorf("opening the control stream: %w", err)
	}
	if _, err := ctrl.Write(settingsBytes()); err != nil {
		return fmt.Errorf("sending SETTINGS: %w", err)
	}
	go func() {
		for {
			s, err := conn.AcceptUniStream(ctx)
			if err != nil {
				return
			}
			go io.Copy(io.Discard, s)
		}
	}()
	return nil
}

// --- server ------------------------------------------------------------------

func serverMain(args []string) error {
	fs := flag.NewFlagSet("quicfloor server", flag.ExitOnError)
	addr := fs.String("tls", "127.0.0.1:8443", "UDP address to serve QUIC on")
	certFile := fs.String("cert", "", "certificate PEM file (required; P-256 as the benchmark's)")
	keyFile := fs.String("key", "", "key PEM file")
	size := fs.Int("size", 1024, "response body bytes")
	answerFile := fs.String("answer", "", "file holding the answer's bytes (default: captured from quic-go's HTTP/3 server at start-up)")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile here until the server stops")
	_ = fs.Parse(args)
	if *certFile == "" || *keyFile == "" {
		return errors.New("server: give -cert and -key")
	}
	cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	udpAddr, err := net.ResolveUDPAddr("udp", *addr)
	if err != nil {
		return fmt.Errorf("server: -tls %q: %w", *addr, err)
	}
	var answer []byte
	if *answerFile != "" {
		if answer, err = os.ReadFile(*answerFile); err != nil {
			return fmt.Errorf("server: %w", err)
		}
	} else {
		// The request's :authority does not change the answer's bytes.
		ex, err := capture(context.Background(), "https://localhost:"+fmt.Sprint(udpAddr.Port)+"/", *size)
		if err != nil {
			return fmt.Errorf("server: capturing the answer: %w", err)
		}
		answer = ex.response
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}

	udp, err := net.ListenUDP("udp", udpAddr)
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	tr := &quic.Transport{Conn: udp}
	defer tr.Close()
	tc := &tls.Config{
		MinVersion:     tls.VersionTLS13,
		NextProtos:     []string{"h3"},
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) { return &cert, nil },
	}
	ln, err := tr.ListenEarly(tc, quicConfig())
	if err != nil {
		return fmt.Errorf("server: %w", err)
	}
	fmt.Fprintf(os.Stderr, "quicfloor: serving raw QUIC on %s, answering every stream with %d bytes\n", udp.LocalAddr(), len(answer))

	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	go func() { <-ctx.Done(); ln.Close() }()
	for {
		conn, err := ln.Accept(ctx)
		if err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return fmt.Errorf("server: %w", err)
		}
		go serveConn(ctx, conn, answer)
	}
}

// readBufs holds the buffers request streams are read into; the server
// never looks at what it reads.
type readBufs struct{ pool sync.Pool }

func (p *readBufs) get() *[]byte {
	if b, ok := p.pool.Get().(*[]byte); ok {
		return b
	}
	b := make([]byte, 4096)
	return &b
}

func serveConn(ctx context.Context, conn *quic.Conn, answer []byte) {
	if err := openControl(ctx, conn); err != nil {
		conn.CloseWithError(0x101, "") // H3_GENERAL_PROTOCOL_ERROR
		return
	}
	var bufs readBufs
	for {
		str, err := conn.AcceptStream(ctx)
		if err != nil {
			return
		}
		go answerStream(str, answer, &bufs)
	}
}

// answerStream is the least an HTTP/3 server must do with a request
// stream: read it to its end, write the answer with FIN, and give the
// stream's credit back (RequireStreamCreditRelease, as edge/h3 does when
// a handler returns).
func answerStream(str *quic.Stream, answer []byte, bufs *readBufs) {
	b := bufs.get()
	defer bufs.pool.Put(b)
	defer str.ReleaseStreamCredit()
	for {
		_, err := str.Read(*b)
		if err == io.EOF {
			break
		}
		if err != nil {
			str.CancelWrite(0x10c) // H3_REQUEST_CANCELLED
			return
		}
	}
	if _, err := str.Write(answer); err != nil {
		return
	}
	str.Close()
}

// --- client ------------------------------------------------------------------

func clientMain(args []string) error {
	fs := flag.NewFlagSet("quicfloor client", flag.ExitOnError)
	conns := fs.Int("c", 16, "connections")
	streams := fs.Int("m", 16, "streams in flight per connection")
	dur := fs.Duration("d", 10*time.Second, "duration (at most 5m)")
	caFile := fs.String("cacert", "", "PEM file of the CA to trust (default: system roots)")
	requestFile := fs.String("request", "", "file holding the request's bytes (default: captured from quic-go's HTTP/3 client at start-up)")
	minBytes := fs.Int("min", 1024, "an answer shorter than this is an error")
	maxReqs := fs.Int64("n", 50_000_000, "stop after this many requests (a bound on runaway runs)")
	gcPercent := fs.Int("gogc", 400, "the client's GOGC: a lean client leaves the server the bottleneck")
	cpuProfile := fs.String("cpuprofile", "", "write a CPU profile of the load here")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("client: give the URL, for example https://localhost:8443/")
	}
	if *dur <= 0 || *dur > 5*time.Minute {
		return fmt.Errorf("client: -d %v: give a duration between 1s and 5m", *dur)
	}
	if *conns < 1 || *conns > 1024 || *streams < 1 || *streams > 100 {
		return errors.New("client: -c must be 1..1024 and -m 1..100 (edge/listen's stream limit)")
	}
	debug.SetGCPercent(*gcPercent)
	tc, err := clientTLS(*caFile)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	url := fs.Arg(0)
	var request []byte
	if *requestFile != "" {
		if request, err = os.ReadFile(*requestFile); err != nil {
			return fmt.Errorf("client: %w", err)
		}
	} else {
		ex, err := capture(context.Background(), url, 1024)
		if err != nil {
			return fmt.Errorf("client: capturing the request: %w", err)
		}
		request = ex.request
	}
	host, err := hostPort(url)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	if *cpuProfile != "" {
		f, err := os.Create(*cpuProfile)
		if err != nil {
			return err
		}
		if err := pprof.StartCPUProfile(f); err != nil {
			return err
		}
		defer func() { pprof.StopCPUProfile(); f.Close() }()
	}
	r, err := load(host, tc, request, *conns, *streams, *dur, *minBytes, *maxReqs)
	if err != nil {
		return fmt.Errorf("client: %w", err)
	}
	fmt.Printf("proto=quic conns=%d streams=%d duration=%s requests=%d errors=%d rps=%.0f p50=%s p99=%s max=%s packets-in/req=%.2f packets-out/req=%.2f\n",
		*conns, *streams, r.elapsed.Round(time.Millisecond), r.n, r.errors, float64(r.n)/r.elapsed.Seconds(), r.p(50), r.p(99), r.p(100),
		float64(r.packetsIn)/float64(max(r.n, 1)), float64(r.packetsOut)/float64(max(r.n, 1)))
	if r.n == 0 || r.errors*100 > r.n {
		return fmt.Errorf("client: %d answers, %d errors: not a measurement", r.n, r.errors)
	}
	return nil
}

func clientTLS(caFile string) (*tls.Config, error) {
	tc := &tls.Config{NextProtos: []string{"h3"}}
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
	return tc, nil
}

// hostPort is the host:port of an https URL (port 443 if it has none).
func hostPort(url string) (string, error) {
	rest, ok := strings.CutPrefix(url, "https://")
	if !ok {
		return "", fmt.Errorf("%q: give an https:// URL", url)
	}
	host, _, _ := strings.Cut(rest, "/")
	if _, _, err := net.SplitHostPort(host); err != nil {
		host = net.JoinHostPort(host, "443")
	}
	return host, nil
}

type result struct {
	n, errors             int64
	packetsIn, packetsOut uint64 // over the whole run, warm-up included
	elapsed               time.Duration
	lat                   []time.Duration // sorted
}

func (r *result) p(q int) time.Duration {
	if len(r.lat) == 0 {
		return 0
	}
	return r.lat[(len(r.lat)-1)*q/100].Round(time.Microsecond)
}

func load(addr string, tc *tls.Config, request []byte, conns, streams int, dur time.Duration, minBytes int, maxReqs int64) (*result, error) {
	dialCtx, cancelDial := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancelDial()
	cs := make([]*quic.Conn, conns)
	for i := range cs {
		c, err := quic.DialAddr(dialCtx, addr, tc, clientQUICConfig())
		if err != nil {
			return nil, fmt.Errorf("connecting to %s: %w", addr, err)
		}
		defer c.CloseWithError(0, "")
		if err := openControl(context.Background(), c); err != nil {
			return nil, err
		}
		cs[i] = c
	}
	// Warm up: one exchange per connection before the clock starts.
	buf := make([]byte, 16<<10)
	for _, c := range cs {
		if err := exchange(context.Background(), c, request, buf, minBytes); err != nil {
			return nil, fmt.Errorf("warm-up request: %w", err)
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), dur)
	defer cancel()
	var total, errs atomic.Int64
	lats := make([][]time.Duration, conns*streams)
	var wg sync.WaitGroup
	start := time.Now()
	for i := range conns * streams {
		c := cs[i/streams]
		wg.Go(func() {
			buf := make([]byte, 16<<10)
			l := make([]time.Duration, 0, 1<<14)
			for ctx.Err() == nil && total.Add(1) <= maxReqs {
				t0 := time.Now()
				if err := exchange(ctx, c, request, buf, minBytes); err != nil {
					if ctx.Err() == nil {
						errs.Add(1)
					}
					continue
				}
				l = append(l, time.Since(t0))
			}
			lats[i] = l
		})
	}
	wg.Wait()
	r := &result{elapsed: time.Since(start), errors: errs.Load()}
	for _, c := range cs {
		st := c.ConnectionStats()
		r.packetsIn += st.PacketsReceived
		r.packetsOut += st.PacketsSent
	}
	for _, l := range lats {
		r.lat = append(r.lat, l...)
	}
	r.n = int64(len(r.lat))
	slices.Sort(r.lat)
	return r, nil
}

// exchange sends the request on a new stream and reads the answer to its
// end into buf (overwritten; only the answer's first frame and its length
// are checked): a success is a HEADERS frame with :status 200 and at least
// minBytes in all.
func exchange(ctx context.Context, c *quic.Conn, request, buf []byte, minBytes int) error {
	str, err := c.OpenStreamSync(ctx)
	if err != nil {
		return err
	}
	if _, err := str.Write(request); err != nil {
		str.CancelRead(0x10c)
		return err
	}
	str.Close()
	// The answer's first bytes stay in buf[:keep]; the rest of a long
	// one is read past them and dropped.
	keep := len(buf) - 4096
	total := 0
	for {
		n, err := str.Read(buf[min(total, keep):])
		total += n
		if err == io.EOF {
			break
		}
		if err != nil {
			str.CancelRead(0x10c)
			return err
		}
	}
	if status := answerStatus(buf[:min(total, keep)]); status != 200 || total < minBytes {
		return fmt.Errorf("answer of %d bytes with status %d: want a HEADERS frame with :status 200 and at least %d bytes", total, status, minBytes)
	}
	return nil
}

// answerStatus is the :status of an answer whose first bytes are b: the
// first field of its first frame, which must be HEADERS; 0 if b does not
// hold one. :status 200 is nearly always the static table's entry 25,
// one byte (0xd9); anything else is decoded with qpack.
func answerStatus(b []byte) int {
	typ, n1, err := quicvarint.Parse(b)
	if err != nil || typ != 0x01 {
		return 0
	}
	l, n2, err := quicvarint.Parse(b[n1:])
	if err != nil || uint64(len(b)-n1-n2) < l {
		return 0
	}
	block := b[n1+n2 : n1+n2+int(l)]
	if len(block) >= 3 && block[0] == 0 && block[1] == 0 && block[2] == 0xc0|25 {
		return 200
	}
	f, err := qpack.NewDecoder().Decode(block)()
	if err != nil || f.Name != ":status" {
		return 0
	}
	var code int
	if _, err := fmt.Sscanf(f.Value, "%d", &code); err != nil {
		return 0
	}
	return code
}

// --- capture -----------------------------------------------------------------

func captureMain(args []string) error {
	fs := flag.NewFlagSet("quicfloor capture", flag.ExitOnError)
	size := fs.Int("size", 1024, "response body bytes")
	reqOut := fs.String("request-out", "", "write the request's bytes here")
	respOut := fs.String("response-out", "", "write the answer's bytes here")
	_ = fs.Parse(args)
	if fs.NArg() != 1 {
		return errors.New("capture: give the URL the client will load, for example https://localhost:8443/")
	}
	ex, err := capture(context.Background(), fs.Arg(0), *size)
	if err != nil {
		return fmt.Errorf("capture: %w", err)
	}
	for _, o := range []struct {
		file string
		b    []byte
	}{{*reqOut, ex.request}, {*respOut, ex.response}} {
		if o.file != "" {
			if err := os.WriteFile(o.file, o.b, 0o644); err != nil {
				return fmt.Errorf("capture: %w", err)
			}
		}
	}
	fmt.Printf("request stream: %d bytes\n%x\n", len(ex.request), ex.request)
	fmt.Printf("response stream: %d bytes (HEADERS frame %d bytes):\n%x\n", len(ex.response), headersLen(ex.response), ex.response[:headersLen(ex.response)])
	return nil
}

// headersLen is the length of the HEADERS frame at the start of b.
func headersLen(b []byte) int {
	_, n1, err := quicvarint.Parse(b)
	if err != nil {
		return 0
	}
	l, n2, err := quicvarint.Parse(b[n1:])
	if err != nil || n1+n2+int(l) > len(b) {
		return 0
	}
	return n1 + n2 + int(l)
}

// checkAnswer is a quick check of a captured answer: a HEADERS frame,
// then at least size bytes (the DATA frame).
func checkAnswer(resp []byte, size int) error {
	h := headersLen(resp)
	if h == 0 || resp[0] != 0x01 {
		return fmt.Errorf("answer does not start with a HEADERS frame: %x", resp[:min(len(resp), 16)])
	}
	if size > 0 && len(resp)-h < size {
		return fmt.Errorf("answer carries %d bytes after its HEADERS frame, want a DATA frame of %d", len(resp)-h, size)
	}
	return nil
}
