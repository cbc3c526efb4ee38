package feed

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"
)

// TestReviewAppendFixedAsDecimal: AppendFixed against the contract its doc
// states, decimal's StringFixed(places) of c×10^-places, places 0..30.
func TestReviewAppendFixedAsDecimal(t *testing.T) {
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
