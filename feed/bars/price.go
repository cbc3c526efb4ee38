package bars

import (
	"bytes"

	"github.com/tickstream/tickstream/feed"
)

// maxScale bounds the decimals of a price: 10^18 still fits an int64.
const maxScale = 12

// pow10 holds 10^0 … 10^18.
var pow10 = func() (p [19]int64) {
	p[0] = 1
	for i := 1; i < len(p); i++ {
		p[i] = p[i-1] * 10
	}
	return
}()

// parsePrice reads a positive decimal string ("189.43") as an integer
// number of 10^-scale units (18943 at scale 2). It refuses signs, exponents,
// more than 18 digits and non-zero digits beyond the scale.
func parsePrice(b []byte, scale int) (int64, bool) {
	var n int64
	digits, frac, dot := 0, 0, false
	for _, c := range b {
		switch {
		case c == '.' && !dot:
			dot = true
		case c >= '0' && c <= '9':
			if dot {
				frac++
				if frac > scale {
					if c != '0' {
						return 0, false
					}
					continue
				}
			}
			if digits++; digits > 18 {
				return 0, false
			}
			n = n*10 + int64(c-'0')
		default:
			return 0, false
		}
	}
	if digits == 0 || scale-frac > 18 {
		return 0, false
	}
	if frac < scale {
		f := pow10[scale-frac]
		if n > (1<<63-1)/f {
			return 0, false
		}
		n *= f
	}
	return n, true
}

// appendPrice writes n units of 10^-scale as a decimal string with exactly
// scale decimals.
func appendPrice(dst []byte, n int64, scale int) []byte {
	return feed.AppendFixed(dst, n, scale)
}

// field returns the raw value of a top-level key in a tick's JSON: the
// characters of a string (without quotes) or of a number. Tick JSON is flat
// and symbol names hold no quotes, so a search for `"key":` is exact.
func field(js []byte, key string) []byte {
	var pat [16]byte
	p := append(append(append(pat[:0], '"'), key...), '"', ':')
	i := bytes.Index(js, p)
	if i < 0 {
		return nil
	}
	v := js[i+len(p):]
	if len(v) > 0 && v[0] == '"' {
		if j := bytes.IndexByte(v[1:], '"'); j >= 0 {
			return v[1 : 1+j]
		}
		return nil
	}
	j := 0
	for j < len(v) && (v[j] == '-' || v[j] >= '0' && v[j] <= '9') {
		j++
	}
	return v[:j]
}
