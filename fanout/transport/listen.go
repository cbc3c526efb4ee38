package transport

import (
	"container/list"
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
//
// At the node's cap a new connection is not shed while a silent one is
// open (accepted, not one byte read from it yet: what a flood of idle
// sockets is made of): the oldest silent connection is reset in its place.
// So during a flood health checks and real clients, which send their
// request as soon as they connect, still get in; only the idle sockets
// churn. A connection that has sent a byte is never evicted.
type guardListener struct {
	net.Listener
	maxConns   int
	maxPerAddr int
	trusted    func(ip string) bool // addresses exempt from the per-address cap (proxies)
	onError    func(reason string)
	onShed     func(reason, addr string) // counts a connection shed

	open    atomic.Int64
	mu      sync.Mutex
	perAddr map[string]int

	smu    sync.Mutex
	silent list.List // *trackedConn not read from yet, oldest first
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

// admit counts c, or sheds it past a cap (at the node's cap, after
// evicting a silent connection in vain).
func (l *guardListener) admit(c net.Conn) (net.Conn, bool) {
	ip := hostOf(c.RemoteAddr())
	for { // counted without ever passing the cap, even for an instant
		n := l.open.Load()
		if n >= int64(l.maxConns) {
			if !l.evictSilent() {
				l.shed(c, refusedMaxConns)
				return nil, false
			}
			continue
		}
		if l.open.CompareAndSwap(n, n+1) {
			break
		}
	}
	perAddr := !l.trusted(ip)
	if perAddr {
		l.mu.Lock()
		if l.perAddr[ip] >= l.maxPerAddr {
			l.mu.Unlock()
			l.open.Add(-1)
			l.shed(c, refusedMaxConnsPerAddress)
			return nil, false
		}
		l.perAddr[ip]++
		l.mu.Unlock()
	}
	tc := newTrackedConn(c, func() {
		l.open.Add(-1)
		if perAddr {
			l.mu.Lock()
			if l.perAddr[ip]--; l.perAddr[ip] <= 0 {
				delete(l.perAddr, ip)
			}
			l.mu.Unlock()
		}
	})
	tc.guard = l
	l.smu.Lock()
	tc.elem = l.silent.PushBack(tc)
	l.smu.Unlock()
	return tc, true
}

// evictSilent resets the oldest connection that has not sent a byte yet
// and uncounts it; it reports false if there is none.
func (l *guardListener) evictSilent() bool {
	for {
		l.smu.Lock()
		e := l.silent.Front()
		if e == nil {
			l.smu.Unlock()
			return false
		}
		tc := l.silent.Remove(e).(*trackedConn)
		tc.elem = nil
		l.smu.Unlock()
		if !tc.state.CompareAndSwap(connSilent, connEvicted) {
			continue // it spoke meanwhile
		}
		tc.once.Do(tc.onClose) // uncounted now: its place is the newcomer's
		if c, ok := tc.Conn.(*net.TCPConn); ok {
			_ = c.SetLinger(0)
		}
		_ = tc.Conn.Close() // its server goroutine's read fails and ends it
		l.onShed(refusedEvictedSilent, hostOf(tc.Conn.RemoteAddr()))
		return true
	}
}

// spoke takes tc off the silent list.
func (l *guardListener) spoke(tc *trackedConn) {
	l.smu.Lock()
	if tc.elem != nil {
		l.silent.Remove(tc.elem)
		tc.elem = nil
	}
	l.smu.Unlock()
}

// shed closes c at once with a reset: nothing is written, nothing waits.
func (l *guardListener) shed(c net.Conn, reason string) {
	if tc, ok := c.(*net.TCPConn); ok {
		_ = tc.SetLinger(0)
	}
	_ = c.Close()
	l.onShed(reason, hostOf(c.RemoteAddr()))
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

// The states of a trackedConn for eviction.
const (
	connSilent  int32 = iota // accepted, nothing read yet
	connSpoke                // a byte was read: never evicted
	connEvicted              // reset by the guard to make room
)

// trackedConn is an accepted connection that uncounts itself once, on
// whichever Close comes first (fasthttp's, a hijacked stream's, a
// WebSocket session's, the guard's eviction). It keeps the socket
// reachable (syscall.Conn) for the non-blocking writer.
type trackedConn struct {
	net.Conn
	once    sync.Once
	onClose func()

	guard *guardListener // nil: not subject to eviction
	state atomic.Int32   // connSilent, connSpoke or connEvicted
	elem  *list.Element  // on guard.silent while silent; guarded by guard.smu
}

func newTrackedConn(c net.Conn, onClose func()) *trackedConn {
	return &trackedConn{Conn: c, onClose: onClose}
}

// Read reads from the connection; its first byte takes it off the guard's
// silent list.
func (c *trackedConn) Read(b []byte) (int, error) {
	n, err := c.Conn.Read(b)
	if n > 0 && c.guard != nil && c.state.Load() == connSilent && c.state.CompareAndSwap(connSilent, connSpoke) {
		c.guard.spoke(c)
	}
	return n, err
}

// Close closes the connection and uncounts it once.
func (c *trackedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(c.onClose)
	if c.guard != nil && c.state.CompareAndSwap(connSilent, connSpoke) {
		c.guard.spoke(c) // closed silent: off the list
	}
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
