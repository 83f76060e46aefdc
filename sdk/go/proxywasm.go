//go:build wasip1

// Package proxywasm is a proxy-wasm (ABI v0.2.1) guest SDK for standard Go.
// Build plugins with
//
//	GOOS=wasip1 GOARCH=wasm go build -buildmode=c-shared -o plugin.wasm .
//
// Only c-shared (a WASI reactor) works: main is never run, so register the
// plugin from an init function with SetNewRootContext. Callbacks run one at
// a time; a plugin needs no locks.
package proxywasm

import (
	"encoding/binary"
	"fmt"
	"unsafe"
)

// Action is what a stream callback tells the host.
type Action uint32

// Actions.
const (
	// Continue passes the request or response on.
	Continue Action = 0
	// Pause holds it until ContinueRequest/ContinueResponse or
	// SendLocalResponse, typically from an HTTP call's callback.
	Pause Action = 1
)

// LogLevel is a log severity.
type LogLevel uint32

// Log levels.
const (
	LogTrace LogLevel = iota
	LogDebug
	LogInfo
	LogWarn
	LogError
	LogCritical
)

// Status is an error status returned by the host.
type Status uint32

// Statuses.
const (
	StatusNotFound            Status = 1
	StatusBadArgument         Status = 2
	StatusInvalidMemoryAccess Status = 6
	StatusEmpty               Status = 7
	StatusCASMismatch         Status = 8
	StatusInternalFailure     Status = 10
	StatusUnimplemented       Status = 12
)

func (s Status) Error() string {
	switch s {
	case StatusNotFound:
		return "proxy-wasm: not found"
	case StatusBadArgument:
		return "proxy-wasm: bad argument"
	case StatusInvalidMemoryAccess:
		return "proxy-wasm: invalid memory access"
	case StatusEmpty:
		return "proxy-wasm: empty"
	case StatusCASMismatch:
		return "proxy-wasm: compare-and-swap mismatch"
	case StatusInternalFailure:
		return "proxy-wasm: internal failure"
	case StatusUnimplemented:
		return "proxy-wasm: unimplemented"
	}
	return fmt.Sprintf("proxy-wasm: status %d", uint32(s))
}

func statusErr(s uint32) error {
	if s == 0 {
		return nil
	}
	return Status(s)
}

// Header is one header field; names are lower case.
type Header struct{ Name, Value string }

// RootContext is a plugin's root: configuration, timers, queues and the
// factory of per-request contexts. Embed DefaultRootContext to implement
// only what you need.
type RootContext interface {
	OnVMStart(vmConfig []byte) bool
	OnConfigure(config []byte) bool
	OnTick()
	OnQueueReady(queueID uint32)
	NewHTTPContext(contextID uint32) HTTPContext
}

// HTTPContext handles one request and its response. Embed
// DefaultHTTPContext to implement only what you need.
type HTTPContext interface {
	OnRequestHeaders(numHeaders int, endOfStream bool) Action
	OnRequestBody(bodySize int, endOfStream bool) Action
	OnRequestTrailers(numTrailers int) Action
	OnResponseHeaders(numHeaders int, endOfStream bool) Action
	OnResponseBody(bodySize int, endOfStream bool) Action
	OnResponseTrailers(numTrailers int) Action
	// OnDone returns false to keep the context until Done is called.
	OnDone() bool
	OnLog()
	OnDelete()
}

// DefaultRootContext accepts any configuration and makes no HTTP contexts.
type DefaultRootContext struct{}

func (DefaultRootContext) OnVMStart([]byte) bool             { return true }
func (DefaultRootContext) OnConfigure([]byte) bool           { return true }
func (DefaultRootContext) OnTick()                           {}
func (DefaultRootContext) OnQueueReady(uint32)               {}
func (DefaultRootContext) NewHTTPContext(uint32) HTTPContext { return DefaultHTTPContext{} }

// DefaultHTTPContext continues everything.
type DefaultHTTPContext struct{}

func (DefaultHTTPContext) OnRequestHeaders(int, bool) Action  { return Continue }
func (DefaultHTTPContext) OnRequestBody(int, bool) Action     { return Continue }
func (DefaultHTTPContext) OnRequestTrailers(int) Action       { return Continue }
func (DefaultHTTPContext) OnResponseHeaders(int, bool) Action { return Continue }
func (DefaultHTTPContext) OnResponseBody(int, bool) Action    { return Continue }
func (DefaultHTTPContext) OnResponseTrailers(int) Action      { return Continue }
func (DefaultHTTPContext) OnDone() bool                       { return true }
func (DefaultHTTPContext) OnLog()                             {}
func (DefaultHTTPContext) OnDelete()                          {}

type callout struct {
	contextID uint32
	cb        func(numHeaders, bodySize, numTrailers int)
}

// state is the SDK's bookkeeping; callbacks never run concurrently.
var state = struct {
	newRoot  func(contextID uint32) RootContext
	roots    map[uint32]RootContext
	streams  map[uint32]HTTPContext
	parents  map[uint32]uint32
	callouts map[uint32]callout
	allocs   [][]byte
}{
	roots:    map[uint32]RootContext{},
	streams:  map[uint32]HTTPContext{},
	parents:  map[uint32]uint32{},
	callouts: map[uint32]callout{},
}

// currentContext is the stream context of the running callback, 0 for
// the root.
var currentContext uint32

// SetNewRootContext registers the plugin. Call it from init.
func SetNewRootContext(f func(contextID uint32) RootContext) { state.newRoot = f }

//go:wasmexport proxy_abi_version_0_2_1
func abiVersion() {}

// Memory handed out to the host is kept reachable until the hostcall that
// asked for it returns and its bytes have been copied.
//
//go:wasmexport proxy_on_memory_allocate
func onMemoryAllocate(size uint32) unsafe.Pointer {
	if size == 0 {
		size = 1
	}
	b := make([]byte, size)
	state.allocs = append(state.allocs, b)
	return unsafe.Pointer(unsafe.SliceData(b))
}

// take copies host-returned bytes and releases the allocations.
func take(ptr unsafe.Pointer, size uint32) []byte {
	var out []byte
	if ptr != nil && size > 0 {
		out = make([]byte, size)
		copy(out, unsafe.Slice((*byte)(ptr), size))
	}
	for i := range state.allocs {
		state.allocs[i] = nil
	}
	state.allocs = state.allocs[:0]
	return out
}

//go:wasmexport proxy_on_context_create
func onContextCreate(contextID, parentID uint32) {
	if parentID == 0 {
		if state.newRoot == nil {
			state.roots[contextID] = DefaultRootContext{}
			return
		}
		state.roots[contextID] = state.newRoot(contextID)
		return
	}
	root, ok := state.roots[parentID]
	if !ok {
		return
	}
	state.streams[contextID] = root.NewHTTPContext(contextID)
	state.parents[contextID] = parentID
}

//go:wasmexport proxy_on_vm_start
func onVMStart(contextID, size uint32) uint32 {
	root, ok := state.roots[contextID]
	if !ok {
		return 0
	}
	return b2u(root.OnVMStart(buffer(bufferVMConfig, 0, size)))
}

//go:wasmexport proxy_on_configure
func onConfigure(contextID, size uint32) uint32 {
	root, ok := state.roots[contextID]
	if !ok {
		return 0
	}
	return b2u(root.OnConfigure(buffer(bufferPluginConfig, 0, size)))
}

//go:wasmexport proxy_on_tick
func onTick(contextID uint32) {
	currentContext = 0
	if root, ok := state.roots[contextID]; ok {
		root.OnTick()
	}
}

//go:wasmexport proxy_on_queue_ready
func onQueueReady(contextID, queueID uint32) {
	currentContext = 0
	if root, ok := state.roots[contextID]; ok {
		root.OnQueueReady(queueID)
	}
}

//go:wasmexport proxy_on_request_headers
func onRequestHeaders(contextID, n, eos uint32) uint32 {
	if c, ok := state.streams[contextID]; ok {
		currentContext = contextID
		return uint32(c.OnRequestHeaders(int(n), eos != 0))
	}
	return 0
}

//go:wasmexport proxy_on_request_body
func onRequestBody(contextID, n, eos uint32) uint32 {
	if c, ok := state.streams[contextID]; ok {
		currentContext = contextID
		return uint32(c.OnRequestBody(int(n), eos != 0))
	}
	return 0
}

//go:wasmexport proxy_on_request_trailers
func onRequestTrailers(contextID, n uint32) uint32 {
	if c, ok := state.streams[contextID]; ok {
		currentContext = contextID
		return uint32(c.OnRequestTrailers(int(n)))
	}
	return 0
}

//go:wasmexport proxy_on_response_headers
func onResponseHeaders(contextID, n, eos uint32) uint32 {
	if c, ok := state.streams[contextID]; ok {
		currentContext = contextID
		return uint32(c.OnResponseHeaders(int(n), eos != 0))
	}
	return 0
}

//go:wasmexport proxy_on_response_body
func onResponseBody(contextID, n, eos uint32) uint32 {
	if c, ok := state.streams[contextID]; ok {
		currentContext = contextID
		return uint32(c.OnResponseBody(int(n), eos != 0))
	}
	return 0
}

//go:wasmexport proxy_on_response_trailers
func onResponseTrailers(contextID, n uint32) uint32 {
	if c, ok := state.streams[contextID]; ok {
		currentContext = contextID
		return uint32(c.OnResponseTrailers(int(n)))
	}
	return 0
}

//go:wasmexport proxy_on_done
func onDone(contextID uint32) uint32 {
	if c, ok := state.streams[contextID]; ok {
		currentContext = contextID
		return b2u(c.OnDone())
	}
	return 1
}

//go:wasmexport proxy_on_log
func onLog(contextID uint32) {
	if c, ok := state.streams[contextID]; ok {
		currentContext = contextID
		c.OnLog()
	}
}

//go:wasmexport proxy_on_delete
func onDelete(contextID uint32) {
	if c, ok := state.streams[contextID]; ok {
		currentContext = contextID
		c.OnDelete()
		delete(state.streams, contextID)
		delete(state.parents, contextID)
		return
	}
	delete(state.roots, contextID)
}

//go:wasmexport proxy_on_http_call_response
func onHTTPCallResponse(rootID, token, numHeaders, bodySize, numTrailers uint32) {
	c, ok := state.callouts[token]
	if !ok {
		return
	}
	delete(state.callouts, token)
	if c.contextID != 0 {
		if proxySetEffectiveContext(c.contextID) != 0 {
			return // the request is gone
		}
	}
	currentContext = c.contextID
	c.cb(int(numHeaders), int(bodySize), int(numTrailers))
}

func b2u(b bool) uint32 {
	if b {
		return 1
	}
	return 0
}

// --- serialisation ---

func encodeHeaders(hs []Header) []byte {
	n := 4 + 8*len(hs)
	for _, h := range hs {
		n += len(h.Name) + len(h.Value) + 2
	}
	b := make([]byte, n)
	binary.LittleEndian.PutUint32(b, uint32(len(hs)))
	off := 4
	for _, h := range hs {
		binary.LittleEndian.PutUint32(b[off:], uint32(len(h.Name)))
		binary.LittleEndian.PutUint32(b[off+4:], uint32(len(h.Value)))
		off += 8
	}
	for _, h := range hs {
		off += copy(b[off:], h.Name) + 1
		off += copy(b[off:], h.Value) + 1
	}
	return b
}

func decodeHeaders(b []byte) []Header {
	if len(b) < 4 {
		return nil
	}
	n := int(binary.LittleEndian.Uint32(b))
	if 4+8*n > len(b) {
		return nil
	}
	data := b[4+8*n:]
	hs := make([]Header, 0, n)
	for i := 0; i < n; i++ {
		kl := int(binary.LittleEndian.Uint32(b[4+8*i:]))
		vl := int(binary.LittleEndian.Uint32(b[8+8*i:]))
		if kl+vl+2 > len(data) {
			return hs
		}
		hs = append(hs, Header{string(data[:kl]), string(data[kl+1 : kl+1+vl])})
		data = data[kl+vl+2:]
	}
	return hs
}

func strPtr(s string) unsafe.Pointer {
	if s == "" {
		return nil
	}
	return unsafe.Pointer(unsafe.StringData(s))
}

func bytesPtr(b []byte) unsafe.Pointer {
	if len(b) == 0 {
		return nil
	}
	return unsafe.Pointer(unsafe.SliceData(b))
}
