package feed

import (
	"bytes"
	"fmt"
)

// wireKeys are the keys of a tick's JSON object, in AppendJSON's order:
// the first requiredKeys are in every tick, the others (the session's
// figures) are optional.
var wireKeys = [...]string{"sym", "seq", "bid", "ask", "last", "size", "ts", "vol", "hi", "lo"}

const requiredKeys = 7

// DecodeTickStrict is DecodeTick for a tick from an untrusted source (a
// stream entry or a latest value in Redis): besides DecodeTick's checks,
// the JSON object holds exactly the wire keys — each of sym, seq, bid, ask,
// last, size and ts once, each of vol, hi and lo at most once, and nothing
// else. A key twice, a key in another case ("BID") or written with an
// escape ("b\u0069d"), which encoding/json folds into a known field
// (keeping the last of two) while a browser's JSON.parse keeps them apart,
// and an unknown key are refused with an error wrapping ErrTickKeys. The
// forms Tick.AppendJSON writes are always accepted.
func DecodeTickStrict(b []byte) (Tick, error) {
	t, err := DecodeTick(b)
	if err != nil {
		return Tick{}, err
	}
	if err := checkKeys(b); err != nil {
		return Tick{}, err
	}
	return t, nil
}

// checkKeys checks that the JSON object b (valid JSON: DecodeTick decoded
// it) holds exactly the wire keys. It walks the top level only, skipping
// values; it never reads past b, whatever b is.
func checkKeys(b []byte) error {
	var seen uint16
	i := skipSpace(b, 0)
	if i >= len(b) || b[i] != '{' {
		return fmt.Errorf("%w: not an object", ErrTickKeys)
	}
	i = skipSpace(b, i+1)
	for i < len(b) && b[i] != '}' {
		if b[i] != '"' {
			return fmt.Errorf("%w: malformed object", ErrTickKeys)
		}
		end := bytes.IndexByte(b[i+1:], '"')
		if end < 0 {
			return fmt.Errorf("%w: malformed object", ErrTickKeys)
		}
		key := b[i+1 : i+1+end]
		if bytes.IndexByte(key, '\\') >= 0 {
			return fmt.Errorf("%w: an escaped key %.20q", ErrTickKeys, key)
		}
		k := keyIndex(key)
		switch {
		case k < 0 && foldsToKey(key):
			return fmt.Errorf("%w: key %.20q in another case", ErrTickKeys, key)
		case k < 0:
			return fmt.Errorf("%w: unknown key %.20q", ErrTickKeys, key)
		case seen&(1<<k) != 0:
			return fmt.Errorf("%w: key %q twice", ErrTickKeys, key)
		}
		seen |= 1 << k
		i = skipSpace(b, i+end+2)
		if i >= len(b) || b[i] != ':' {
			return fmt.Errorf("%w: malformed object", ErrTickKeys)
		}
		i = skipSpace(b, skipValue(b, skipSpace(b, i+1)))
		if i < len(b) && b[i] == ',' {
			i = skipSpace(b, i+1)
		}
	}
	if i >= len(b) {
		return fmt.Errorf("%w: malformed object", ErrTickKeys)
	}
	for k := range requiredKeys {
		if seen&(1<<k) == 0 {
			return fmt.Errorf("%w: no %s", ErrTickKeys, wireKeys[k])
		}
	}
	return nil
}

// keyIndex returns key's place in wireKeys, or -1.
func keyIndex(key []byte) int {
	for k, w := range wireKeys {
		if string(key) == w {
			return k
		}
	}
	return -1
}

// foldsToKey reports whether key is a wire key in another case.
func foldsToKey(key []byte) bool {
	for _, w := range wireKeys {
		if bytes.EqualFold(key, []byte(w)) {
			return true
		}
	}
	return false
}

// skipSpace returns the index of the first byte of b from i on that is not
// JSON white space.
func skipSpace(b []byte, i int) int {
	for i < len(b) && (b[i] == ' ' || b[i] == '\t' || b[i] == '\n' || b[i] == '\r') {
		i++
	}
	return i
}

// skipValue returns the index after the JSON value that starts at i: a
// string, an object or array (nested, strings in it skipped whole), or a
// number or literal.
func skipValue(b []byte, i int) int {
	depth := 0
	for i < len(b) {
		switch c := b[i]; {
		case c == '"':
			i = skipString(b, i)
			if depth == 0 {
				return i
			}
			continue
		case c == '{' || c == '[':
			depth++
		case c == '}' || c == ']':
			if depth == 0 {
				return i
			}
			if depth--; depth == 0 {
				return i + 1
			}
		case c == ',' && depth == 0:
			return i
		}
		i++
	}
	return i
}

// skipString returns the index after the JSON string that starts at i.
func skipString(b []byte, i int) int {
	for i++; i < len(b); i++ {
		switch b[i] {
		case '\\':
			i++
		case '"':
			return i + 1
		}
	}
	return i
}
