package h3

import (
	"context"
	"errors"
	"io"
	"time"

	"github.com/quic-go/quic-go"
	"github.com/quic-go/quic-go/quicvarint"
)

// Bounds on the frames of the client's control stream this server reads
// into memory (others are skipped as they stream past).
const (
	maxSettingsFrame = 16 << 10
	maxPriorityFrame = 4 << 10
)

// acceptUniStreams takes the client's unidirectional streams until the
// connection ends.
func (c *conn) acceptUniStreams() {
	for {
		rs, err := c.qc.AcceptUniStream(context.Background())
		if err != nil {
			return
		}
		go c.handleUniStream(rs)
	}
}

// handleUniStream reads a unidirectional stream's type and serves it: the
// control stream and the two QPACK streams, each at most once (RFC 9114
// §6.2.1, RFC 9204 §4.2); a push stream is the server's alone (§6.2.2);
// any other type is refused with H3_STREAM_CREATION_ERROR, as §6.2 allows.
func (c *conn) handleUniStream(rs *quic.ReceiveStream) {
	var rd streamReader
	rd.reset(rs, make([]byte, 1<<10))
	// A stream that never says what it is would park this goroutine and
	// its buffer until the connection ends: it gets ReadHeaderTimeout.
	if d := c.srv.cfg.ReadHeaderTimeout; d > 0 {
		_ = rs.SetReadDeadline(time.Now().Add(d))
	}
	typ, err := rd.varint()
	if err != nil {
		// Gone, or silent, before it said what it is: nothing to serve.
		rs.CancelRead(strCode(ErrStreamCreationError))
		rs.ReleaseStreamCredit()
		return
	}
	_ = rs.SetReadDeadline(time.Time{}) // a critical stream lasts as long as the connection
	var ce error
	switch typ {
	case streamControl:
		if c.peerControl.Swap(true) {
			ce = connErr(ErrStreamCreationError, "a second control stream")
			break
		}
		ce = c.readControl(&rd)
	case streamQPACKEncoder:
		if c.peerEncoder.Swap(true) {
			ce = connErr(ErrStreamCreationError, "a second QPACK encoder stream")
			break
		}
		ce = c.readEncoderStream(&rd)
	case streamQPACKDecoder:
		if c.peerDecoder.Swap(true) {
			ce = connErr(ErrStreamCreationError, "a second QPACK decoder stream")
			break
		}
		ce = c.readDecoderStream(&rd)
	case streamPush:
		ce = connErr(ErrStreamCreationError, "a client opened a push stream")
	default:
		rs.CancelRead(strCode(ErrStreamCreationError))
		rs.ReleaseStreamCredit()
		return
	}
	var e *connError
	if errors.As(ce, &e) {
		c.close(e)
	}
}

// criticalEnded is the connection error for a control or QPACK stream that
// ended (RFC 9114 §6.2.1, RFC 9204 §4.2), or nil when the connection is
// gone anyway.
func (c *conn) criticalEnded(err error, which string) error {
	if c.qc.Context().Err() != nil {
		return nil
	}
	var se *quic.StreamError
	if err == io.EOF || err == errTruncated || errors.As(err, &se) {
		return connErr(ErrClosedCriticalStream, "the client closed its %s stream", which)
	}
	return connErr(ErrInternalError, "reading the client's %s stream: %v", which, err)
}

// readControl reads the client's control stream: SETTINGS first, then
// only the frames a control stream may carry.
func (c *conn) readControl(rd *streamReader) error {
	t, l, err := rd.frameHeader()
	if err != nil {
		return c.criticalEnded(err, "control")
	}
	if t != frameSettings {
		return connErr(ErrMissingSettings, "the control stream began with frame type 0x%x, not SETTINGS", t)
	}
	if err := c.readSettings(rd, l); err != nil {
		return err
	}
	var maxPushID, goAwayID uint64
	var maxPushIDSeen, goAwaySeen bool
	for {
		t, l, err := rd.frameHeader()
		if err != nil {
			return c.criticalEnded(err, "control")
		}
		switch {
		case t == frameSettings:
			return connErr(ErrFrameUnexpected, "a second SETTINGS frame")
		case t == frameData, t == frameHeaders, t == framePushPromise:
			return connErr(ErrFrameUnexpected, "frame type 0x%x on the control stream", t)
		case http2Frame(t):
			return connErr(ErrFrameUnexpected, "HTTP/2 frame type 0x%x", t)
		case t == frameGoAway, t == frameMaxPushID, t == frameCancelPush:
			id, err := c.readIDFrame(rd, l)
			if err != nil {
				return err
			}
			switch t {
			case frameCancelPush:
				// This server promises nothing to cancel (RFC 9114 §7.2.3).
				return connErr(ErrIDError, "CANCEL_PUSH for push %d, which was never promised", id)
			case frameMaxPushID:
				if maxPushIDSeen && id < maxPushID {
					return connErr(ErrIDError, "MAX_PUSH_ID went down from %d to %d", maxPushID, id)
				}
				maxPushID, maxPushIDSeen = id, true
			case frameGoAway:
				// A client's GOAWAY limits pushes, which this server
				// never makes: nothing to do but check that it never
				// goes up (RFC 9114 §5.2).
				if goAwaySeen && id > goAwayID {
					return connErr(ErrIDError, "GOAWAY went up from %d to %d", goAwayID, id)
				}
				goAwayID, goAwaySeen = id, true
			}
		case t == framePriorityUpdate, t == framePriorityPush:
			if l > maxPriorityFrame {
				return connErr(ErrExcessiveLoad, "PRIORITY_UPDATE frame of %d bytes", l)
			}
			if l == 0 {
				return connErr(ErrFrameError, "PRIORITY_UPDATE without an element ID")
			}
			id, err := rd.varint()
			if err != nil {
				return c.criticalEnded(err, "control")
			}
			n := uint64(quicvarint.Len(id))
			if n > l {
				return connErr(ErrFrameError, "PRIORITY_UPDATE's element ID runs past the frame")
			}
			// The priority field value is not used: skip it.
			if err := rd.discard(l - n); err != nil {
				return c.criticalEnded(err, "control")
			}
			if t == framePriorityPush {
				return connErr(ErrIDError, "PRIORITY_UPDATE for push %d, which was never promised", id)
			}
			if id%4 != 0 {
				return connErr(ErrIDError, "PRIORITY_UPDATE for stream %d, not a request stream", id)
			}
			// Responses are small and written whole; priorities are not
			// used for scheduling here (RFC 9218 lets a server ignore them).
		default:
			if err := rd.discard(l); err != nil {
				return c.criticalEnded(err, "control")
			}
		}
	}
}

// readSettings reads the SETTINGS frame's payload (RFC 9114 §7.2.4).
func (c *conn) readSettings(rd *streamReader, l uint64) error {
	if l > maxSettingsFrame {
		return connErr(ErrExcessiveLoad, "SETTINGS frame of %d bytes", l)
	}
	var b []byte
	var err error
	if int(l) <= len(rd.buf) {
		b, err = rd.next(int(l))
	} else {
		b = make([]byte, l)
		err = rd.readFull(b)
	}
	if err != nil {
		return c.criticalEnded(err, "control")
	}
	seen := make(map[uint64]bool)
	for len(b) > 0 {
		id, n, err := quicvarint.Parse(b)
		if err != nil {
			return connErr(ErrFrameError, "SETTINGS frame ends inside a setting")
		}
		b = b[n:]
		v, n, err := quicvarint.Parse(b)
		if err != nil {
			return connErr(ErrFrameError, "SETTINGS frame ends inside a setting's value")
		}
		b = b[n:]
		if http2Setting(id) {
			return connErr(ErrSettingsError, "HTTP/2 setting 0x%x", id)
		}
		if seen[id] {
			return connErr(ErrSettingsError, "setting 0x%x given twice", id)
		}
		seen[id] = true
		if (id == settingEnableConnectProtocol || id == settingH3Datagram) && v > 1 {
			// RFC 9220 §3 (RFC 8441 §3), RFC 9297 §2.1.1.
			return connErr(ErrSettingsError, "setting 0x%x is %d; it can only be 0 or 1", id, v)
		}
		// The client's QPACK table capacity and blocked streams only
		// matter to an encoder using the dynamic table, which this one
		// never does; its field section limit is not enforced on
		// responses (a SHOULD NOT for the sender).
	}
	return nil
}

// readIDFrame reads a frame whose payload is one ID (GOAWAY, MAX_PUSH_ID,
// CANCEL_PUSH).
func (c *conn) readIDFrame(rd *streamReader, l uint64) (uint64, error) {
	if l == 0 || l > 8 {
		return 0, connErr(ErrFrameError, "a frame of %d bytes where one ID belongs", l)
	}
	b, err := rd.next(int(l))
	if err != nil {
		return 0, c.criticalEnded(err, "control")
	}
	id, n, err := quicvarint.Parse(b)
	if err != nil || n != len(b) {
		return 0, connErr(ErrFrameError, "a frame of %d bytes does not hold exactly one ID", l)
	}
	return id, nil
}

// readEncoderStream reads the client's QPACK encoder stream. This server
// announced a dynamic table of capacity zero, so the only valid
// instruction is Set Dynamic Table Capacity to 0 (the byte 0x20); an
// insertion or a larger capacity is QPACK_ENCODER_STREAM_ERROR
// (RFC 9204 §4.3).
func (c *conn) readEncoderStream(rd *streamReader) error {
	for {
		b, err := rd.next(1)
		if err != nil {
			return c.criticalEnded(err, "QPACK encoder")
		}
		if b[0] != 0x20 {
			return connErr(ErrQPACKEncoderStreamError, "encoder instruction 0x%02x needs a dynamic table, whose capacity is 0", b[0])
		}
	}
}

// readDecoderStream reads the client's QPACK decoder stream. This server
// never references the dynamic table, so Section Acknowledgment and
// Insert Count Increment can only be errors (RFC 9204 §4.4); Stream
// Cancellation is allowed and has nothing to cancel.
func (c *conn) readDecoderStream(rd *streamReader) error {
	for {
		b, err := rd.next(1)
		if err != nil {
			return c.criticalEnded(err, "QPACK decoder")
		}
		switch {
		case b[0]&0x80 != 0:
			return connErr(ErrQPACKDecoderStreamError, "Section Acknowledgment, but no field section referenced the dynamic table")
		case b[0]&0x40 == 0:
			return connErr(ErrQPACKDecoderStreamError, "Insert Count Increment, but nothing was inserted")
		}
		// Stream Cancellation: a 6-bit prefix integer.
		if b[0]&0x3f == 0x3f {
			if err := c.skipPrefixIntTail(rd); err != nil {
				return err
			}
		}
	}
}

// skipPrefixIntTail skips the continuation bytes of a QPACK prefix
// integer (RFC 7541 §5.1) whose prefix was all ones.
func (c *conn) skipPrefixIntTail(rd *streamReader) error {
	for i := 0; ; i++ {
		if i == 9 {
			return connErr(ErrQPACKDecoderStreamError, "an integer longer than 62 bits")
		}
		b, err := rd.next(1)
		if err != nil {
			return c.criticalEnded(err, "QPACK decoder")
		}
		if b[0]&0x80 == 0 {
			return nil
		}
	}
}
