package feed

import "github.com/shopspring/decimal"

// gridStep is a tick size as a whole number of 10^-scale units, for
// ScanTick. ok is false when it does not fit that form (ScanTick then
// leaves every tick of the symbol to DecodeTick and Check).
type gridStep struct {
	unit  uint64
	scale int
	ok    bool
}

// maxScanDigits bounds the digits of a number ScanTick reads itself: any
// value of up to 18 digits fits an int64 (and a price of up to 18 digits is
// within MaxPriceDigits).
const maxScanDigits = 18

func newGridStep(d decimal.Decimal) gridStep {
	e, c := d.Exponent(), d.Coefficient()
	if e > 0 || -e > maxScanDigits || !c.IsUint64() || c.Sign() <= 0 {
		return gridStep{}
	}
	return gridStep{unit: c.Uint64(), scale: int(-e), ok: true}
}

// TickHead is what ScanTick reads of a tick: the fields a consumer routes
// and orders it by.
type TickHead struct {
	Sym   []byte // a slice of ScanTick's input
	Name  string // the same symbol, the universe's string (no allocation)
	Index int    // the symbol's place in the universe (Universe.Symbols)
	Seq   uint64
	TS    int64
	// Px is the tick's trade, as numbers.
	Px Prices
}

// ScanTick validates b in one pass, without allocating, when b is a tick
// of u in the exact form Tick.AppendJSON writes (fields in its order, no
// white space, no escapes, prices with as many decimals as the symbol's
// tick size has, numbers of at most 18 digits): the symbol is known, every
// price is a decimal string on its tick grid, bid, ask and last positive
// and bid ≤ ask, the size within [0, MaxSize]. Then ok is true, and
// DecodeTickStrict(b) (so DecodeTick(b) too) followed by u.Check accepts b
// with the same sym, seq and ts.
//
// ok is false for anything else — malformed, foreign, or only written
// differently (another field order, white space, a field this version does
// not know): the caller then decides with DecodeTickStrict and Check, which also
// say why they refuse. ScanTick never accepts what they refuse.
func (u *Universe) ScanTick(b []byte) (h TickHead, ok bool) {
	s := scanner{b: b}
	if !s.lit(`{"sym":"`) {
		return h, false
	}
	start := s.i
	for s.i < len(b) && symBytes[b[s.i]] {
		s.i++
	}
	h.Sym = b[start:s.i]
	if len(h.Sym) == 0 || len(h.Sym) > MaxSymbolLen || !s.lit(`","seq":`) {
		return h, false
	}
	idx, known := u.index[string(h.Sym)]
	if !known {
		return h, false
	}
	h.Name, h.Index = u.syms[idx].Name, idx
	step := u.steps[idx]
	if !step.ok {
		return h, false
	}
	var bid, ask, last, size, ts uint64
	if h.Seq, ok = s.uint(19); !ok {
		return h, false
	}
	if !s.lit(`,"bid":`) {
		return h, false
	}
	if bid, ok = s.price(step); !ok || !s.lit(`,"ask":`) {
		return h, false
	}
	if ask, ok = s.price(step); !ok || !s.lit(`,"last":`) {
		return h, false
	}
	if last, ok = s.price(step); !ok || !s.lit(`,"size":`) {
		return h, false
	}
	if bid == 0 || ask == 0 || last == 0 || bid > ask {
		return h, false
	}
	if size, ok = s.uint(maxScanDigits); !ok || size > MaxSize || !s.lit(`,"ts":`) {
		return h, false
	}
	h.Px = Prices{Last: int64(last), Size: int64(size), Scale: int8(step.scale), OK: true}
	switch {
	case last <= bid:
		h.Px.Side = -1
	case last >= ask:
		h.Px.Side = 1
	}
	if ts, ok = s.uint(maxScanDigits); !ok {
		return h, false
	}
	h.TS = int64(ts)
	if s.lit(`,"vol":`) {
		if _, ok = s.uint(maxScanDigits); !ok {
			return h, false
		}
	}
	if s.lit(`,"hi":`) {
		if _, ok = s.price(step); !ok {
			return h, false
		}
	}
	if s.lit(`,"lo":`) {
		if _, ok = s.price(step); !ok {
			return h, false
		}
	}
	if !s.lit(`}`) || s.i != len(b) {
		return h, false
	}
	return h, true
}

// scanner reads b from i.
type scanner struct {
	b []byte
	i int
}

// lit consumes p if b continues with it.
func (s *scanner) lit(p string) bool {
	if len(s.b)-s.i < len(p) || string(s.b[s.i:s.i+len(p)]) != p {
		return false
	}
	s.i += len(p)
	return true
}

// scanDigits reads the decimal digits of b from i on: their value (wrapped
// past 19 digits: the callers refuse that many) and where they end.
// (Locals, not the scanner's fields, in the loop: the digits are most of a
// tick, and a loop over fields keeps them in memory.)
func scanDigits(b []byte, i int) (uint64, int) {
	var v uint64
	for ; i < len(b); i++ {
		c := b[i] - '0'
		if c > 9 {
			break
		}
		v = v*10 + uint64(c)
	}
	return v, i
}

// uint reads a JSON integer of at most max digits, without sign or
// leading zero.
func (s *scanner) uint(max int) (uint64, bool) {
	b, start := s.b, s.i
	v, i := scanDigits(b, start)
	if n := i - start; n == 0 || n > max || n > 1 && b[start] == '0' {
		return 0, false // none, too long (v wrapped: unused), or a leading zero
	}
	s.i = i
	return v, true
}

// price reads a decimal string with exactly step.scale decimals (none and
// no point when 0), no sign, no leading zero, at most maxScanDigits digits
// in all, and checks it is on the grid. It returns the price in units of
// 10^-scale.
func (s *scanner) price(step gridStep) (uint64, bool) {
	b, i := s.b, s.i
	if i >= len(b) || b[i] != '"' {
		return 0, false
	}
	start := i + 1
	v, i := scanDigits(b, start)
	n := i - start
	if n == 0 || n > 1 && b[start] == '0' {
		return 0, false
	}
	if step.scale > 0 {
		if i >= len(b) || b[i] != '.' || len(b)-i-1 < step.scale {
			return 0, false
		}
		i++
		for _, c := range b[i : i+step.scale] {
			if c -= '0'; c > 9 {
				return 0, false
			}
			v = v*10 + uint64(c)
		}
		i += step.scale
		n += step.scale
	}
	if n > maxScanDigits || i >= len(b) || b[i] != '"' {
		return 0, false
	}
	if step.unit != 1 && v%step.unit != 0 { // most tick sizes are one unit: no division
		return 0, false
	}
	s.i = i + 1
	return v, true
}

// symBytes[c] is symByte(c): one load per byte of a scanned symbol.
var symBytes = func() (t [256]bool) {
	for c := range t {
		t[c] = symByte(byte(c))
	}
	return t
}()

// symByte reports whether c may appear in a symbol name.
func symByte(c byte) bool {
	return c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '.' || c == '-' || c == '/' || c == '_' || c == ':'
}
