// Package quicgate holds, for tests, a QUIC client's handshake back: a UDP
// relay between one client and a server that lets the test decide when
// the server's handshake may complete, so that a request the server
// answers meanwhile was provably answered from 0-RTT, whatever the
// scheduling. edge/h3's and edge/listen's 0-RTT tests share it, with a
// session cache that says when a ticket arrived (TicketCache).
package quicgate

import (
	"crypto/tls"
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"

	"github.com/quic-go/quic-go/quicvarint"
)

// Gate forwards UDP between one client and the server. A QUIC server's
// handshake completes when the client's Finished arrives, in a Handshake
// packet; the gate holds back every client datagram carrying a Handshake
// or 1-RTT packet until Open is called, then lets them through in order.
//
// With early true, the gate also holds the server's datagrams until the
// client has sent a 0-RTT packet: a client that read the server's flight
// first would send its request in 1-RTT instead, which the gate would then
// hold back for good. So the client must send nothing but its request in
// 0-RTT. A client whose session ticket offers no 0-RTT sends no 0-RTT
// packet: early false.
type Gate struct {
	pc     net.PacketConn
	up     *net.UDPConn
	client atomic.Pointer[net.UDPAddr]

	mu         sync.Mutex
	sawEarly   bool     // a 0-RTT packet went by: the server's datagrams pass
	fromServer [][]byte // held until sawEarly
	opened     bool     // Open was called: everything passes
	fromClient [][]byte // held until opened
}

// New starts a gate on a loopback port in front of server. Close it when
// the test ends.
func New(server *net.UDPAddr, early bool) (*Gate, error) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	up, err := net.DialUDP("udp", nil, server)
	if err != nil {
		pc.Close()
		return nil, err
	}
	g := &Gate{pc: pc, up: up, sawEarly: !early}
	go g.clientToServer()
	go g.serverToClient()
	return g, nil
}

// Addr is the address the client dials instead of the server's.
func (g *Gate) Addr() string { return g.pc.LocalAddr().String() }

// Close stops the relay.
func (g *Gate) Close() {
	g.pc.Close()
	g.up.Close()
}

// Open lets the client's held datagrams through, then everything.
func (g *Gate) Open() {
	g.mu.Lock()
	defer g.mu.Unlock()
	for _, b := range g.fromClient {
		_, _ = g.up.Write(b)
	}
	g.fromClient, g.opened = nil, true
}

func (g *Gate) clientToServer() {
	buf := make([]byte, 65536)
	for {
		n, addr, err := g.pc.ReadFrom(buf)
		if err != nil {
			return
		}
		g.client.Store(addr.(*net.UDPAddr))
		b := append([]byte(nil), buf[:n]...)
		early, late := classifyClientDatagram(b)
		g.mu.Lock()
		if late && !g.opened {
			g.fromClient = append(g.fromClient, b)
		} else {
			_, _ = g.up.Write(b)
		}
		if early && !g.sawEarly {
			g.sawEarly = true
			for _, sb := range g.fromServer {
				_, _ = g.pc.WriteTo(sb, addr)
			}
			g.fromServer = nil
		}
		g.mu.Unlock()
	}
}

func (g *Gate) serverToClient() {
	buf := make([]byte, 65536)
	for {
		n, err := g.up.Read(buf)
		if err != nil {
			return
		}
		b := append([]byte(nil), buf[:n]...)
		g.mu.Lock()
		if g.sawEarly {
			_, _ = g.pc.WriteTo(b, g.client.Load())
		} else {
			g.fromServer = append(g.fromServer, b)
		}
		g.mu.Unlock()
	}
}

// classifyClientDatagram reports whether a client's datagram carries a
// 0-RTT packet (early), and whether it carries a packet a client sends
// only once it has the server's handshake flight: Handshake or 1-RTT
// (late). It walks the coalesced packets' long headers (RFC 9000 §17.2,
// QUIC v2's types from RFC 9369 §3.2); a datagram it cannot parse counts
// as late, so that the gate errs towards holding back.
func classifyClientDatagram(b []byte) (early, late bool) {
	for len(b) > 0 {
		if b[0]&0x80 == 0 {
			return early, true // short header: 1-RTT, always last
		}
		if len(b) < 6 {
			return early, true
		}
		typ := b[0] >> 4 & 3
		var initial, zeroRTT, handshake bool
		switch binary.BigEndian.Uint32(b[1:5]) {
		case 1:
			initial, zeroRTT, handshake = typ == 0, typ == 1, typ == 2
		case 0x6b3343cf:
			initial, zeroRTT, handshake = typ == 1, typ == 2, typ == 3
		default:
			return early, true
		}
		early = early || zeroRTT
		late = late || handshake
		p := 5
		for range 2 { // destination and source connection IDs
			if p >= len(b) {
				return early, true
			}
			p += 1 + int(b[p])
		}
		if p > len(b) {
			return early, true
		}
		if initial {
			l, n, err := quicvarint.Parse(b[p:])
			if err != nil || l > uint64(len(b)-p-n) {
				return early, true
			}
			p += n + int(l)
		}
		l, n, err := quicvarint.Parse(b[p:])
		if err != nil || l > uint64(len(b)-p-n) {
			return early, true
		}
		b = b[p+n+int(l):]
	}
	return early, late
}

// TicketCache is a client session cache that says when a ticket was
// stored (Stored) and whether the last one offers 0-RTT (OffersEarlyData).
type TicketCache struct {
	tls.ClientSessionCache
	Stored chan struct{}
	early  atomic.Bool
}

// NewTicketCache returns an LRU session cache of n entries that signals.
func NewTicketCache(n int) *TicketCache {
	return &TicketCache{ClientSessionCache: tls.NewLRUClientSessionCache(n), Stored: make(chan struct{}, n)}
}

// Put stores the ticket and signals on Stored without blocking.
func (c *TicketCache) Put(key string, cs *tls.ClientSessionState) {
	c.ClientSessionCache.Put(key, cs)
	if cs == nil {
		return
	}
	if _, st, err := cs.ResumptionState(); err == nil && st != nil {
		c.early.Store(st.EarlyData)
	}
	select {
	case c.Stored <- struct{}{}:
	default:
	}
}

// OffersEarlyData reports whether the last ticket stored allows 0-RTT.
func (c *TicketCache) OffersEarlyData() bool { return c.early.Load() }
