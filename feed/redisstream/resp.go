package redisstream

import (
	"bytes"
	"errors"
	"fmt"
	"math"
)

// The reader reads XREAD replies as raw RESP bytes (go-redis's
// RawWriteToCmd streams them into a reused buffer) and walks them here,
// keeping slices of the buffer: no map, string or interface value per
// entry, as go-redis's XStream decoding makes.

// entryView is one stream entry of a reply, its fields slices of the reply
// buffer (valid until the next read). A field the entry does not have is
// nil.
type entryView struct {
	shard      int
	id         streamID
	s, q, t, d []byte // a one-tick entry
	b          []byte // a batch entry
	// tooLarge: a field or value longer than any entry can hold was left
	// unread (xreadConn.dropBig).
	tooLarge bool
	// extra is the entry's first field outside its layout (setField):
	// unknown, or one it holds twice (twice); nil when there is none.
	extra []byte
	twice bool
}

// errRESP reports a reply that is not what XREAD answers.
var errRESP = errors.New("unexpected xread reply")

// errTruncated reports a reply that ends early (more is still to come from
// the socket).
var errTruncated = fmt.Errorf("%w: truncated", errRESP)

// respReader walks one RESP2 or RESP3 reply.
type respReader struct {
	b []byte
	i int
}

// header reads a type byte and the number after it up to CRLF (the line of
// an aggregate, a blob's length, or an integer).
func (p *respReader) header() (byte, int, error) {
	if p.i >= len(p.b) {
		return 0, 0, errTruncated
	}
	typ := p.b[p.i]
	nl := bytes.IndexByte(p.b[p.i:], '\n')
	if nl < 0 {
		return 0, 0, errTruncated
	}
	if nl < 2 || p.b[p.i+nl-1] != '\r' {
		return 0, 0, fmt.Errorf("%w: line %.40q", errRESP, p.b[p.i:p.i+nl+1])
	}
	end := nl - 1 // the line's CRLF
	line := p.b[p.i+1 : p.i+end]
	p.i += end + 2
	switch typ {
	case '-', '!':
		return 0, 0, fmt.Errorf("redis: %s", line)
	case '_':
		return '_', -1, nil
	case '+':
		return '+', 0, nil
	case '*', '%', '~', '$', ':':
	default:
		return 0, 0, fmt.Errorf("%w: type %q", errRESP, typ)
	}
	n, neg := 0, false
	if len(line) > 0 && line[0] == '-' {
		neg, line = true, line[1:]
	}
	if len(line) == 0 || len(line) > 10 {
		return 0, 0, fmt.Errorf("%w: header %q", errRESP, p.b[p.i-end-2:p.i-2])
	}
	for _, c := range line {
		if c < '0' || c > '9' {
			return 0, 0, fmt.Errorf("%w: header %q", errRESP, p.b[p.i-end-2:p.i-2])
		}
		n = n*10 + int(c-'0')
	}
	if neg {
		if n != 1 {
			return 0, 0, fmt.Errorf("%w: header %q", errRESP, p.b[p.i-end-2:p.i-2])
		}
		n = -1
	}
	return typ, n, nil
}

// blob reads a bulk string ($) or a simple one (+); nil for a null.
func (p *respReader) blob() ([]byte, error) {
	start := p.i
	typ, n, err := p.header()
	if err != nil {
		return nil, err
	}
	switch {
	case typ == '+':
		return p.b[start+1 : p.i-2], nil
	case typ == '_' || typ == '$' && n < 0:
		return nil, nil
	case typ != '$':
		return nil, fmt.Errorf("%w: a %q where a string was expected", errRESP, typ)
	}
	if len(p.b)-p.i < n+2 || p.b[p.i+n] != '\r' || p.b[p.i+n+1] != '\n' {
		return nil, errTruncated
	}
	s := p.b[p.i : p.i+n : p.i+n]
	p.i += n + 2
	return s, nil
}

// array reads an array header (or a map's, pairs counted twice when
// allowMap); -1 for a null.
func (p *respReader) array(allowMap bool) (int, error) {
	typ, n, err := p.header()
	switch {
	case err != nil:
		return 0, err
	case typ == '_':
		return -1, nil
	case typ == '*', typ == '~':
		return n, nil
	case typ == '%' && allowMap:
		if n < 0 {
			return -1, nil
		}
		return 2 * n, nil
	}
	return 0, fmt.Errorf("%w: a %q where an array was expected", errRESP, typ)
}

// parseXRead walks an XREAD reply (RESP2: an array of [key, entries];
// RESP3: a map of key → entries; a null when nothing came) and appends its
// entries to out. shardOf maps a stream key to its shard (entries of other
// keys are skipped).
func parseXRead(reply []byte, shardOf func([]byte) int, out []entryView) ([]entryView, error) {
	p := respReader{b: reply}
	if len(reply) == 0 {
		return out, nil
	}
	isMap := reply[0] == '%'
	n, err := p.array(true)
	if err != nil {
		return out, err
	}
	if isMap {
		n /= 2
	}
	for range n {
		if !isMap {
			if m, err := p.array(false); err != nil {
				return out, err
			} else if m != 2 {
				return out, fmt.Errorf("%w: a stream of %d elements", errRESP, m)
			}
		}
		key, err := p.blob()
		if err != nil {
			return out, err
		}
		shard := shardOf(key)
		if out, err = p.entries(shard, out); err != nil {
			return out, err
		}
	}
	if p.i != len(reply) {
		return out, fmt.Errorf("%w: %d bytes after the reply", errRESP, len(reply)-p.i)
	}
	return out, nil
}

// entries reads an array of [id, [field, value, …]] and appends them.
func (p *respReader) entries(shard int, out []entryView) ([]entryView, error) {
	n, err := p.array(false)
	if err != nil {
		return out, err
	}
	for range n {
		if m, err := p.array(false); err != nil {
			return out, err
		} else if m != 2 {
			return out, fmt.Errorf("%w: an entry of %d elements", errRESP, m)
		}
		idb, err := p.blob()
		if err != nil {
			return out, err
		}
		id, err := parseIDBytes(idb)
		if err != nil {
			return out, err
		}
		e := entryView{shard: shard, id: id}
		f, err := p.array(true)
		if err != nil {
			return out, err
		}
		if f > 0 && f%2 == 1 {
			return out, fmt.Errorf("%w: an odd field list", errRESP)
		}
		for j := 0; j < f; j += 2 {
			k, err := p.blob()
			if err != nil {
				return out, err
			}
			v, err := p.blob()
			if err != nil {
				return out, err
			}
			e.setField(k, v)
		}
		if shard >= 0 {
			out = append(out, e)
		}
	}
	return out, nil
}

// parseIDBytes parses an entry ID, ms-seq.
func parseIDBytes(b []byte) (streamID, error) {
	var id streamID
	i, ok := 0, false
	if id.ms, i, ok = parseUintPrefix(b, 0); !ok || i >= len(b) || b[i] != '-' {
		return id, fmt.Errorf("%w: id %q", ErrBadCursor, b)
	}
	if id.seq, i, ok = parseUintPrefix(b, i+1); !ok || i != len(b) {
		return id, fmt.Errorf("%w: id %q", ErrBadCursor, b)
	}
	return id, nil
}

// parseUintPrefix reads the decimal digits of b from i (at least one,
// within uint64) and returns the value and the index after them.
func parseUintPrefix(b []byte, i int) (uint64, int, bool) {
	var v uint64
	start := i
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		d := uint64(b[i] - '0')
		if v > (math.MaxUint64-d)/10 {
			return 0, i, false
		}
		v = v*10 + d
	}
	return v, i, i > start
}
