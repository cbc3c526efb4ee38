package loadgen

import (
	"bytes"
	"encoding/json"
	"time"
)

var (
	keySym = []byte(`"sym":"`)
	keySeq = []byte(`"seq":`)
	keyTS  = []byte(`"ts":`)
)

// ScanTick reads sym, seq and ts from one tick's JSON by scanning bytes.
// The node writes sym first, seq second and ts last; that order is read
// directly, any other by searching for the keys.
func ScanTick(js []byte) (sym []byte, seq uint64, ts int64, ok bool) {
	if sym, seq, ts, ok := scanOrdered(js); ok {
		return sym, seq, ts, true
	}
	i := bytes.Index(js, keySym)
	if i < 0 {
		return nil, 0, 0, false
	}
	rest := js[i+len(keySym):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 {
		return nil, 0, 0, false
	}
	sym = rest[:j]
	seq, ok = uintAfter(js, keySeq)
	if !ok {
		return nil, 0, 0, false
	}
	v, ok := uintAfter(js, keyTS)
	if !ok {
		return nil, 0, 0, false
	}
	return sym, seq, int64(v), true
}

// uintAfter reads the number after key (spaces allowed after the colon).
func uintAfter(js, key []byte) (uint64, bool) {
	i := bytes.Index(js, key)
	if i < 0 {
		return 0, false
	}
	v, _, ok := number(bytes.TrimLeft(js[i+len(key):], " "))
	return v, ok
}

// scanOrdered reads {"sym":"…","seq":N, … "ts":N …}: sym and seq where
// the node writes them, ts searched for after them.
func scanOrdered(js []byte) (sym []byte, seq uint64, ts int64, ok bool) {
	sym, seq, rest, ok := symSeqOrdered(js)
	if !ok {
		return nil, 0, 0, false
	}
	v, ok := uintAfter(rest, keyTS)
	return sym, seq, int64(v), ok
}

// symSeqOrdered reads the {"sym":"…","seq":N at the start of a tick as the
// node writes it, and returns what follows.
func symSeqOrdered(js []byte) (sym []byte, seq uint64, rest []byte, ok bool) {
	const head, mid = `{"sym":"`, `","seq":`
	if len(js) < len(head) || string(js[:len(head)]) != head {
		return nil, 0, nil, false
	}
	rest = js[len(head):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || !bytes.HasPrefix(rest[j:], []byte(mid)) {
		return nil, 0, nil, false
	}
	sym, rest = rest[:j], rest[j+len(mid):]
	seq, after, ok := number(rest)
	if !ok {
		return nil, 0, nil, false
	}
	return sym, seq, after, true
}

// ScanSymSeq is ScanTick for a client that needs no ts (every subscriber
// of a scale run): in the node's order it reads only the start of the
// tick.
func ScanSymSeq(js []byte) (sym []byte, seq uint64, ok bool) {
	if sym, seq, _, ok := symSeqOrdered(js); ok {
		return sym, seq, true
	}
	sym, seq, _, ok = ScanTick(js)
	return sym, seq, ok
}

// number reads the unsigned integer at the start of b and returns what
// follows it. It refuses no digits, more than a uint64 holds, and digits
// not followed by what ends a JSON value (',', '}', ']' or a space): a line
// cut inside a number (bufio.Scanner hands over the last, unterminated
// line when a connection ends) is not read as a smaller one.
func number(b []byte) (uint64, []byte, bool) {
	v, after := parseUint(b)
	if n := len(b) - len(after); n == 0 || n > 20 || n == 20 && string(b[:20]) > "18446744073709551615" || len(after) == 0 {
		return 0, b, false
	}
	switch after[0] {
	case ',', '}', ']', ' ', '\t', '\r', '\n':
		return v, after, true
	}
	return 0, b, false
}

func parseUint(b []byte) (uint64, []byte) {
	var v uint64
	i := 0
	for ; i < len(b) && b[i] >= '0' && b[i] <= '9'; i++ {
		v = v*10 + uint64(b[i]-'0')
	}
	return v, b[i:]
}

// EachTick calls fn for every tick object in b (an SSE data line, a
// WebSocket tick message's data array or a poll answer's ticks array).
func EachTick(b []byte, fn func(sym []byte, seq uint64, ts int64)) int {
	n := 0
	for {
		i := bytes.Index(b, keySym)
		if i < 0 {
			return n
		}
		start := bytes.LastIndexByte(b[:i], '{')
		if start < 0 {
			start = i
		}
		end := bytes.IndexByte(b[i:], '}')
		if end < 0 {
			return n
		}
		if sym, seq, ts, ok := ScanTick(b[start : i+end+1]); ok {
			fn(sym, seq, ts)
			n++
		}
		b = b[i+end+1:]
	}
}

// sseEvents follows an SSE stream line by line for a load-generator client.
type sseEvents struct{ event []byte }

// line handles one line of the stream: a tick's data goes to tr. It
// reports whether the line was the data of the stream's ready event.
func (e *sseEvents) line(line []byte, now time.Time, tr *Tracker) (ready bool) {
	switch {
	case bytes.HasPrefix(line, []byte("event: ")):
		e.event = append(e.event[:0], line[7:]...)
	case bytes.HasPrefix(line, []byte("data: ")):
		switch string(e.event) {
		case "tick":
			if sym, seq, ok := ScanSymSeq(line[6:]); ok {
				tr.Tick(sym, seq, now)
			}
		case "ready":
			return true
		}
	}
	return false
}

// wsMessage handles one WebSocket message from a node: its ticks go to tr.
// It reports a ready message, and an error message as a refusedError.
func wsMessage(m []byte, now time.Time, tr *Tracker) (ready bool, err error) {
	switch {
	case bytes.HasPrefix(m, []byte(`{"type":"tick"`)):
		EachTick(m, func(sym []byte, seq uint64, _ int64) { tr.Tick(sym, seq, now) })
	case bytes.Contains(m, []byte(`"type":"ready"`)):
		return true, nil
	case bytes.Contains(m, []byte(`"type":"error"`)):
		var e struct{ Error string }
		_ = json.Unmarshal(m, &e)
		return false, &refusedError{e.Error}
	}
	return false, nil
}
