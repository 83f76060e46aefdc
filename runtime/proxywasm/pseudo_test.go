package proxywasm

import (
	"context"
	"encoding/binary"
	"fmt"
	"net/http"
	"strings"
	"testing"

	"github.com/portico-edge/portico/test/wasm/wasmbuild"
)

// A headerOp is one host call a generated guest makes on the request's
// header map: "get", "replace" and "remove" of key (with value), "pairs"
// (the map serialised whole), "size" (proxy_get_header_map_size) and "n"
// (the number of fields the callback was called with). The guest records
// what each call returned as the property test.PHASE.INDEX: a get's value
// or "!" when the field is missing, a replace's or remove's status as a
// digit, the serialised map (or "!"), and sizes as 4 bytes little-endian.
type headerOp struct{ op, key, value string }

// headerOpsGuest builds a guest that runs reqOps in on_request_headers and
// respOps, still on the request's map, in on_response_headers.
func headerOpsGuest(reqOps, respOps []headerOp) string {
	var data strings.Builder
	off := 1024
	str := func(s string) (int, int) {
		p := off
		fmt.Fprintf(&data, "  (data (i32.const %d) \"", p)
		for i := 0; i < len(s); i++ {
			fmt.Fprintf(&data, "\\%02x", s[i])
		}
		data.WriteString("\")\n")
		off += len(s) + 1
		return p, len(s)
	}
	bang, _ := str("!")
	body := func(phase string, ops []headerOp) string {
		var b strings.Builder
		for i, o := range ops {
			np, nl := str(fmt.Sprintf("test.%s.%d", phase, i))
			kp, kl := str(o.key)
			vp, vl := str(o.value)
			set := func(vptr, vlen string) {
				fmt.Fprintf(&b, "    (drop (call $pset (i32.const %d) (i32.const %d) %s %s))\n", np, nl, vptr, vlen)
			}
			status := func(call string) {
				fmt.Fprintf(&b, "    (i32.store8 (i32.const 72) (i32.add (i32.const 48) %s))\n", call)
				set("(i32.const 72)", "(i32.const 1)")
			}
			given := func(call string) {
				fmt.Fprintf(&b, "    (if (i32.eqz %s)\n      (then (drop (call $pset (i32.const %d) (i32.const %d) (i32.load (i32.const 64)) (i32.load (i32.const 68)))))\n      (else (drop (call $pset (i32.const %d) (i32.const %d) (i32.const %d) (i32.const 1)))))\n", call, np, nl, np, nl, bang)
			}
			switch o.op {
			case "get":
				given(fmt.Sprintf("(call $hget (i32.const 0) (i32.const %d) (i32.const %d) (i32.const 64) (i32.const 68))", kp, kl))
			case "pairs":
				given("(call $hpairs (i32.const 0) (i32.const 64) (i32.const 68))")
			case "replace":
				status(fmt.Sprintf("(call $hrep (i32.const 0) (i32.const %d) (i32.const %d) (i32.const %d) (i32.const %d))", kp, kl, vp, vl))
			case "remove":
				status(fmt.Sprintf("(call $hdel (i32.const 0) (i32.const %d) (i32.const %d))", kp, kl))
			case "size":
				b.WriteString("    (drop (call $hsize (i32.const 0) (i32.const 76)))\n")
				set("(i32.const 76)", "(i32.const 4)")
			case "n":
				b.WriteString("    (i32.store (i32.const 80) (local.get $n))\n")
				set("(i32.const 80)", "(i32.const 4)")
			default:
				panic("unknown op " + o.op)
			}
		}
		return b.String()
	}
	req, resp := body("req", reqOps), body("resp", respOps)
	return `(module
  (import "env" "proxy_get_header_map_value" (func $hget (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_replace_header_map_value" (func $hrep (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "proxy_remove_header_map_value" (func $hdel (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_pairs" (func $hpairs (param i32 i32 i32) (result i32)))
  (import "env" "proxy_get_header_map_size" (func $hsize (param i32 i32) (result i32)))
  (import "env" "proxy_set_property" (func $pset (param i32 i32 i32 i32) (result i32)))
  (memory (export "memory") 2)
  (global $heap (mut i32) (i32.const 65536))
` + data.String() + `  (func (export "malloc") (param $size i32) (result i32)
    (local $p i32)
    (local.set $p (global.get $heap))
    (global.set $heap (i32.add (global.get $heap) (local.get $size)))
    (local.get $p))
  (func (export "proxy_abi_version_0_2_1"))
  (func (export "proxy_on_context_create") (param i32 i32))
  (func (export "proxy_on_request_headers") (param $ctx i32) (param $n i32) (param i32) (result i32)
` + req + `    (i32.const 0))
  (func (export "proxy_on_response_headers") (param $ctx i32) (param $n i32) (param i32) (result i32)
` + resp + `    (i32.const 0))
  (func (export "proxy_on_done") (param i32) (result i32) (i32.const 1))
  (func (export "proxy_on_delete") (param i32)))`
}

// pseudoRequest is a request with every pseudo field distinct, and a
// :path whose query must survive as sent.
func pseudoRequest(t *testing.T, method, target string) *http.Request {
	t.Helper()
	r, err := http.NewRequest(method, target, nil)
	if err != nil {
		t.Fatal(err)
	}
	r.Header.Set("Authorization", "Bearer s3cr3t")
	r.Header.Set("X-B", "2")
	r.Header.Add("X-B", "3")
	return r
}

// wantPairs is what the guest must see serialised for r: the four pseudo
// fields in order, then the header fields in lower case, sorted.
func wantPairs(r *http.Request, scheme string) []Pair {
	return []Pair{
		{":method", r.Method}, {":path", r.URL.RequestURI()}, {":authority", r.Host}, {":scheme", scheme},
		{"authorization", "Bearer s3cr3t"}, {"x-b", "2"}, {"x-b", "3"},
	}
}

func u32le(v int) string {
	var b [4]byte
	binary.LittleEndian.PutUint32(b[:], uint32(v))
	return string(b[:])
}

// TestPseudoFieldsSeenByGuests: RequestHeaderMap fills the pseudo fields
// in only when something reads them; whatever a guest does first (reads
// one, replaces one, removes one, serialises the map), it sees the
// request's own values, on every request of a reused stream, and the host
// sees what it changed.
func TestPseudoFieldsSeenByGuests(t *testing.T) {
	g := func(k string) headerOp { return headerOp{"get", k, ""} }
	rep := func(k, v string) headerOp { return headerOp{"replace", k, v} }
	rm := func(k string) headerOp { return headerOp{"remove", k, ""} }
	pairs, size, n := headerOp{op: "pairs"}, headerOp{op: "size"}, headerOp{op: "n"}

	type want struct {
		results []string // per op; "" skips a check; "PAIRS" and "SIZE" stand for the map's
		pseudo  map[string]string
		changed bool
	}
	type request struct{ method, target, scheme string }
	requests := []request{
		{"POST", "http://api.example.test:8443/pets?limit=10&name=a%20b", "https"},
		{"DELETE", "http://other.example.test/v2/x", "http"},
		{"GET", "http://api.example.test/", "http"},
	}
	orig := func(r *http.Request, scheme string) map[string]string {
		return map[string]string{":method": r.Method, ":path": r.URL.RequestURI(), ":authority": r.Host, ":scheme": scheme}
	}
	for _, tc := range []struct {
		name string
		ops  []headerOp
		want func(r *http.Request, scheme string) want
	}{
		{"read each", []headerOp{g(":method"), g(":path"), g(":authority"), g(":scheme"), g(":status"), g(":Method")},
			func(r *http.Request, scheme string) want {
				return want{results: []string{r.Method, r.URL.RequestURI(), r.Host, scheme, "!", "!"}, pseudo: orig(r, scheme)}
			}},
		{"read one then the whole map", []headerOp{g(":authority"), pairs, size},
			func(r *http.Request, scheme string) want {
				return want{results: []string{r.Host, "PAIRS", "SIZE"}, pseudo: orig(r, scheme)}
			}},
		{"whole map first", []headerOp{n, size, pairs, g(":path")},
			func(r *http.Request, scheme string) want {
				return want{results: []string{u32le(7), "SIZE", "PAIRS", r.URL.RequestURI()}, pseudo: orig(r, scheme)}
			}},
		{"replace path first", []headerOp{rep(":path", "/new?q=1"), g(":method"), g(":path"), g(":authority"), g(":scheme"), pairs},
			func(r *http.Request, scheme string) want {
				p := orig(r, scheme)
				p[":path"] = "/new?q=1"
				return want{results: []string{"0", r.Method, "/new?q=1", r.Host, scheme, "PAIRS"}, pseudo: p, changed: true}
			}},
		{"replace method first, path still the request's", []headerOp{rep(":method", "PUT"), g(":path"), pairs},
			func(r *http.Request, scheme string) want {
				p := orig(r, scheme)
				p[":method"] = "PUT"
				return want{results: []string{"0", r.URL.RequestURI(), "PAIRS"}, pseudo: p, changed: true}
			}},
		{"replace each", []headerOp{rep(":authority", "b.example.test"), rep(":scheme", "http"), rep(":method", "PATCH"), rep(":path", "/p"), pairs, size},
			func(r *http.Request, scheme string) want {
				return want{results: []string{"0", "0", "0", "0", "PAIRS", "SIZE"},
					pseudo: map[string]string{":method": "PATCH", ":path": "/p", ":authority": "b.example.test", ":scheme": "http"}, changed: true}
			}},
		{"remove each", []headerOp{rm(":method"), rm(":path"), rm(":authority"), rm(":scheme"), g(":method"), g(":path"), g(":authority"), g(":scheme"), pairs},
			func(r *http.Request, scheme string) want {
				return want{results: []string{"0", "0", "0", "0", r.Method, r.URL.RequestURI(), r.Host, scheme, "PAIRS"}, pseudo: orig(r, scheme)}
			}},
		{"no reads", nil,
			func(r *http.Request, scheme string) want { return want{pseudo: orig(r, scheme)} }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			mod := wasmbuild.WATText(t, "pseudo-"+strings.ReplaceAll(tc.name, " ", "-"), headerOpsGuest(tc.ops, nil))
			ctx := context.Background()
			p, err := NewPlugin(ctx, newEngine(t), Config{Name: "pseudo", Module: mod, Instances: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer closePlugin(p)
			for i, rq := range requests { // one instance: the stream is reused
				r := pseudoRequest(t, rq.method, rq.target)
				w := tc.want(r, rq.scheme)
				s, err := p.NewStream(ctx, &StreamInfo{Request: r})
				if err != nil {
					t.Fatal(err)
				}
				h := s.RequestHeaderMap(r, rq.scheme)
				if o := s.RequestHeaders(h, true); o != Continue {
					t.Fatalf("request %d: outcome %v: %v", i, o, s.Err())
				}
				// What the host serialises now, after the guest's changes.
				gotPairs := EncodePairs(h.pairs())
				for j, res := range w.results {
					got, ok := s.Property(fmt.Sprintf("test.req.%d", j))
					switch res {
					case "":
						continue
					case "PAIRS":
						ps, err := DecodePairs([]byte(got))
						if err != nil {
							t.Fatalf("request %d, op %d: %v", i, j, err)
						}
						wp := wantPairs(r, rq.scheme)
						for k := range wp[:4] {
							wp[k].Value = w.pseudo[wp[k].Key]
						}
						if fmt.Sprint(ps) != fmt.Sprint(wp) {
							t.Fatalf("request %d: the guest's map %q, want %q", i, ps, wp)
						}
						if string(gotPairs) != got {
							t.Fatalf("request %d: the guest saw %q, the host now serialises %q", i, got, gotPairs)
						}
						continue
					case "SIZE":
						res = u32le(len(gotPairs))
					}
					if !ok || got != res {
						t.Fatalf("request %d (%s %s): op %d %v gave %q (%v), want %q", i, rq.method, rq.target, j, tc.ops[j], got, ok, res)
					}
				}
				for k, v := range w.pseudo {
					if got, ok := h.PseudoValue(k); !ok || got != v {
						t.Fatalf("request %d: host reads %s %q (%v), want %q", i, k, got, ok, v)
					}
				}
				if h.PseudoChanged != w.changed {
					t.Fatalf("request %d: PseudoChanged %v, want %v", i, h.PseudoChanged, w.changed)
				}
				if len(h.pairs()) != 4+3 {
					t.Fatalf("request %d: %d fields, want 7: %q", i, len(h.pairs()), h.pairs())
				}
				s.Close()
			}
		})
	}
}

// TestPseudoFieldsAfterYield: a guest that read nothing in
// on_request_headers reads the request's pseudo fields in a later
// callback, after the request went on and the forwarder rewrote its
// method, host and URL: it sees them as they were in the plugin.
func TestPseudoFieldsAfterYield(t *testing.T) {
	g := func(k string) headerOp { return headerOp{"get", k, ""} }
	mod := wasmbuild.WATText(t, "pseudo-after-yield", headerOpsGuest(nil,
		[]headerOp{g(":method"), g(":path"), g(":authority"), g(":scheme"), {op: "pairs"}}))
	ctx := context.Background()
	p, err := NewPlugin(ctx, newEngine(t), Config{Name: "pseudo", Module: mod, Instances: 1})
	if err != nil {
		t.Fatal(err)
	}
	defer closePlugin(p)
	for i := range 2 {
		r := pseudoRequest(t, "POST", fmt.Sprintf("http://api.example.test/pets/%d?limit=10", i))
		want := wantPairs(r, "https")
		s, err := p.NewStream(ctx, &StreamInfo{Request: r})
		if err != nil {
			t.Fatal(err)
		}
		h := s.RequestHeaderMap(r, "https")
		if o := s.RequestHeaders(h, true); o != Continue {
			t.Fatalf("outcome %v: %v", o, s.Err())
		}
		s.Yield()
		r.Method, r.Host = "GET", "origin.internal"
		r.URL.Path, r.URL.RawQuery = "/origin/prefix/pets", "limit=10&edge=1"
		resp := &HeaderMap{Header: http.Header{}, Pseudo: []Pair{{":status", "200"}}}
		if o := s.ResponseHeaders(resp, 200, true); o != Continue {
			t.Fatalf("outcome %v: %v", o, s.Err())
		}
		for j, v := range []string{"POST", want[1].Value, "api.example.test", "https"} {
			if got, _ := s.Property(fmt.Sprintf("test.resp.%d", j)); got != v {
				t.Fatalf("request %d: %s read %q after the request went on, want %q", i, want[j].Key, got, v)
			}
		}
		got, _ := s.Property("test.resp.4")
		if ps, err := DecodePairs([]byte(got)); err != nil || fmt.Sprint(ps) != fmt.Sprint(want) {
			t.Fatalf("request %d: map %q (%v), want %q", i, ps, err, want)
		}
		s.Close()
	}
}
