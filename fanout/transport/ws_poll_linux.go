//go:build linux

package transport

import (
	"sync"
	"syscall"
	"time"

	"github.com/tickstream/tickstream/internal/sysio"
)

// wsPoller reads every WebSocket of a node from one goroutine: an epoll
// loop. A socket is registered one-shot, so each readiness is reported
// once; the poller reads what the socket holds into its one buffer, the
// session parses the whole frames in it (ws_frame.go) and keeps only the
// bytes of an incomplete frame; then the socket is registered again, or,
// when a data message needs handling, by the worker once it is done. The
// socket is never read by two at once, and the messages of one socket are
// handled in order. Go's own netpoller still holds the socket (the writer
// uses it); it wakes nobody, as no goroutine waits on it.
//
// The Server owns the poller: started with the first WebSocket, stopped by
// Shutdown, which closes the sockets still registered.
type wsPoller struct {
	once     sync.Once
	mu       sync.RWMutex // the fields below; held (read) around epoll_ctl, so stop closes epfd after the last
	ok       bool         // started
	stopped  bool
	epfd     int
	wake     [2]int // a pipe: writing to it wakes the loop to stop
	sessions map[uint64]*wsSession
	nextID   uint64
	done     chan struct{} // closed when the loop returns

	buf []byte // the loop's read buffer
}

// wsReadBuffer is the poller's one read buffer: what one read of a socket
// takes at most before the poller turns to the next one.
const wsReadBuffer = 16 << 10

// ready starts the poller if it is not running yet and reports whether it
// runs (false once stopped, or if the system refused it: sessions then
// take the fallback).
func (p *wsPoller) ready() bool {
	p.once.Do(p.start)
	p.mu.RLock()
	defer p.mu.RUnlock()
	return p.ok && !p.stopped
}

func (p *wsPoller) start() {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return
	}
	var wake [2]int
	if err := syscall.Pipe2(wake[:], syscall.O_NONBLOCK|syscall.O_CLOEXEC); err != nil {
		_ = syscall.Close(epfd)
		return
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN} // key 0: the wake pipe
	if err := syscall.EpollCtl(epfd, syscall.EPOLL_CTL_ADD, wake[0], &ev); err != nil {
		_ = syscall.Close(epfd)
		_ = syscall.Close(wake[0])
		_ = syscall.Close(wake[1])
		return
	}
	p.mu.Lock()
	p.ok, p.epfd, p.wake = true, epfd, wake
	p.sessions = make(map[uint64]*wsSession)
	p.nextID = 1
	p.done = make(chan struct{})
	p.buf = make([]byte, wsReadBuffer)
	p.mu.Unlock()
	go p.loop()
}

// stop ends the loop and closes the sockets still registered (those with
// a subscriber were closed by the hub's drain before, in a node's order of
// shutdown); a session being handed over meanwhile is refused. Safe to
// call twice, and without a start.
func (p *wsPoller) stop() {
	p.once.Do(func() {}) // never started: never will be
	p.mu.Lock()
	if !p.ok || p.stopped {
		p.mu.Unlock()
		return
	}
	p.stopped = true
	p.mu.Unlock()
	_, _ = syscall.Write(p.wake[1], []byte{1})
	<-p.done
	_ = syscall.Close(p.epfd)
	_ = syscall.Close(p.wake[0])
	_ = syscall.Close(p.wake[1])
	p.mu.Lock()
	left := make([]*wsSession, 0, len(p.sessions))
	for _, sess := range p.sessions {
		left = append(left, sess)
	}
	p.mu.Unlock()
	for _, sess := range left {
		sess.closeWith(ctlShutdown)
		sess.finish()
	}
}

// attach registers sess (not yet armed: see arm). It reports false once
// the poller is stopped.
func (p *wsPoller) attach(sess *wsSession) bool {
	p.mu.Lock()
	defer p.mu.Unlock()
	if !p.ok || p.stopped {
		return false
	}
	if sess.done.Load() {
		return true // finished already: nothing to read
	}
	sess.id = p.nextID
	p.nextID++
	p.sessions[sess.id] = sess
	return true
}

// detach forgets sess. Its socket, closed, has left the epoll set itself.
func (p *wsPoller) detach(sess *wsSession) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.sessions != nil {
		delete(p.sessions, sess.id)
	}
}

// arm has the loop report sess's socket once when it is readable (or
// closed). The caller holds sess.rmu. The descriptor is used only inside
// the socket's RawConn.Control, so a socket closed meanwhile is never
// mistaken for another one that reuses its number. A socket that cannot
// be armed (closed, or the system refused) ends its session.
func (p *wsPoller) arm(sess *wsSession) {
	if sess.id == 0 || sess.done.Load() {
		return // never registered, or finished
	}
	op := syscall.EPOLL_CTL_MOD
	if !sess.added {
		op = syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{
		Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT,
		Fd:     int32(uint32(sess.id)),
		Pad:    int32(uint32(sess.id >> 32)),
	}
	var cerr error = syscall.EBADF
	p.mu.RLock()
	if !p.stopped {
		if err := sess.w.raw.Control(func(fd uintptr) {
			cerr = syscall.EpollCtl(p.epfd, op, int(fd), &ev)
		}); err != nil {
			cerr = err
		}
	}
	p.mu.RUnlock()
	if cerr != nil {
		go sess.finish() // the caller holds rmu; finish does not need it, but may take time
		return
	}
	sess.added = true
}

func (p *wsPoller) loop() {
	defer close(p.done)
	events := make([]syscall.EpollEvent, 256)
	for {
		n, err := syscall.EpollWait(p.epfd, events, -1)
		if err != nil {
			if err == syscall.EINTR {
				continue
			}
			return // EBADF and the like: a bug, not a condition to wait out
		}
		for i := range events[:n] {
			id := uint64(uint32(events[i].Fd)) | uint64(uint32(events[i].Pad))<<32
			if id == 0 {
				p.mu.RLock()
				stopped := p.stopped
				p.mu.RUnlock()
				if stopped {
					return
				}
				continue
			}
			p.mu.RLock()
			sess := p.sessions[id]
			p.mu.RUnlock()
			if sess != nil {
				p.readable(sess)
			}
		}
	}
}

// readable reads sess's socket once and acts on the whole frames read.
func (p *wsPoller) readable(sess *wsSession) {
	sess.rmu.Lock()
	if sess.busy {
		sess.rmu.Unlock()
		return
	}
	n, err := rawRead(sess.w.raw, p.buf)
	switch {
	case err == syscall.EAGAIN:
		p.arm(sess)
		sess.rmu.Unlock()
		return
	case n == 0: // EOF, or an error (reset, TCP_USER_TIMEOUT)
		sess.rmu.Unlock()
		sess.finish()
		return
	}
	sess.lastRead.Store(time.Now().UnixNano())
	data := p.buf[:n]
	if sess.rd.kept != nil {
		sess.rd.kept = append(sess.rd.kept, data...)
		data = sess.rd.kept
	}
	msg, rest, ok := sess.consume(data)
	if !ok {
		sess.rmu.Unlock()
		sess.finish()
		return
	}
	sess.rd.keep(rest)
	if msg == nil {
		p.arm(sess)
		sess.rmu.Unlock()
		return
	}
	sess.busy = true
	sess.rmu.Unlock()
	go sess.work(msg)
}

// rawRead reads what the socket holds now, up to len(p), without waiting:
// EAGAIN when it holds nothing, n = 0 with a nil error at EOF.
func rawRead(rc syscall.RawConn, p []byte) (int, error) {
	var n int
	var rerr error
	err := rc.Read(func(fd uintptr) bool {
		for {
			n, rerr = sysio.Read(int(fd), p)
			if rerr != syscall.EINTR {
				return true // never wait
			}
		}
	})
	if err != nil {
		return 0, err
	}
	if n < 0 {
		n = 0
	}
	if rerr == syscall.EAGAIN {
		return 0, rerr
	}
	return n, rerr
}
