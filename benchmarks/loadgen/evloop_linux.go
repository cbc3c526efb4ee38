//go:build linux

package loadgen

import (
	"bytes"
	"container/heap"
	"context"
	crand "crypto/rand"
	"encoding/base64"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"strconv"
	"syscall"
	"time"
)

type evState uint8

const (
	evConnecting evState = iota
	evHead
	evBody
)

type evConn struct {
	sub   *EvSub
	fd    int
	state evState
	ready bool // had its ready event on this connection or an earlier one

	chunked   bool
	chunkLeft int    // bytes left in the current chunk
	carry     []byte // a line split across reads (head, chunk size or SSE)
	sizeCarry []byte // a chunk-size line split across reads
	sse       sseEvents
	msg       []byte // a fragmented WebSocket message
	out       []byte // to write: the request, a subscribe message, pongs
}

// epoll is the state of a running EvLoop.
type epoll struct {
	*EvLoop
	epfd  int
	conns map[int]*evConn
	buf   []byte
}

// Run opens every subscription (Rate a second), keeps them connected and
// reads them until ctx is done.
func (e *EvLoop) Run(ctx context.Context, subs []*EvSub) error {
	return (&epoll{EvLoop: e}).run(ctx, subs)
}

func (l *epoll) run(ctx context.Context, subs []*EvSub) error {
	epfd, err := syscall.EpollCreate1(syscall.EPOLL_CLOEXEC)
	if err != nil {
		return fmt.Errorf("epoll_create: %w", err)
	}
	l.epfd = epfd
	l.conns = make(map[int]*evConn, len(subs))
	l.buf = make([]byte, 256<<10)
	defer func() {
		for fd := range l.conns {
			_ = syscall.Close(fd)
		}
		_ = syscall.Close(epfd)
	}()
	var retries retryHeap
	rng := rand.New(rand.NewPCG(uint64(len(subs)), 7))
	fail := func(c *evConn, err error) {
		_ = syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_DEL, c.fd, nil)
		_ = syscall.Close(c.fd)
		delete(l.conns, c.fd)
		c.sub.Track.Flush()
		c.sub.failed(err, c.ready)
		heap.Push(&retries, retry{time.Now().Add(time.Duration(200+rng.IntN(800)) * time.Millisecond), c.sub})
	}
	events := make([]syscall.EpollEvent, 512)
	next := 0
	start := time.Now()
	for ctx.Err() == nil {
		now := time.Now()
		// Open what the rate allows by now, then due reconnects.
		due := len(subs)
		if l.Rate > 0 {
			due = min(due, int(now.Sub(start).Seconds()*float64(l.Rate))+1)
		}
		for ; next < due; next++ {
			if err := l.open(subs[next], false); err != nil {
				subs[next].failed(err, false)
				heap.Push(&retries, retry{now.Add(time.Second), subs[next]})
			}
		}
		for len(retries) > 0 && !retries[0].at.After(now) {
			r := heap.Pop(&retries).(retry)
			if err := l.open(r.sub, true); err != nil {
				r.sub.failed(err, true)
				heap.Push(&retries, retry{now.Add(time.Second), r.sub})
			}
		}
		n, err := syscall.EpollWait(l.epfd, events, 10)
		if err != nil && err != syscall.EINTR {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		now = time.Now()
		for _, ev := range events[:max(n, 0)] {
			c := l.conns[int(ev.Fd)]
			if c == nil {
				continue
			}
			if err := l.handle(c, ev.Events, now); err != nil {
				fail(c, err)
			}
		}
		if n < len(events) && l.Batch > 0 {
			// Caught up: let data gather instead of being woken by every
			// write (a wake-up costs the writing node more than the read).
			time.Sleep(l.Batch)
		}
	}
	return nil
}

// retry is a reconnection due at a time; retryHeap orders them.
type retry struct {
	at  time.Time
	sub *EvSub
}

type retryHeap []retry

func (h retryHeap) Len() int           { return len(h) }
func (h retryHeap) Less(i, j int) bool { return h[i].at.Before(h[j].at) }
func (h retryHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *retryHeap) Push(x any)        { *h = append(*h, x.(retry)) }
func (h *retryHeap) Pop() any {
	old := *h
	r := old[len(old)-1]
	*h = old[:len(old)-1]
	return r
}

// open starts a non-blocking connect; the request goes out once the
// socket is writable.
func (l *epoll) open(s *EvSub, wasReady bool) error {
	if wasReady && s.Pick != nil {
		if a := s.Pick(); a.IsValid() {
			s.Addr = a
		}
	}
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return fmt.Errorf("socket: %w", err)
	}
	if s.Source.Is4() {
		// Bind the address only: the port is chosen at connect time, by
		// the whole 4-tuple (IP_BIND_ADDRESS_NO_PORT).
		_ = syscall.SetsockoptInt(fd, syscall.IPPROTO_IP, 24 /* IP_BIND_ADDRESS_NO_PORT */, 1)
		if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: s.Source.As4()}); err != nil {
			_ = syscall.Close(fd)
			return fmt.Errorf("bind %s: %w", s.Source, err)
		}
	}
	sa := &syscall.SockaddrInet4{Port: int(s.Addr.Port()), Addr: s.Addr.Addr().As4()}
	if err := syscall.Connect(fd, sa); err != nil && err != syscall.EINPROGRESS {
		_ = syscall.Close(fd)
		return fmt.Errorf("connect %s: %w", s.Addr, err)
	}
	c := &evConn{sub: s, fd: fd, ready: wasReady}
	ev := syscall.EpollEvent{Events: syscall.EPOLLOUT | syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(fd)}
	if err := syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_ADD, fd, &ev); err != nil {
		_ = syscall.Close(fd)
		return fmt.Errorf("epoll_ctl: %w", err)
	}
	l.conns[fd] = c
	return nil
}

var errClosed = errors.New("EOF")

// handle serves one epoll event of c.
func (l *epoll) handle(c *evConn, events uint32, now time.Time) error {
	if c.state == evConnecting {
		if events&(syscall.EPOLLOUT|syscall.EPOLLERR|syscall.EPOLLHUP) == 0 {
			return nil
		}
		if e, err := syscall.GetsockoptInt(c.fd, syscall.SOL_SOCKET, syscall.SO_ERROR); err != nil || e != 0 {
			if err == nil {
				err = syscall.Errno(e)
			}
			return fmt.Errorf("connect %s: %w", c.sub.Addr, err)
		}
		req := "GET " + c.sub.Path + " HTTP/1.1\r\nHost: " + c.sub.Addr.String() + "\r\nAccept: text/event-stream\r\n\r\n"
		if c.sub.WS {
			var key [16]byte
			_, _ = crand.Read(key[:])
			req = "GET " + c.sub.Path + " HTTP/1.1\r\nHost: " + c.sub.Addr.String() + "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
				"Sec-WebSocket-Key: " + base64.StdEncoding.EncodeToString(key[:]) + "\r\nSec-WebSocket-Version: 13\r\n\r\n"
		}
		c.out = append(c.out[:0], req...)
		if err := l.flushOut(c); err != nil {
			return fmt.Errorf("write request: %w", err)
		}
		c.state = evHead
		ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP, Fd: int32(c.fd)}
		return syscall.EpollCtl(l.epfd, syscall.EPOLL_CTL_MOD, c.fd, &ev)
	}
	n, err := syscall.Read(c.fd, l.buf)
	switch {
	case err == syscall.EAGAIN || err == syscall.EINTR:
		return nil
	case err != nil:
		return fmt.Errorf("read: %w", err)
	case n == 0:
		return errClosed
	}
	l.Stats.Bytes.Add(uint64(n))
	err = c.feed(l.buf[:n], now)
	c.sub.Track.Flush() // one read is one batch
	if err == nil && len(c.out) > 0 {
		err = l.flushOut(c)
	}
	return err
}

// flushOut writes what c has to say (a request, a subscribe message, a
// pong): a few hundred bytes, which an established socket always takes.
func (l *epoll) flushOut(c *evConn) error {
	n, err := syscall.Write(c.fd, c.out)
	if err != nil || n != len(c.out) {
		return fmt.Errorf("write: %v (%d of %d bytes)", err, n, len(c.out))
	}
	l.Stats.Bytes.Add(uint64(n))
	c.out = c.out[:0]
	return nil
}

// feed consumes bytes read from the socket.
func (c *evConn) feed(p []byte, now time.Time) error {
	if c.state == evHead {
		c.carry = append(c.carry, p...)
		i := bytes.Index(c.carry, []byte("\r\n\r\n"))
		if i < 0 {
			if len(c.carry) > 16<<10 {
				return errors.New("response head over 16 KiB")
			}
			return nil
		}
		head := c.carry[:i]
		status, _, _ := bytes.Cut(head, []byte("\r\n"))
		want := []byte(" 200 ")
		if c.sub.WS {
			want = []byte(" 101 ")
		}
		if !bytes.Contains(status, want) {
			return fmt.Errorf("status %q", status)
		}
		c.chunked = bytes.Contains(bytes.ToLower(head), []byte("\r\ntransfer-encoding: chunked"))
		rest := append([]byte(nil), c.carry[i+4:]...)
		c.carry = c.carry[:0:0]
		c.state = evBody
		p = rest
		if c.sub.WS {
			sub := map[string]any{"op": "subscribe", "symbols": c.sub.WSSymbols}
			if c.sub.WSInterval != "" {
				sub["interval"] = c.sub.WSInterval
			}
			js, _ := json.Marshal(sub)
			c.out = appendClientFrame(c.out, wsText, js)
		}
	}
	if c.sub.WS {
		return c.frames(p, now)
	}
	for len(p) > 0 {
		if !c.chunked {
			return c.lines(p, now)
		}
		if c.chunkLeft == 0 {
			i := bytes.IndexByte(p, '\n')
			if i < 0 {
				c.sizeCarry = append(c.sizeCarry, p...)
				return nil
			}
			line := p[:i]
			if len(c.sizeCarry) > 0 {
				line = append(c.sizeCarry, line...)
				c.sizeCarry = c.sizeCarry[:0]
			}
			p = p[i+1:]
			line = bytes.TrimSpace(line)
			if len(line) == 0 {
				continue // the CRLF after a chunk
			}
			size, err := strconv.ParseUint(string(line), 16, 32)
			if err != nil {
				return fmt.Errorf("chunk size %q", line)
			}
			if size == 0 {
				return errClosed
			}
			c.chunkLeft = int(size)
			continue
		}
		k := min(len(p), c.chunkLeft)
		if err := c.lines(p[:k], now); err != nil {
			return err
		}
		c.chunkLeft -= k
		p = p[k:]
	}
	return nil
}

// lines splits SSE body bytes into lines and handles each.
func (c *evConn) lines(q []byte, now time.Time) error {
	for len(q) > 0 {
		i := bytes.IndexByte(q, '\n')
		if i < 0 {
			if len(c.carry)+len(q) > 1<<20 {
				return errors.New("SSE line over 1 MiB")
			}
			c.carry = append(c.carry, q...)
			return nil
		}
		line := q[:i]
		if len(c.carry) > 0 {
			line = append(c.carry, line...)
		}
		q = q[i+1:]
		c.line(line, now)
		c.carry = c.carry[:0]
		if cap(c.carry) > 4096 {
			c.carry = nil
		}
	}
	return nil
}

func (c *evConn) line(line []byte, now time.Time) {
	if c.sse.line(line, now, c.sub.Track) {
		c.becameReady()
	}
}

// becameReady records the ready event (or message) and tells the caller.
func (c *evConn) becameReady() {
	c.ready = true
	if c.sub.Ready != nil {
		c.sub.Ready()
	}
}

// WebSocket opcodes (RFC 6455).
const (
	wsCont   = 0x0
	wsText   = 0x1
	wsBinary = 0x2
	wsClose  = 0x8
	wsPing   = 0x9
	wsPong   = 0xA
)

// frames consumes WebSocket bytes: whole frames are handled in place, a
// partial one is kept for the next read.
func (c *evConn) frames(p []byte, now time.Time) error {
	data := p
	if len(c.carry) > 0 {
		c.carry = append(c.carry, p...)
		data = c.carry
	}
	for {
		h, n, ok := frameHead(data)
		if !ok {
			break // a partial frame: wait for the rest
		}
		if data[1]&0x80 != 0 {
			return errors.New("websocket: masked frame from the server")
		}
		if n > 1<<20 {
			return fmt.Errorf("websocket: frame of %d bytes", n)
		}
		if uint64(len(data)-h) < n {
			break
		}
		fin, op := data[0]&0x80 != 0, data[0]&0x0f
		payload := data[h : h+int(n)]
		data = data[h+int(n):]
		switch op {
		case wsText, wsBinary:
			if !fin {
				c.msg = append(c.msg[:0], payload...)
				continue
			}
			if err := c.message(payload, now); err != nil {
				return err
			}
		case wsCont:
			c.msg = append(c.msg, payload...)
			if fin {
				if err := c.message(c.msg, now); err != nil {
					return err
				}
				c.msg = c.msg[:0]
			}
		case wsPing:
			c.out = appendClientFrame(c.out, wsPong, payload)
		case wsClose:
			code := 1005
			if len(payload) >= 2 {
				code = int(binary.BigEndian.Uint16(payload))
			}
			return fmt.Errorf("websocket: closed by the node: %d %s", code, payload[min(2, len(payload)):])
		}
	}
	// Keep the partial frame (copy handles data overlapping carry).
	if len(data) == 0 {
		c.carry = c.carry[:0]
	} else if len(c.carry) > 0 {
		c.carry = c.carry[:copy(c.carry, data)]
	} else {
		c.carry = append(c.carry, data...)
	}
	if cap(c.carry) > 64<<10 && len(c.carry) < 4096 {
		c.carry = append([]byte(nil), c.carry...)
	}
	return nil
}

// frameHead reads a frame header: its length h and the payload length n;
// ok is false until the whole header is in data.
func frameHead(data []byte) (h int, n uint64, ok bool) {
	if len(data) < 2 {
		return 0, 0, false
	}
	switch n = uint64(data[1] & 0x7f); n {
	case 126:
		if len(data) < 4 {
			return 0, 0, false
		}
		return 4, uint64(binary.BigEndian.Uint16(data[2:])), true
	case 127:
		if len(data) < 10 {
			return 0, 0, false
		}
		return 10, binary.BigEndian.Uint64(data[2:]), true
	}
	return 2, n, true
}

// message handles one WebSocket message from the node.
func (c *evConn) message(m []byte, now time.Time) error {
	ready, err := wsMessage(m, now, c.sub.Track)
	if ready {
		c.becameReady()
	}
	return err
}

// appendClientFrame appends a masked frame (clients must mask, RFC 6455).
func appendClientFrame(dst []byte, op byte, payload []byte) []byte {
	dst = append(dst, 0x80|op)
	switch n := len(payload); {
	case n < 126:
		dst = append(dst, 0x80|byte(n))
	case n <= 0xffff:
		dst = append(dst, 0x80|126, byte(n>>8), byte(n))
	default:
		dst = append(dst, 0x80|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(n))
	}
	var mask [4]byte
	_, _ = crand.Read(mask[:])
	dst = append(dst, mask[:]...)
	for i, b := range payload {
		dst = append(dst, b^mask[i&3])
	}
	return dst
}
