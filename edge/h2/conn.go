package h2

import (
	"bufio"
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/net/http2/hpack"
)

// Sizes of a connection's buffers and queues.
const (
	// readBufSize holds the largest frame we accept (we announce the
	// protocol's minimum SETTINGS_MAX_FRAME_SIZE, 16 KiB) and its header,
	// with room to read several small frames at once: every frame's
	// payload is a slice of this buffer, never a copy. It is most of an
	// idle connection's memory.
	readBufSize = frameHeaderLen + minMaxFrameSize + 4<<10
	// maxQueued bounds what a connection's handlers may have queued for the
	// writer: their writes block beyond it, as on a slow client's socket.
	maxQueued = 128 << 10
	// controlSlack is what the frame loop's own replies (PING and SETTINGS
	// acknowledgements, WINDOW_UPDATE, RST_STREAM) may add beyond
	// maxQueued. A client that makes us queue more without reading them is
	// flooding us (CVE-2019-9512, CVE-2019-9515): the connection ends.
	controlSlack = 64 << 10
	// resetRingSize is how many streams we remember having reset, so that
	// the frames the client sent before it saw the reset are ignored
	// (RFC 9113 §5.1) instead of treated as errors.
	resetRingSize = 256
	// closeDrainTimeout bounds how long a closing connection waits for its
	// queued frames (the last responses, the GOAWAY) to be written.
	closeDrainTimeout = 2 * time.Second
	// lingerTimeout is how long a connection that sent GOAWAY keeps
	// reading (and discarding) once its frame loop is done (for an error
	// at once; for a graceful GOAWAY when its last stream has finished),
	// so that the client reads the GOAWAY and the last responses before
	// the TCP connection is closed under them: closing a socket with
	// unread data resets the connection, and the client's kernel may
	// drop what it had received but not yet handed to the client.
	lingerTimeout = time.Second
	// Control-frame budget: PING, SETTINGS, PRIORITY, tiny WINDOW_UPDATEs,
	// empty DATA frames and unknown frames cost a token each; the bucket
	// holds controlBurst and refills controlRate a second. Legitimate
	// clients send a few of these per request; a flood of them is work
	// without requests (CVE-2019-9518 and friends).
	controlBurst = 1000
	controlRate  = 200
	// tinyWindowUpdate: WINDOW_UPDATEs smaller than this spend the
	// control-frame budget.
	tinyWindowUpdate = 1024
)

// conn is one HTTP/2 connection. Its frame loop (serve) reads and handles
// every frame itself; handlers run on workers and queue their frames under
// mu; a writer goroutine sends whatever is queued in one write.
type conn struct {
	srv    *Server
	cfg    *Config
	nc     net.Conn
	remote string
	tls    *tls.ConnectionState
	base   context.Context

	// Owned by the frame loop.
	br          *bufio.Reader
	fr          *frameReader
	hdec        *hpack.Decoder
	hb          headerBlock
	canon       map[string]string // canonical names beyond the common ones
	canonBytes  int               // ... their size (cachedNameSize)
	maxClientID uint32
	ctrlTokens  float64
	ctrlLast    time.Time
	sawGoAway   bool // the client has sent GOAWAY

	mu      sync.Mutex
	cond    sync.Cond // signalled when windows open, the queue drains, or the connection ends
	streams map[uint32]*stream
	active  int       // streams open or half-closed: what MAX_CONCURRENT_STREAMS counts
	running int       // handlers running, reset streams' included
	pending []*stream // streams waiting for a handler slot
	resets  []uint32  // ring of streams we reset, lazily allocated
	resetAt int
	// lateFree is how many frames on closed streams the client may still
	// send free of charge: each stream that closes grants one (a
	// WINDOW_UPDATE the client sent before it saw the end of the stream).
	lateFree int

	// Flow control and the peer's settings.
	peerMaxFrame   int
	peerInitWindow int64
	sendWindow     int64 // the connection's send window
	recvWindow     int64 // what the client may still send on the connection
	recvUnacked    int64 // received and consumed, not yet given back
	streamRecvInit int64 // a new stream's receive window
	settingsAcked  bool

	// The write side.
	henc          *hpack.Encoder
	hbuf          headerBuf
	lower         map[string]string // this connection's lower-cased header names beyond the common ones (under mu)
	lowerBytes    int               // ... their size (cachedNameSize)
	wbuf          []byte
	cuts          []int // offsets in wbuf where a write must begin (before each RST_STREAM)
	spare         []byte
	spareCuts     []int
	writerPending bool
	queueWaiters  int
	wake          chan struct{}
	writerDone    chan struct{}
	werr          error // the writer failed; nothing more can be sent
	closed        bool  // torn down: every stream aborted, nothing more queued
	goingAway     bool  // GOAWAY sent: no new streams; linger before the close
	lastStreamID  uint32
	ctrlQueued    int // octets of the frame loop's replies queued since the writer last took the queue
	lastLen       int
	lastLenS      string

	// The reset budget (token bucket).
	tokens        float64
	tokenLast     time.Time
	killed        bool   // ended for a spent budget (ENHANCE_YOUR_CALM)
	abusiveReason string // ... why; Config.OnAbusive hears it at teardown

	// finishing: the frame loop must stop (a GOAWAY for an error, or a
	// graceful one with nothing left in flight). Set under mu; read by
	// the frame loop after every frame.
	finishing atomic.Bool

	idleDeadline bool // a read deadline for the idle timeout is set
	sweep        *time.Timer
	sweepAt      time.Time
}

func (s *Server) newConn(nc net.Conn) *conn {
	c := &conn{
		srv:            s,
		cfg:            &s.cfg,
		nc:             nc,
		remote:         nc.RemoteAddr().String(),
		tls:            tlsState(nc),
		streams:        make(map[uint32]*stream),
		peerMaxFrame:   minMaxFrameSize,
		peerInitWindow: initialWindow,
		sendWindow:     initialWindow,
		recvWindow:     int64(s.cfg.ConnWindow),
		streamRecvInit: initialWindow,
		wake:           make(chan struct{}, 1),
		writerDone:     make(chan struct{}),
		tokens:         float64(s.cfg.ResetBurst),
		ctrlTokens:     controlBurst,
	}
	c.base = s.baseContext(nc)
	c.cond.L = &c.mu
	c.hbuf.b = make([]byte, 0, 512)
	c.henc = hpack.NewEncoder(&c.hbuf)
	c.tokenLast = time.Now()
	c.ctrlLast = c.tokenLast
	// The preface deadline and our SETTINGS are set up before the
	// connection is registered with the server: a Shutdown arriving
	// before serve starts finds them in place, and its GOAWAY follows
	// the SETTINGS instead of being overwritten by them, its expired
	// read deadline instead of being replaced by PrefaceTimeout's.
	_ = nc.SetReadDeadline(c.tokenLast.Add(s.cfg.PrefaceTimeout))
	c.wbuf = appendSettings(s.getBuf(),
		setting{settingMaxConcurrentStreams, s.cfg.MaxConcurrentStreams},
		setting{settingInitialWindowSize, uint32(s.cfg.StreamWindow)},
		setting{settingMaxFrameSize, minMaxFrameSize},
		setting{settingMaxHeaderListSize, uint32(s.cfg.MaxHeaderBytes)},
		setting{settingEnablePush, 0},
	)
	if s.cfg.ConnWindow > initialWindow {
		c.wbuf = appendWindowUpdate(c.wbuf, 0, uint32(s.cfg.ConnWindow-initialWindow))
	}
	c.writerPending = true
	c.wake <- struct{}{} // the writer, started by serve, sends them first
	return c
}

// errConnClosed is what handlers see once their connection is gone.
var errConnClosed = errors.New("http2: client connection closed")

// serve runs the frame loop until the connection ends.
func (c *conn) serve() (err error) {
	defer func() { c.teardown() }()
	go c.writeLoop() // newConn queued our SETTINGS

	c.br = bufio.NewReaderSize(c.nc, readBufSize)
	c.fr = newFrameReader(c.br, minMaxFrameSize)
	c.hdec = hpack.NewDecoder(hpackTableSize, c.hb.emit)
	// A string longer than a block may be (headerFragment) is refused
	// when its length arrives, before the decoder buffers it: a string
	// that never ends would be held whole. Up to that, a list over
	// MaxHeaderBytes is decoded (HPACK stays in step) and answered 431.
	c.hdec.SetMaxStringLength(maxBlockOctets(c.cfg))
	c.hb.c = c

	p, err := c.br.Peek(clientPrefaceLen)
	if err != nil {
		return fmt.Errorf("h2: reading the client preface: %w", err)
	}
	if string(p) != clientPreface {
		c.connError(connError{ErrCodeProtocol, "invalid client preface"})
		return errors.New("h2: invalid client preface")
	}
	_, _ = c.br.Discard(clientPrefaceLen)

	first := true
	for {
		fh, payload, rerr := c.fr.next()
		if rerr != nil {
			if rerr == errFrameTooLarge {
				c.connError(connError{ErrCodeFrameSize, fmt.Sprintf("%d-octet frame of type 0x%x exceeds SETTINGS_MAX_FRAME_SIZE %d", fh.Length, fh.Type, minMaxFrameSize)})
				return rerr
			}
			var ne net.Error
			if errors.As(rerr, &ne) && ne.Timeout() && !first {
				if c.readTimedOut() {
					return nil
				}
				continue
			}
			return rerr
		}
		if first {
			if fh.Type != frameSettings || fh.Flags&flagAck != 0 {
				c.connError(connError{ErrCodeProtocol, "the first frame after the preface is not SETTINGS"})
				return errors.New("h2: no SETTINGS after the preface")
			}
			first = false
			c.mu.Lock()
			if c.cfg.IdleTimeout < 0 && !c.finishing.Load() {
				_ = c.nc.SetReadDeadline(time.Time{}) // the preface's
			}
			c.updateIdleLocked()
			c.mu.Unlock()
		}
		if err := c.processFrame(fh, payload); err != nil {
			var ce connError
			if errors.As(err, &ce) {
				c.connError(ce)
			}
			return err
		}
		if c.finishing.Load() {
			// Ended from elsewhere (Shutdown, a handler, the writer) or
			// by this frame: the next frame may already be buffered, so
			// the expired read deadline alone would not stop the loop.
			return nil
		}
	}
}

// readTimedOut handles an expired read deadline: the connection had no
// streams for IdleTimeout, or it is going away (finishLocked). It reports
// whether the frame loop is done.
func (c *conn) readTimedOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.finishing.Load() || c.closed {
		return true
	}
	if c.active > 0 || c.running > 0 {
		// A stream started as the deadline passed, or streams are still
		// in flight after a graceful GOAWAY.
		c.idleDeadline = false
		_ = c.nc.SetReadDeadline(time.Time{})
		return false
	}
	if !c.goingAway {
		c.sendGoAwayLocked(ErrCodeNo, "idle timeout")
	}
	return true
}

// updateIdleLocked arms the idle timeout when the connection has nothing
// in flight and disarms it when it has.
func (c *conn) updateIdleLocked() {
	if c.cfg.IdleTimeout < 0 || c.closed || c.finishing.Load() {
		return // finishing: the expired deadline that stops the frame loop stays
	}
	idle := c.active == 0 && c.running == 0
	if idle && !c.idleDeadline {
		c.idleDeadline = true
		_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.IdleTimeout))
	} else if !idle && c.idleDeadline {
		c.idleDeadline = false
		_ = c.nc.SetReadDeadline(time.Time{})
	}
}

// processFrame handles one frame; a connError it returns ends the
// connection.
func (c *conn) processFrame(fh frameHeader, p []byte) error {
	if c.hb.active && fh.Type != frameContinuation {
		return connError{ErrCodeProtocol, fmt.Sprintf("frame of type 0x%x in the middle of stream %d's header block", fh.Type, c.hb.stream)}
	}
	switch fh.Type {
	case frameData:
		return c.processData(fh, p)
	case frameHeaders:
		return c.processHeaders(fh, p)
	case framePriority:
		return c.processPriority(fh, p)
	case frameRSTStream:
		return c.processRSTStream(fh, p)
	case frameSettings:
		return c.processSettings(fh, p)
	case framePushPromise:
		return connError{ErrCodeProtocol, "PUSH_PROMISE from a client"}
	case framePing:
		return c.processPing(fh, p)
	case frameGoAway:
		return c.processGoAway(fh, p)
	case frameWindowUpdate:
		return c.processWindowUpdate(fh, p)
	case frameContinuation:
		return c.processContinuation(fh, p)
	default:
		// Unknown frame types are ignored (RFC 9113 §4.1, §5.5).
		return c.spendControl("unknown frame types", 1)
	}
}

// spendControl takes n tokens from the control-frame budget (frame loop
// only); a spent budget ends the connection.
func (c *conn) spendControl(what string, n int) error {
	if c.takeControl(n) {
		return nil
	}
	return c.abusive(controlFlood(what))
}

// takeControl takes n tokens from the control-frame budget and reports
// whether it had them. The budget belongs to the frame loop: no lock.
func (c *conn) takeControl(n int) bool {
	now := time.Now()
	c.ctrlTokens += now.Sub(c.ctrlLast).Seconds() * controlRate
	c.ctrlLast = now
	if c.ctrlTokens > controlBurst {
		c.ctrlTokens = controlBurst
	}
	c.ctrlTokens -= float64(n)
	return c.ctrlTokens >= 0
}

func controlFlood(what string) string {
	return fmt.Sprintf("control frame flood (%s; budget %d, %d/s)", what, controlBurst, controlRate)
}

// takeResetLocked takes a token from the reset budget and reports whether
// it had one. Only what the client provoked spends it: its RST_STREAMs,
// and the streams the frame loop resets or refuses because of its frames
// (stream errors, REFUSED_STREAM, 431). What the server decides on its
// own (a handler's panic, a short response, a deadline) never does.
func (c *conn) takeResetLocked() bool {
	now := time.Now()
	c.tokens += now.Sub(c.tokenLast).Seconds() * c.cfg.ResetRate
	c.tokenLast = now
	if m := float64(c.cfg.ResetBurst); c.tokens > m {
		c.tokens = m
	}
	c.tokens--
	return c.tokens >= 0
}

func (c *conn) resetBudgetSpent(what string) string {
	return fmt.Sprintf("stream reset budget spent (%s; burst %d, %.0f/s)", what, c.cfg.ResetBurst, c.cfg.ResetRate)
}

// abusive ends the connection for a spent budget; see calmLocked.
func (c *conn) abusive(reason string) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.calmLocked(reason)
}

// calmLocked ends the connection for a spent budget: it is counted as
// abusive and GOAWAY ENHANCE_YOUR_CALM is queued at once, whichever
// goroutine noticed, so that no connection is marked without being ended.
// Config.OnAbusive hears of it at teardown, outside the lock. The error
// returned is for the frame loop to return.
func (c *conn) calmLocked(reason string) error {
	if !c.killed && !c.closed {
		c.killed = true
		c.abusiveReason = reason
		c.srv.abusive.Add(1)
	}
	c.sendGoAwayLocked(ErrCodeEnhanceYourCalm, "")
	return connError{ErrCodeEnhanceYourCalm, reason}
}

func (c *conn) processData(fh frameHeader, p []byte) error {
	id := fh.StreamID
	if id == 0 {
		return connError{ErrCodeProtocol, "DATA on stream 0"}
	}
	data, _, err := stripPadding(fh, p)
	if err != nil {
		return err
	}
	if id > c.maxClientID {
		return connError{ErrCodeProtocol, fmt.Sprintf("DATA on idle stream %d", id)}
	}
	if len(data) == 0 && fh.Flags&flagEndStream == 0 {
		if err := c.spendControl("empty DATA frames", 1); err != nil {
			return err
		}
	}
	flowLen := int64(fh.Length)
	c.mu.Lock()
	defer c.mu.Unlock()
	if flowLen > c.recvWindow {
		return connError{ErrCodeFlowControl, fmt.Sprintf("DATA of %d octets exceeds the connection window (%d)", flowLen, c.recvWindow)}
	}
	c.recvWindow -= flowLen
	st := c.streams[id]
	if st == nil {
		// Whatever happens to the stream, the octets count against the
		// connection window and are given back: a DATA frame dropped
		// without its credit would shrink the window for good.
		c.creditConnLocked(flowLen)
		if c.wasResetLocked(id) || c.goingAway && id > c.lastStreamID {
			return nil // we reset or ignored the stream
		}
		// Closed, or reset too long ago for the ring to remember: a
		// stream error, as x/net answers, never a connection error (the
		// client may have sent it before it saw our reset). The reset
		// is remembered, so the rest of that upload is ignored.
		return c.streamErrorLocked(id, ErrCodeStreamClosed)
	}
	if st.remoteClosed {
		c.creditConnLocked(flowLen)
		return c.streamErrorLocked(id, ErrCodeStreamClosed)
	}
	if flowLen > st.recvWindow {
		c.creditConnLocked(flowLen)
		return c.streamErrorLocked(id, ErrCodeFlowControl)
	}
	st.recvWindow -= flowLen
	st.received += int64(len(data))
	end := fh.Flags&flagEndStream != 0
	if st.declLen >= 0 && (st.received > st.declLen || end && st.received != st.declLen) {
		c.creditConnLocked(flowLen)
		return c.streamErrorLocked(id, ErrCodeProtocol)
	}
	// Padding is consumed at once; the data when the handler reads it.
	if pad := flowLen - int64(len(data)); pad > 0 {
		c.creditConnLocked(pad)
		st.creditLocked(pad)
	}
	if len(data) > 0 {
		if st.bodyDone {
			// Nobody will read it: the handler has finished or closed
			// the body.
			c.creditConnLocked(int64(len(data)))
		} else {
			if st.bodyOff > 0 && cap(st.body)-len(st.body) < len(data) {
				// Reclaim what the handler has read rather than grow: the
				// buffer stays within the stream window however slowly
				// the handler reads.
				n := copy(st.body, st.body[st.bodyOff:])
				st.body, st.bodyOff = st.body[:n], 0
			}
			st.body = append(st.body, data...)
			st.wakeBodyLocked()
		}
	}
	if end {
		c.endRemoteLocked(st)
	}
	return nil
}

// endRemoteLocked marks END_STREAM from the client.
func (c *conn) endRemoteLocked(st *stream) {
	st.remoteClosed = true
	if st.bodyErr == nil {
		st.bodyErr = io.EOF
	}
	st.wakeBodyLocked()
	if st.localClosed {
		c.closeStreamLocked(st)
	}
}

func (c *conn) processPriority(fh frameHeader, p []byte) error {
	if fh.StreamID == 0 {
		return connError{ErrCodeProtocol, "PRIORITY on stream 0"}
	}
	if len(p) != 5 {
		return c.streamErrorNoState(fh.StreamID, ErrCodeFrameSize)
	}
	if binary.BigEndian.Uint32(p)&(1<<31-1) == fh.StreamID {
		return c.streamErrorNoState(fh.StreamID, ErrCodeProtocol)
	}
	return c.spendControl("PRIORITY frames", 1)
}

// streamErrorNoState answers a stream error on a stream that may not
// exist (yet): a reset of an open stream, or a bare RST_STREAM.
func (c *conn) streamErrorNoState(id uint32, code ErrCode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.streamErrorLocked(id, code)
}

func (c *conn) processRSTStream(fh frameHeader, p []byte) error {
	id := fh.StreamID
	if id == 0 {
		return connError{ErrCodeProtocol, "RST_STREAM on stream 0"}
	}
	if len(p) != 4 {
		return connError{ErrCodeFrameSize, fmt.Sprintf("RST_STREAM of %d octets", len(p))}
	}
	if id > c.maxClientID {
		return connError{ErrCodeProtocol, fmt.Sprintf("RST_STREAM on idle stream %d", id)}
	}
	c.mu.Lock()
	if !c.takeResetLocked() {
		err := c.calmLocked(c.resetBudgetSpent("client RST_STREAM"))
		c.mu.Unlock()
		return err
	}
	if st := c.streams[id]; st != nil {
		code := ErrCode(binary.BigEndian.Uint32(p))
		c.abortStreamLocked(st, fmt.Errorf("http2: stream reset by the client (%v)", code))
	}
	c.mu.Unlock()
	return nil
}

func (c *conn) processSettings(fh frameHeader, p []byte) error {
	if fh.StreamID != 0 {
		return connError{ErrCodeProtocol, "SETTINGS on a stream"}
	}
	if fh.Flags&flagAck != 0 {
		if len(p) != 0 {
			return connError{ErrCodeFrameSize, "SETTINGS ACK with a payload"}
		}
		c.mu.Lock()
		if !c.settingsAcked {
			c.settingsAcked = true
			// Streams opened before the client applied our initial
			// window were counted against the protocol's 65535.
			delta := int64(c.cfg.StreamWindow) - initialWindow
			c.streamRecvInit = int64(c.cfg.StreamWindow)
			for _, st := range c.streams {
				st.recvWindow += delta
			}
		}
		c.mu.Unlock()
		return nil
	}
	if len(p)%6 != 0 {
		return connError{ErrCodeFrameSize, fmt.Sprintf("SETTINGS of %d octets, not a multiple of 6", len(p))}
	}
	// Each entry costs a token: an INITIAL_WINDOW_SIZE entry walks every
	// stream, and a frame can carry 2 730 of them.
	if err := c.spendControl("SETTINGS entries", max(1, len(p)/6)); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	for ; len(p) > 0; p = p[6:] {
		id := binary.BigEndian.Uint16(p)
		v := binary.BigEndian.Uint32(p[2:])
		switch id {
		case settingHeaderTableSize:
			// Our encoder's table never grows beyond the default, whatever
			// the client allows.
			c.henc.SetMaxDynamicTableSizeLimit(min(v, hpackTableSize))
		case settingEnablePush, settingEnableConnectProtocol, settingNoRFC7540Priorities:
			if v > 1 {
				return connError{ErrCodeProtocol, fmt.Sprintf("setting 0x%x is %d, must be 0 or 1", id, v)}
			}
		case settingInitialWindowSize:
			if v > maxWindow {
				return connError{ErrCodeFlowControl, fmt.Sprintf("SETTINGS_INITIAL_WINDOW_SIZE %d exceeds 2^31-1", v)}
			}
			delta := int64(v) - c.peerInitWindow
			c.peerInitWindow = int64(v)
			for _, st := range c.streams {
				st.sendWindow += delta
				if st.sendWindow > maxWindow {
					return connError{ErrCodeFlowControl, fmt.Sprintf("SETTINGS_INITIAL_WINDOW_SIZE %d overflows stream %d's window", v, st.id)}
				}
			}
			if delta > 0 {
				c.cond.Broadcast()
			}
		case settingMaxFrameSize:
			if v < minMaxFrameSize || v > maxMaxFrameSize {
				return connError{ErrCodeProtocol, fmt.Sprintf("SETTINGS_MAX_FRAME_SIZE %d outside 16384..16777215", v)}
			}
			// Larger frames save little; ours stay at 16 KiB at most.
			c.peerMaxFrame = int(min(v, minMaxFrameSize))
		default:
			// SETTINGS_MAX_CONCURRENT_STREAMS limits pushes, which we do
			// not make; MAX_HEADER_LIST_SIZE is advisory; unknown
			// settings are ignored (RFC 9113 §6.5.2).
		}
	}
	c.wbuf = appendSettingsAck(c.buf())
	return c.queueControlLocked(frameHeaderLen)
}

func (c *conn) processPing(fh frameHeader, p []byte) error {
	if fh.StreamID != 0 {
		return connError{ErrCodeProtocol, "PING on a stream"}
	}
	if len(p) != 8 {
		return connError{ErrCodeFrameSize, fmt.Sprintf("PING of %d octets", len(p))}
	}
	if fh.Flags&flagAck != 0 {
		return nil // we send no PINGs; a stray ACK is harmless
	}
	if err := c.spendControl("PING frames", 1); err != nil {
		return err
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	c.wbuf = appendPingAck(c.buf(), p)
	return c.queueControlLocked(frameHeaderLen + 8)
}

func (c *conn) processGoAway(fh frameHeader, p []byte) error {
	if fh.StreamID != 0 {
		return connError{ErrCodeProtocol, "GOAWAY on a stream"}
	}
	if len(p) < 8 {
		return connError{ErrCodeFrameSize, fmt.Sprintf("GOAWAY of %d octets", len(p))}
	}
	// The client opens no more streams; the ones in flight finish, and
	// the connection closes when they have. A client says so once: more
	// GOAWAYs are work for nothing.
	if c.sawGoAway {
		if err := c.spendControl("repeated GOAWAY frames", 1); err != nil {
			return err
		}
	}
	c.sawGoAway = true
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.goingAway {
		c.sendGoAwayLocked(ErrCodeNo, "")
	}
	return nil
}

func (c *conn) processWindowUpdate(fh frameHeader, p []byte) error {
	if len(p) != 4 {
		return connError{ErrCodeFrameSize, fmt.Sprintf("WINDOW_UPDATE of %d octets", len(p))}
	}
	incr := int64(binary.BigEndian.Uint32(p) & (1<<31 - 1))
	id := fh.StreamID
	if id > c.maxClientID {
		return connError{ErrCodeProtocol, fmt.Sprintf("WINDOW_UPDATE on idle stream %d", id)}
	}
	tiny := incr < tinyWindowUpdate
	if tiny {
		if err := c.spendControl("tiny WINDOW_UPDATE frames", 1); err != nil {
			return err
		}
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if id == 0 {
		if incr == 0 {
			return connError{ErrCodeProtocol, "WINDOW_UPDATE of 0 on the connection"}
		}
		c.sendWindow += incr
		if c.sendWindow > maxWindow {
			return connError{ErrCodeFlowControl, "WINDOW_UPDATE overflows the connection window"}
		}
		c.cond.Broadcast()
		return nil
	}
	st := c.streams[id]
	if st == nil {
		// Closed: a late update is allowed (RFC 9113 §5.1), one per stream
		// that closed free of charge; a stream of them is work for nothing.
		switch {
		case tiny: // paid for above
		case c.lateFree > 0:
			c.lateFree--
		case !c.takeControl(1):
			return c.calmLocked(controlFlood("WINDOW_UPDATE frames on closed streams"))
		}
		return nil
	}
	if incr == 0 {
		return c.streamErrorLocked(id, ErrCodeProtocol)
	}
	st.sendWindow += incr
	if st.sendWindow > maxWindow {
		return c.streamErrorLocked(id, ErrCodeFlowControl)
	}
	c.cond.Broadcast()
	return nil
}

// creditConnLocked gives consumed octets back to the connection window,
// in WINDOW_UPDATEs of at least a quarter of it.
func (c *conn) creditConnLocked(n int64) {
	c.recvUnacked += n
	if c.recvUnacked >= int64(c.cfg.ConnWindow)/4 && !c.closed {
		c.wbuf = appendWindowUpdate(c.buf(), 0, uint32(c.recvUnacked))
		c.recvWindow += c.recvUnacked
		c.recvUnacked = 0
		c.ctrlQueued += frameHeaderLen + 4
		c.wakeWriterLocked()
	}
}

// queueControlLocked wakes the writer after the frame loop queued a reply
// of n octets (an acknowledgement, a WINDOW_UPDATE, a RST_STREAM, a 431);
// a client that makes replies pile up without reading them ends the
// connection.
func (c *conn) queueControlLocked(n int) error {
	c.ctrlQueued += n
	if c.ctrlQueued > controlSlack {
		return c.calmLocked("queued control frames exceed the limit: the client sends without reading")
	}
	c.wakeWriterLocked()
	return nil
}

// appendRSTLocked queues RST_STREAM and remembers the stream as reset;
// the caller wakes the writer.
func (c *conn) appendRSTLocked(id uint32, code ErrCode) {
	c.rememberResetLocked(id)
	// The reset leaves in a TLS record of its own: in one record with the
	// response before it, curl 7.88 reports the stream closed and drops
	// the response it has just received.
	c.wbuf = c.buf()
	if len(c.wbuf) > 0 && (len(c.cuts) == 0 || c.cuts[len(c.cuts)-1] < len(c.wbuf)) {
		c.cuts = append(c.cuts, len(c.wbuf))
	}
	c.wbuf = appendRSTStream(c.wbuf, id, code)
}

// streamErrorLocked answers a stream error the client's frames caused
// (RFC 9113 §5.4.2) from the frame loop: the stream, if open, is aborted,
// RST_STREAM is queued as a control reply, and the reset budget pays for
// it (MadeYouReset, CVE-2025-8671).
func (c *conn) streamErrorLocked(id uint32, code ErrCode) error {
	if c.closed {
		return nil
	}
	if st := c.streams[id]; st != nil {
		c.abortStreamLocked(st, fmt.Errorf("http2: stream reset by the server (%v)", code))
	}
	c.appendRSTLocked(id, code)
	if err := c.queueControlLocked(frameHeaderLen + 4); err != nil {
		return err
	}
	if !c.takeResetLocked() {
		return c.calmLocked(c.resetBudgetSpent(fmt.Sprintf("server RST_STREAM %v provoked by the client", code)))
	}
	return nil
}

// serverResetLocked resets a stream for the server's own reasons: a
// handler's panic (http.ErrAbortHandler included, which edge/forward
// raises when an origin fails mid-body), a response shorter than its
// Content-Length, a deadline. The client provoked nothing: the reset
// budget is not spent, and Server.serverResets counts them instead.
func (c *conn) serverResetLocked(st *stream, code ErrCode, why string) {
	id := st.id // st may be recycled by the abort
	c.abortStreamLocked(st, fmt.Errorf("http2: stream reset by the server (%v): %s", code, why))
	if c.closed {
		return
	}
	c.appendRSTLocked(id, code)
	c.wakeWriterLocked()
	c.srv.serverResets.Add(1)
}

// waitQueueLocked makes a handler wait while the write queue is full, as
// a write to a full socket would, so that what handlers queue (their
// resets and 1xx responses included) stays within maxQueued. It returns
// at once when nothing more can be written.
func (c *conn) waitQueueLocked() {
	for len(c.wbuf) >= maxQueued && c.werr == nil && !c.closed {
		c.queueWaiters++
		c.cond.Wait()
		c.queueWaiters--
	}
}

func (c *conn) rememberResetLocked(id uint32) {
	if c.resets == nil {
		c.resets = make([]uint32, resetRingSize)
	}
	c.resets[c.resetAt] = id
	c.resetAt = (c.resetAt + 1) % resetRingSize
}

func (c *conn) wasResetLocked(id uint32) bool {
	for _, r := range c.resets {
		if r == id {
			return true
		}
	}
	return false
}

// abortStreamLocked ends a stream in both directions: its handler's
// context is cancelled, its body and writes fail with err, and a handler
// that has not started never will.
func (c *conn) abortStreamLocked(st *stream, err error) {
	if st.pending {
		// Never to start: off the queue at once, so that streams reset
		// while waiting for a handler slot hold nothing (a client could
		// otherwise pile up HEADERS+RST_STREAM pairs, each with its
		// request, behind handlers that are slow to return).
		c.removePendingLocked(st)
	}
	st.reset = true
	st.remoteClosed, st.localClosed = true, true
	if st.bodyErr == nil || st.bodyErr == io.EOF && len(st.body) > st.bodyOff {
		st.bodyErr = err
	}
	if st.cancel != nil {
		st.cancel(canceled{err})
	}
	st.wakeBodyLocked()
	c.cond.Broadcast()
	c.closeStreamLocked(st)
}

// closeStreamLocked takes a stream off the table once both sides are done
// (or it was reset). The stream may be recycled: callers do not touch it
// afterwards.
func (c *conn) closeStreamLocked(st *stream) {
	if !st.inMap {
		return
	}
	st.inMap = false
	delete(c.streams, st.id)
	c.active--
	if c.lateFree < int(c.cfg.MaxConcurrentStreams) {
		c.lateFree++
	}
	// Unread body octets go back to the connection window.
	if n := int64(len(st.body) - st.bodyOff); n > 0 {
		st.bodyOff = len(st.body)
		c.creditConnLocked(n)
	}
	if c.goingAway && c.active == 0 && c.running == 0 {
		c.finishLocked()
	}
	c.updateIdleLocked()
	c.maybeRecycleLocked(st)
}

// sendGoAwayLocked queues GOAWAY with the highest stream id we processed.
// With NO_ERROR, streams in flight finish; the connection closes when none
// is left.
func (c *conn) sendGoAwayLocked(code ErrCode, debug string) {
	if c.closed {
		return
	}
	if c.goingAway && code == ErrCodeNo {
		return
	}
	if !c.goingAway {
		// The last stream id never grows from one GOAWAY to the next
		// (RFC 9113 §6.8): streams the client opened after the first
		// were ignored, and it may have retried them elsewhere.
		c.lastStreamID = c.maxClientID
	}
	c.goingAway = true
	c.wbuf = appendGoAway(c.buf(), c.lastStreamID, code, debug)
	c.wakeWriterLocked()
	if code != ErrCodeNo || c.active == 0 && c.running == 0 {
		c.finishLocked()
	}
}

// finishLocked makes the frame loop stop: a read in progress is cut by an
// expired deadline, which updateIdleLocked leaves alone from now on, and
// the loop checks finishing after every frame. The writer still sends
// what is queued.
func (c *conn) finishLocked() {
	c.goingAway = true
	c.finishing.Store(true)
	if !c.closed {
		// Once torn down, the deadline is teardown's: a handler
		// returning then must not cut its linger short.
		_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	}
}

// goAway starts a graceful shutdown of the connection.
func (c *conn) goAway() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.sendGoAwayLocked(ErrCodeNo, "")
}

// cut closes the connection at once.
func (c *conn) cut() {
	c.mu.Lock()
	c.abortAllLocked(errConnClosed)
	c.mu.Unlock()
	_ = c.nc.Close()
}

// connError queues GOAWAY for a connection error; serve then returns.
func (c *conn) connError(ce connError) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if !c.closed {
		c.srv.log.Debug("HTTP/2 connection error", "client", c.remote, "code", ce.Code.String(), "reason", ce.Reason)
	}
	c.sendGoAwayLocked(ce.Code, "")
}

// removePendingLocked takes a stream off the queue of streams waiting for
// a handler slot (at most MaxConcurrentStreams long).
func (c *conn) removePendingLocked(st *stream) {
	for i, p := range c.pending {
		if p == st {
			copy(c.pending[i:], c.pending[i+1:])
			c.pending[len(c.pending)-1] = nil
			c.pending = c.pending[:len(c.pending)-1]
			break
		}
	}
	st.pending = false
}

func (c *conn) abortAllLocked(err error) {
	for _, st := range c.pending {
		st.pending = false
	}
	clear(c.pending)
	c.pending = nil
	for _, st := range c.streams {
		c.abortStreamLocked(st, err)
	}
	c.closed = true
	c.cond.Broadcast()
}

// teardown ends the connection: every stream is aborted, the writer sends
// what is queued (within closeDrainTimeout), and the socket is closed.
func (c *conn) teardown() {
	c.mu.Lock()
	// Whatever is queued (responses, GOAWAY) still leaves; nothing new is
	// queued from now on.
	lingerAfter := c.goingAway && c.werr == nil
	abusive, reason := c.killed, c.abusiveReason
	c.abortAllLocked(errConnClosed)
	c.wakeWriterLocked()
	if c.sweep != nil {
		c.sweep.Stop()
	}
	c.mu.Unlock()
	if abusive && c.cfg.OnAbusive != nil {
		c.cfg.OnAbusive(c.remote, reason) // user code: never under c.mu
	}
	t := time.AfterFunc(closeDrainTimeout, func() { _ = c.nc.Close() })
	<-c.writerDone
	t.Stop()
	if lingerAfter {
		// Let the client read our GOAWAY before the connection goes:
		// closing with its frames unread would reset the connection.
		_ = c.nc.SetReadDeadline(time.Now().Add(lingerTimeout))
		if c.br != nil {
			_, _ = io.Copy(io.Discard, c.br)
		}
	}
	_ = c.nc.Close()
}
