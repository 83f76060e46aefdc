//go:build wasip1

// Command features is a test plugin that exercises the host's shared data
// (with compare-and-swap), queues, ticks, metrics and properties, and
// answers each request with what it observed.
package main

import (
	"encoding/binary"
	"strconv"
	"strings"

	proxywasm "github.com/portico-edge/portico/sdk/go"
)

type root struct {
	proxywasm.DefaultRootContext
	queue   uint32
	counter proxywasm.Metric
}

var r = &root{}

func (r *root) OnConfigure([]byte) bool {
	var err error
	if r.queue, err = proxywasm.RegisterQueue("events"); err != nil {
		return false
	}
	if r.counter, err = proxywasm.DefineCounter("requests"); err != nil {
		return false
	}
	return proxywasm.SetTickPeriod(20) == nil
}

// OnTick counts ticks in shared data with a compare-and-swap loop.
func (r *root) OnTick() {
	for i := 0; i < 5; i++ {
		v, cas, err := proxywasm.SharedData("ticks")
		n := 0
		if err == nil {
			n, _ = strconv.Atoi(string(v))
		}
		if proxywasm.SetSharedData("ticks", []byte(strconv.Itoa(n+1)), cas) == nil {
			return
		}
	}
}

func (r *root) OnQueueReady(id uint32) {
	for {
		item, err := proxywasm.Dequeue(id)
		if err != nil {
			return
		}
		_ = proxywasm.SetSharedData("queued", item, 0)
	}
}

func (r *root) NewHTTPContext(uint32) proxywasm.HTTPContext { return &stream{} }

type stream struct{ proxywasm.DefaultHTTPContext }

func reply(body string) proxywasm.Action {
	_ = proxywasm.SendLocalResponse(200, []proxywasm.Header{{Name: "content-type", Value: "text/plain"}}, []byte(body))
	return proxywasm.Pause
}

func (s *stream) OnRequestHeaders(int, bool) proxywasm.Action {
	path, _ := proxywasm.RequestHeader(":path")
	switch {
	case path == "/cas":
		if err := proxywasm.SetSharedData("k", []byte("v1"), 0); err != nil {
			return reply("set: " + err.Error())
		}
		_, cas, err := proxywasm.SharedData("k")
		if err != nil {
			return reply("get: " + err.Error())
		}
		if err := proxywasm.SetSharedData("k", []byte("v2"), cas); err != nil {
			return reply("cas set: " + err.Error())
		}
		if err := proxywasm.SetSharedData("k", []byte("v3"), cas); err != proxywasm.StatusCASMismatch {
			return reply("stale cas accepted")
		}
		v, _, _ := proxywasm.SharedData("k")
		return reply("cas-ok " + string(v))
	case path == "/count":
		_ = r.counter.Increment(1)
		v, err := r.counter.Value()
		if err != nil {
			return reply(err.Error())
		}
		return reply(strconv.FormatUint(v, 10))
	case path == "/enqueue":
		if err := proxywasm.Enqueue(r.queue, []byte("hello")); err != nil {
			return reply(err.Error())
		}
		return reply("queued")
	case strings.HasPrefix(path, "/shared/"):
		v, _, err := proxywasm.SharedData(strings.TrimPrefix(path, "/shared/"))
		if err != nil {
			return reply("none")
		}
		return reply(string(v))
	case path == "/props":
		var b strings.Builder
		for _, p := range []string{"plugin_name", "request.path", "request.method", "source.address", "destination.address", "portico.api_id", "portico.stage", "portico.route"} {
			v, err := proxywasm.Property(p)
			if err != nil {
				v = []byte("<" + err.Error() + ">")
			}
			b.WriteString(p + "=" + string(v) + "\n")
		}
		if v, err := proxywasm.Property("source.port"); err == nil && len(v) == 8 {
			b.WriteString("source.port=" + strconv.FormatUint(binary.LittleEndian.Uint64(v), 10) + "\n")
		}
		return reply(b.String())
	}
	return proxywasm.Continue
}

func init() {
	proxywasm.SetNewRootContext(func(uint32) proxywasm.RootContext { return r })
}

func main() {}
