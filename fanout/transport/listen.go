package transport

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

// guardListener is the node's accept loop guard. Accept errors that a busy
// or attacked machine produces (out of descriptors, out of buffers, a
// connection reset before it was accepted) are counted and retried with a
// short back-off, never returned, so the server never stops by itself. It
// caps the open connections of the node below its descriptor limit and the
// plain connections of one address, shedding the excess at once (reset,
// no response): a flood of idle sockets costs the node nothing lasting,
// and descriptors stay for Redis and for the clients already served.
type guardListener struct {
	net.Listener
	maxConns   int
	maxPerAddr int
	trusted    func(ip string) bool // addresses exempt from the per-address cap (proxies)
	onError    func(reason string)
	onShed     func(reason string)

	open    atomic.Int64
	mu      sync.Mutex
	perAddr map[string]int
}

// Accept returns the next connection the caps allow. It only returns an
// error once the listener is closed.
func (l *guardListener) Accept() (net.Conn, error) {
	backoff := 5 * time.Millisecond
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return nil, err
			}
			// Anything else is retried: accept also reports a pending
			// network error of the next connection (ENETDOWN, EHOSTUNREACH…).
			reason := acceptErrorReason(err)
			l.onError(reason)
			time.Sleep(backoff)
			backoff = min(2*backoff, 500*time.Millisecond)
			continue
		}
		backoff = 5 * time.Millisecond
		if tc, ok := l.admit(c); ok {
			return tc, nil
		}
	}
}

// admit counts c, or sheds it past a cap.
func (l *guardListener) admit(c net.Conn) (net.Conn, bool) {
	ip := hostOf(c.RemoteAddr())
	if l.open.Add(1) > int64(l.maxConns) {
		l.open.Add(-1)
		l.shed(c, "max_conns")
		return nil, false
	}
	perAddr := !l.trusted(ip)
	if perAddr {
		l.mu.Lock()
		if l.perAddr[ip] >= l.maxPerAddr {
			l.mu.Unlock()
			l.open.Add(-1)
			l.shed(c, "max_conns_per_address")
			return nil, false
		}
		l.perAddr[ip]++
		l.mu.Unlock()
	}
	return newTrackedConn(c, func() {
		l.open.Add(-1)
		if perAddr {
			l.mu.Lock()
			if l.perAddr[ip]--; l.perAddr[ip] <= 0 {
				delete(l.perAddr, ip)
			}
			l.mu.Unlock()
		}
	}), true
}

// shed closes c at once with a reset: nothing is written, nothing waits.
func (l *guardListener) shed(c net.Conn, reason string) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	l.onShed(reason)
}

// Open returns the connections open now.
func (l *guardListener) Open() int64 { return l.open.Load() }

// acceptErrorReason names an accept error for the metric.
func acceptErrorReason(err error) string {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		switch errno {
		case syscall.EMFILE:
			return "emfile"
		case syscall.ENFILE:
			return "enfile"
		case syscall.ENOBUFS:
			return "enobufs"
		case syscall.ENOMEM:
			return "enomem"
		case syscall.ECONNABORTED:
			return "econnaborted"
		}
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	return "other"
}

// hostOf returns the IP of a TCP address as text.
func hostOf(a net.Addr) string {
	if ta, ok := a.(*net.TCPAddr); ok {
		return ta.IP.String()
	}
	host, _, err := net.SplitHostPort(a.String())
	if err != nil {
		return a.String()
	}
	return host
}

// trackedConn is an accepted connection that uncounts itself once, on
// whichever Close comes first (fasthttp's, a hijacked stream's, a
// WebSocket session's). It keeps the socket reachable (syscall.Conn) for
// the non-blocking writer.
type trackedConn struct {
	net.Conn
	once    sync.Once
	onClose func()
}

func newTrackedConn(c net.Conn, onClose func()) *trackedConn {
	return &trackedConn{Conn: c, onClose: onClose}
}

// Close closes the connection and uncounts it once.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.onClose)
	return err
}

// SyscallConn implements syscall.Conn.
func (c *trackedConn) SyscallConn() (syscall.RawConn, error) {
	sc, ok := c.Conn.(syscall.Conn)
	if !ok {
		return nil, errors.New("not a socket")
	}
	return sc.SyscallConn()
}

// CloseWrite forwards a half close, where the connection has one.
func (c *trackedConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}
