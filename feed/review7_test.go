package feed

import (
	"math"
	"strconv"
	"testing"

	"github.com/shopspring/decimal"
)

// TestReview7DecimalDigitsBoundaries: decimalDigits estimates the count
// from bits.Len64 and corrects it once. Checked where either could slip:
// around every power of two (the estimate changes) and of ten (the count
// changes), and the estimate's range for every bit length (never above
// the count, never two short).
func TestReview7DecimalDigitsBoundaries(t *testing.T) {
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

// TestReview7AppendFixedPowersOfTen: AppendFixed against decimal's
// StringFixed for ±(10^k-3 .. 10^k+3) and ±2^k±1, places 0 to 45 (far
// beyond any digit count), on a dst with spare capacity it must not write
// past.
func TestReview7AppendFixedPowersOfTen(t *testing.T) {
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
