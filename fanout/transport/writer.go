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
// WebSocket alike: one write per call within a deadline, and what the peer
// did not take kept for the next call (so a slow peer costs at most one
// batch, and framing is never broken).
type connWriter struct {
	conn    net.Conn
	timeout time.Duration

	mu      sync.Mutex
	pending []byte
	closed  bool
}

// send writes p after anything pending, within the write timeout. On a
// timeout it keeps the rest and returns fanout.ErrSlow.
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
	_ = w.conn.SetWriteDeadline(time.Now().Add(w.timeout))
	n, err := w.conn.Write(p)
	if err == nil {
		w.pending = w.pending[:0]
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		w.pending = append(w.pending[:0:0], p[n:]...)
		return fanout.ErrSlow
	}
	return err
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
	if _, err := w.conn.Write(p); err != nil {
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
