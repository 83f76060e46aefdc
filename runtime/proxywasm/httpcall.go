package proxywasm

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"time"
)

// httpResult is the outcome of a proxy_http_call.
type httpResult struct {
	token    uint32
	status   int
	message  string
	headers  HeaderMap
	trailers HeaderMap
	body     []byte
	err      error
}

func (in *instance) httpCall(s []uint64) Status {
	up, ups := u32(s[0]), u32(s[1])
	hp, hs := u32(s[2]), u32(s[3])
	bp, bs := u32(s[4]), u32(s[5])
	tp, ts := u32(s[6]), u32(s[7])
	timeoutMs, retToken := u32(s[8]), u32(s[9])
	name, ok1 := in.readString(up, ups)
	hb, ok2 := in.read(hp, hs)
	body, ok3 := in.read(bp, bs)
	_, ok4 := in.read(tp, ts)
	_, ok5 := in.mem.Read(retToken, 4)
	if !ok1 || !ok2 || !ok3 || !ok4 || !ok5 {
		return StatusInvalidMemoryAccess
	}
	p := in.p
	u, allowed := p.cfg.Upstreams[name]
	if !allowed {
		names := make([]string, 0, len(p.cfg.Upstreams))
		for n := range p.cfg.Upstreams {
			names = append(names, n)
		}
		slices.Sort(names)
		p.logger.Warn("wasm plugin called an upstream that is not on its allow-list; add it to the plugin's \"upstreams\" to allow it",
			"upstream", name, "allowed", names)
		return StatusBadArgument
	}
	pairs, err := DecodePairs(hb)
	if err != nil {
		return StatusBadArgument
	}
	var method, path string
	req := &http.Request{Header: make(http.Header)}
	for _, h := range pairs {
		if !validField(h.Key, h.Value) {
			return StatusBadArgument
		}
		switch h.Key {
		case ":method":
			method = h.Value
		case ":path":
			path = h.Value
		case ":authority":
			req.Host = h.Value
		case ":scheme":
		default:
			if !strings.HasPrefix(h.Key, ":") {
				req.Header.Add(h.Key, h.Value)
			}
		}
	}
	if method == "" || !strings.HasPrefix(path, "/") {
		return StatusBadArgument
	}
	if len(body) > p.cfg.MaxBodyBytes {
		return StatusBadArgument
	}
	target := *u.URL
	target.Path, target.RawPath = "", ""
	ref, err := target.Parse(strings.TrimSuffix(u.URL.Path, "/") + path)
	if err != nil || ref.Host != u.URL.Host || ref.Scheme != u.URL.Scheme {
		return StatusBadArgument
	}
	select {
	case p.calls <- struct{}{}:
	default:
		p.logger.Warn("wasm plugin has too many http calls in flight; raise limits.maxConcurrentCalls or make fewer calls", "limit", cap(p.calls))
		return StatusInternalFailure
	}
	timeout := u.Timeout
	if timeout <= 0 {
		timeout = 5 * time.Second
	}
	if timeoutMs > 0 {
		timeout = min(timeout, time.Duration(timeoutMs)*time.Millisecond)
	}
	in.nextToken++
	token := in.nextToken
	st := in.effective
	if st != nil && st.events == nil {
		st.events = make(chan *httpResult, cap(p.calls))
		if st.wake == nil {
			st.wake = make(chan struct{}, 1)
		}
	}
	req.Method = method
	req.URL = ref
	if req.Host == "" {
		req.Host = ref.Host
	}
	if len(body) > 0 {
		b := append([]byte(nil), body...)
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.ContentLength = int64(len(b))
	}
	go func() {
		res := p.doCall(req, timeout)
		<-p.calls
		res.token = token
		in.route(st, res)
	}()
	in.writeU32(retToken, token)
	return StatusOK
}

func (p *Plugin) doCall(req *http.Request, timeout time.Duration) *httpResult {
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	resp, err := p.client.Do(req.WithContext(ctx))
	if err != nil {
		p.logger.Warn("wasm plugin http call failed", "url", req.URL.Redacted(), "err", err)
		return &httpResult{err: err, message: err.Error()}
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, int64(p.cfg.MaxBodyBytes)+1))
	if err == nil && len(b) > p.cfg.MaxBodyBytes {
		err = fmt.Errorf("response body is over the plugin's %d byte limit", p.cfg.MaxBodyBytes)
	}
	if err != nil {
		p.logger.Warn("wasm plugin http call failed", "url", req.URL.Redacted(), "err", err)
		return &httpResult{err: err, message: err.Error()}
	}
	return &httpResult{
		status:   resp.StatusCode,
		message:  http.StatusText(resp.StatusCode),
		headers:  HeaderMap{Header: resp.Header, Pseudo: []Pair{{":status", strconv.Itoa(resp.StatusCode)}}},
		trailers: HeaderMap{Header: resp.Trailer},
		body:     b,
	}
}

// route hands a finished call to the stream that made it, if that stream is
// still waiting, or else straight to the root context.
func (in *instance) route(st *Stream, res *httpResult) {
	in.mu.Lock()
	if st != nil && !st.closed && in.streams.has(st) {
		st.events <- res
		st.signal()
		in.mu.Unlock()
		return
	}
	if in.dead() {
		in.mu.Unlock()
		return
	}
	err := in.deliver(res)
	in.mu.Unlock()
	if err != nil {
		in.p.instanceFailed(in, false)
	}
}
