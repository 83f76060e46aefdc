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
	// lingerTimeout is how long a connection ended by an error keeps
	// reading (and discarding) after its GOAWAY, so that the client reads
	// the GOAWAY before the TCP connection is closed under it.
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
	maxClientID uint32
	ctrlTokens  float64
	ctrlLast    time.Time

	mu      sync.Mutex
	cond    sync.Cond // signalled when windows open, the queue drains, or the connection ends
	streams map[uint32]*stream
	active  int       // streams open or half-closed: what MAX_CONCURRENT_STREAMS counts
	running int       // handlers running, reset streams' included
	pending []*stream // streams waiting for a handler slot
	resets  []uint32  // ring of streams we reset, lazily allocated
	resetAt int

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
	goingAway     bool  // GOAWAY sent: no new streams
	goAwayErr     bool  // ... for an error: linger, then close
	lastStreamID  uint32
	ctrlQueued    int // octets of the frame loop's replies queued since the writer last took the queue
	lastLen       int
	lastLenS      string

	// The reset budget (token bucket).
	tokens    float64
	tokenLast time.Time
	killed    bool

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
	return c
}

// errConnClosed is what handlers see once their connection is gone.
var errConnClosed = errors.New("http2: client connection closed")

// serve runs the frame loop until the connection ends.
func (c *conn) serve() (err error) {
	defer func() { c.teardown() }()
	go c.writeLoop()

	_ = c.nc.SetReadDeadline(time.Now().Add(c.cfg.PrefaceTimeout))
	c.mu.Lock()
	c.wbuf = c.srv.getBuf()
	c.wbuf = appendSettings(c.wbuf,
		setting{settingMaxConcurrentStreams, c.cfg.MaxConcurrentStreams},
		setting{settingInitialWindowSize, uint32(c.cfg.StreamWindow)},
		setting{settingMaxFrameSize, minMaxFrameSize},
		setting{settingMaxHeaderListSize, uint32(c.cfg.MaxHeaderBytes)},
		setting{settingEnablePush, 0},
	)
	if c.cfg.ConnWindow > initialWindow {
		c.wbuf = appendWindowUpdate(c.wbuf, 0, uint32(c.cfg.ConnWindow-initialWindow))
	}
	c.wakeWriterLocked()
	c.mu.Unlock()

	c.br = bufio.NewReaderSize(c.nc, readBufSize)
	c.fr = newFrameReader(c.br, minMaxFrameSize)
	c.hdec = hpack.NewDecoder(hpackTableSize, c.hb.emit)
	// No bound on a single string: the header list size (MaxHeaderBytes,
	// answered with 431) bounds what is kept, and the frame size and the
	// CONTINUATION limit bound what a block can carry.
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
			if c.cfg.IdleTimeout < 0 {
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
	}
}

// readTimedOut handles an expired read deadline: the connection had no
// streams for IdleTimeout, or it is going away (finishLocked). It reports
// whether the frame loop is done.
func (c *conn) readTimedOut() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.goAwayErr || c.closed {
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
	if c.cfg.IdleTimeout < 0 || c.closed {
		return
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
		return c.spendControl("unknown frame types")
	}
}

// spendControl takes a token from the control-frame budget.
func (c *conn) spendControl(what string) error {
	now := time.Now()
	c.ctrlTokens += now.Sub(c.ctrlLast).Seconds() * controlRate
	c.ctrlLast = now
	if c.ctrlTokens > controlBurst {
		c.ctrlTokens = controlBurst
	}
	c.ctrlTokens--
	if c.ctrlTokens < 0 {
		return c.abusive(fmt.Sprintf("control frame flood (%s; budget %d, %d/s)", what, controlBurst, controlRate))
	}
	return nil
}

// spendReset takes a token from the reset budget; false when spent.
func (c *conn) spendResetLocked() bool {
	now := time.Now()
	c.tokens += now.Sub(c.tokenLast).Seconds() * c.cfg.ResetRate
	c.tokenLast = now
	if m := float64(c.cfg.ResetBurst); c.tokens > m {
		c.tokens = m
	}
	c.tokens--
	return c.tokens >= 0
}

// abusive reports a spent budget and returns the connection error that
// ends the connection with ENHANCE_YOUR_CALM.
func (c *conn) abusive(reason string) error {
	c.mu.Lock()
	c.markAbusiveLocked(reason)
	c.mu.Unlock()
	return connError{ErrCodeEnhanceYourCalm, reason}
}

func (c *conn) markAbusiveLocked(reason string) {
	if c.killed {
		return
	}
	c.killed = true
	c.srv.abusive.Add(1)
	if c.cfg.OnAbusive != nil {
		c.cfg.OnAbusive(c.remote, reason)
	}
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
		if err := c.spendControl("empty DATA frames"); err != nil {
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
		c.creditConnLocked(flowLen)
		if c.wasResetLocked(id) || c.goingAway && id > c.lastStreamID {
			return nil // we reset or ignored the stream
		}
		return connError{ErrCodeStreamClosed, fmt.Sprintf("DATA on closed stream %d", id)}
	}
	if st.remoteClosed {
		c.creditConnLocked(flowLen)
		return c.resetStreamLocked(st, ErrCodeStreamClosed)
	}
	if flowLen > st.recvWindow {
		c.creditConnLocked(flowLen)
		return c.resetStreamLocked(st, ErrCodeFlowControl)
	}
	st.recvWindow -= flowLen
	st.received += int64(len(data))
	end := fh.Flags&flagEndStream != 0
	if st.declLen >= 0 && (st.received > st.declLen || end && st.received != st.declLen) {
		c.creditConnLocked(flowLen)
		return c.resetStreamLocked(st, ErrCodeProtocol)
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
	return c.spendControl("PRIORITY frames")
}

// streamErrorNoState answers a stream error on a stream that may not
// exist (yet): a reset of an open stream, or a bare RST_STREAM.
func (c *conn) streamErrorNoState(id uint32, code ErrCode) error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if st := c.streams[id]; st != nil {
		return c.resetStreamLocked(st, code)
	}
	return c.sendRSTLocked(id, code)
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
	if !c.spendResetLocked() {
		reason := fmt.Sprintf("stream reset budget spent (client RST_STREAM; burst %d, %.0f/s)", c.cfg.ResetBurst, c.cfg.ResetRate)
		c.markAbusiveLocked(reason)
		c.mu.Unlock()
		return connError{ErrCodeEnhanceYourCalm, reason}
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
	if err := c.spendControl("SETTINGS frames"); err != nil {
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
	if err := c.spendControl("PING frames"); err != nil {
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
	// the connection closes when they have.
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
	if incr < tinyWindowUpdate {
		if err := c.spendControl("tiny WINDOW_UPDATE frames"); err != nil {
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
		return nil // closed: a late update is allowed
	}
	if incr == 0 {
		return c.resetStreamLocked(st, ErrCodeProtocol)
	}
	st.sendWindow += incr
	if st.sendWindow > maxWindow {
		return c.resetStreamLocked(st, ErrCodeFlowControl)
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

// queueControlLocked wakes the writer after a control frame of n octets
// was queued; a client that makes replies pile up without reading them
// ends the connection.
func (c *conn) queueControlLocked(n int) error {
	c.ctrlQueued += n
	if c.ctrlQueued > controlSlack {
		reason := "queued control frames exceed the limit: the client sends without reading"
		c.markAbusiveLocked(reason)
		return connError{ErrCodeEnhanceYourCalm, reason}
	}
	c.wakeWriterLocked()
	return nil
}

// sendRSTLocked queues RST_STREAM; a code other than NO_ERROR spends the
// reset budget (the client provoked it).
func (c *conn) sendRSTLocked(id uint32, code ErrCode) error {
	if c.closed {
		return nil
	}
	c.rememberResetLocked(id)
	// The reset leaves in a TLS record of its own: in one record with the
	// response before it, curl 7.88 reports the stream closed and drops
	// the response it has just received.
	c.wbuf = c.buf()
	if len(c.wbuf) > 0 && (len(c.cuts) == 0 || c.cuts[len(c.cuts)-1] < len(c.wbuf)) {
		c.cuts = append(c.cuts, len(c.wbuf))
	}
	c.wbuf = appendRSTStream(c.wbuf, id, code)
	if err := c.queueControlLocked(frameHeaderLen + 4); err != nil {
		return err
	}
	if code != ErrCodeNo && !c.spendResetLocked() {
		reason := fmt.Sprintf("stream reset budget spent (server RST_STREAM %v provoked by the client; burst %d, %.0f/s)", code, c.cfg.ResetBurst, c.cfg.ResetRate)
		c.markAbusiveLocked(reason)
		return connError{ErrCodeEnhanceYourCalm, reason}
	}
	return nil
}

// resetStreamLocked answers a stream error: the stream is aborted and
// RST_STREAM sent.
func (c *conn) resetStreamLocked(st *stream, code ErrCode) error {
	id := st.id // st may be recycled by the abort
	c.abortStreamLocked(st, fmt.Errorf("http2: stream reset by the server (%v)", code))
	return c.sendRSTLocked(id, code)
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
	st.reset = true
	st.remoteClosed, st.localClosed = true, true
	if st.bodyErr == nil || st.bodyErr == io.EOF && len(st.body) > st.bodyOff {
		st.bodyErr = err
	}
	if st.ctx != nil {
		st.ctx.cancel(err)
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
	c.goingAway = true
	c.lastStreamID = c.maxClientID
	if code != ErrCodeNo {
		c.goAwayErr = true
	}
	c.wbuf = appendGoAway(c.buf(), c.lastStreamID, code, debug)
	c.wakeWriterLocked()
	if code != ErrCodeNo || c.active == 0 && c.running == 0 {
		c.finishLocked()
	}
}

// finishLocked makes the frame loop stop: the read is cut by an expired
// deadline. The writer still sends what is queued.
func (c *conn) finishLocked() {
	c.goingAway = true
	_ = c.nc.SetReadDeadline(time.Unix(1, 0))
	c.idleDeadline = true
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

func (c *conn) abortAllLocked(err error) {
	for _, st := range c.streams {
		c.abortStreamLocked(st, err)
	}
	for _, st := range c.pending {
		st.reset = true
	}
	c.pending = nil
	c.closed = true
	c.cond.Broadcast()
}

// teardown ends the connection: every stream is aborted, the writer sends
// what is queued (within closeDrainTimeout), and the socket is closed.
func (c *conn) teardown() {
	c.mu.Lock()
	// Whatever is queued (responses, GOAWAY) still leaves; nothing new is
	// queued from now on.
	lingerAfter := c.goAwayErr && c.werr == nil
	c.abortAllLocked(errConnClosed)
	c.wakeWriterLocked()
	if c.sweep != nil {
		c.sweep.Stop()
	}
	c.mu.Unlock()
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
