package forward

import (
	"bufio"
	"context"
	"crypto/tls"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

// h1Pool keeps idle HTTP/1.1 connections to one host and dials new ones.
// It is the lean path's transport: a request is written and its response
// read on the caller's goroutine, with no reader or writer goroutine per
// connection and no channel hand-offs (net/http's Transport uses both,
// which on one core cost more than the proxying itself).
type h1Pool struct {
	scheme string // http or https
	addr   string // host:port to dial
	host   string // host name for TLS
	opt    *PoolOptions
	total  *atomic.Int64 // idle connections in all pools
	keep   bool          // false: a pool past maxPools, keeps nothing

	mu      sync.Mutex
	idle    []*h1Conn // most recently used last
	sweepOn bool
	closed  bool
}

// PoolOptions configure the lean path's connection pools.
type PoolOptions struct {
	// TLS configures connections to https hosts (cloned per dial).
	TLS *tls.Config
	// MaxIdlePerHost bounds kept-alive connections per host, MaxIdle
	// those of all hosts together.
	MaxIdlePerHost int
	MaxIdle        int
	// IdleTimeout closes connections idle for longer.
	IdleTimeout time.Duration
	// DialTimeout bounds a dial plus TLS handshake.
	DialTimeout time.Duration
}

func (o *PoolOptions) withDefaults() {
	if o.MaxIdlePerHost <= 0 {
		o.MaxIdlePerHost = 256
	}
	if o.MaxIdle <= 0 {
		o.MaxIdle = 4096
	}
	if o.IdleTimeout <= 0 {
		o.IdleTimeout = 90 * time.Second
	}
	if o.DialTimeout <= 0 {
		o.DialTimeout = 5 * time.Second
	}
}

// h1Conn is one connection with its buffers.
type h1Conn struct {
	nc        net.Conn
	br        *bufio.Reader
	bw        *bufio.Writer
	pool      *h1Pool
	idleSince time.Time
	reused    bool
	deadline  time.Time // last set on nc
	abort     func()    // makes blocked I/O on nc return (made once)
}

// setDeadline sets nc's deadline to d, or keeps the current one when it is
// at most slack earlier than d: setting a deadline costs a timer update,
// and at load a connection comes back every few milliseconds with a
// deadline barely older than the one it needs.
func (c *h1Conn) setDeadline(d time.Time, slack time.Duration) error {
	if d.Equal(c.deadline) {
		return nil
	}
	if !d.IsZero() && !c.deadline.IsZero() && !d.Before(c.deadline) && d.Sub(c.deadline) <= slack {
		return nil
	}
	c.deadline = d
	return c.nc.SetDeadline(d)
}

// checkAfter is how long a connection may sit idle before it is checked
// for a close from the other side before use: a server that closes idle
// connections (Node's default is 5 s) closes them long after a response,
// so a connection used again within a second is almost never stale, and
// the check costs a system call.
const checkAfter = time.Second

// get returns an idle connection or dials one.
func (p *h1Pool) get(ctx context.Context) (*h1Conn, error) {
	now := time.Now()
	for {
		p.mu.Lock()
		n := len(p.idle)
		if n == 0 {
			p.mu.Unlock()
			break
		}
		c := p.idle[n-1]
		p.idle[n-1] = nil
		p.idle = p.idle[:n-1]
		p.mu.Unlock()
		p.total.Add(-1)
		idle := now.Sub(c.idleSince)
		if idle > p.opt.IdleTimeout || (idle > checkAfter && !peerOpen(c.nc)) {
			c.nc.Close()
			continue
		}
		c.reused = true
		return c, nil
	}
	return p.dial(ctx)
}

func (p *h1Pool) dial(ctx context.Context) (*h1Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, p.opt.DialTimeout)
	defer cancel()
	d := net.Dialer{KeepAlive: 30 * time.Second}
	nc, err := d.DialContext(ctx, "tcp", p.addr)
	if err != nil {
		return nil, err
	}
	if p.scheme == "https" {
		cfg := p.opt.TLS.Clone()
		if cfg == nil {
			cfg = &tls.Config{}
		}
		if cfg.ServerName == "" {
			cfg.ServerName = p.host
		}
		cfg.NextProtos = []string{"http/1.1"}
		tc := tls.Client(nc, cfg)
		if err := tc.HandshakeContext(ctx); err != nil {
			nc.Close()
			return nil, err
		}
		nc = tc
	}
	c := &h1Conn{nc: nc, br: bufio.NewReaderSize(nc, 16<<10), bw: bufio.NewWriterSize(nc, 8<<10), pool: p}
	c.abort = func() { nc.SetDeadline(aLongTimeAgo) }
	return c, nil
}

// put returns a connection whose last exchange completed cleanly.
func (p *h1Pool) put(c *h1Conn) {
	c.idleSince = time.Now()
	if !p.keep || p.total.Add(1) > int64(p.opt.MaxIdle) {
		if p.keep {
			p.total.Add(-1)
		}
		c.nc.Close()
		return
	}
	p.mu.Lock()
	if p.closed || len(p.idle) >= p.opt.MaxIdlePerHost {
		p.mu.Unlock()
		p.total.Add(-1)
		c.nc.Close()
		return
	}
	p.idle = append(p.idle, c)
	sweep := !p.sweepOn
	p.sweepOn = true
	p.mu.Unlock()
	if sweep {
		time.AfterFunc(p.opt.IdleTimeout, p.sweep)
	}
}

// sweep closes connections idle for longer than IdleTimeout, so that a
// pool that saw a burst does not hold sockets the other side closed.
func (p *h1Pool) sweep() {
	cut := time.Now().Add(-p.opt.IdleTimeout)
	p.mu.Lock()
	var stale []*h1Conn
	keep := p.idle[:0]
	for _, c := range p.idle {
		if c.idleSince.Before(cut) {
			stale = append(stale, c)
		} else {
			keep = append(keep, c)
		}
	}
	clear(p.idle[len(keep):])
	p.idle = keep
	again := len(p.idle) > 0 && !p.closed
	p.sweepOn = again
	p.mu.Unlock()
	p.total.Add(-int64(len(stale)))
	for _, c := range stale {
		c.nc.Close()
	}
	if again {
		time.AfterFunc(p.opt.IdleTimeout, p.sweep)
	}
}

func (p *h1Pool) closeIdle() {
	p.mu.Lock()
	idle := p.idle
	p.idle = nil
	p.mu.Unlock()
	p.total.Add(-int64(len(idle)))
	for _, c := range idle {
		c.nc.Close()
	}
}

// pools holds one h1Pool per scheme and host.
type pools struct {
	opt   PoolOptions
	total atomic.Int64
	mu    sync.RWMutex
	m     map[poolKey]*h1Pool
}

// maxPools bounds the hosts that get a pool: integration URIs can take
// their host from a request parameter, and a pool is never removed. Past
// the bound, connections to further hosts are not kept alive.
const maxPools = 1024

type poolKey struct{ scheme, host string }

func newPools(o PoolOptions) *pools {
	o.withDefaults()
	return &pools{opt: o, m: map[poolKey]*h1Pool{}}
}

// pool returns the pool for scheme://host (host as in a URL: the port may
// be left out).
func (ps *pools) pool(scheme, host string) *h1Pool {
	k := poolKey{scheme, host}
	ps.mu.RLock()
	p := ps.m[k]
	ps.mu.RUnlock()
	if p != nil {
		return p
	}
	ps.mu.Lock()
	defer ps.mu.Unlock()
	if p = ps.m[k]; p != nil {
		return p
	}
	name, port, err := net.SplitHostPort(host)
	if err != nil {
		name, port = host, "80"
		if scheme == "https" {
			port = "443"
		}
		if len(name) > 1 && name[0] == '[' && name[len(name)-1] == ']' {
			name = name[1 : len(name)-1]
		}
	}
	p = &h1Pool{scheme: scheme, addr: net.JoinHostPort(name, port), host: name, opt: &ps.opt, total: &ps.total}
	if len(ps.m) >= maxPools {
		return p
	}
	p.keep = true
	ps.m[k] = p
	return p
}

func (ps *pools) closeIdle() {
	ps.mu.RLock()
	defer ps.mu.RUnlock()
	for _, p := range ps.m {
		p.closeIdle()
	}
}

// pooledBody is a response body on a pooled connection: at its end the
// connection goes back to the pool (when the response allows it); closed
// before its end, the connection is closed, never drained.
type pooledBody struct {
	rc       io.ReadCloser
	c        *h1Conn
	reusable bool
	done     bool
	stop     func() bool // ends the cancellation watch
}

func (b *pooledBody) Read(p []byte) (int, error) {
	if b.done {
		return 0, io.EOF
	}
	n, err := b.rc.Read(p)
	if err != nil {
		b.release(err == io.EOF)
	}
	return n, err
}

func (b *pooledBody) Close() error {
	if !b.done {
		b.release(false)
	}
	return nil
}

func (b *pooledBody) release(complete bool) {
	b.done = true
	watching := b.stop == nil || b.stop()
	if complete && b.reusable && watching {
		b.c.pool.put(b.c)
		return
	}
	b.c.nc.Close()
}

// aLongTimeAgo is a deadline that has passed: setting it makes blocked
// reads and writes return at once.
var aLongTimeAgo = time.Unix(1, 0)
