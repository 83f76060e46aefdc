//go:build unix

package forward

import (
	"crypto/tls"
	"net"
	"syscall"
)

// peerOpen reports whether an idle connection still looks usable: nothing
// to read, no end of stream. A server that closed an idle connection (or,
// over TLS, sent close_notify) makes it unusable; finding that out before
// writing a request avoids sending one that cannot be retried safely.
func peerOpen(nc net.Conn) bool {
	if tc, ok := nc.(*tls.Conn); ok {
		nc = tc.NetConn()
	}
	sc, ok := nc.(syscall.Conn)
	if !ok {
		return true
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	open := true
	var b [1]byte
	err = rc.Read(func(fd uintptr) bool {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EAGAIN || err == syscall.EWOULDBLOCK:
		case err != nil, n >= 0:
			// Data nobody asked for, the end of the stream, or an error.
			open = false
		}
		return true
	})
	return open && err == nil
}
