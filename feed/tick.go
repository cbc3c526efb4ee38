package feed

import (
	"encoding/json"
	"fmt"
	"math/bits"
	"slices"
	"strconv"

	"github.com/shopspring/decimal"
)

// Tick is one price update of one symbol.
//
// Seq is assigned by the publisher and grows by one for each tick of the
// symbol, so a consumer can drop a value older than one it already holds and
// can see a gap in raw mode. TS is the feed's timestamp in Unix microseconds.
//
// Vol, High and Low are the session's running figures as of this tick (the
// sum of trade sizes since the session opened, and the highest and lowest
// last price), carried by the feed so that every consumer, conflated or
// not, on any node, shows the same numbers. They are optional: zero means
// the feed does not send them, and they are then left out of the JSON.
type Tick struct {
	Sym  string          `json:"sym"`
	Seq  uint64          `json:"seq"`
	Bid  decimal.Decimal `json:"bid"`
	Ask  decimal.Decimal `json:"ask"`
	Last decimal.Decimal `json:"last"`
	Size int64           `json:"size"`
	TS   int64           `json:"ts"`
	Vol  int64           `json:"vol,omitzero"`
	High decimal.Decimal `json:"hi,omitzero"`
	Low  decimal.Decimal `json:"lo,omitzero"`
}

// AppendJSON appends the wire JSON of t to dst and returns the extended
// buffer. It writes the same fields, in the same order, as encoding/json
// would, without reflection; prices are decimal strings.
func (t *Tick) AppendJSON(dst []byte) []byte {
	dst = append(dst, `{"sym":`...)
	dst = strconv.AppendQuote(dst, t.Sym)
	dst = append(dst, `,"seq":`...)
	dst = strconv.AppendUint(dst, t.Seq, 10)
	dst = appendPrice(dst, `,"bid":"`, t.Bid)
	dst = appendPrice(dst, `","ask":"`, t.Ask)
	dst = appendPrice(dst, `","last":"`, t.Last)
	dst = append(dst, `","size":`...)
	dst = strconv.AppendInt(dst, t.Size, 10)
	dst = append(dst, `,"ts":`...)
	dst = strconv.AppendInt(dst, t.TS, 10)
	if t.Vol != 0 {
		dst = append(dst, `,"vol":`...)
		dst = strconv.AppendInt(dst, t.Vol, 10)
	}
	if !t.High.IsZero() {
		dst = append(appendPrice(dst, `,"hi":"`, t.High), '"')
	}
	if !t.Low.IsZero() {
		dst = append(appendPrice(dst, `,"lo":"`, t.Low), '"')
	}
	return append(dst, '}')
}

// appendPrice writes d with as many decimals as its exponent says, so a
// price built on a 0.01 grid reads "189.50", never "189.5".
func appendPrice(dst []byte, prefix string, d decimal.Decimal) []byte {
	dst = append(dst, prefix...)
	if e := d.Exponent(); e <= 0 && e >= -18 && d.NumDigits() <= 18 {
		// The common case, without allocating: the coefficient fits an
		// int64 (NumDigits does not allocate then).
		return AppendFixed(dst, d.CoefficientInt64(), int(-e))
	}
	if e := d.Exponent(); e < 0 {
		return append(dst, d.StringFixed(-e)...)
	}
	return append(dst, d.String()...)
}

// AppendFixed writes c × 10^-places with exactly places decimals (places
// ≥ 0), as decimal's StringFixed(places) does for a value of that
// exponent: the wire form of a price held as an integer of units.
func AppendFixed(dst []byte, c int64, places int) []byte {
	u := uint64(c)
	if c < 0 {
		dst = append(dst, '-')
		u = -u // two's complement: right for math.MinInt64 too
	}
	return appendFixed(dst, u, places)
}

// appendFixed is AppendFixed for a magnitude.
func appendFixed(dst []byte, u uint64, places int) []byte {
	n := decimalDigits(u)
	whole := n - places // digits before the point
	size := n
	if places > 0 {
		size = max(whole, 1) + 1 + places
	}
	at := len(dst)
	dst = slices.Grow(dst, size)[:at+size]
	out := dst[at:]
	// Digits from the last, two at a time, the point where it falls.
	i := len(out)
	if places > 0 {
		k := places
		for ; k >= 2; k -= 2 {
			q := u / 100
			j := (u - q*100) * 2
			i -= 2
			out[i], out[i+1] = digitPairs[j], digitPairs[j+1]
			u = q
		}
		if k == 1 {
			i--
			out[i] = byte('0' + u%10)
			u /= 10
		}
		i--
		out[i] = '.'
		if whole <= 0 {
			out[0] = '0'
			return dst
		}
	}
	for u >= 100 {
		q := u / 100
		j := (u - q*100) * 2
		i -= 2
		out[i], out[i+1] = digitPairs[j], digitPairs[j+1]
		u = q
	}
	if u >= 10 {
		i -= 2
		out[i], out[i+1] = digitPairs[u*2], digitPairs[u*2+1]
	} else {
		i--
		out[i] = byte('0' + u)
	}
	return dst
}

// AppendUint appends u in decimal, as strconv.AppendUint(dst, u, 10) does,
// writing the digits in place (strconv writes them to a buffer first, then
// copies them).
func AppendUint(dst []byte, u uint64) []byte {
	return appendFixed(dst, u, 0)
}

// decimalDigits returns how many decimal digits u has (1 for 0).
func decimalDigits(u uint64) int {
	// bits.Len64 × log10(2) (1233/4096) is the digit count or one short.
	// u|1 has u's digits (10^k-1 is odd), and one for 0.
	u |= 1
	t := bits.Len64(u) * 1233 >> 12
	if u >= pow10[t] {
		t++
	}
	return t
}

// pow10[i] is 10^i.
var pow10 = [...]uint64{1, 1e1, 1e2, 1e3, 1e4, 1e5, 1e6, 1e7, 1e8, 1e9, 1e10,
	1e11, 1e12, 1e13, 1e14, 1e15, 1e16, 1e17, 1e18, 1e19}

const digitPairs = "00010203040506070809" +
	"10111213141516171819" +
	"20212223242526272829" +
	"30313233343536373839" +
	"40414243444546474849" +
	"50515253545556575859" +
	"60616263646566676869" +
	"70717273747576777879" +
	"80818283848586878889" +
	"90919293949596979899"

// MarshalJSON implements json.Marshaler with AppendJSON.
func (t Tick) MarshalJSON() ([]byte, error) {
	return t.AppendJSON(make([]byte, 0, 128)), nil
}

// DecodeTick parses the wire JSON of one tick. It rejects a tick without a
// symbol, a seq or a timestamp, with a price that is missing, not a decimal
// string (a JSON number is refused: it may have gone through a float) or not
// positive, or with bid above ask.
func DecodeTick(b []byte) (Tick, error) {
	var w struct {
		Sym  *string      `json:"sym"`
		Seq  *uint64      `json:"seq"`
		Bid  *stringPrice `json:"bid"`
		Ask  *stringPrice `json:"ask"`
		Last *stringPrice `json:"last"`
		Size int64        `json:"size"`
		TS   *int64       `json:"ts"`
		Vol  int64        `json:"vol"`
		High stringPrice  `json:"hi"`
		Low  stringPrice  `json:"lo"`
	}
	if err := json.Unmarshal(b, &w); err != nil {
		return Tick{}, fmt.Errorf("%w: %v", ErrBadTick, err)
	}
	switch {
	case w.Sym == nil || *w.Sym == "":
		return Tick{}, fmt.Errorf("%w: no sym", ErrBadTick)
	case w.Seq == nil:
		return Tick{}, fmt.Errorf("%w: no seq", ErrBadTick)
	case w.TS == nil:
		return Tick{}, fmt.Errorf("%w: no ts", ErrBadTick)
	case w.Bid == nil || w.Ask == nil || w.Last == nil:
		return Tick{}, fmt.Errorf("%w: missing price", ErrBadTick)
	case !w.Bid.d.IsPositive() || !w.Ask.d.IsPositive() || !w.Last.d.IsPositive():
		return Tick{}, fmt.Errorf("%w: non-positive price", ErrBadTick)
	case w.Bid.d.GreaterThan(w.Ask.d):
		return Tick{}, fmt.Errorf("%w: bid above ask", ErrBadTick)
	case w.Vol < 0 || w.High.d.IsNegative() || w.Low.d.IsNegative():
		return Tick{}, fmt.Errorf("%w: negative session volume, high or low", ErrBadTick)
	}
	return Tick{Sym: *w.Sym, Seq: *w.Seq, Bid: w.Bid.d, Ask: w.Ask.d, Last: w.Last.d, Size: w.Size, TS: *w.TS,
		Vol: w.Vol, High: w.High.d, Low: w.Low.d}, nil
}

// stringPrice decodes a price that must be a JSON string.
type stringPrice struct{ d decimal.Decimal }

func (p *stringPrice) UnmarshalJSON(b []byte) error {
	if len(b) < 2 || b[0] != '"' || b[len(b)-1] != '"' {
		return fmt.Errorf("price %.20s is not a decimal string", b)
	}
	return p.d.UnmarshalJSON(b)
}
