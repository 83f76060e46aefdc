package wsrelay

import (
	"bufio"
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"time"
)

const (
	// readBufferSize is the bufio.Reader size for the upstream (the client's
	// is net/http's, also 4 KiB). It holds any frame header and any control
	// frame whole (14 + 125 bytes).
	readBufferSize = 4 << 10
	// writeBufferSize is each peer's outgoing buffer: frames are copied from
	// the other peer's reader into it and written out when it is full or
	// when nothing more can be read without blocking.
	writeBufferSize = 16 << 10
)

// peer is one side of the relay.
type peer struct {
	name     string // "client" or "upstream", for errors
	conn     net.Conn
	r        *bufio.Reader // frames from this peer
	isClient bool          // the WebSocket client: frames to it are unmasked

	// sem serialises writes to conn: the forwarder toward this peer holds it
	// for a whole frame, so a close frame the relay sends never lands inside
	// another frame. The fields below are guarded by it.
	sem          chan struct{}
	out          []byte // fixed buffer, len(out) == writeBufferSize
	n            int    // bytes pending in out
	closeSent    bool   // a close frame has been written to this peer
	written      int64
	writeTimeout time.Duration
}

func (p *peer) lock(dead <-chan struct{}) bool {
	select {
	case p.sem <- struct{}{}:
		return true
	case <-dead:
		return false
	}
}

func (p *peer) unlock() { <-p.sem }

func (p *peer) flush() error {
	if p.n == 0 {
		return nil
	}
	_ = p.conn.SetWriteDeadline(time.Now().Add(p.writeTimeout))
	k, err := p.conn.Write(p.out[:p.n])
	p.written += int64(k)
	p.n = 0
	if err != nil {
		return fmt.Errorf("writing to the %s: %w", p.name, err)
	}
	return nil
}

func (p *peer) write(b []byte) error {
	for len(b) > 0 {
		if p.n == len(p.out) {
			if err := p.flush(); err != nil {
				return err
			}
		}
		k := copy(p.out[p.n:], b)
		p.n += k
		b = b[k:]
	}
	return nil
}

// session is one relayed WebSocket after the handshake.
type session struct {
	lim              Limits
	client, upstream *peer
	last             atomic.Int64 // UnixNano of the last frame read from either peer

	closing   atomic.Bool   // the relay has started its own close: forward nothing more
	initiated chan struct{} // closed when closing becomes true
	initOnce  sync.Once
	ending    ending // why the relay closed; set once, before closing is stored

	dead     chan struct{} // closed when both connections are closed
	killOnce sync.Once
	events   chan event
}

// ending is a close the relay starts itself.
type ending struct {
	code   uint16
	reason string
	err    error // what Serve returns
}

type eventKind int

const (
	evPeerClose eventKind = iota // the source sent a close frame (forwarded, or the reply to the relay's)
	evViolation                  // the source broke the protocol; it is no longer read
	evReadError
	evWriteError
	evKilled    // the connections were closed under the forwarder
	evSentClose // a close frame from the relay was written (or could not be)
)

type event struct {
	kind eventKind
	from *peer
	v    *violation
	err  error
}

func newSession(lim Limits, cc net.Conn, cr *bufio.Reader, uc net.Conn, ur *bufio.Reader) *session {
	mk := func(name string, c net.Conn, r *bufio.Reader, isClient bool) *peer {
		return &peer{name: name, conn: c, r: r, isClient: isClient, sem: make(chan struct{}, 1),
			out: make([]byte, writeBufferSize), writeTimeout: lim.WriteTimeout}
	}
	s := &session{
		lim:       lim,
		client:    mk("client", cc, cr, true),
		upstream:  mk("upstream", uc, ur, false),
		initiated: make(chan struct{}),
		dead:      make(chan struct{}),
		events:    make(chan event, 4), // two forwarders, two close senders
	}
	s.touch()
	return s
}

func (s *session) touch() { s.last.Store(time.Now().UnixNano()) }

// kill closes both connections, which ends every blocked read and write.
func (s *session) kill() {
	s.killOnce.Do(func() {
		close(s.dead)
		_ = s.client.conn.Close()
		_ = s.upstream.conn.Close()
	})
}

// initiate starts the relay's own close: close frames with e.code to both
// peers (unless one already got a close frame), then forwarders only wait
// for the peers' replies. The first ending wins.
func (s *session) initiate(e ending) {
	s.initOnce.Do(func() {
		s.ending = e
		s.closing.Store(true)
		close(s.initiated)
		for _, p := range []*peer{s.client, s.upstream} {
			go func() { s.events <- event{kind: evSentClose, from: p, err: s.sendClose(p, e)} }()
		}
	})
}

func (s *session) sendClose(p *peer, e ending) error {
	if !p.lock(s.dead) {
		return net.ErrClosed
	}
	defer p.unlock()
	if p.closeSent {
		return nil
	}
	p.closeSent = true
	var buf [maxHeaderLen + maxControlPayloadLen]byte
	if err := p.write(appendClose(buf[:0], e.code, e.reason, !p.isClient)); err != nil {
		return err
	}
	return p.flush()
}

// run relays frames until the WebSocket is closed, and returns why.
func (s *session) run(ctx context.Context) error {
	go func() {
		s.events <- s.forward(s.client, s.upstream, &stream{fromClient: true, max: s.lim.MaxMessageBytes})
	}()
	go func() {
		s.events <- s.forward(s.upstream, s.client, &stream{fromClient: false, max: s.lim.MaxMessageBytes})
	}()

	idle := time.NewTimer(s.lim.IdleTimeout)
	defer idle.Stop()
	var closeTimer *time.Timer
	var closeC <-chan time.Time
	armClose := func() {
		if closeTimer == nil {
			closeTimer = time.NewTimer(s.lim.CloseTimeout)
			closeC = closeTimer.C
		}
	}
	defer func() {
		if closeTimer != nil {
			closeTimer.Stop()
		}
	}()

	forwarders, senders := 2, 0
	initSeen := false
	sawClose := false
	var abnormal error
	done, initiated, idleC := ctx.Done(), s.initiated, idle.C
	for {
		if !initSeen && s.closing.Load() {
			initSeen, initiated, idleC, done = true, nil, nil, nil
			senders = 2
			armClose()
		}
		if forwarders == 0 && senders == 0 {
			break
		}
		select {
		case ev := <-s.events:
			switch ev.kind {
			case evSentClose:
				senders--
				continue
			case evPeerClose:
				sawClose = true
				armClose()
			case evViolation:
				e := ending{code: ev.v.code, reason: ev.v.reason}
				if ev.v.code == closeMessageTooBig {
					e.err = fmt.Errorf("%w: from the %s: %s", ErrMessageTooBig, ev.from.name, ev.v.detail)
				} else {
					e.err = fmt.Errorf("%w: from the %s: %s", ErrProtocol, ev.from.name, ev.v.detail)
				}
				s.initiate(e)
			case evReadError, evWriteError:
				if !s.closing.Load() && !sawClose && abnormal == nil {
					abnormal = fmt.Errorf("%w: %w", ErrAbnormalClosure, ev.err)
					s.kill()
				}
			}
			forwarders--
		case <-initiated:
		case <-done:
			s.initiate(ending{code: closeGoingAway, reason: "going away",
				err: fmt.Errorf("%w: %w", ErrDrained, context.Cause(ctx))})
		case <-idleC:
			since := time.Since(time.Unix(0, s.last.Load()))
			if since < s.lim.IdleTimeout {
				idle.Reset(s.lim.IdleTimeout - since)
				continue
			}
			s.initiate(ending{code: closeGoingAway, reason: "idle timeout",
				err: fmt.Errorf("%w: no frame for %v", ErrIdleTimeout, s.lim.IdleTimeout)})
		case <-closeC:
			s.kill()
		}
	}
	s.kill()
	switch {
	case s.closing.Load():
		return s.ending.err
	case abnormal != nil:
		return abnormal
	}
	return nil
}

// forward copies frames from src to dst until src sends a close frame,
// breaks the protocol, or a connection fails.
func (s *session) forward(src, dst *peer, st *stream) event {
	var hb [maxHeaderLen]byte
	for {
		b, err := src.r.Peek(2)
		if err != nil {
			return s.readError(src, err)
		}
		size := headerSize(b[1])
		if b, err = src.r.Peek(size); err != nil {
			return s.readError(src, err)
		}
		s.touch()
		copy(hb[:], b)
		h, v := parseHeader(hb[:size])
		if v == nil {
			v = st.check(h)
		}
		if v != nil {
			if v.code != closeMessageTooBig {
				return event{kind: evViolation, from: src, v: v}
			}
			// The rest of this message is dropped; the peer stays readable
			// so that its reply to the 1009 can be seen.
			s.initiate(ending{code: v.code, reason: v.reason,
				err: fmt.Errorf("%w: from the %s: %s", ErrMessageTooBig, src.name, v.detail)})
		}

		if h.op == opClose {
			if !dst.lock(s.dead) {
				return event{kind: evKilled, from: src}
			}
			if src.r.Buffered() < size+int(h.length) {
				if err := dst.flush(); err != nil {
					dst.unlock()
					return event{kind: evWriteError, from: src, err: err}
				}
			}
			frame, err := src.r.Peek(size + int(h.length))
			if err != nil {
				dst.unlock()
				return s.readError(src, err)
			}
			if _, v := checkClose(h, frame[size:]); v != nil {
				dst.unlock()
				return event{kind: evViolation, from: src, v: v}
			}
			if !s.closing.Load() && !dst.closeSent {
				dst.closeSent = true
				if err = dst.write(frame); err == nil {
					err = dst.flush()
				}
			}
			dst.unlock()
			_, _ = src.r.Discard(len(frame))
			if err != nil {
				return event{kind: evWriteError, from: src, err: err}
			}
			return event{kind: evPeerClose, from: src}
		}

		if !dst.lock(s.dead) {
			return event{kind: evKilled, from: src}
		}
		if s.closing.Load() {
			// The relay has sent or is sending its close: nothing more may
			// follow it, so the frame is read and dropped.
			dst.unlock()
			if _, err := src.r.Discard(size); err != nil {
				return s.readError(src, err)
			}
			if err := discard(src.r, h.length); err != nil {
				return s.readError(src, err)
			}
			continue
		}
		_, _ = src.r.Discard(size)
		if err := dst.write(hb[:size]); err != nil {
			dst.unlock()
			return event{kind: evWriteError, from: src, err: err}
		}
		for rem := h.length; rem > 0; {
			// Flush before a read that could block, so that nothing waits
			// in the buffer for data that may never come.
			if dst.n == len(dst.out) || (dst.n > 0 && src.r.Buffered() == 0) {
				if err := dst.flush(); err != nil {
					dst.unlock()
					return event{kind: evWriteError, from: src, err: err}
				}
			}
			buf := dst.out[dst.n:]
			if int64(len(buf)) > rem {
				buf = buf[:rem]
			}
			k, err := src.r.Read(buf)
			dst.n += k
			rem -= int64(k)
			if err != nil && rem > 0 {
				dst.unlock()
				return s.readError(src, err)
			}
			if k > 0 && rem > 0 {
				s.touch()
			}
		}
		if !headerBuffered(src.r) {
			if err := dst.flush(); err != nil {
				dst.unlock()
				return event{kind: evWriteError, from: src, err: err}
			}
		}
		dst.unlock()
	}
}

func (s *session) readError(src *peer, err error) event {
	select {
	case <-s.dead:
		return event{kind: evKilled, from: src}
	default:
	}
	return event{kind: evReadError, from: src, err: fmt.Errorf("reading from the %s: %w", src.name, err)}
}

// headerBuffered reports whether r holds a whole frame header, so that
// reading it cannot block.
func headerBuffered(r *bufio.Reader) bool {
	n := r.Buffered()
	if n < 2 {
		return false
	}
	b, _ := r.Peek(2)
	return headerSize(b[1]) <= n
}

// discard reads and drops n bytes from r, in bounded steps.
func discard(r *bufio.Reader, n int64) error {
	for n > 0 {
		step := min(n, 1<<30)
		k, err := r.Discard(int(step))
		n -= int64(k)
		if err != nil {
			return err
		}
	}
	return nil
}
