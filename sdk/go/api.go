//go:build wasip1

package proxywasm

import (
	"encoding/binary"
	"fmt"
	"strings"
	"unsafe"
)

const (
	bufferRequestBody      = 0
	bufferResponseBody     = 1
	bufferHTTPCallResponse = 4
	bufferVMConfig         = 6
	bufferPluginConfig     = 7

	mapRequestHeaders   = 0
	mapRequestTrailers  = 1
	mapResponseHeaders  = 2
	mapResponseTrailers = 3
	mapHTTPCallHeaders  = 6
)

// Log writes a message to the host's log.
func Log(level LogLevel, msg string) { proxyLog(uint32(level), strPtr(msg), uint32(len(msg))) }

// Logf formats and logs a message.
func Logf(level LogLevel, format string, args ...any) { Log(level, fmt.Sprintf(format, args...)) }

// LogLevelEnabled reports whether the host keeps messages at level.
func LogLevelEnabled(level LogLevel) bool {
	var l uint32
	if proxyGetLogLevel(unsafe.Pointer(&l)) != 0 {
		return true
	}
	return uint32(level) >= l
}

func buffer(typ, start, max uint32) []byte {
	var ptr unsafe.Pointer
	var size uint32
	if proxyGetBufferBytes(typ, start, max, unsafe.Pointer(&ptr), unsafe.Pointer(&size)) != 0 {
		take(nil, 0)
		return nil
	}
	return take(ptr, size)
}

func headerValue(typ uint32, name string) (string, bool) {
	var ptr unsafe.Pointer
	var size uint32
	if proxyGetHeaderMapValue(typ, strPtr(name), uint32(len(name)), unsafe.Pointer(&ptr), unsafe.Pointer(&size)) != 0 {
		take(nil, 0)
		return "", false
	}
	return string(take(ptr, size)), true
}

func headerPairs(typ uint32) []Header {
	var ptr unsafe.Pointer
	var size uint32
	if proxyGetHeaderMapPairs(typ, unsafe.Pointer(&ptr), unsafe.Pointer(&size)) != 0 {
		take(nil, 0)
		return nil
	}
	return decodeHeaders(take(ptr, size))
}

func setPairs(typ uint32, hs []Header) error {
	b := encodeHeaders(hs)
	return statusErr(proxySetHeaderMapPairs(typ, bytesPtr(b), uint32(len(b))))
}

// RequestHeader returns a request header ("authorization", ":path").
func RequestHeader(name string) (string, bool) { return headerValue(mapRequestHeaders, name) }

// RequestHeaders returns all request headers, pseudo headers first.
func RequestHeaders() []Header { return headerPairs(mapRequestHeaders) }

// SetRequestHeaders replaces all request headers.
func SetRequestHeaders(hs []Header) error { return setPairs(mapRequestHeaders, hs) }

// SetRequestHeader adds or replaces a request header.
func SetRequestHeader(name, value string) error {
	return statusErr(proxyReplaceHeaderMapValue(mapRequestHeaders, strPtr(name), uint32(len(name)), strPtr(value), uint32(len(value))))
}

// AddRequestHeader adds a value to a request header.
func AddRequestHeader(name, value string) error {
	return statusErr(proxyAddHeaderMapValue(mapRequestHeaders, strPtr(name), uint32(len(name)), strPtr(value), uint32(len(value))))
}

// RemoveRequestHeader removes a request header.
func RemoveRequestHeader(name string) error {
	return statusErr(proxyRemoveHeaderMapValue(mapRequestHeaders, strPtr(name), uint32(len(name))))
}

// ResponseHeader returns a response header (":status" included).
func ResponseHeader(name string) (string, bool) { return headerValue(mapResponseHeaders, name) }

// ResponseHeaders returns all response headers.
func ResponseHeaders() []Header { return headerPairs(mapResponseHeaders) }

// SetResponseHeader adds or replaces a response header.
func SetResponseHeader(name, value string) error {
	return statusErr(proxyReplaceHeaderMapValue(mapResponseHeaders, strPtr(name), uint32(len(name)), strPtr(value), uint32(len(value))))
}

// AddResponseHeader adds a value to a response header.
func AddResponseHeader(name, value string) error {
	return statusErr(proxyAddHeaderMapValue(mapResponseHeaders, strPtr(name), uint32(len(name)), strPtr(value), uint32(len(value))))
}

// RemoveResponseHeader removes a response header.
func RemoveResponseHeader(name string) error {
	return statusErr(proxyRemoveHeaderMapValue(mapResponseHeaders, strPtr(name), uint32(len(name))))
}

// RequestTrailers and ResponseTrailers return trailers, when there are any.
func RequestTrailers() []Header  { return headerPairs(mapRequestTrailers) }
func ResponseTrailers() []Header { return headerPairs(mapResponseTrailers) }

// RequestBody returns size bytes of the request body from start (in
// OnRequestBody).
func RequestBody(start, size int) []byte {
	return buffer(bufferRequestBody, uint32(start), uint32(size))
}

// ReplaceRequestBody replaces the whole request body.
func ReplaceRequestBody(b []byte) error {
	return statusErr(proxySetBufferBytes(bufferRequestBody, 0, 0xffffffff, bytesPtr(b), uint32(len(b))))
}

// ResponseBody returns size bytes of the response body from start (in
// OnResponseBody).
func ResponseBody(start, size int) []byte {
	return buffer(bufferResponseBody, uint32(start), uint32(size))
}

// ReplaceResponseBody replaces the whole response body.
func ReplaceResponseBody(b []byte) error {
	return statusErr(proxySetBufferBytes(bufferResponseBody, 0, 0xffffffff, bytesPtr(b), uint32(len(b))))
}

// SendLocalResponse answers the request from the plugin. Return Pause from
// the callback afterwards.
func SendLocalResponse(status int, headers []Header, body []byte) error {
	hb := encodeHeaders(headers)
	return statusErr(proxySendLocalResponse(uint32(status), nil, 0, bytesPtr(body), uint32(len(body)), bytesPtr(hb), uint32(len(hb)), -1))
}

// ContinueRequest resumes a paused request; ContinueResponse a paused
// response.
func ContinueRequest() error  { return statusErr(proxyContinueStream(0)) }
func ContinueResponse() error { return statusErr(proxyContinueStream(1)) }

// CloseRequest resets the stream.
func CloseRequest() error { return statusErr(proxyCloseStream(0)) }

// Done finishes a context whose OnDone returned false.
func Done() error { return statusErr(proxyDone()) }

// Property returns a property by its dotted path ("request.path",
// "source.address", "plugin_name").
func Property(path string) ([]byte, error) {
	p := strings.ReplaceAll(path, ".", "\x00")
	var ptr unsafe.Pointer
	var size uint32
	if s := proxyGetProperty(strPtr(p), uint32(len(p)), unsafe.Pointer(&ptr), unsafe.Pointer(&size)); s != 0 {
		take(nil, 0)
		return nil, Status(s)
	}
	return take(ptr, size), nil
}

// SetProperty sets a property of the current context. Portico reads
// "portico.principal" after an authorizer continues a request.
func SetProperty(path string, value []byte) error {
	return statusErr(proxySetProperty(strPtr(path), uint32(len(path)), bytesPtr(value), uint32(len(value))))
}

// PropertyInt decodes an integer property (8 bytes, little-endian).
func PropertyInt(path string) (int64, error) {
	b, err := Property(path)
	if err != nil {
		return 0, err
	}
	if len(b) != 8 {
		return 0, StatusBadArgument
	}
	return int64(binary.LittleEndian.Uint64(b)), nil
}

// HTTPCall sends a request to an upstream named in the plugin's
// "upstreams" config. headers must include ":method" and ":path". The
// callback runs in the calling request's context when the response (or an
// error: numHeaders == 0) arrives; the calling callback usually returns Pause.
func HTTPCall(upstream string, headers []Header, body []byte, timeoutMs uint32, cb func(numHeaders, bodySize, numTrailers int)) (uint32, error) {
	hb := encodeHeaders(headers)
	var token uint32
	s := proxyHTTPCall(strPtr(upstream), uint32(len(upstream)), bytesPtr(hb), uint32(len(hb)), bytesPtr(body), uint32(len(body)), nil, 0, timeoutMs, unsafe.Pointer(&token))
	if s != 0 {
		return 0, Status(s)
	}
	state.callouts[token] = callout{contextID: currentContext, cb: cb}
	return token, nil
}

// HTTPCallResponseHeaders, HTTPCallResponseHeader and HTTPCallResponseBody
// read the response inside an HTTPCall callback.
func HTTPCallResponseHeaders() []Header { return headerPairs(mapHTTPCallHeaders) }
func HTTPCallResponseHeader(name string) (string, bool) {
	return headerValue(mapHTTPCallHeaders, name)
}
func HTTPCallResponseBody(start, size int) []byte {
	return buffer(bufferHTTPCallResponse, uint32(start), uint32(size))
}

// SharedData returns a shared value and its compare-and-swap version.
func SharedData(key string) ([]byte, uint32, error) {
	var ptr unsafe.Pointer
	var size, cas uint32
	if s := proxyGetSharedData(strPtr(key), uint32(len(key)), unsafe.Pointer(&ptr), unsafe.Pointer(&size), unsafe.Pointer(&cas)); s != 0 {
		take(nil, 0)
		return nil, 0, Status(s)
	}
	return take(ptr, size), cas, nil
}

// SetSharedData stores a shared value; a non-zero cas must match.
func SetSharedData(key string, value []byte, cas uint32) error {
	return statusErr(proxySetSharedData(strPtr(key), uint32(len(key)), bytesPtr(value), uint32(len(value)), cas))
}

// RegisterQueue creates or opens a shared queue.
func RegisterQueue(name string) (uint32, error) {
	var id uint32
	return id, statusErr(proxyRegisterSharedQueue(strPtr(name), uint32(len(name)), unsafe.Pointer(&id)))
}

// ResolveQueue finds a queue registered by this plugin.
func ResolveQueue(vmID, name string) (uint32, error) {
	var id uint32
	return id, statusErr(proxyResolveSharedQueue(strPtr(vmID), uint32(len(vmID)), strPtr(name), uint32(len(name)), unsafe.Pointer(&id)))
}

// Enqueue adds an item to a queue.
func Enqueue(id uint32, item []byte) error {
	return statusErr(proxyEnqueueSharedQueue(id, bytesPtr(item), uint32(len(item))))
}

// Dequeue takes the next item; StatusEmpty when there is none.
func Dequeue(id uint32) ([]byte, error) {
	var ptr unsafe.Pointer
	var size uint32
	if s := proxyDequeueSharedQueue(id, unsafe.Pointer(&ptr), unsafe.Pointer(&size)); s != 0 {
		take(nil, 0)
		return nil, Status(s)
	}
	return take(ptr, size), nil
}

// Metric is a counter, gauge or histogram exported with the node's metrics.
type Metric uint32

func defineMetric(typ uint32, name string) (Metric, error) {
	var id uint32
	s := proxyDefineMetric(typ, strPtr(name), uint32(len(name)), unsafe.Pointer(&id))
	return Metric(id), statusErr(s)
}

// DefineCounter, DefineGauge and DefineHistogram define metrics.
func DefineCounter(name string) (Metric, error)   { return defineMetric(0, name) }
func DefineGauge(name string) (Metric, error)     { return defineMetric(1, name) }
func DefineHistogram(name string) (Metric, error) { return defineMetric(2, name) }

// Increment adds delta (counters: non-negative).
func (m Metric) Increment(delta int64) error {
	return statusErr(proxyIncrementMetric(uint32(m), delta))
}

// Record sets a gauge or records a histogram sample.
func (m Metric) Record(v uint64) error { return statusErr(proxyRecordMetric(uint32(m), v)) }

// Value reads a counter or gauge.
func (m Metric) Value() (uint64, error) {
	var v uint64
	return v, statusErr(proxyGetMetric(uint32(m), unsafe.Pointer(&v)))
}

// SetTickPeriod makes the host call OnTick every ms milliseconds (0 stops).
func SetTickPeriod(ms uint32) error { return statusErr(proxySetTickPeriodMilliseconds(ms)) }

// Now returns the host's clock in nanoseconds since the Unix epoch.
func Now() int64 {
	var v uint64
	proxyGetCurrentTimeNanoseconds(unsafe.Pointer(&v))
	return int64(v)
}
