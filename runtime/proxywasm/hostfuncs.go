package proxywasm

import (
	"context"
	"time"

	"github.com/tetratelabs/wazero"
	"github.com/tetratelabs/wazero/api"

	"github.com/portico-edge/portico/runtime"
)

func instanceOf(ctx context.Context) *instance {
	g := runtime.GuardFrom(ctx)
	if g == nil {
		return nil
	}
	in, _ := g.Data.(*instance)
	return in
}

var (
	i32 = api.ValueTypeI32
	i64 = api.ValueTypeI64
)

func i32s(n int) []api.ValueType {
	ps := make([]api.ValueType, n)
	for i := range ps {
		ps[i] = i32
	}
	return ps
}

func u32(v uint64) uint32 { return uint32(v) }

// defineHostFunctions adds every host function of ABI v0.2.1 (and the
// three legacy ones real SDKs still import) to b. Each refuses to run for
// an instance that has failed or been closed: wazero can still enter a host
// function of a closed module before it reports the closure.
func (p *Plugin) defineHostFunctions(b wazero.HostModuleBuilder) map[string]bool {
	defined := make(map[string]bool, 48)
	def := func(name string, params []api.ValueType, fn func(in *instance, s []uint64) Status) {
		defined[name] = true
		b.NewFunctionBuilder().WithGoModuleFunction(api.GoModuleFunc(func(ctx context.Context, _ api.Module, s []uint64) {
			in := instanceOf(ctx)
			if in == nil || in.dead() {
				p.refused.Add(1)
				s[0] = uint64(StatusInternalFailure)
				return
			}
			s[0] = uint64(fn(in, s))
		}), params, []api.ValueType{i32}).Export(name)
	}

	// Logging, clocks, timers.
	def("proxy_log", i32s(3), func(in *instance, s []uint64) Status {
		level := u32(s[0])
		if level > LogCritical {
			return StatusBadArgument
		}
		msg, ok := in.readString(u32(s[1]), u32(s[2]))
		if !ok {
			return StatusInvalidMemoryAccess
		}
		if int(level) >= in.p.cfg.LogLevel {
			in.logf(int(level), msg)
		}
		return StatusOK
	})
	def("proxy_get_log_level", i32s(1), func(in *instance, s []uint64) Status {
		if !in.writeU32(u32(s[0]), uint32(in.p.cfg.LogLevel)) {
			return StatusInvalidMemoryAccess
		}
		return StatusOK
	})
	def("proxy_get_current_time_nanoseconds", i32s(1), func(in *instance, s []uint64) Status {
		if !in.mem.WriteUint64Le(u32(s[0]), uint64(time.Now().UnixNano())) {
			return StatusInvalidMemoryAccess
		}
		return StatusOK
	})
	def("proxy_set_tick_period_milliseconds", i32s(1), func(in *instance, s []uint64) Status {
		in.setTick(time.Duration(u32(s[0])) * time.Millisecond)
		return StatusOK
	})

	// Buffers.
	def("proxy_get_buffer_bytes", i32s(5), func(in *instance, s []uint64) Status {
		typ, start, max, retPtr, retSize := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3]), u32(s[4])
		buf, st := in.buffer(typ)
		if st != StatusOK {
			return st
		}
		if uint64(start) > uint64(len(buf)) {
			return StatusBadArgument
		}
		end := min(uint64(start)+uint64(max), uint64(len(buf)))
		return in.give(buf[start:end], retPtr, retSize)
	})
	def("proxy_get_buffer_status", i32s(3), func(in *instance, s []uint64) Status {
		typ, retLen, retFlags := u32(s[0]), u32(s[1]), u32(s[2])
		buf, st := in.buffer(typ)
		if st != StatusOK {
			return st
		}
		if !in.writeU32(retLen, uint32(len(buf))) || !in.writeU32(retFlags, 0) {
			return StatusInvalidMemoryAccess
		}
		return StatusOK
	})
	def("proxy_set_buffer_bytes", i32s(5), func(in *instance, s []uint64) Status {
		typ, start, size, ptr, vsize := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3]), u32(s[4])
		return in.setBuffer(typ, start, size, ptr, vsize)
	})

	// Header maps.
	def("proxy_get_header_map_size", i32s(2), func(in *instance, s []uint64) Status {
		m, st := in.headerMap(u32(s[0]), false)
		if st != StatusOK {
			return st
		}
		if !in.writeU32(u32(s[1]), uint32(len(EncodePairs(m.pairs())))) {
			return StatusInvalidMemoryAccess
		}
		return StatusOK
	})
	def("proxy_get_header_map_pairs", i32s(3), func(in *instance, s []uint64) Status {
		typ, retPtr, retSize := u32(s[0]), u32(s[1]), u32(s[2])
		m, st := in.headerMap(typ, false)
		if st != StatusOK {
			return st
		}
		return in.give(EncodePairs(m.pairs()), retPtr, retSize)
	})
	def("proxy_set_header_map_pairs", i32s(3), func(in *instance, s []uint64) Status {
		typ, ptr, size := u32(s[0]), u32(s[1]), u32(s[2])
		m, st := in.headerMap(typ, true)
		if st != StatusOK {
			return st
		}
		b, ok := in.read(ptr, size)
		if !ok {
			return StatusInvalidMemoryAccess
		}
		ps, err := DecodePairs(b)
		if err != nil || !m.setPairs(ps) {
			return StatusBadArgument
		}
		return StatusOK
	})
	def("proxy_get_header_map_value", i32s(5), func(in *instance, s []uint64) Status {
		typ, kp, ks, retPtr, retSize := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3]), u32(s[4])
		m, st := in.headerMap(typ, false)
		if st != StatusOK {
			return st
		}
		key, ok := in.readView(kp, ks)
		if !ok {
			return StatusInvalidMemoryAccess
		}
		v, found := m.get(key) // before give: the view dies when the guest runs
		if !found {
			return StatusNotFound
		}
		return in.giveString(v, retPtr, retSize)
	})
	setValue := func(replace bool) func(in *instance, s []uint64) Status {
		return func(in *instance, s []uint64) Status {
			typ, kp, ks, vp, vs := u32(s[0]), u32(s[1]), u32(s[2]), u32(s[3]), u32(s[4])
			m, st := in.headerMap(typ, true)
			if st != StatusOK {
				return st
			}
			key, ok1 := in.readView(kp, ks)
			val, ok2 := in.readView(vp, vs)
			if !ok1 || !ok2 {
				return StatusInvalidMemoryAccess
			}
			if !m.set(key, val, replace) {
				return StatusBadArgument
			}
			return StatusOK
		}
	}
	def("proxy_add_header_map_value", i32s(5), setValue(false))
	def("proxy_replace_header_map_value", i32s(5), setValue(true))
	def("proxy_remove_header_map_value", i32s(3), func(in *instance, s []uint64) Status {
		typ, kp, ks := u32(s[0]), u32(s[1]), u32(s[2])
		m, st := in.headerMap(typ, true)
		if st != StatusOK {
			return st
		}
		key, ok := in.readView(kp, ks)
		if !ok {
			return StatusInvalidMemoryAccess
		}
		m.remove(key)
		return StatusOK
	})

	// Stream control.
	def("proxy_continue_stream", i32s(1), func(in *instance, s []uint64) Status {
		return in.continueStream(u32(s[0]))
	})
	def("proxy_close_stream", i32s(1), func(in *instance, s []uint64) Status {
		typ := u32(s[0])
		if typ > streamUpstream {
			return StatusBadArgument
		}
		if typ >= streamDownstream {
			return StatusUnimplemented
		}
		st := in.effective
		if st == nil {
			return StatusNotFound
		}
		st.closeStream()
		return StatusOK
	})
	def("proxy_continue_request", nil, func(in *instance, s []uint64) Status { return in.continueStream(streamRequest) })
	def("proxy_continue_response", nil, func(in *instance, s []uint64) Status { return in.continueStream(streamResponse) })
	def("proxy_clear_route_cache", nil, func(in *instance, s []uint64) Status {
		// Routing is decided before any plugin runs; there is no cache to clear.
		return StatusOK
	})
	def("proxy_send_local_response", i32s(8), func(in *instance, s []uint64) Status {
		code := u32(s[0])
		details, ok1 := in.readString(u32(s[1]), u32(s[2]))
		body, ok2 := in.read(u32(s[3]), u32(s[4]))
		hb, ok3 := in.read(u32(s[5]), u32(s[6]))
		if !ok1 || !ok2 || !ok3 {
			return StatusInvalidMemoryAccess
		}
		st := in.effective
		if st == nil {
			return StatusNotFound
		}
		if code < 200 || code > 599 {
			return StatusBadArgument
		}
		if len(body) > in.p.cfg.MaxBodyBytes {
			return StatusBadArgument
		}
		hs, err := DecodePairs(hb)
		if err != nil {
			return StatusBadArgument
		}
		for _, h := range hs {
			if !validField(h.Key, h.Value) {
				return StatusBadArgument
			}
		}
		st.sendLocal(&LocalResponse{Status: int(code), Details: details, Body: append([]byte(nil), body...), Headers: hs})
		return StatusOK
	})
	def("proxy_get_status", i32s(3), func(in *instance, s []uint64) Status {
		codePtr, msgPtr, msgSize := u32(s[0]), u32(s[1]), u32(s[2])
		r := in.callResp
		if r == nil {
			return StatusNotFound
		}
		if !in.writeU32(codePtr, uint32(r.status)) {
			return StatusInvalidMemoryAccess
		}
		return in.giveString(r.message, msgPtr, msgSize)
	})

	// Outbound calls.
	def("proxy_http_call", i32s(10), func(in *instance, s []uint64) Status {
		return in.httpCall(s)
	})
	unimplemented := func(in *instance, s []uint64) Status { return StatusUnimplemented }
	def("proxy_grpc_call", i32s(12), unimplemented)
	def("proxy_grpc_stream", i32s(9), unimplemented)
	def("proxy_grpc_send", i32s(4), unimplemented)
	def("proxy_grpc_cancel", i32s(1), unimplemented)
	def("proxy_grpc_close", i32s(1), unimplemented)

	// Shared data and queues.
	def("proxy_get_shared_data", i32s(5), func(in *instance, s []uint64) Status { return in.getSharedData(s) })
	def("proxy_set_shared_data", i32s(5), func(in *instance, s []uint64) Status { return in.setSharedData(s) })
	def("proxy_register_shared_queue", i32s(3), func(in *instance, s []uint64) Status { return in.registerQueue(s) })
	def("proxy_resolve_shared_queue", i32s(5), func(in *instance, s []uint64) Status { return in.resolveQueue(s) })
	def("proxy_enqueue_shared_queue", i32s(3), func(in *instance, s []uint64) Status { return in.enqueue(s) })
	def("proxy_dequeue_shared_queue", i32s(3), func(in *instance, s []uint64) Status { return in.dequeue(s) })

	// Metrics.
	def("proxy_define_metric", i32s(4), func(in *instance, s []uint64) Status { return in.defineMetric(s) })
	def("proxy_increment_metric", []api.ValueType{i32, i64}, func(in *instance, s []uint64) Status {
		return in.p.gmetrics.increment(u32(s[0]), int64(s[1]))
	})
	def("proxy_record_metric", []api.ValueType{i32, i64}, func(in *instance, s []uint64) Status {
		return in.p.gmetrics.record(u32(s[0]), s[1])
	})
	def("proxy_get_metric", i32s(2), func(in *instance, s []uint64) Status {
		v, st := in.p.gmetrics.get(u32(s[0]))
		if st != StatusOK {
			return st
		}
		if !in.mem.WriteUint64Le(u32(s[1]), v) {
			return StatusInvalidMemoryAccess
		}
		return StatusOK
	})

	// Properties.
	def("proxy_get_property", i32s(4), func(in *instance, s []uint64) Status { return in.getProperty(s) })
	def("proxy_set_property", i32s(4), func(in *instance, s []uint64) Status { return in.setProperty(s) })

	// Contexts and the rest.
	def("proxy_set_effective_context", i32s(1), func(in *instance, s []uint64) Status {
		id := u32(s[0])
		if id == rootID {
			in.effective = nil
			return StatusOK
		}
		st := in.streams.byID(id)
		if st == nil {
			return StatusBadArgument
		}
		if st.away {
			// Its request is at the upstream (Stream.Upstream).
			return StatusNotFound
		}
		in.effective = st
		return StatusOK
	})
	def("proxy_done", nil, func(in *instance, s []uint64) Status {
		st := in.effective
		if st == nil || !st.pendingDone {
			return StatusNotFound
		}
		st.doneCalled = true
		return StatusOK
	})
	def("proxy_call_foreign_function", i32s(6), func(in *instance, s []uint64) Status {
		if _, ok := in.read(u32(s[0]), u32(s[1])); !ok {
			return StatusInvalidMemoryAccess
		}
		return StatusNotFound
	})
	return defined
}

func (in *instance) continueStream(typ uint32) Status {
	if typ > streamUpstream {
		return StatusBadArgument
	}
	if typ >= streamDownstream {
		return StatusUnimplemented
	}
	st := in.effective
	if st == nil {
		return StatusNotFound
	}
	st.resume()
	return StatusOK
}

func (in *instance) buffer(typ uint32) ([]byte, Status) {
	st := in.effective
	switch typ {
	case bufferRequestBody:
		if st == nil || !st.reqBodyAvail {
			return nil, StatusNotFound
		}
		return st.reqBody, StatusOK
	case bufferResponseBody:
		// Some SDKs read the http call response body as HTTP_RESPONSE_BODY
		// (the spec's own text says so); serve it from there inside
		// on_http_call_response.
		if in.callResp != nil {
			return in.callResp.body, StatusOK
		}
		if st == nil || !st.respBodyAvail {
			return nil, StatusNotFound
		}
		return st.respBody, StatusOK
	case bufferHTTPCallResponse:
		if in.callResp == nil {
			return nil, StatusNotFound
		}
		return in.callResp.body, StatusOK
	case bufferVMConfig:
		return in.p.cfg.VMConfig, StatusOK
	case bufferPluginConfig:
		return in.p.cfg.PluginConfig, StatusOK
	case bufferDownstreamData, bufferUpstreamData, bufferGRPCMessage, bufferForeignArgs:
		return nil, StatusNotFound
	}
	return nil, StatusBadArgument
}

func (in *instance) setBuffer(typ, start, size, ptr, vsize uint32) Status {
	st := in.effective
	var buf *[]byte
	switch typ {
	case bufferRequestBody:
		if st == nil || !st.reqBodyAvail {
			return StatusNotFound
		}
		buf = &st.reqBody
	case bufferResponseBody:
		if st == nil || !st.respBodyAvail {
			return StatusNotFound
		}
		buf = &st.respBody
	case bufferDownstreamData, bufferUpstreamData, bufferHTTPCallResponse, bufferGRPCMessage,
		bufferVMConfig, bufferPluginConfig, bufferForeignArgs:
		return StatusNotFound
	default:
		return StatusBadArgument
	}
	val, ok := in.read(ptr, vsize)
	if !ok {
		return StatusInvalidMemoryAccess
	}
	old := *buf
	s := min(uint64(start), uint64(len(old)))
	e := min(s+uint64(size), uint64(len(old)))
	n := uint64(len(old)) - (e - s) + uint64(len(val))
	if n > uint64(in.p.cfg.MaxBodyBytes) {
		return StatusBadArgument
	}
	out := make([]byte, 0, n)
	out = append(out, old[:s]...)
	out = append(out, val...)
	out = append(out, old[e:]...)
	*buf = out
	if typ == bufferRequestBody {
		st.reqBodyChanged = true
	} else {
		st.respBodyChanged = true
	}
	return StatusOK
}

func (in *instance) headerMap(typ uint32, write bool) (*HeaderMap, Status) {
	st := in.effective
	switch typ {
	case mapRequestHeaders, mapRequestTrailers, mapResponseHeaders, mapResponseTrailers:
		if st == nil {
			return nil, StatusNotFound
		}
		var m *HeaderMap
		switch typ {
		case mapRequestHeaders:
			m = st.req
		case mapRequestTrailers:
			m = st.reqTrailers
		case mapResponseHeaders:
			m = st.resp
		case mapResponseTrailers:
			m = st.respTrailers
		}
		if m == nil {
			return nil, StatusNotFound
		}
		return m, StatusOK
	case mapHTTPCallHeaders, mapHTTPCallTrailers:
		if in.callResp == nil {
			return nil, StatusNotFound
		}
		if write {
			return nil, StatusBadArgument
		}
		if typ == mapHTTPCallHeaders {
			return &in.callResp.headers, StatusOK
		}
		return &in.callResp.trailers, StatusOK
	case mapGRPCInitialMetadata, mapGRPCTrailingMetadata:
		return nil, StatusNotFound
	}
	return nil, StatusBadArgument
}
