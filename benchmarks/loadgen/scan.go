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
	rest := bytes.TrimLeft(js[i+len(key):], " ")
	v, after := parseUint(rest)
	return v, len(after) < len(rest)
}

// scanOrdered reads {"sym":"…","seq":N, … ,"ts":N}.
func scanOrdered(js []byte) (sym []byte, seq uint64, ts int64, ok bool) {
	const head = `{"sym":"`
	if len(js) < len(head) || string(js[:len(head)]) != head {
		return nil, 0, 0, false
	}
	rest := js[len(head):]
	j := bytes.IndexByte(rest, '"')
	if j < 0 || !bytes.HasPrefix(rest[j:], []byte(`","seq":`)) {
		return nil, 0, 0, false
	}
	sym = rest[:j]
	seq, after := parseUint(rest[j+len(`","seq":`):])
	if len(after) == len(rest)-j-len(`","seq":`) { // no digits
		return nil, 0, 0, false
	}
	// ts: the digits before the closing brace, preceded by "ts":
	end := len(js) - 1
	if js[end] != '}' {
		return nil, 0, 0, false
	}
	k := end
	for k > 0 && js[k-1] >= '0' && js[k-1] <= '9' {
		k--
	}
	if k == end || k < len(`"ts":`) || string(js[k-len(`"ts":`):k]) != `"ts":` {
		return nil, 0, 0, false
	}
	v, _ := parseUint(js[k:end])
	return sym, seq, int64(v), true
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
			if sym, seq, _, ok := ScanTick(line[6:]); ok {
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
