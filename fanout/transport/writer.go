package transport

import (
	"errors"
	"net"
	"sync"
	"syscall"
	"time"

	"tickstream/fanout"
)

// connWriter owns the write side of a subscriber's socket for SSE and
// WebSocket alike. Data writes never block: what the socket does not take
// at once is kept for the next call and the subscriber counts as slow, so
// a writer goroutine is never held by a peer and no write deadline (a
// runtime timer per write) is needed. A slow peer costs at most one batch
// besides the kernel's buffers, and framing is never broken.
type connWriter struct {
	conn net.Conn
	raw  syscall.RawConn // nil if conn is not a socket: then writes block up to fallbackTimeout

	mu      sync.Mutex
	pending []byte
	closed  bool
}

// fallbackTimeout bounds a data write on a connection that is not a plain
// socket (tests over pipes).
const fallbackTimeout = 100 * time.Millisecond

// init sets the connection before first use.
func (w *connWriter) init(c net.Conn) {
	w.conn = c
	if sc, ok := c.(syscall.Conn); ok {
		if rc, err := sc.SyscallConn(); err == nil {
			w.raw = rc
		}
	}
}

// setUserTimeout sets TCP_USER_TIMEOUT on the socket (not for non-sockets).
func (w *connWriter) setUserTimeout(d time.Duration) {
	if w.raw == nil {
		return
	}
	_ = w.raw.Control(func(fd uintptr) {
		_ = syscall.SetsockoptInt(int(fd), syscall.IPPROTO_TCP, 0x12 /* TCP_USER_TIMEOUT */, int(d.Milliseconds()))
	})
}

// send writes p after anything pending, as far as the socket takes it now.
// If it takes less, it keeps the rest and returns fanout.ErrSlow.
func (w *connWriter) send(p []byte) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return net.ErrClosed
	}
	if len(w.pending) > 0 {
		w.pending = append(w.pending, p...)
		p = w.pending
	}
	if len(p) == 0 {
		return nil
	}
	n, err := w.writeNow(p)
	if n == len(p) {
		w.pending = w.pending[:0]
		return nil
	}
	if err == nil {
		rest := append([]byte(nil), p[n:]...) // p may be pending itself
		w.pending = rest
		return fanout.ErrSlow
	}
	return err
}

// writeNow writes what the socket takes without waiting: n < len(p) with a
// nil error means it is full.
func (w *connWriter) writeNow(p []byte) (int, error) {
	if w.raw == nil {
		_ = w.conn.SetWriteDeadline(time.Now().Add(fallbackTimeout))
		n, err := w.conn.Write(p)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = nil
		}
		return n, err
	}
	var n int
	var werr error
	err := w.raw.Write(func(fd uintptr) bool {
		for n < len(p) {
			k, err := syscall.Write(int(fd), p[n:])
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

// sendAll writes p completely within d: the stream's head, replies to the
// client. Anything pending goes first. A failure breaks the stream's
// framing, so it closes the socket.
func (w *connWriter) sendAll(p []byte, d time.Duration) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return net.ErrClosed
	}
	if len(w.pending) > 0 {
		p = append(w.pending, p...)
		w.pending = nil
	}
	_ = w.conn.SetWriteDeadline(time.Now().Add(d))
	_, err := w.conn.Write(p)
	_ = w.conn.SetWriteDeadline(time.Time{}) // a raw write fails past a deadline
	if err != nil {
		w.closed = true
		_ = w.conn.Close()
		return err
	}
	return nil
}

// close writes last (best effort, 50ms, only if nothing is pending) and
// closes the socket. It unblocks a send in progress first. It reports
// whether this call closed it.
func (w *connWriter) close(last []byte) bool {
	_ = w.conn.SetWriteDeadline(time.Now())
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.closed = true
	if len(last) > 0 && len(w.pending) == 0 {
		_ = w.conn.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = w.conn.Write(last)
	}
	_ = w.conn.Close()
	return true
}

// peerGone peeks at the socket without blocking: EOF or an error means the
// peer closed it. Bytes waiting (a pipelined request) mean it is alive.
func (w *connWriter) peerGone() bool {
	sc, ok := w.conn.(syscall.Conn)
	if !ok {
		return false
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return true
	}
	gone := false
	err = rc.Read(func(fd uintptr) bool {
		var b [1]byte
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		gone = (n == 0 && err == nil) || (err != nil && err != syscall.EAGAIN && err != syscall.EINTR)
		return true // never wait
	})
	return gone || err != nil
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// headRoom is the space reserved before a message for its framing header
// (an HTTP chunk size or a WebSocket frame header), filled in once the
// length is known so the payload is never copied again.
const headRoom = 10

// withHeader writes hdr right-aligned into the head room of buf and
// returns the framed message.
func withHeader(buf, hdr []byte) []byte {
	start := headRoom - len(hdr)
	copy(buf[start:], hdr)
	return buf[start:]
}
