//go:build unix

package transport

import (
	"syscall"
	"time"

	"github.com/tickstream/tickstream/internal/sysio"
)

// rawWriteNow writes p to the socket without waiting for it to drain.
func rawWriteNow(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var werr error
	err := rc.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, err := sysio.Write(int(fd), p[n:])
			if k > 0 {
				n += k
			}
			switch {
			case err == syscall.EINTR:
				continue
			case err == syscall.EAGAIN, err == nil && k <= 0:
				return true // full: never wait
			case err != nil:
				werr = err
				return true
			}
		}
		return true
	})
	if werr != nil {
		return n, werr
	}
	return n, err
}

// rawPeerGone peeks at the socket: EOF or an error means the peer is gone.
func rawPeerGone(rc syscall.RawConn) bool {
	gone := false
	err := rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
		return true // never wait
	})
	return gone || err != nil
}

// tuneSocket sets TCP_USER_TIMEOUT (Linux: a peer that vanished without a
// FIN fails the socket after d instead of many minutes of retransmits) and
// a fixed send buffer of sndbuf bytes (0 keeps the kernel's autotuning): a
// peer that stops reading fills it in a fraction of a second, so it is seen
// as slow at once instead of after megabytes.
func tuneSocket(rc syscall.RawConn, d time.Duration, sndbuf int) {
	_ = rc.Control(func(fd uintptr) {
		if tcpUserTimeout != 0 && d > 0 {
			_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, tcpUserTimeout, int(d.Milliseconds()))
		}
		if sndbuf > 0 {
			_ = syscall.SetsockoptInt(int(fd), syscall.SOL_SOCKET, syscall.SO_SNDBUF, sndbuf)
		}
	})
}

// portableOnly is false: sockets are written through their descriptors.
const portableOnly = false
