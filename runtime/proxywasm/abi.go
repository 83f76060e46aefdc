// Package proxywasm is Portico's proxy-wasm host: it runs plugins built for
// ABI v0.2.1 (and modules marked v0.2.0) with the SDKs of Envoy's ecosystem,
// on the engine of package runtime.
//
// A Plugin is one module with one configuration: its compiled code, a bounded
// pool of instances, and the state its instances share (shared data, queues,
// metrics). A Stream is one HTTP request and response passing through it.
package proxywasm

import (
	"encoding/binary"
	"errors"
)

// Status is proxy_status_t.
type Status = uint32

// Status values of ABI v0.2.1.
const (
	StatusOK                  Status = 0
	StatusNotFound            Status = 1
	StatusBadArgument         Status = 2
	StatusSerializationFailed Status = 3
	StatusParseFailure        Status = 4
	StatusInvalidMemoryAccess Status = 6
	StatusEmpty               Status = 7
	StatusCASMismatch         Status = 8
	StatusInternalFailure     Status = 10
	StatusUnimplemented       Status = 12
)

// Action is proxy_action_t. SDKs of the C++ family return larger values
// (StopIteration, StopAllIterationAndBuffer, ...); every non-zero value
// holds the stream.
const (
	ActionContinue uint32 = 0
	ActionPause    uint32 = 1
)

// Buffer types (proxy_buffer_type_t).
const (
	bufferRequestBody      = 0
	bufferResponseBody     = 1
	bufferDownstreamData   = 2
	bufferUpstreamData     = 3
	bufferHTTPCallResponse = 4
	bufferGRPCMessage      = 5
	bufferVMConfig         = 6
	bufferPluginConfig     = 7
	bufferForeignArgs      = 8
)

// Map types (proxy_map_type_t).
const (
	mapRequestHeaders       = 0
	mapRequestTrailers      = 1
	mapResponseHeaders      = 2
	mapResponseTrailers     = 3
	mapGRPCInitialMetadata  = 4
	mapGRPCTrailingMetadata = 5
	mapHTTPCallHeaders      = 6
	mapHTTPCallTrailers     = 7
)

// Stream types (proxy_stream_type_t).
const (
	streamRequest    = 0
	streamResponse   = 1
	streamDownstream = 2
	streamUpstream   = 3
)

// Log levels (proxy_log_level_t).
const (
	LogTrace    = 0
	LogDebug    = 1
	LogInfo     = 2
	LogWarn     = 3
	LogError    = 4
	LogCritical = 5
)

// Metric types (proxy_metric_type_t).
const (
	metricCounter   = 0
	metricGauge     = 1
	metricHistogram = 2
)

// Pair is one header or metadata field.
type Pair struct{ Key, Value string }

// EncodePairs serialises fields the way the ABI does: a u32 count, a
// (u32 key length, u32 value length) per field, then each key and value
// followed by a NUL byte; integers little-endian.
func EncodePairs(ps []Pair) []byte {
	n := 4 + 8*len(ps)
	for _, p := range ps {
		n += len(p.Key) + len(p.Value) + 2
	}
	b := make([]byte, n)
	binary.LittleEndian.PutUint32(b, uint32(len(ps)))
	off := 4
	for _, p := range ps {
		binary.LittleEndian.PutUint32(b[off:], uint32(len(p.Key)))
		binary.LittleEndian.PutUint32(b[off+4:], uint32(len(p.Value)))
		off += 8
	}
	for _, p := range ps {
		off += copy(b[off:], p.Key)
		b[off] = 0
		off++
		off += copy(b[off:], p.Value)
		b[off] = 0
		off++
	}
	return b
}

var errBadPairs = errors.New("malformed serialised map")

// DecodePairs parses a serialised map. An empty input, or a single zero
// byte, is an empty map (both forms occur in real SDKs).
func DecodePairs(b []byte) ([]Pair, error) {
	if len(b) == 0 || (len(b) == 1 && b[0] == 0) {
		return nil, nil
	}
	if len(b) < 4 {
		return nil, errBadPairs
	}
	n := binary.LittleEndian.Uint32(b)
	if uint64(n)*8+4 > uint64(len(b)) {
		return nil, errBadPairs
	}
	sizes := b[4 : 4+8*int(n)]
	data := b[4+8*int(n):]
	ps := make([]Pair, 0, n)
	for i := 0; i < int(n); i++ {
		kl := uint64(binary.LittleEndian.Uint32(sizes[8*i:]))
		vl := uint64(binary.LittleEndian.Uint32(sizes[8*i+4:]))
		if kl+vl+2 > uint64(len(data)) {
			return nil, errBadPairs
		}
		k := string(data[:kl])
		v := string(data[kl+1 : kl+1+vl])
		data = data[kl+vl+2:]
		ps = append(ps, Pair{k, v})
	}
	return ps, nil
}
