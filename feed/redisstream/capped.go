package redisstream

import (
	"bytes"
	"context"
	"net"
	"syscall"

	"github.com/redis/go-redis/v9"
)

// maxReplyString is the longest string of a Redis reply a node's go-redis
// connections hand to go-redis: far above anything the feed stores (a
// batch entry's field is at most maxBatchBytes, a latest value at most
// MaxEntryBytes), far below what Redis accepts (512 MB a value). A longer
// one — only a forged entry or value has one — is thrown away as it arrives
// and read as tooLarge, which every decoder refuses: a node never holds
// hundreds of megabytes because one key in Redis was poisoned (the reader's
// snapshot, its history checks, replay, the charts' read-back and the
// cluster reader all read through go-redis).
const maxReplyString = 4 * maxBatchBytes

// unreadErr refuses a value that was left unread (replaced by tooLarge:
// longer than any entry can be); what names it.
func unreadErr(what string) error {
	return refuse(ReasonTooLarge, "%s longer than any entry can be (left unread)", what)
}

// cappedDialer wraps dial: its connections cap the strings of replies.
func cappedDialer(dial func(context.Context, string, string) (net.Conn, error)) func(context.Context, string, string) (net.Conn, error) {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		cc := &cappedConn{Conn: c, f: respFilter{max: maxReplyString}}
		if sc, ok := c.(syscall.Conn); ok {
			// go-redis's pool checks an idle connection with a MSG_PEEK
			// through syscall.Conn (connCheck): keep it visible.
			return &cappedSysConn{cc, sc}, nil
		}
		return cc, nil
	}
}

// cappedSysConn is a cappedConn over a socket, exposing it for go-redis's
// health check of idle connections.
type cappedSysConn struct {
	*cappedConn
	sc syscall.Conn
}

// SyscallConn returns the socket's raw connection.
func (c *cappedSysConn) SyscallConn() (syscall.RawConn, error) { return c.sc.SyscallConn() }

// capOptions makes opt's connections cap reply strings.
func capOptions(opt *redis.Options) {
	dial := opt.Dialer
	if dial == nil {
		dial = redis.NewDialer(opt)
	}
	opt.Dialer = cappedDialer(dial)
}

// capClusterOptions makes the connections to every member of a cluster cap
// reply strings.
func capClusterOptions(opt *redis.ClusterOptions) {
	dial := opt.Dialer
	if dial == nil {
		// Read at dial time: NewClusterClient fills the defaults in.
		dial = func(ctx context.Context, network, addr string) (net.Conn, error) {
			return redis.NewDialer(&redis.Options{TLSConfig: opt.TLSConfig, DialTimeout: opt.DialTimeout})(ctx, network, addr)
		}
	}
	opt.Dialer = cappedDialer(dial)
}

// cappedConn is a connection to Redis whose replies pass through a
// respFilter.
type cappedConn struct {
	net.Conn
	f    respFilter
	in   []byte // bytes read, before filtering
	pend []byte // filtered bytes, returned from off
	off  int
}

// Read returns the filtered reply bytes.
func (c *cappedConn) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil // as a net.Conn does; the loop below would wait for bytes it cannot hand over
	}
	for len(c.pend) == 0 {
		c.off = 0
		if cap(c.in) < len(p) {
			c.in = make([]byte, len(p))
		}
		n, err := c.Conn.Read(c.in[:len(p)])
		c.pend = c.f.filter(c.pend[:0], c.in[:n])
		if len(c.pend) == 0 && err != nil {
			return 0, err
		}
	}
	n := copy(p, c.pend[c.off:])
	c.off += n
	if c.off == len(c.pend) {
		c.pend, c.off = c.pend[:0], 0
	}
	return n, nil
}

// innerConn returns the connection a cappedConn wraps (the reader's own
// connection has its own cap, and reads the socket with raw system
// calls), or c.
func innerConn(c net.Conn) net.Conn {
	switch cc := c.(type) {
	case *cappedConn:
		return cc.Conn
	case *cappedSysConn:
		return cc.Conn
	}
	return c
}

// respFilter passes a stream of RESP2/RESP3 replies through, except that a
// bulk or verbatim string longer than max is replaced by the bulk string
// tooLarge and its body skipped. It keeps no more than one header line
// (at most maxHeader bytes) across calls.
type respFilter struct {
	max  int
	hdr  []byte // a header line begun, held back until its end
	skip int    // body bytes (with CRLF) still to drop
	body int    // body bytes (with CRLF) still to pass
	line bool   // inside a line that passes as it is (simple string, error, number)
}

// maxHeader bounds a header line ("$" and up to 20 digits and CRLF); a
// longer one is not a header: it passes as it is (go-redis then refuses the
// reply).
const maxHeader = 24

// filter appends what in becomes to dst.
func (f *respFilter) filter(dst, in []byte) []byte {
	for len(in) > 0 {
		switch {
		case f.skip > 0:
			k := min(f.skip, len(in))
			f.skip -= k
			in = in[k:]
			if f.skip == 0 {
				// The marker goes out once the body is read: go-redis
				// never sees a reply end while its bytes still arrive.
				dst = appendBulk(dst, tooLarge)
			}
		case f.body > 0:
			k := min(f.body, len(in))
			dst = append(dst, in[:k]...)
			f.body -= k
			in = in[k:]
		case f.line:
			i := indexNL(in)
			if i < 0 {
				dst = append(dst, in...)
				in = nil
				continue
			}
			dst = append(dst, in[:i+1]...)
			in = in[i+1:]
			f.line = false
		case len(f.hdr) > 0 || isCounted(in[0]):
			i := indexNL(in)
			if i < 0 {
				if len(f.hdr)+len(in) > maxHeader {
					dst = append(append(dst, f.hdr...), in...)
					f.hdr, f.line, in = f.hdr[:0], true, nil
					continue
				}
				f.hdr = append(f.hdr, in...)
				in = nil
				continue
			}
			f.hdr = append(f.hdr, in[:i+1]...)
			in = in[i+1:]
			dst = f.header(dst)
			f.hdr = f.hdr[:0]
		default:
			f.line = true
		}
	}
	return dst
}

// header handles a whole header line in f.hdr.
func (f *respFilter) header(dst []byte) []byte {
	h := f.hdr
	n, ok := -1, len(h) >= 4 && h[len(h)-2] == '\r'
	if ok {
		n, ok = respInt(h[1 : len(h)-2])
	}
	switch typ := h[0]; {
	case !ok || n < 0 || (typ != '$' && typ != '=' && typ != '!'):
		return append(dst, h...) // an aggregate, a null, or not RESP: as it is
	case n > f.max && typ != '!':
		f.skip = n + 2
		return dst
	default:
		f.body = n + 2
		return append(dst, h...)
	}
}

// isCounted reports whether a value of type typ starts with a header
// holding a length or a count.
func isCounted(typ byte) bool {
	switch typ {
	case '$', '=', '!', '*', '%', '~', '>', '|':
		return true
	}
	return false
}

func indexNL(b []byte) int { return bytes.IndexByte(b, '\n') }
