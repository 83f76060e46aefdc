package proxywasm

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unsafe"

	"github.com/tetratelabs/wazero/api"

	"github.com/portico-edge/portico/runtime"
)

const rootID = 1

// instance is one instantiated module: one VM with one root context and the
// streams pinned to it. Calls into it are serialised by mu.
type instance struct {
	p     *Plugin
	mod   api.Module
	mem   api.Memory
	guard *runtime.Guard

	interrupt func() // stops the running call (from the watchdog)

	mu     sync.Mutex
	broken bool // trapped, timed out, or closed: never called again

	fn struct {
		contextCreate, vmStart, configure, done, log, delete                  export
		reqHeaders, reqBody, reqTrailers, respHeaders, respBody, respTrailers export
		httpCallResponse, tick, queueReady                                    export
		alloc                                                                 api.Function
	}
	timer      runtime.CallTimer
	stack      [8]uint64
	allocStack [1]uint64

	nextID    uint32
	streams   streamSet
	spare     *Stream   // a closed stream, ready for the next request
	pending   []*Stream // streams whose on_done returned false
	rootProps propSet
	nextToken uint32
	effective *Stream // nil means the root context
	callResp  *httpResult
	starting  bool
	startLog  *bytes.Buffer // guest log lines kept during start-up for the admission error

	tickMu     sync.Mutex
	tickPeriod time.Duration
	tickStop   chan struct{}
}

func (p *Plugin) newInstance(ctx context.Context) (*instance, error) {
	if p.closed.Load() {
		return nil, runtime.ErrPoolClosed
	}
	in := &instance{p: p, nextID: rootID + 1, timer: p.metrics.NewCallTimer()}
	in.guard = p.engine.NewGuard(p.cfg.StartTimeout)
	in.guard.Data = in
	in.starting = true
	in.startLog = new(bytes.Buffer)
	mod, err := p.rt.InstantiateModule(in.guard, p.compiled, p.moduleConfig(in))
	if err != nil {
		in.guard.Close()
		return nil, fmt.Errorf("instantiating module: %w", err)
	}
	in.mod = mod
	in.mem = mod.Memory()
	interrupt, ok := runtime.Interrupter(mod)
	if !ok {
		in.close()
		return nil, errors.New("module was not prepared by the engine")
	}
	in.interrupt = interrupt
	in.guard.OnFire(in.interrupt)
	f := in.export
	in.fn.contextCreate = f("proxy_on_context_create")
	in.fn.vmStart = f("proxy_on_vm_start")
	in.fn.configure = f("proxy_on_configure")
	in.fn.done = f("proxy_on_done")
	in.fn.log = f("proxy_on_log")
	in.fn.delete = f("proxy_on_delete")
	in.fn.reqHeaders = f("proxy_on_request_headers")
	in.fn.reqBody = f("proxy_on_request_body")
	in.fn.reqTrailers = f("proxy_on_request_trailers")
	in.fn.respHeaders = f("proxy_on_response_headers")
	in.fn.respBody = f("proxy_on_response_body")
	in.fn.respTrailers = f("proxy_on_response_trailers")
	in.fn.httpCallResponse = f("proxy_on_http_call_response")
	in.fn.tick = f("proxy_on_tick")
	in.fn.queueReady = f("proxy_on_queue_ready")
	if in.fn.alloc = mod.ExportedFunction("proxy_on_memory_allocate"); in.fn.alloc == nil {
		in.fn.alloc = mod.ExportedFunction("malloc")
	}
	if err := in.start(); err != nil {
		in.close()
		return nil, err
	}
	in.starting = false
	in.startLog = nil
	// Start-up may take seconds; callbacks get the plugin's own deadline.
	startGuard := in.guard
	in.guard = p.engine.NewGuard(p.cfg.CallbackTimeout)
	in.guard.Data = in
	in.guard.OnFire(in.interrupt)
	startGuard.Close()
	p.closeMu.Lock()
	p.live[in] = struct{}{}
	p.closeMu.Unlock()
	return in, nil
}

func (in *instance) start() error {
	ex := in.p.exports
	var startErr error
	switch {
	case ex["_initialize"]:
		_, startErr = in.call(runtime.PhaseStart, in.export("_initialize"))
		if startErr == nil && ex["main"] {
			if def := in.mod.ExportedFunction("main").Definition(); len(def.ParamTypes()) == 2 {
				_, startErr = in.call(runtime.PhaseStart, in.export("main"), 0, 0)
			}
		}
	case ex["_start"]:
		_, startErr = in.call(runtime.PhaseStart, in.export("_start"))
	}
	if startErr != nil {
		return in.startError("starting the module (_initialize)", startErr)
	}
	if _, err := in.call(runtime.PhaseStart, in.fn.contextCreate, rootID, 0); err != nil {
		return in.startError("creating the root context", err)
	}
	if in.fn.vmStart.Function != nil {
		ok, err := in.call(runtime.PhaseStart, in.fn.vmStart, rootID, uint64(len(in.p.cfg.VMConfig)))
		if err != nil {
			return in.startError("proxy_on_vm_start", err)
		}
		if uint32(ok) == 0 {
			return in.startError("proxy_on_vm_start", errors.New("the plugin refused its VM configuration (returned false)"))
		}
	}
	if in.fn.configure.Function != nil {
		ok, err := in.call(runtime.PhaseStart, in.fn.configure, rootID, uint64(len(in.p.cfg.PluginConfig)))
		if err != nil {
			return in.startError("proxy_on_configure", err)
		}
		if uint32(ok) == 0 {
			return in.startError("proxy_on_configure", errors.New("the plugin refused its configuration (returned false)"))
		}
	}
	return nil
}

func (in *instance) startError(what string, err error) error {
	msg := fmt.Sprintf("plugin start-up failed in %s: %v", what, err)
	if in.guard.TimedOut() {
		msg = fmt.Sprintf("plugin start-up failed in %s: it ran past the %s start-up deadline", what, in.p.cfg.StartTimeout)
	}
	if in.startLog != nil && in.startLog.Len() > 0 {
		msg += "; the plugin logged: " + strings.TrimSpace(in.startLog.String())
	}
	return errors.New(msg)
}

// dead reports whether the instance must not run anything any more.
func (in *instance) dead() bool {
	return in.failed() || in.mod == nil || in.mod.IsClosed()
}

// failed is dead without asking wazero whether the module was closed, for
// the checks before a call into the guest: wazero refuses to call into a
// closed module, and that error marks the instance broken. The host closes
// a module only after marking the instance broken (close) or killing its
// guard (Plugin.Close); a module that closes itself (WASI proc_exit) ends
// the call in progress with an error. Asking wazero through its interface
// cost as much as the rest of the check, which runs about ten times per
// request.
func (in *instance) failed() bool {
	return in.broken || in.guard.Dead()
}

// export is a guest function and the number of its results, which call
// needs for the size of the stack: wazero converts the result types anew,
// on every Definition().ResultTypes(), which cost 3% of a small
// authorizer's request.
type export struct {
	api.Function
	results int
}

func (in *instance) export(name string) export {
	f := in.mod.ExportedFunction(name)
	if f == nil {
		return export{}
	}
	return export{f, len(f.Definition().ResultTypes())}
}

// call runs one callback under the deadline; a callback the module does
// not export is not called. A trap or timeout marks the instance broken;
// the caller then discards it.
func (in *instance) call(phase runtime.Phase, fn export, args ...uint64) (uint64, error) {
	if fn.Function == nil {
		return 0, nil
	}
	if in.failed() {
		return 0, errInstanceBroken
	}
	n := copy(in.stack[:], args)
	n = max(n, fn.results)
	st := in.stack[:n]
	in.guard.Begin()
	in.timer.Begin()
	err := fn.CallWithStack(in.guard, st)
	in.timer.End(phase)
	in.guard.End()
	if err != nil {
		in.fail(err)
		return 0, err
	}
	if n == 0 {
		return 0, nil
	}
	return st[0], nil
}

var errInstanceBroken = errors.New("plugin instance failed earlier and is being replaced")

// ErrTimeout is wrapped by errors from callbacks that ran past their
// deadline.
var ErrTimeout = errors.New("plugin callback ran past its deadline")

func (in *instance) fail(err error) {
	if in.broken {
		return
	}
	in.broken = true
	if in.guard.TimedOut() {
		in.p.metrics.Timeouts.Add(1)
		in.p.logger.Error("wasm plugin callback ran past its deadline; discarding the instance", "deadline", in.p.cfg.CallbackTimeout)
	} else {
		in.p.metrics.Traps.Add(1)
		in.p.logger.Error("wasm plugin trapped; discarding the instance", "err", err)
	}
}

// close releases the instance for good. Only the pool (through
// destroyInstance) or a failed start calls it.
func (in *instance) close() {
	in.broken = true
	in.stopTicks()
	in.guard.Kill()
	if in.mod != nil {
		_ = in.mod.Close(context.Background())
	}
	in.guard.Close()
}

func (p *Plugin) destroyInstance(in *instance) {
	in.mu.Lock()
	in.close()
	for _, s := range in.streams.live {
		s.instanceGone()
	}
	in.streams.clear()
	in.pending = nil
	in.mu.Unlock()
	p.closeMu.Lock()
	delete(p.live, in)
	p.closeMu.Unlock()
}

// streamSet holds an instance's live streams. A stream knows its slot, so
// adding and removing one costs no hashing (a map was 2% of a small
// authorizer's request); finding one by id, which only
// proxy_set_effective_context does, scans.
type streamSet struct{ live []*Stream }

func (ss *streamSet) add(s *Stream) {
	s.slot = len(ss.live)
	ss.live = append(ss.live, s)
}

func (ss *streamSet) has(s *Stream) bool {
	return s.slot < len(ss.live) && ss.live[s.slot] == s
}

func (ss *streamSet) remove(s *Stream) {
	if !ss.has(s) {
		return
	}
	last := len(ss.live) - 1
	moved := ss.live[last]
	ss.live[s.slot] = moved
	moved.slot = s.slot
	ss.live[last] = nil
	ss.live = ss.live[:last]
}

func (ss *streamSet) byID(id uint32) *Stream {
	for _, s := range ss.live {
		if s.id == id {
			return s
		}
	}
	return nil
}

func (ss *streamSet) clear() {
	clear(ss.live)
	ss.live = ss.live[:0]
}

// --- guest memory ---

func (in *instance) read(ptr, size uint32) ([]byte, bool) {
	if size == 0 {
		return nil, true
	}
	return in.mem.Read(ptr, size)
}

func (in *instance) readString(ptr, size uint32) (string, bool) {
	b, ok := in.read(ptr, size)
	if !ok {
		return "", false
	}
	return string(b), true
}

// readView returns guest bytes as a string without copying them. It is only
// valid until the guest runs again (an allocation may move its memory), so
// use it for lookups, never keep it.
func (in *instance) readView(ptr, size uint32) (string, bool) {
	b, ok := in.read(ptr, size)
	if !ok {
		return "", false
	}
	return unsafe.String(unsafe.SliceData(b), len(b)), true
}

func (in *instance) writeU32(ptr, v uint32) bool { return in.mem.WriteUint32Le(ptr, v) }

// give copies data into memory allocated by the guest and stores the
// pointer and size at retPtr and retSize.
func (in *instance) give(data []byte, retPtr, retSize uint32) Status {
	// Check the return slots first: an out-of-range pointer must not cost
	// an allocation in the guest.
	if _, ok := in.mem.Read(retPtr, 4); !ok {
		return StatusInvalidMemoryAccess
	}
	if _, ok := in.mem.Read(retSize, 4); !ok {
		return StatusInvalidMemoryAccess
	}
	var ptr uint32
	if len(data) > 0 {
		var err error
		ptr, err = in.alloc(uint32(len(data)))
		if err != nil {
			return StatusInternalFailure
		}
		if !in.mem.Write(ptr, data) {
			return StatusInvalidMemoryAccess
		}
	}
	if !in.writeU32(retPtr, ptr) || !in.writeU32(retSize, uint32(len(data))) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

// giveString is give for a string, without copying it to a byte slice first.
func (in *instance) giveString(v string, retPtr, retSize uint32) Status {
	if _, ok := in.mem.Read(retPtr, 4); !ok {
		return StatusInvalidMemoryAccess
	}
	if _, ok := in.mem.Read(retSize, 4); !ok {
		return StatusInvalidMemoryAccess
	}
	var ptr uint32
	if len(v) > 0 {
		var err error
		if ptr, err = in.alloc(uint32(len(v))); err != nil {
			return StatusInternalFailure
		}
		if !in.mem.WriteString(ptr, v) {
			return StatusInvalidMemoryAccess
		}
	}
	if !in.writeU32(retPtr, ptr) || !in.writeU32(retSize, uint32(len(v))) {
		return StatusInvalidMemoryAccess
	}
	return StatusOK
}

func (in *instance) alloc(n uint32) (uint32, error) {
	if in.fn.alloc == nil || in.failed() {
		return 0, errInstanceBroken
	}
	in.allocStack[0] = uint64(n)
	in.guard.Begin()
	err := in.fn.alloc.CallWithStack(in.guard, in.allocStack[:])
	in.guard.End()
	if err != nil {
		in.fail(err)
		return 0, err
	}
	ptr := uint32(in.allocStack[0])
	if ptr == 0 {
		return 0, errors.New("guest allocator returned 0")
	}
	return ptr, nil
}

// --- logging ---

func (in *instance) logf(level int, msg string) {
	if len(msg) > maxLogMessage {
		msg = msg[:maxLogMessage] + "…"
	}
	if in.starting && in.startLog != nil && in.startLog.Len() < 2048 {
		in.startLog.WriteString(msg)
		in.startLog.WriteString("; ")
	}
	var l slog.Level
	switch {
	case level <= LogDebug:
		l = slog.LevelDebug
	case level == LogInfo:
		l = slog.LevelInfo
	case level == LogWarn:
		l = slog.LevelWarn
	default:
		l = slog.LevelError
	}
	in.p.logger.Log(context.Background(), l, msg, "source", "guest")
}

// logWriter turns WASI stdout/stderr into log lines.
type logWriter struct {
	in    *instance
	level slog.Level
	mu    sync.Mutex
	buf   []byte
}

func (w *logWriter) Write(b []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.buf = append(w.buf, b...)
	for {
		i := bytes.IndexByte(w.buf, '\n')
		if i < 0 {
			break
		}
		w.emit(string(w.buf[:i]))
		w.buf = w.buf[i+1:]
	}
	if len(w.buf) > maxLogMessage {
		w.emit(string(w.buf))
		w.buf = w.buf[:0]
	}
	return len(b), nil
}

func (w *logWriter) emit(line string) {
	lvl := LogInfo
	if w.level >= slog.LevelError {
		lvl = LogError
	}
	w.in.logf(lvl, line)
}
