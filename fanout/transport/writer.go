package transport

import (
	"errors"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tickstream/tickstream/fanout"
)

// connWriter owns the write side of a subscriber's socket for SSE and
// WebSocket alike, and every write to that socket goes through it: data
// batches, stream heads, replies and control frames. No write ever waits
// for the peer: what the socket does not take at once is kept (pending) and
// the subscriber counts as slow, so neither a hub writer nor a connection's
// reading goroutine is held by a peer, and its lock is only ever held across
// a non-blocking write. What a peer may leave pending is bounded per
// connection (maxPending) and per node (the budget); past either the
// connection is dropped as a slow consumer.
type connWriter struct {
	conn       net.Conn
	raw        syscall.RawConn // nil if conn is not a socket: writes then wait up to fallbackTimeout
	budget     *byteBudget     // the node's pending bytes; may be nil
	maxPending int             // 0: no per-connection bound (tests)
	sent       *atomic.Uint64  // counts the bytes the socket took; may be nil

	mu      sync.Mutex
	pending []byte
	exempt  int // leading bytes of pending that are the stream's head (not bounded by maxPending)
	closed  bool
	retry   *time.Timer // flushLater's (or linger's once closed), under mu
	backoff time.Duration

	lingerEnd time.Time // closed with bytes pending: written until then
	held      int       // what the budget still holds for this closed connection
}

// fallbackTimeout bounds a write on a connection that is not a plain socket
// (tests over pipes).
const fallbackTimeout = 100 * time.Millisecond

// init sets the connection before first use.
func (w *connWriter) init(c net.Conn, budget *byteBudget, maxPending int) {
	w.conn, w.budget, w.maxPending = c, budget, maxPending
	if sc, ok := c.(syscall.Conn); ok && !portableOnly {
		if rc, err := sc.SyscallConn(); err == nil {
			w.raw = rc
		}
	}
}

// send writes p after anything pending, as far as the socket takes it now.
// If it takes less, it keeps the rest and returns fanout.ErrSlow. If the
// rest would pass the connection's or the node's bound, nothing of p is
// kept and it returns fanout.ErrSlowConsumer: the caller closes.
func (w *connWriter) send(p []byte) error { return w.write(p, false) }

// sendHead is send for the first bytes of a stream (head, snapshot,
// replay), which may pass the per-connection bound once; the node's budget
// still applies.
func (w *connWriter) sendHead(p []byte) error { return w.write(p, true) }

func (w *connWriter) write(p []byte, head bool) error {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.writeLocked(p, head)
}

// writeLocked is write with w.mu held. The per-connection bound applies to
// what is pending besides the rest of the stream's head (exempt), and only
// when the call adds bytes: flushing what is pending is always allowed.
func (w *connWriter) writeLocked(p []byte, head bool) error {
	if w.closed {
		return net.ErrClosed
	}
	added := len(p)
	bounded := !head && added > 0 && w.maxPending > 0
	if bounded && len(w.pending)-w.exempt+added > w.maxPending {
		return fanout.ErrSlowConsumer
	}
	if len(w.pending) > 0 {
		p = append(w.pending, p...) // may share w.pending's array
	}
	if len(p) == 0 {
		return nil
	}
	n, err := w.writeNow(p)
	if err != nil {
		return err
	}
	rest := len(p) - n
	exempt := max(w.exempt-n, 0) // the head's bytes go first
	if head {
		exempt = rest
	}
	if bounded && rest-exempt > w.maxPending {
		return fanout.ErrSlowConsumer // one write too large for a peer that reads this slowly
	}
	if delta := rest - len(w.pending); delta > 0 && !w.budget.take(delta) {
		return fanout.ErrSlowConsumer
	} else if delta < 0 {
		w.budget.give(-delta)
	}
	w.exempt = exempt
	if rest == 0 {
		w.pending = w.pending[:0]
		if cap(w.pending) > 4096 {
			w.pending = nil // a burst's buffer is not kept for the life of the connection
		}
		return nil
	}
	// p[n:] may overlap w.pending's array: append moves it like memmove.
	w.pending = append(w.pending[:0], p[n:]...)
	return fanout.ErrSlow
}

// flushLater makes sure what is pending goes out once the peer reads,
// when no hub writer may come by soon (a stream's head, a reply): it tries
// again after a short, growing delay until nothing is pending or the
// socket is closed. Data batches need none of this: the hub drains slow
// subscribers itself.
func (w *connWriter) flushLater() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed || w.retry != nil {
		return
	}
	w.backoff = 10 * time.Millisecond
	w.retry = time.AfterFunc(w.backoff, w.retryFlush)
}

// retryFlush writes what is pending and decides, under one hold of the
// lock, whether to try again: a flushLater in between cannot be lost.
func (w *connWriter) retryFlush() {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return // close stopped this timer too late, or took it over for linger
	}
	if err := w.writeLocked(nil, false); !errors.Is(err, fanout.ErrSlow) {
		w.retry = nil
		return
	}
	w.backoff = min(2*w.backoff, time.Second)
	w.retry.Reset(w.backoff)
}

// pendingLen returns how many bytes wait for the socket.
func (w *connWriter) pendingLen() int {
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pending)
}

// writeNow writes what the socket takes without waiting: n < len(p) with a
// nil error means it is full.
func (w *connWriter) writeNow(p []byte) (n int, err error) {
	if w.raw == nil {
		_ = w.conn.SetWriteDeadline(time.Now().Add(fallbackTimeout))
		n, err = w.conn.Write(p)
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			err = nil
		}
	} else {
		n, err = rawWriteNow(w.raw, p)
	}
	if n > 0 && w.sent != nil {
		w.sent.Add(uint64(n))
	}
	return n, err
}

// closeLinger bounds how long a closed connection keeps writing what was
// pending when it was closed.
var closeLinger = 2 * time.Second

// close ends the connection: nothing new is accepted, last (a goaway, a
// close frame) goes after anything pending, and the socket is closed once
// they are written. It never waits: what the socket does not take at once
// is written by a timer as the peer reads, for at most closeLinger, then
// dropped. So a peer sent away in the middle of a batch (a drain, a
// rebalance) still gets the batch whole with its id:, and sees no tick
// twice when it resumes; one that does not read costs closeLinger more.
// It reports whether this call closed it.
func (w *connWriter) close(last []byte) bool {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return false
	}
	w.closed = true
	if w.retry != nil {
		w.retry.Stop()
		w.retry = nil
	}
	held := len(w.pending) // what the budget holds for this connection
	if held > 0 && len(last) > 0 {
		w.pending = append(w.pending, last...)
	} else if held == 0 {
		w.pending = last
	}
	if n, err := w.writeNow(w.pending); err == nil && n < len(w.pending) && held > 0 {
		// Keep the rest (a copy: last may be the caller's) for the timer.
		w.pending = append([]byte(nil), w.pending[n:]...)
		w.lingerEnd, w.backoff = time.Now().Add(closeLinger), 10*time.Millisecond
		w.held = held
		w.retry = time.AfterFunc(w.backoff, w.linger)
		return true
	}
	w.budget.give(held)
	w.pending = nil
	_ = w.conn.Close()
	return true
}

// linger writes what a closed connection still holds, then closes it.
func (w *connWriter) linger() {
	w.mu.Lock()
	defer w.mu.Unlock()
	n, err := w.writeNow(w.pending)
	if err == nil && n < len(w.pending) && time.Now().Before(w.lingerEnd) {
		w.pending = w.pending[n:]
		w.backoff = min(2*w.backoff, 250*time.Millisecond)
		w.retry.Reset(w.backoff)
		return
	}
	w.budget.give(w.held)
	w.pending, w.held, w.retry = nil, 0, nil
	_ = w.conn.Close()
}

// peerGone peeks at the socket without blocking: EOF or an error means the
// peer closed it. Bytes waiting (a pipelined request) mean it is alive.
func (w *connWriter) peerGone() bool {
	if w.raw == nil {
		return false
	}
	return rawPeerGone(w.raw)
}

// byteBudget bounds the bytes every connection of a node keeps pending
// together. A nil budget bounds nothing.
type byteBudget struct {
	limit int64
	used  atomic.Int64
}

// take reserves n bytes; it reports false (and reserves nothing) past the
// limit.
func (b *byteBudget) take(n int) bool {
	if b == nil {
		return true
	}
	if b.used.Add(int64(n)) > b.limit {
		b.used.Add(-int64(n))
		return false
	}
	return true
}

// give returns n bytes.
func (b *byteBudget) give(n int) {
	if b != nil && n > 0 {
		b.used.Add(-int64(n))
	}
}

// Used returns the bytes reserved now.
func (b *byteBudget) Used() int64 {
	if b == nil {
		return 0
	}
	return b.used.Load()
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

// sendWait writes p after anything pending and waits, up to stall without
// the peer taking a byte, until the socket has taken all of it. It is for
// a connection's own goroutine before the hub writes to it (a raw
// resume's replay), never for a hub writer: the lock is held only across
// non-blocking writes, so Close and other writes go on meanwhile. Past
// stall it returns fanout.ErrSlowConsumer.
func (w *connWriter) sendWait(p []byte, stall time.Duration) error {
	err := w.send(p)
	if !errors.Is(err, fanout.ErrSlow) {
		return err
	}
	left, since := w.pendingLen(), time.Now()
	for pause := time.Millisecond; ; pause = min(2*pause, 20*time.Millisecond) {
		time.Sleep(pause)
		w.mu.Lock()
		err := w.writeLocked(nil, false)
		n := len(w.pending)
		w.mu.Unlock()
		switch {
		case err == nil:
			return nil
		case !errors.Is(err, fanout.ErrSlow):
			return err
		case n < left:
			left, since = n, time.Now()
		case time.Since(since) > stall:
			return fanout.ErrSlowConsumer
		}
	}
}
