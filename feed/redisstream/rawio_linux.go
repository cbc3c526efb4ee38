package redisstream

import (
	"io"
	"net"
	"syscall"

	"github.com/tickstream/tickstream/internal/sysio"
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
	rc := rawConnOf(conn)
	if rc == nil {
		return nil
	}
	return &rawIO{rc: rc}
}

// rawConnOf returns conn's socket, or nil when conn is not a plain socket
// (TLS).
func rawConnOf(conn net.Conn) syscall.RawConn {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return nil
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return nil
	}
	return rc
}

// read reads into p (not empty) as conn.Read would: deadlines and Close
// apply while it waits.
func (r *rawIO) read(p []byte) (int, error) {
	var (
		n    int
		rerr error
	)
	err := r.rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = sysio.Read(int(fd), p)
			switch rerr {
			case syscall.EINTR:
				continue
			case syscall.EAGAIN:
				return false // wait until readable
			}
			return true
		}
	})
	switch {
	case err != nil:
		return 0, err
	case rerr != nil:
		return 0, rerr
	case n == 0:
		return 0, io.EOF
	}
	return n, nil
}

// write writes all of p as conn.Write would.
func (r *rawIO) write(p []byte) (int, error) {
	var (
		done int
		werr error
	)
	err := r.rc.Write(func(fd uintptr) bool {
		for done < len(p) {
			m, e := sysio.Write(int(fd), p[done:])
			switch e {
			case nil:
				done += m
			case syscall.EINTR:
			case syscall.EAGAIN:
				return false // wait until writable
			default:
				werr = e
				return true
			}
		}
		return true
	})
	if err == nil {
		err = werr
	}
	return done, err
}
