package h3

import (
	"fmt"

	"github.com/quic-go/quic-go"
)

// ErrCode is an HTTP/3 error code (RFC 9114 §8.1, RFC 9204 §6), carried by
// QUIC's CONNECTION_CLOSE, RESET_STREAM and STOP_SENDING frames.
type ErrCode uint64

// The error codes this server sends.
const (
	ErrNoError              ErrCode = 0x100
	ErrGeneralProtocolError ErrCode = 0x101
	ErrInternalError        ErrCode = 0x102
	ErrStreamCreationError  ErrCode = 0x103
	ErrClosedCriticalStream ErrCode = 0x104
	ErrFrameUnexpected      ErrCode = 0x105
	ErrFrameError           ErrCode = 0x106
	ErrExcessiveLoad        ErrCode = 0x107
	ErrIDError              ErrCode = 0x108
	ErrSettingsError        ErrCode = 0x109
	ErrMissingSettings      ErrCode = 0x10a
	ErrRequestRejected      ErrCode = 0x10b
	ErrRequestCancelled     ErrCode = 0x10c
	ErrRequestIncomplete    ErrCode = 0x10d
	ErrMessageError         ErrCode = 0x10e

	ErrQPACKDecompressionFailed ErrCode = 0x200
	ErrQPACKEncoderStreamError  ErrCode = 0x201
	ErrQPACKDecoderStreamError  ErrCode = 0x202
)

func (e ErrCode) String() string {
	switch e {
	case ErrNoError:
		return "H3_NO_ERROR"
	case ErrGeneralProtocolError:
		return "H3_GENERAL_PROTOCOL_ERROR"
	case ErrInternalError:
		return "H3_INTERNAL_ERROR"
	case ErrStreamCreationError:
		return "H3_STREAM_CREATION_ERROR"
	case ErrClosedCriticalStream:
		return "H3_CLOSED_CRITICAL_STREAM"
	case ErrFrameUnexpected:
		return "H3_FRAME_UNEXPECTED"
	case ErrFrameError:
		return "H3_FRAME_ERROR"
	case ErrExcessiveLoad:
		return "H3_EXCESSIVE_LOAD"
	case ErrIDError:
		return "H3_ID_ERROR"
	case ErrSettingsError:
		return "H3_SETTINGS_ERROR"
	case ErrMissingSettings:
		return "H3_MISSING_SETTINGS"
	case ErrRequestRejected:
		return "H3_REQUEST_REJECTED"
	case ErrRequestCancelled:
		return "H3_REQUEST_CANCELLED"
	case ErrRequestIncomplete:
		return "H3_REQUEST_INCOMPLETE"
	case ErrMessageError:
		return "H3_MESSAGE_ERROR"
	case ErrQPACKDecompressionFailed:
		return "QPACK_DECOMPRESSION_FAILED"
	case ErrQPACKEncoderStreamError:
		return "QPACK_ENCODER_STREAM_ERROR"
	case ErrQPACKDecoderStreamError:
		return "QPACK_DECODER_STREAM_ERROR"
	}
	return fmt.Sprintf("H3 error 0x%x", uint64(e))
}

// connError is a connection error: the whole connection is closed with
// code (RFC 9114 §8). reason goes into CONNECTION_CLOSE and the debug log.
type connError struct {
	code   ErrCode
	reason string
}

func (e *connError) Error() string {
	return fmt.Sprintf("h3: connection error %s: %s", e.code, e.reason)
}

// streamError is a stream error: the request stream is reset with code in
// both directions; the connection goes on. A readOnly one, met while the
// handler reads the body (a read deadline that passed), stops only the
// reading side, so that the handler can still answer (408, say).
type streamError struct {
	code     ErrCode
	reason   string
	readOnly bool
	cause    error
}

func (e *streamError) Error() string { return fmt.Sprintf("h3: stream error %s: %s", e.code, e.reason) }

// Unwrap gives the cause: a deadline's timeout error stays visible to
// the handler (errors.As with net.Error).
func (e *streamError) Unwrap() error { return e.cause }

func connErr(code ErrCode, format string, a ...any) error {
	return &connError{code: code, reason: fmt.Sprintf(format, a...)}
}

func streamErr(code ErrCode, format string, a ...any) error {
	return &streamError{code: code, reason: fmt.Sprintf(format, a...)}
}

func appCode(c ErrCode) quic.ApplicationErrorCode { return quic.ApplicationErrorCode(c) }
func strCode(c ErrCode) quic.StreamErrorCode      { return quic.StreamErrorCode(c) }
