package feed

import (
	"errors"
	"fmt"

	"github.com/shopspring/decimal"
)

// Bounds on a tick from an untrusted source (see Universe.Check).
const (
	// MaxSize is the largest trade size accepted.
	MaxSize = 1_000_000_000_000
	// MaxPriceDigits bounds the digits of a price (integer and fraction).
	MaxPriceDigits = 24
)

var (
	// ErrOffGrid reports a price that is not a multiple of its symbol's
	// tick size.
	ErrOffGrid = errors.New("price off the tick grid")
	// ErrBadSize reports a negative or absurd trade size.
	ErrBadSize = errors.New("size out of bounds")
)

// Check verifies a decoded tick against the universe: the symbol is known,
// each price (and the session high and low, zero when absent) is a multiple of its tick size and has at most MaxPriceDigits
// digits, and the size is within [0, MaxSize]. It returns an error wrapping
// ErrUnknownSymbol, ErrOffGrid or ErrBadSize.
func (u *Universe) Check(t *Tick) error {
	s, ok := u.Lookup(t.Sym)
	if !ok {
		return fmt.Errorf("%w: %s", ErrUnknownSymbol, t.Sym)
	}
	if t.Size < 0 || t.Size > MaxSize {
		return fmt.Errorf("%w: %s size %d", ErrBadSize, t.Sym, t.Size)
	}
	for _, p := range [...]decimal.Decimal{t.Bid, t.Ask, t.Last, t.High, t.Low} {
		if digits(p) > MaxPriceDigits || !p.Mod(s.TickSize).IsZero() {
			return fmt.Errorf("%w: %s price %s, tick size %s", ErrOffGrid, t.Sym, p, s.TickSize)
		}
	}
	return nil
}

// digits returns the number of decimal digits needed to write d, integer
// part and fraction.
func digits(d decimal.Decimal) int {
	n := len(d.Coefficient().String())
	if e := int(d.Exponent()); e > 0 {
		n += e
	} else if -e > n {
		n = -e
	}
	return n
}
