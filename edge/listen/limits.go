package listen

import (
	"errors"
	"log/slog"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// limitListener accepts connections and closes at once those over the
// listener's total or per-address limit. Closing (rather than not
// accepting, as netutil.LimitListener does) keeps the kernel's backlog
// empty, so a client over the limit learns it at once instead of hanging,
// and clients under the limit are not queued behind it.
type limitListener struct {
	net.Listener
	max, perIP int
	log        *slog.Logger

	mu    sync.Mutex
	total int
	byIP  map[netip.Addr]int

	rejected  atomic.Int64
	lastLogNs atomic.Int64
}

func newLimitListener(ln net.Listener, max, perIP int, log *slog.Logger) *limitListener {
	return &limitListener{Listener: ln, max: max, perIP: perIP, log: log, byIP: make(map[netip.Addr]int)}
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if transientAcceptError(err) {
				// Out of file descriptors or buffers, or a peer that gave up
				// while queued: back off briefly and go on, as net/http does.
				// Returning the error would stop the whole server.
				time.Sleep(10 * time.Millisecond)
				continue
			}
			return nil, err
		}
		ip := addrIP(c.RemoteAddr())
		if !l.acquire(ip) {
			l.reject(c, ip)
			continue
		}
		return &limitedConn{Conn: c, release: func() { l.release(ip) }}, nil
	}
}

func (l *limitListener) acquire(ip netip.Addr) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.max > 0 && l.total >= l.max {
		return false
	}
	if l.perIP > 0 && l.byIP[ip] >= l.perIP {
		return false
	}
	l.total++
	l.byIP[ip]++
	return true
}

func (l *limitListener) release(ip netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.total--
	if n := l.byIP[ip] - 1; n > 0 {
		l.byIP[ip] = n
	} else {
		delete(l.byIP, ip)
	}
}

// open reports the number of open connections.
func (l *limitListener) open() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.total
}

func (l *limitListener) reject(c net.Conn, ip netip.Addr) {
	// A RST rather than a FIN: the peer's socket is gone at once.
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	n := l.rejected.Add(1)
	// One log line per second at most: a flood must not become a log flood.
	now := time.Now().UnixNano()
	if last := l.lastLogNs.Load(); now-last > int64(time.Second) && l.lastLogNs.CompareAndSwap(last, now) {
		l.log.Warn("connection limit reached; closing new connections",
			"listener", l.Addr().String(), "client", ip.String(), "max", l.max, "maxPerIP", l.perIP, "rejectedTotal", n)
	}
}

func addrIP(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// limitedConn gives its slot back exactly once, on the first Close.
type limitedConn struct {
	net.Conn
	once    sync.Once
	release func()
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.release)
	return err
}

// CloseWrite half-closes the connection, which Go's HTTP/1 server uses to
// let a client read an error response (400, 431) before the connection
// goes away: without it, closing with unread request bytes sends a reset
// that can destroy the response in flight.
func (c *limitedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return nil
}

func transientAcceptError(err error) bool {
	for _, e := range []error{syscall.EMFILE, syscall.ENFILE, syscall.ENOBUFS, syscall.ENOMEM, syscall.ECONNABORTED, syscall.ECONNRESET} {
		if errors.Is(err, e) {
			return true
		}
	}
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
