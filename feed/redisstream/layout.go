package redisstream

import (
	"bytes"
	"context"
	"fmt"

	"github.com/redis/go-redis/v9"
)

// An entry's layout is exact: a one-tick entry holds the fields s, q, t and
// d, a batch entry the field b, each once, and nothing else. An entry with a
// field twice or a field no layout has is refused whole (ReasonKeys), as is
// one holding both layouts' fields (ReasonFields); every path that reads
// entries (the live reader, replay, the charts' read-back) judges the
// layout with checkLayout, on fields read in order (a field twice is seen:
// go-redis's XMessage map would keep one of them). The reader of a Redis
// Cluster reads through that map: there a field twice reads as once, the
// last of them.

// dupField is the map key under which rangeEntries records a field an
// entry holds twice (its value is the field's name). No layout has it, so
// an entry that holds it is refused whatever wrote it.
const dupField = "\x00twice"

// setField records field k of value v, read in order, in e: a layout's
// field, or the entry's first flaw (a field twice, or unknown).
func (e *entryView) setField(k, v []byte) {
	if bytes.Equal(k, tooLarge) || bytes.Equal(v, tooLarge) {
		e.tooLarge = true
	}
	var p *[]byte
	if len(k) == 1 {
		switch k[0] {
		case 's':
			p = &e.s
		case 'q':
			p = &e.q
		case 't':
			p = &e.t
		case 'd':
			p = &e.d
		case 'b':
			p = &e.b
		}
	}
	switch {
	case p == nil:
		e.flaw(k, false)
	case *p != nil:
		e.flaw(k, true)
	default:
		*p = v
	}
}

// flaw records the entry's first field outside its layout: unknown, or
// (twice) a field it holds more than once.
func (e *entryView) flaw(k []byte, twice bool) {
	if e.extra == nil {
		e.extra, e.twice = k, twice
	}
}

// viewOf returns the fields of an entry read with go-redis (a field twice
// shows only if rangeEntries read it: dupField).
func viewOf(v map[string]any) entryView {
	var e entryView
	for k, x := range v {
		s, _ := x.(string)
		if k == dupField {
			e.tooLarge = e.tooLarge || s == string(tooLarge)
			e.flaw([]byte(s), true)
			continue
		}
		e.setField([]byte(k), []byte(s))
	}
	return e
}

// checkLayout refuses an entry whose fields are not exactly one layout's
// (or that holds a field left unread for its size). Missing or malformed
// fields of a one-tick entry are decodeFields' to refuse.
func checkLayout(e *entryView) error {
	switch {
	case e.tooLarge:
		return unreadErr("a field")
	case e.extra != nil && e.twice:
		return refuse(ReasonKeys, "field %.20q twice in an entry", e.extra)
	case e.extra != nil:
		return refuse(ReasonKeys, "unknown field %.20q in an entry", e.extra)
	case e.b != nil && (e.s != nil || e.q != nil || e.t != nil || e.d != nil):
		return errMixed
	}
	return nil
}

// rangeEntries runs XRANGE or XREVRANGE (cmd) with args and returns the
// entries as go-redis's XRangeN would, except that a field an entry holds
// twice is recorded under dupField (go-redis's map would keep one value
// and hide the other), so that checkLayout judges the entry as the live
// reader does.
func rangeEntries(ctx context.Context, rdb redis.UniversalClient, cmd string, args ...any) ([]redis.XMessage, error) {
	return entriesOf(cmd, rdb.Do(ctx, append([]any{cmd}, args...)...))
}

// entriesOf converts the reply of an XRANGE or XREVRANGE (cmd) sent with
// Do (or in a pipeline) as rangeEntries does.
func entriesOf(cmd string, c *redis.Cmd) ([]redis.XMessage, error) {
	res, err := c.Result()
	if err != nil {
		return nil, err
	}
	list, ok := res.([]any)
	if !ok {
		return nil, fmt.Errorf("%s: %w: a %T", cmd, errRESP, res)
	}
	out := make([]redis.XMessage, 0, len(list))
	for _, x := range list {
		m, err := xMessage(x)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", cmd, err)
		}
		out = append(out, m)
	}
	return out, nil
}

// xMessage converts one entry of a generic XRANGE reply, [id, [field,
// value, …]] (RESP3 may send the fields as a map).
func xMessage(x any) (redis.XMessage, error) {
	pair, ok := x.([]any)
	if !ok || len(pair) != 2 {
		return redis.XMessage{}, fmt.Errorf("%w: an entry %T", errRESP, x)
	}
	id, ok := pair[0].(string)
	if !ok {
		return redis.XMessage{}, fmt.Errorf("%w: an entry id %T", errRESP, pair[0])
	}
	v := map[string]any{}
	switch f := pair[1].(type) {
	case []any:
		if len(f)%2 != 0 {
			return redis.XMessage{}, fmt.Errorf("%w: an odd field list", errRESP)
		}
		for i := 0; i < len(f); i += 2 {
			k, _ := f[i].(string)
			if _, twice := v[k]; twice {
				v[dupField] = k
				continue
			}
			v[k] = f[i+1]
		}
	case map[any]any:
		for k, val := range f {
			ks, _ := k.(string)
			v[ks] = val
		}
	case nil:
	default:
		return redis.XMessage{}, fmt.Errorf("%w: entry fields %T", errRESP, pair[1])
	}
	return redis.XMessage{ID: id, Values: v}, nil
}
