// Package h2 is Portico's HTTP/2 server (RFC 9113, HPACK per RFC 7541 via
// golang.org/x/net/http2/hpack). It serves an http.Handler on connections
// whose TLS handshake negotiated "h2"; edge/listen hands it those
// connections.
//
// # Design
//
// One frame loop per connection (conn.serve) reads frames from a
// bufio.Reader without copying them and handles each inline: settings,
// pings, flow control, stream states, HPACK decoding and request
// validation all happen there, and no frame is handed to another
// goroutine. A complete, valid request becomes a stream that a long-lived
// worker runs the handler for (edge/workpool; a fresh goroutine per request
// grew its stack several times over the gateway's deep pipeline). When
// every worker is busy the handler runs on a goroutine of its own, so a
// request never waits for another connection's.
//
// Handlers build their frames themselves, under the connection's lock:
// HPACK encoding and framing go straight into the connection's write
// queue, and one writer goroutine per connection sends whatever has queued
// in one write per batch. After a wake-up the writer yields once, so that
// the handlers and the frame loop that are ready queue their frames too:
// under load the answers of many streams leave in one TLS write. A
// response that fits in 4 KiB leaves as HEADERS and DATA(END_STREAM)
// together, with its Content-Length. The queue is bounded: handlers block
// beyond 128 KiB as they would on a full socket, and the frame loop's own
// replies beyond a further 64 KiB end the connection.
//
// Per stream there is no goroutine and no timer: the request body is a
// buffer the frame loop fills and the handler drains (full duplex, bounded
// by the flow-control windows), the request's context is the standard
// library's (context.WithCancelCause of the connection's BaseContext:
// Err is context.Canceled, Cause says why the stream ended), and one timer
// per connection serves every stream's read and write deadlines. Streams, their response buffers and header snapshots
// are pooled; what a handler may keep after it returns (the request, its
// context, body and writer) is allocated per request and detached from the
// pooled stream when the handler returns.
//
// # Hostile clients
//
// Every connection has a reset budget (Config.ResetBurst, ResetRate): each
// RST_STREAM the client sends, and each stream the server resets or
// refuses because of the client's frames (MadeYouReset; 431 answers
// included), spends a token; a spent budget ends the connection with
// GOAWAY ENHANCE_YOUR_CALM. Resets the server decides on its own (a
// handler's panic, a short response, a deadline) spend nothing. Handlers running per connection never exceed
// MaxConcurrentStreams, reset streams whose handler still runs included,
// and a stream reset before its handler started never starts it. Header
// blocks are bounded in CONTINUATION frames and decoded size (431 beyond
// MaxHeaderBytes, with the HPACK state kept in step); PING, SETTINGS,
// PRIORITY, empty DATA, tiny WINDOW_UPDATE and unknown frames spend a
// control-frame budget; a client that does not read is cut after
// WriteTimeout; the preface must arrive within PrefaceTimeout. Connection
// errors are answered with GOAWAY and the code RFC 9113 gives; after any
// GOAWAY (a graceful one once its last stream has finished) the
// connection lingers a second, reading and discarding, so that the client
// reads the GOAWAY and the last responses before the close.
//
// # Rationale: why Portico has its own HTTP/2 server
//
// Issue #6 asks the edge's HTTP/2 listener for 0.9 times nginx's
// requests/s (test/bench/protocols.sh: a 1 KiB body over TLS, h2load -t1
// -c16 -m16, server and load on separate cores). With x/net/http2's server
// the listener reached 0.32 of nginx; with its writes batched under it and
// its handlers moved to workers, 0.51 (42 888 against 83 708 requests/s;
// a bare net/http server did 27 600). CPU profiles showed what remained
// inside x/net: its 4 KiB frame buffer sends every frame that does not fit
// to a goroutine of its own (writeFrameAsync, ~19% of the CPU), a
// goroutine per stream with channels and select in the serve loop (~15%),
// and our own frame scanner in front of it, parsing every frame twice, for
// the abuse budgets x/net has no hook for. None of that can be tuned from
// outside the package, and forking it would mean owning 6 000 lines
// written around the very goroutine-per-stream design that costs.
//
// This server keeps the parts that are hard to get right and cheap to
// reuse (the HPACK coder) and owns the rest. On 2026-12-06 (load averages
// 1.7 to 4.3, other work on the machine; docs/performance.md) protocols.sh
// measured it in five runs at 2.58, 2.17, 2.23, 2.49 and 2.03 times
// nginx's requests/s (medians 157 689 to 198 509 against 76 095 to
// 84 930), from 0.51, and at 6 to 7 times a bare net/http server. It also passes the
// whole h2spec suite, where x/net failed three cases (6.5.3/1 and
// 8.1.2.2/1-2), and the rapid-reset test starts 100 handlers for 20 000
// reset streams where the guarded x/net server started up to 400.
//
// # What it does not do
//
//   - Server push: SETTINGS_ENABLE_PUSH is 0 and the writer implements no
//     http.Pusher (browsers have dropped push).
//   - RFC 7540 priorities: PRIORITY frames and HEADERS priority fields are
//     parsed and validated (a stream depending on itself is a stream
//     error) and otherwise ignored; streams are served in the order their
//     handlers write. RFC 9218's priority header reaches handlers as any
//     header does.
//   - h2c: HTTP/2 without TLS, by Upgrade or prior knowledge, is not
//     served; edge/listen speaks HTTP/2 only on TLS connections that
//     negotiated it.
//   - Extended CONNECT (RFC 8441, WebSockets over HTTP/2): not announced;
//     a request with :protocol is refused as malformed. WebSockets use
//     HTTP/1.1 (Hijack over HTTP/2 fails with http.ErrNotSupported).
//   - Sending PINGs: the server answers them but does not probe clients;
//     dead connections end through IdleTimeout and WriteTimeout.
package h2
