package redisstream

import (
	"io"
	"net"
	"syscall"
	"unsafe"
)

// rawIO reads and writes a TCP or unix socket with raw system calls, still
// waiting on Go's network poller (syscall.RawConn) when the socket is not
// ready. Go's own Read and Write enter the scheduler's syscall state, and
// the first such call after the process went idle wakes the runtime's
// monitor thread, which then polls every 20 µs for a millisecond: on a feed
// that wakes a node every few milliseconds that was most of its context
// switches (22,000 a second at 20,000 ticks/s) and a quarter of its CPU. A
// read or write of a non-blocking socket returns at once, so skipping that
// state is safe.
type rawIO struct{ rc syscall.RawConn }

// newRawIO returns raw I/O for conn, or nil when conn is not a plain socket
// (TLS): the caller then uses conn's own methods.
func newRawIO(conn net.Conn) *rawIO {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return &rawIO{rc: rc}
}

// read reads into p (not empty) as conn.Read would: deadlines and Close
// apply while it waits.
func (r *rawIO) read(p []byte) (int, error) {
	var (
		n     int
		errno syscall.Errno
	)
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			m, _, e := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)))
			switch e {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until readable
			}
			n, errno = int(m), e
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case errno != 0:
		return 0, errno
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// write writes all of p as conn.Write would.
func (r *rawIO) write(p []byte) (int, error) {
	var (
		done  int
		errno syscall.Errno
	)
	err := r.rc.Write(func(fd uintptr) bool {
		for done < len(p) {
			m, _, e := syscall.RawSyscall(syscall.SYS_WRITE, fd, uintptr(unsafe.Pointer(&p[done])), uintptr(len(p)-done))
			switch e {
			case 0:
				done += int(m)
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait until writable
			default:
				errno = e
				return true
			}
		}
		return true
	})
	if err == nil && errno != 0 {
		err = errno
	}
	return done, err
}
