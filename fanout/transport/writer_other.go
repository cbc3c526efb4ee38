//go:build !unix

package transport

import (
	"net"
	"syscall"
	"time"
)

// Without Unix sockets (Windows) the writer uses the portable path: a
// write with a short deadline.

func rawWriteNow(rc syscall.RawConn, p []byte) (int, error) { return 0, net.ErrClosed }

func rawPeerGone(syscall.RawConn) bool { return false }

func tuneSocket(syscall.RawConn, time.Duration, int) {}

// portableOnly makes init leave raw nil, so writeNow takes the deadline
// path.
const portableOnly = true
