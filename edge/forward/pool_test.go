package forward

import (
	"bufio"
	"context"
	"net"
	"strconv"
	"testing"
	"time"
)

// tcpPair returns both ends of a loopback TCP connection.
func tcpPair(t *testing.T) (client, server net.Conn) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	acc := make(chan net.Conn, 1)
	go func() {
		c, _ := ln.Accept()
		acc <- c
	}()
	client, err = net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	server = <-acc
	t.Cleanup(func() { client.Close(); server.Close() })
	return client, server
}

func testConn(t *testing.T, p *h1Pool) (*h1Conn, net.Conn) {
	c, s := tcpPair(t)
	return &h1Conn{nc: c, br: bufio.NewReader(c), bw: bufio.NewWriter(c), pool: p}, s
}

// closed reports whether c was closed by the pool.
func closed(c *h1Conn) bool {
	_, err := c.nc.Write([]byte{0})
	return err != nil
}

func TestPoolBounds(t *testing.T) {
	ps := newPools(PoolOptions{MaxIdlePerHost: 1, MaxIdle: 2, IdleTimeout: time.Minute})
	a, b := ps.pool("http", "a:1"), ps.pool("http", "b:1")
	a1, _ := testConn(t, a)
	a2, _ := testConn(t, a)
	b1, _ := testConn(t, b)
	c := ps.pool("http", "c:1")
	c1, _ := testConn(t, c)
	a.put(a1)
	a.put(a2) // over MaxIdlePerHost
	b.put(b1)
	c.put(c1) // over MaxIdle
	if closed(a1) || !closed(a2) || closed(b1) || !closed(c1) {
		t.Errorf("closed: a1 %v a2 %v b1 %v c1 %v; want false true false true", closed(a1), closed(a2), closed(b1), closed(c1))
	}
	if n := ps.total.Load(); n != 2 {
		t.Errorf("idle total %d, want 2", n)
	}
	ps.closeIdle()
	if n := ps.total.Load(); n != 0 || !closed(a1) || !closed(b1) {
		t.Errorf("after closeIdle: total %d", n)
	}
}

func TestPoolKeepsNothingPastMaxPools(t *testing.T) {
	ps := newPools(PoolOptions{})
	for i := range maxPools {
		ps.pool("http", net.JoinHostPort("10.0.0.1", strconv.Itoa(i+1)))
	}
	p := ps.pool("http", "10.0.0.2:80")
	c, _ := testConn(t, p)
	p.put(c)
	if !closed(c) || len(ps.m) != maxPools {
		t.Errorf("a pool past maxPools kept a connection (pools: %d)", len(ps.m))
	}
}

func TestPoolSweepsIdle(t *testing.T) {
	ps := newPools(PoolOptions{IdleTimeout: 50 * time.Millisecond})
	p := ps.pool("http", "a:1")
	c, _ := testConn(t, p)
	p.put(c)
	deadline := time.Now().Add(5 * time.Second)
	for !closed(c) {
		if time.Now().After(deadline) {
			t.Fatal("an idle connection outlived IdleTimeout by 5 s")
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := ps.total.Load(); n != 0 {
		t.Errorf("idle total %d after the sweep", n)
	}
}

func TestPoolDropsConnectionsTheServerClosed(t *testing.T) {
	ps := newPools(PoolOptions{})
	p := ps.pool("http", "a:1")
	fresh, _ := testConn(t, p)
	stale, s := testConn(t, p)
	p.put(fresh)
	p.put(stale)
	s.Close()
	stale.idleSince = time.Now().Add(-2 * checkAfter) // old enough to be checked
	time.Sleep(50 * time.Millisecond)                 // let the FIN arrive
	got, err := p.get(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if got != fresh || !closed(stale) {
		t.Errorf("get returned the connection the server closed (stale: %v)", got == stale)
	}
	if !peerOpen(fresh.nc) {
		t.Error("peerOpen: an open idle connection looks closed")
	}
}
