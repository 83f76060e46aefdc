// Package h3 is Portico's HTTP/3 server (RFC 9114, QPACK RFC 9204) over
// quic-go's QUIC connections, serving an http.Handler.
//
// # Why Portico has its own HTTP/3 layer
//
// quic-go is Portico's QUIC transport and stays so. Its HTTP/3 server
// (quic-go/http3) was what edge/listen served HTTP/3 with, and under load
// it spent more of the CPU than the transport under it: parsing frames a
// byte at a time through the stream's locks, a fresh goroutine, context,
// header map, QPACK encoder and several buffers for every request,
// HEADERS and DATA written separately. test/bench/quicfloor measures an
// approximate floor, raw quic-go streams carrying the same bytes with a
// minimal server loop; docs/performance.md has the figures. This package keeps to what an API gateway's edge needs
// and is built for that path:
//
//   - each request stream is read through one buffer: frame headers, the
//     header block and small bodies come out of it, not out of a call into
//     quic-go per byte;
//   - the header block is decoded (github.com/quic-go/qpack, static table
//     and literals) straight into the http.Request, values sharing one
//     backing array, common names canonicalised without allocating;
//   - per-stream state (buffers, decoded fields, the QPACK encoder) is
//     pooled; what the handler gets is new for every request. The
//     ResponseWriter and the Body are cut off from the state under their
//     own locks when the handler returns, before the state is pooled: a
//     call after that panics (ResponseWriter) or fails (Body.Read); a
//     ResponseWriter call still running then, on a goroutine the handler
//     left behind, gets the response reset and is waited for. So nothing
//     a handler keeps can reach the state once it serves another request;
//   - a small response (up to 8 KiB) leaves as HEADERS and DATA in one
//     stream write, queued without waiting, then FIN; the Date field is
//     encoded once a second;
//   - streams are served on long-lived workers whose stacks have grown
//     (see edge/workpool);
//   - the request's context is the QUIC stream's own: no goroutine, timer
//     or AfterFunc per request.
//
// # What it does
//
// Control stream with SETTINGS both ways; the client's control stream
// checked (exactly one, SETTINGS first, only control frames on it), its
// QPACK encoder and decoder streams accepted and held to a dynamic table
// of capacity zero; unknown stream and frame types skipped or refused as
// the RFC says (a unidirectional stream gets ReadHeaderTimeout to say its
// type); malformed requests (an authority that is not host[:port], a
// :scheme other than https or http, among the rest) reset with
// H3_MESSAGE_ERROR before any handler runs; MAX_FIELD_SECTION_SIZE
// enforced on decoded headers and trailers (431 for headers); request
// bodies streamed to the handler under QUIC flow control, with
// Content-Length checked, and a failed body read never resetting an
// answer unless the client broke the protocol (a read deadline stops the
// reading side alone, so the handler can answer 408); trailers both ways
// (the client's fill the map its Trailer header announced, as
// x/net/http2); 1xx responses and automatic 100 Continue; Date;
// Content-Type sniffing and Content-Length as net/http; the header as it
// was at WriteHeader; HEAD, 204 and 304 without a body; http.Flusher and
// http.ResponseController (Flush, deadlines, EnableFullDuplex); handler
// panics reset the stream (H3_INTERNAL_ERROR), logged unless
// http.ErrAbortHandler; Config.BaseContext for values every request sees
// (http.ServerContextKey); GOAWAY and draining on Shutdown and on the idle
// timeout; 0-RTT requests served with r.TLS.HandshakeComplete false, so
// that the listener's early-data guard can refuse unsafe ones.
//
// With QUICConfig's RequireStreamCreditRelease, a client may open a new
// request stream only when a handler has returned, so MaxIncomingStreams
// caps the handlers running per connection even for a client that resets
// its streams at once (the QUIC form of HTTP/2's rapid reset).
//
// # What it deliberately does not do
//
//   - server push (PUSH_PROMISE): browsers dropped it, an API gateway
//     has nothing to push; a client's push-related frames get the errors
//     the RFC asks for;
//   - the QPACK dynamic table, both ways: the static table and literals
//     keep every stream independent (no blocked streams, no encoder
//     state); responses are a little larger;
//   - extended CONNECT (RFC 9220: WebSocket over HTTP/3, WebTransport)
//     and HTTP datagrams (RFC 9297): never announced, a :protocol
//     pseudo-header is a malformed request; WebSockets reach Portico
//     over HTTP/1.1;
//   - priorities (RFC 9218): PRIORITY_UPDATE is checked and ignored;
//     responses are small and written whole;
//   - Hijack: HTTP/3 has no connection to hand over.
package h3
