package redisstream

import (
	"io"
	"math"
	"net"
	"os"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"github.com/tickstream/tickstream/internal/sysio"
)

// detachedConn is a socket that Go's network poller does not watch: its
// reads and writes are raw system calls on the non-blocking socket and,
// when it is not ready, a ppoll(2) of it and of an eventfd that a new
// deadline rings. The publisher's connection is one. On the poller, every
// reply that arrived while the simulator slept until its next batch woke
// the process (epoll reported it, nobody was waiting for it yet), and so
// did each acknowledgement that freed the send buffer (EPOLLOUT, edge
// triggered): two to three wake-ups per batch where the batch's timer is
// the only one needed. A detached socket wakes nobody until it is read.
//
// Read and Write are for one goroutine at a time; SetDeadline may be
// called from any goroutine (a context's cancellation sets a past one and
// wakes a wait in progress); Close must not run during a Read or Write (a
// closed descriptor does not wake ppoll, and its number may be reused).
type detachedConn struct {
	fd            int
	local, remote net.Addr
	// The deadline, as time since base (the monotonic clock, as net.Conn:
	// a step of the wall clock moves no deadline); noDeadline for none.
	base     time.Time
	deadline atomic.Int64
	mu       sync.Mutex // efd against Close
	efd      int        // eventfd rung by SetDeadline; -1 once closed
	// Closes both descriptors if the connection is dropped unclosed, as
	// the net package's finalizer does for a net.Conn.
	cleanup runtime.Cleanup
}

// noDeadline is a deadline that never comes (a time.Duration's largest:
// also what a deadline centuries away saturates to).
const noDeadline = math.MaxInt64

// detach returns a detached connection over conn's socket and closes conn
// (which takes it off the poller); conn itself when it is not a plain
// socket (TLS) or the socket cannot be duplicated.
func detach(conn net.Conn) net.Conn {
	rc := rawConnOf(conn)
	if rc == nil {
		return conn
	}
	fd, derr := -1, error(nil)
	if err := rc.Control(func(s uintptr) {
		r, _, e := syscall.Syscall(syscall.SYS_FCNTL, s, syscall.F_DUPFD_CLOEXEC, 0)
		if e != 0 {
			derr = e
			return
		}
		fd = int(r)
	}); err != nil || derr != nil {
		return conn
	}
	const efdCloexec, efdNonblock = syscall.O_CLOEXEC, syscall.O_NONBLOCK
	efd, _, e := syscall.Syscall(syscall.SYS_EVENTFD2, 0, efdCloexec|efdNonblock, 0)
	if e != 0 {
		_ = syscall.Close(fd)
		return conn
	}
	// The duplicate shares the socket's non-blocking flag. Closing conn
	// removes the socket from the poller's epoll set (an explicit
	// EPOLL_CTL_DEL: the duplicate keeps the socket open).
	c := &detachedConn{fd: fd, efd: int(efd), local: conn.LocalAddr(), remote: conn.RemoteAddr(), base: time.Now()}
	c.deadline.Store(noDeadline)
	c.cleanup = runtime.AddCleanup(c, func(fds [2]int) {
		_ = syscall.Close(fds[0])
		_ = syscall.Close(fds[1])
	}, [2]int{fd, int(efd)})
	_ = conn.Close()
	return c
}

// Read reads as net.Conn's Read does.
func (c *detachedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if c.expired() {
		return 0, os.ErrDeadlineExceeded
	}
	for {
		n, err := sysio.Read(c.fd, p)
		switch err {
		case nil:
			if n == 0 {
				return 0, io.EOF
			}
			return n, nil
		case syscall.EINTR:
		case syscall.EAGAIN:
			if err := c.wait(pollIn); err != nil {
				return 0, err
			}
		default:
			return 0, &net.OpError{Op: "read", Net: "detached", Addr: c.remote, Err: err}
		}
	}
}

// Write writes all of p as net.Conn's Write does.
func (c *detachedConn) Write(p []byte) (int, error) {
	if c.expired() {
		return 0, os.ErrDeadlineExceeded
	}
	done := 0
	for done < len(p) {
		n, err := sysio.Write(c.fd, p[done:])
		switch err {
		case nil:
			done += n
		case syscall.EINTR:
		case syscall.EAGAIN:
			if err := c.wait(pollOut); err != nil {
				return done, err
			}
		default:
			return done, &net.OpError{Op: "write", Net: "detached", Addr: c.remote, Err: err}
		}
	}
	return done, nil
}

// expired reports whether the deadline has passed: then reads and writes
// fail at once, ready or not, as net.Conn's do.
func (c *detachedConn) expired() bool {
	dl := c.deadline.Load()
	return dl != noDeadline && int64(time.Since(c.base)) >= dl
}

const (
	pollIn  = 0x1
	pollOut = 0x4
)

// pollFd is struct pollfd.
type pollFd struct {
	fd             int32
	events, revent int16
}

// wait waits until the socket is ready for events (or in error), the
// deadline passes, or the eventfd rings (a new deadline: checked again).
func (c *detachedConn) wait(events int16) error {
	for {
		var ts *syscall.Timespec
		if dl := c.deadline.Load(); dl != noDeadline {
			left := dl - int64(time.Since(c.base))
			if left <= 0 {
				return os.ErrDeadlineExceeded
			}
			t := syscall.NsecToTimespec(left)
			ts = &t
		}
		fds := [2]pollFd{{fd: int32(c.fd), events: events}, {fd: int32(c.efd), events: pollIn}}
		_, _, e := syscall.Syscall6(syscall.SYS_PPOLL, uintptr(unsafe.Pointer(&fds[0])), 2, uintptr(unsafe.Pointer(ts)), 0, 0, 0)
		switch {
		case e != 0 && e != syscall.EINTR:
			return &net.OpError{Op: "poll", Net: "detached", Addr: c.remote, Err: e}
		case fds[1].revent != 0:
			var b [8]byte
			_, _ = sysio.Read(c.efd, b[:]) // reset it; the deadline is read again
		case fds[0].revent != 0:
			return nil // ready, or an error the next read or write reports
		}
	}
}

// SetDeadline sets the deadline of reads and writes, and wakes a wait in
// progress so that it sees it.
func (c *detachedConn) SetDeadline(t time.Time) error {
	dl := int64(noDeadline)
	if !t.IsZero() {
		dl = int64(t.Sub(c.base)) // saturates: centuries away is never, long past is past
	}
	c.deadline.Store(dl)
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.efd < 0 {
		return net.ErrClosed
	}
	one := [8]byte{1}
	_, _ = sysio.Write(c.efd, one[:]) // any value but 0 rings it, in either byte order
	return nil
}

// SetReadDeadline is SetDeadline: one deadline serves both directions.
func (c *detachedConn) SetReadDeadline(t time.Time) error { return c.SetDeadline(t) }

// SetWriteDeadline is SetDeadline: one deadline serves both directions.
func (c *detachedConn) SetWriteDeadline(t time.Time) error { return c.SetDeadline(t) }

// Close closes the socket.
func (c *detachedConn) Close() error {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.efd < 0 {
		return net.ErrClosed
	}
	c.cleanup.Stop()
	_ = syscall.Close(c.efd)
	c.efd = -1
	return syscall.Close(c.fd)
}

// LocalAddr returns the socket's local address.
func (c *detachedConn) LocalAddr() net.Addr { return c.local }

// RemoteAddr returns the socket's peer address.
func (c *detachedConn) RemoteAddr() net.Addr { return c.remote }
