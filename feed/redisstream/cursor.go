package redisstream

import (
	"fmt"
	"strconv"
	"strings"
)

// streamID is a Redis stream entry ID, ms-seq.
type streamID struct{ ms, seq uint64 }

func parseID(s string) (streamID, error) {
	a, b, ok := strings.Cut(s, "-")
	if !ok {
		return streamID{}, fmt.Errorf("%w: id %q", ErrBadCursor, s)
	}
	ms, err1 := strconv.ParseUint(a, 10, 64)
	seq, err2 := strconv.ParseUint(b, 10, 64)
	if err1 != nil || err2 != nil {
		return streamID{}, fmt.Errorf("%w: id %q", ErrBadCursor, s)
	}
	return streamID{ms, seq}, nil
}

func (id streamID) String() string {
	return strconv.FormatUint(id.ms, 10) + "-" + strconv.FormatUint(id.seq, 10)
}

func (id streamID) less(o streamID) bool {
	return id.ms < o.ms || id.ms == o.ms && id.seq < o.seq
}

// Cursor is a position in all shard streams of one epoch. Its text form is
// the opaque resume token of the wire contract:
//
//	<epoch>.<base ms, base 36>.<shard 0>.<shard 1>…
//
// where each shard is (base − ms) and seq in base 36, "d-s", or "x" for a
// shard with no entry yet. Typically ~70 bytes for 16 shards.
type Cursor struct {
	Epoch string
	IDs   []streamID
}

// String encodes the cursor.
func (c Cursor) String() string {
	var base uint64
	for _, id := range c.IDs {
		base = max(base, id.ms)
	}
	var sb strings.Builder
	sb.Grow(16 + 5*len(c.IDs))
	sb.WriteString(c.Epoch)
	sb.WriteByte('.')
	sb.WriteString(strconv.FormatUint(base, 36))
	for _, id := range c.IDs {
		sb.WriteByte('.')
		if id == (streamID{}) {
			sb.WriteByte('x')
			continue
		}
		sb.WriteString(strconv.FormatUint(base-id.ms, 36))
		sb.WriteByte('-')
		sb.WriteString(strconv.FormatUint(id.seq, 36))
	}
	return sb.String()
}

// ParseCursor decodes a cursor produced by Cursor.String.
func ParseCursor(s string) (Cursor, error) {
	if len(s) > 4096 {
		return Cursor{}, fmt.Errorf("%w: too long", ErrBadCursor)
	}
	parts := strings.Split(s, ".")
	if len(parts) < 3 || parts[0] == "" {
		return Cursor{}, fmt.Errorf("%w: %q", ErrBadCursor, s)
	}
	base, err := strconv.ParseUint(parts[1], 36, 64)
	if err != nil {
		return Cursor{}, fmt.Errorf("%w: base %q", ErrBadCursor, parts[1])
	}
	c := Cursor{Epoch: parts[0], IDs: make([]streamID, 0, len(parts)-2)}
	for _, p := range parts[2:] {
		if p == "x" {
			c.IDs = append(c.IDs, streamID{})
			continue
		}
		d, q, ok := strings.Cut(p, "-")
		dv, err1 := strconv.ParseUint(d, 36, 64)
		qv, err2 := strconv.ParseUint(q, 36, 64)
		if !ok || err1 != nil || err2 != nil || dv > base {
			return Cursor{}, fmt.Errorf("%w: shard %q", ErrBadCursor, p)
		}
		c.IDs = append(c.IDs, streamID{base - dv, qv})
	}
	return c, nil
}
