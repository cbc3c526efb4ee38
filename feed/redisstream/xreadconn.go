package redisstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
)

// xreadConn is the reader's own connection to a single Redis, for its
// blocking XREAD only: the command is written from a reused buffer and the
// reply read into another, in as few reads as the socket allows, then
// walked in place (parseXRead). Through go-redis each read cost a pool
// round, hooks, deadlines, a line-by-line copy of the reply and a small
// allocation per field; that was a third of a node's feed CPU once entries
// were no longer decoded into maps. It speaks RESP2 and dials as the
// client's options say (go-redis's dialer: TCP, unix socket or TLS; AUTH
// with the options' credentials; SELECT the database). Every other command
// of the reader still goes through go-redis.
type xreadConn struct {
	opt      *redis.Options
	conn     net.Conn
	raw      *rawIO    // conn's raw I/O, or nil (rawio_linux.go)
	deadline time.Time // conn's deadline, as last set
	reply    []byte
	dialed   func() // called after each new connection
	// detached: the socket is taken off Go's network poller (detach), for
	// a connection whose replies are read well after they arrive.
	detached bool
}

// newXReadConn returns an own connection for rdb, or nil when rdb is not a
// single-server client whose credentials it can use (the reader then reads
// through go-redis).
func newXReadConn(rdb redis.UniversalClient, dialed func()) *xreadConn {
	c, ok := rdb.(*redis.Client)
	if !ok {
		return nil
	}
	opt := c.Options()
	if opt.Dialer == nil || opt.StreamingCredentialsProvider != nil || opt.OnConnect != nil {
		return nil
	}
	return &xreadConn{opt: opt, dialed: dialed}
}

// close closes the connection, if open.
func (c *xreadConn) close() {
	if c.conn != nil {
		_ = c.conn.Close()
		c.conn, c.raw, c.deadline = nil, nil, time.Time{}
	}
}

// dial opens the connection and authenticates.
func (c *xreadConn) dial(ctx context.Context) error {
	dctx, cancel := context.WithTimeout(ctx, max(c.opt.DialTimeout, time.Second))
	defer cancel()
	conn, err := c.opt.Dialer(dctx, c.opt.Network, c.opt.Addr)
	if err != nil {
		return fmt.Errorf("dial %s: %w", c.opt.Addr, err)
	}
	conn = innerConn(conn) // its replies are capped here (dropBig), reading the socket itself
	if c.detached {
		conn = detach(conn)
	}
	c.conn, c.raw = conn, newRawIO(conn)
	user, pass := c.opt.Username, c.opt.Password
	switch {
	case c.opt.CredentialsProviderContext != nil:
		if user, pass, err = c.opt.CredentialsProviderContext(dctx); err != nil {
			c.close()
			return fmt.Errorf("credentials: %w", err)
		}
	case c.opt.CredentialsProvider != nil:
		user, pass = c.opt.CredentialsProvider()
	}
	var hello [][]string
	if pass != "" {
		if user != "" && user != "default" {
			hello = append(hello, []string{"AUTH", user, pass})
		} else {
			hello = append(hello, []string{"AUTH", pass})
		}
	}
	if c.opt.DB != 0 {
		hello = append(hello, []string{"SELECT", strconv.Itoa(c.opt.DB)})
	}
	for _, cmd := range hello {
		err := c.roundTrip(dctx, appendCommand(nil, cmd...), 5*time.Second, func(b []byte) error {
			if err := wholeReply(b); err != nil {
				return err
			}
			if !bytes.HasPrefix(b, []byte("+OK")) {
				return fmt.Errorf("redis: %s", bytes.TrimSpace(b))
			}
			return nil
		})
		if err != nil {
			c.close()
			return fmt.Errorf("%s: %w", cmd[0], err)
		}
	}
	if c.dialed != nil {
		c.dialed()
	}
	return nil
}

// do sends cmd (a whole RESP command) and hands the reply to parse, which
// returns errTruncated while the reply is not whole yet. The reply is
// valid until the next call. do waits at most wait for the reply; ctx
// cancels it. Any error closes the connection (the next call dials again:
// after an error reply the connection would do, but a reply that could
// not be read leaves it out of step).
func (c *xreadConn) do(ctx context.Context, cmd []byte, wait time.Duration, parse func([]byte) error) error {
	if c.conn == nil {
		if err := c.dial(ctx); err != nil {
			return err
		}
	}
	err := c.roundTrip(ctx, cmd, wait, parse)
	if err != nil || ctx.Err() != nil {
		// A ctx done during the call may still set a past deadline on the
		// connection after it returned (and the deadline is cached): not
		// reused.
		c.close()
	}
	if err != nil && ctx.Err() != nil {
		return ctx.Err()
	}
	return err
}

// wholeReply is a parser that only waits for a whole reply.
func wholeReply(b []byte) error {
	var sk replySkipper
	end, err := sk.scan(b)
	switch {
	case err != nil:
		return err
	case end == 0:
		return errTruncated
	case end != len(b):
		return fmt.Errorf("%w: %d bytes after the reply", errRESP, len(b)-end)
	}
	return nil
}

// roundTrip writes cmd and reads until parse takes the reply. The first
// read usually holds all of it and is parsed at once; otherwise the reads
// that follow are only scanned for the reply's end (replySkipper, which
// resumes where it stopped), and the whole is parsed once.
func (c *xreadConn) roundTrip(ctx context.Context, cmd []byte, wait time.Duration, parse func([]byte) error) error {
	conn := c.conn // the callback may run after a close clears c.conn
	stop := context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
	defer stop()
	if err := c.keepDeadline(wait); err != nil {
		return err
	}
	if _, err := c.write(cmd); err != nil {
		return err
	}
	return c.readReply(parse)
}

// keepDeadline makes the connection's deadline at most wait away and at
// least half of it. A deadline is a runtime timer: it is moved only when
// less than half of wait is left, not on every call.
func (c *xreadConn) keepDeadline(wait time.Duration) error {
	if now := time.Now(); c.deadline.Sub(now) < wait/2 || c.deadline.Sub(now) > wait {
		c.deadline = now.Add(wait)
		return c.conn.SetDeadline(c.deadline)
	}
	return nil
}

// readReply reads one reply until parse takes it (see roundTrip).
func (c *xreadConn) readReply(parse func([]byte) error) error {
	// Keep a large buffer only while replies are large (the reader's pace
	// keeps them near readBudget: below this).
	if cap(c.reply) == 0 || cap(c.reply) > maxKeptReply {
		c.reply = make([]byte, 0, 64<<10)
	}
	buf := c.reply[:0]
	sk := replySkipper{max: maxString}
	first := true
	for {
		if len(buf) == cap(buf) {
			buf = append(buf, 0)[:len(buf)]
		}
		n, rerr := c.read(buf[len(buf):cap(buf)])
		buf = buf[:len(buf)+n]
		c.reply = buf
		if n > 0 {
			if first {
				first = false
				err := parse(buf)
				if err == nil || !errors.Is(err, errTruncated) {
					return err
				}
			}
			end, err := sk.scan(buf)
			for err == nil && sk.big {
				// A string no entry can hold: never buffered (a forged
				// entry of hundreds of MB would be read whole otherwise).
				if buf, err = c.dropBig(&sk, buf); err == nil {
					c.reply = buf
					end, err = sk.scan(buf)
				}
			}
			if err != nil {
				return err
			}
			if end > 0 {
				if end != len(buf) {
					return fmt.Errorf("%w: %d bytes after the reply", errRESP, len(buf)-end)
				}
				return parse(buf)
			}
		}
		if rerr != nil {
			return rerr
		}
	}
}

// maxKeptReply is the largest reply buffer kept from one read to the next.
const maxKeptReply = 8 << 20

// maxString is the longest string of a reply that is buffered: a batch
// entry's field at its largest. A longer one (only a forged entry has one)
// is discarded as it arrives and stands as tooLarge in the reply.
const maxString = maxBatchBytes

// tooLarge replaces, in a reply, a string longer than maxString: the
// entry holding it is refused as too large.
var tooLarge = []byte("\x00tickstream: a string too large to read\x00")

// dropBig replaces the string the skipper stopped at (sk.big) with
// tooLarge, reading its body from the socket into a small scratch buffer
// and throwing it away; what follows it is kept.
func (c *xreadConn) dropBig(sk *replySkipper, buf []byte) ([]byte, error) {
	left := sk.bigLen + 2 // the body and its CRLF
	var tail []byte       // bytes after the body already read
	if have := len(buf) - sk.bigBody; have >= left {
		tail = append(tail, buf[sk.bigBody+left:]...)
		left = 0
	} else {
		left -= have
	}
	buf = appendBulk(buf[:sk.bigAt], tooLarge)
	sk.i, sk.owed, sk.big = len(buf), sk.owed-1, false
	var scratch [16 << 10]byte
	for left > 0 {
		n, err := c.read(scratch[:])
		if n > left {
			tail = append(tail, scratch[left:n]...)
			n = left
		}
		left -= n
		if err != nil && left > 0 {
			return buf, err
		}
	}
	return append(buf, tail...), nil
}

func (c *xreadConn) read(p []byte) (int, error) {
	if c.raw != nil {
		return c.raw.read(p)
	}
	return c.conn.Read(p)
}

func (c *xreadConn) write(p []byte) (int, error) {
	if c.raw != nil {
		return c.raw.write(p)
	}
	return c.conn.Write(p)
}

// replySkipper finds where one RESP reply ends, across reads: it jumps from
// header to header (over string bodies), counting the values still owed,
// and resumes where the bytes ran out.
type replySkipper struct {
	i     int // next header
	owed  int // values still to read, after the first header
	begun bool
	// max, when not 0, is the longest string scan goes over: at a longer
	// one it stops with big set, the string's header at bigAt, its body
	// (bigLen bytes, then CRLF) from bigBody.
	max                    int
	big                    bool
	bigAt, bigBody, bigLen int
}

// scan returns the end of the reply in b, or 0 if b does not hold all of it
// yet.
func (s *replySkipper) scan(b []byte) (int, error) {
	if !s.begun {
		s.owed, s.begun = 1, true
	}
	for s.owed > 0 {
		nl := bytes.IndexByte(b[s.i:], '\n')
		if nl < 0 {
			return 0, nil
		}
		line := b[s.i : s.i+nl+1]
		if len(line) < 3 || line[len(line)-2] != '\r' {
			return 0, fmt.Errorf("%w: line %.40q", errRESP, line)
		}
		typ, num := line[0], line[1:len(line)-2]
		next := s.i + len(line)
		owed := s.owed - 1
		switch typ {
		case '+', '-', ':', '_', ',', '#', '(':
		case '$', '=', '!':
			n, ok := respInt(num)
			if !ok {
				return 0, fmt.Errorf("%w: header %.40q", errRESP, line)
			}
			if s.max > 0 && n > s.max && typ == '$' {
				s.big, s.bigAt, s.bigBody, s.bigLen = true, s.i, next, n
				return 0, nil
			}
			if n >= 0 {
				next += n + 2
				if next > len(b) {
					return 0, nil
				}
			}
		case '*', '~', '>', '%', '|':
			n, ok := respInt(num)
			if !ok {
				return 0, fmt.Errorf("%w: header %.40q", errRESP, line)
			}
			if typ == '%' || typ == '|' {
				n *= 2
			}
			if typ == '|' {
				n++ // an attribute precedes the value it describes
			}
			if n > 0 {
				owed += n
			}
		default:
			return 0, fmt.Errorf("%w: header %.40q", errRESP, line)
		}
		s.i, s.owed = next, owed
	}
	return s.i, nil
}

// respInt parses a header's number (-1 for a null).
func respInt(b []byte) (int, bool) {
	if len(b) == 2 && b[0] == '-' && b[1] == '1' {
		return -1, true
	}
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	n := 0
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		n = n*10 + int(c-'0')
	}
	return n, true
}

// appendCommand appends args as a RESP command.
func appendCommand(dst []byte, args ...string) []byte {
	dst = append(dst, '*')
	dst = strconv.AppendInt(dst, int64(len(args)), 10)
	dst = append(dst, '\r', '\n')
	for _, a := range args {
		dst = appendBulk(dst, a)
	}
	return dst
}

// appendBulk appends one bulk string.
func appendBulk[T string | []byte](dst []byte, s T) []byte {
	dst = append(dst, '$')
	dst = strconv.AppendInt(dst, int64(len(s)), 10)
	dst = append(dst, '\r', '\n')
	dst = append(dst, s...)
	return append(dst, '\r', '\n')
}
