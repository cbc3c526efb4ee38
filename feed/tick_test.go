package feed

import (
	"math"
	"math/rand/v2"
	"strconv"
	"testing"

	"github.com/shopspring/decimal"
)

// TestDecimalDigitsAtPowerBoundaries guards decimalDigits, which estimates
// the count from bits.Len64 and corrects it once: the count is exact around
// every power of two (where the estimate changes) and of ten (where the count
// changes), and for every bit length the estimate is never above the count
// nor two short of it.
func TestDecimalDigitsAtPowerBoundaries(t *testing.T) {
	check := func(u uint64) {
		t.Helper()
		if got, want := decimalDigits(u), len(strconv.FormatUint(u, 10)); got != want {
			t.Fatalf("decimalDigits(%d) = %d, want %d", u, got, want)
		}
	}
	for k := range 64 {
		for d := range uint64(5) {
			check(uint64(1)<<k + d)
			check(uint64(1)<<k - d)
		}
	}
	for p := uint64(1); ; p *= 10 {
		for d := range uint64(5) {
			check(p + d)
			check(p - d)
		}
		if p > math.MaxUint64/10 {
			break
		}
	}
	check(math.MaxUint64)
	for l := 1; l <= 64; l++ {
		lo, hi := uint64(1)<<(l-1), uint64(1)<<(l-1)*2-1
		if l == 64 {
			hi = math.MaxUint64
		}
		est := l * 1233 >> 12
		if a, b := len(strconv.FormatUint(lo, 10)), len(strconv.FormatUint(hi, 10)); a < est || b > est+1 {
			t.Errorf("bit length %d: estimate %d for %d to %d digits", l, est, a, b)
		}
	}
}

// TestAppendFixedMatchesDecimalNearPowers guards AppendFixed against
// decimal's StringFixed for ±(10^k-3 .. 10^k+3) and ±2^k±1, places 0 to 45
// (far beyond any digit count), on a dst with spare capacity that it does not
// write past.
func TestAppendFixedMatchesDecimalNearPowers(t *testing.T) {
	var cs []int64
	for p := int64(1); ; p *= 10 {
		for d := int64(-3); d <= 3; d++ {
			cs = append(cs, p+d, -(p + d))
		}
		if p > math.MaxInt64/10 {
			break
		}
	}
	for k := range 63 {
		p := int64(1) << k
		cs = append(cs, p-1, p+1, -p-1, -p+1)
	}
	cs = append(cs, math.MaxInt64, math.MinInt64, math.MinInt64+1)
	buf := make([]byte, 0, 128)
	for _, c := range cs {
		for places := range 46 {
			buf = append(buf[:0], "xy"...)
			spare := buf[:cap(buf)]
			for i := len(buf); i < len(spare); i++ {
				spare[i] = '#'
			}
			got := AppendFixed(buf, c, places)
			want := "xy" + decimal.New(c, int32(-places)).StringFixed(int32(places))
			if string(got) != want {
				t.Fatalf("AppendFixed(%d, %d) = %q, want %q", c, places, got, want)
			}
			if cap(got) == cap(buf) {
				for _, b := range got[len(got):cap(got)] {
					if b != '#' {
						t.Fatalf("AppendFixed(%d, %d) wrote past its end", c, places)
					}
				}
			}
		}
	}
}

// TestAppendFixedMatchesDecimal guards the contract AppendFixed's doc states:
// its output is decimal's StringFixed(places) of c×10^-places, for places
// 0..30.
func TestAppendFixedMatchesDecimal(t *testing.T) {
	check := func(c int64, places int) {
		t.Helper()
		want := decimal.New(c, int32(-places)).StringFixed(int32(places))
		if got := string(AppendFixed([]byte("x"), c, places)); got != "x"+want {
			t.Fatalf("AppendFixed(%d, %d) = %q, want x%q", c, places, got, want)
		}
	}
	for _, c := range []int64{0, 1, -1, 9, 10, -10, 99, 100, math.MaxInt64, math.MinInt64, math.MinInt64 + 1, 1e18, -1e18} {
		for p := range 31 {
			check(c, p)
		}
	}
	rng := rand.New(rand.NewPCG(5, 6))
	for range 300_000 {
		c := int64(rng.Uint64() >> rng.IntN(64))
		if rng.IntN(3) == 0 {
			c = -c
		}
		check(c, rng.IntN(31))
	}
	// appendPrice (Tick.AppendJSON) for decimals of every exponent.
	for range 100_000 {
		d := decimal.New(int64(rng.Uint64()>>rng.IntN(64))*int64(1-2*rng.IntN(2)), -int32(rng.IntN(25)))
		got := string(appendPrice(nil, "", d))
		want := d.StringFixed(-d.Exponent())
		if got != want {
			t.Fatalf("appendPrice(%s) = %q, want %q", d, got, want)
		}
	}
}
