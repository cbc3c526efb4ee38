package loadgen

import "bytes"

var (
	keySym = []byte(`"sym":"`)
	keySeq = []byte(`"seq":`)
	keyTS  = []byte(`"ts":`)
)

// ScanTick reads sym, seq and ts from one tick's JSON by scanning bytes.
func ScanTick(js []byte) (sym []byte, seq uint64, ts int64, ok bool) {
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
	rest = rest[j:]
	if i = bytes.Index(rest, keySeq); i < 0 {
		return nil, 0, 0, false
	}
	seq, rest = parseUint(rest[i+len(keySeq):])
	if i = bytes.Index(rest, keyTS); i < 0 {
		return nil, 0, 0, false
	}
	v, _ := parseUint(rest[i+len(keyTS):])
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
