package simulator

import (
	"bytes"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
)

// TestWireIsAppendJSON: a tick's wire JSON written from its integers is,
// byte for byte, what feed.Tick.AppendJSON writes for the same tick, over
// the default and padded universes (every tick size among them).
func TestWireIsAppendJSON(t *testing.T) {
	for _, n := range []int{0, 2000} {
		a, _ := NewGenerator(GeneratorConfig{Rate: 20_000, Seed: 9, Symbols: n})
		b, _ := NewGenerator(GeneratorConfig{Rate: 20_000, Seed: 9, Symbols: n})
		var got, want []byte
		fast := 0
		for i := range 100_000 {
			ts := int64(1764180000123456 + i)
			r, _ := a.nextRaw()
			tk, _ := b.Next()
			tk.TS = ts
			if r.w.onIntGrid(&r) {
				fast++
			}
			got, want = r.appendWire(got[:0], new(stamp).of(ts)), tk.AppendJSON(want[:0])
			if !bytes.Equal(got, want) {
				t.Fatalf("tick %d:\n wire %s\n json %s", i, got, want)
			}
		}
		if fast < 99_000 {
			t.Errorf("only %d of 100000 ticks written from integers", fast)
		}
	}
}

// TestWireFallsBackOffTheIntegerGrid: a walk whose prices do not fit the
// integer path (a tick size of more than 18 decimals, prices beyond 18
// digits) is written through its decimals, the same bytes.
func TestWireFallsBackOffTheIntegerGrid(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for _, ts := range []string{"0.0000000000000000001", "0.01", "5", "0.25"} {
		in := instrument{sym: feed.Symbol{Name: "X\"Y", Class: feed.ClassEquity, TickSize: decimal.RequireFromString(ts)}, price: 100, vol: 0.3}
		in.sym.Open = in.sym.TickSize.Mul(decimal.NewFromInt(1000))
		w := newWalk(in, 1)
		for i := range 200 {
			r := w.step(rng, float64(i))
			if i == 100 {
				r.bid, r.ask, r.last, r.hi = 1e17, 1e17+1, 1e17+1, 1e17+1 // 18+ digits
			}
			tk := r.tick()
			tk.TS = 7
			if got, want := r.appendWire(nil, new(stamp).of(7)), tk.AppendJSON(nil); !bytes.Equal(got, want) {
				t.Fatalf("tick size %s, tick %d:\n wire %s\n json %s", ts, i, got, want)
			}
		}
	}
}

// TestStampReusedAcrossBatchesWritesEachTS guards the reused stamp: one stamp
// over batches whose ts changes (and goes back, negative, extreme) writes
// each batch's own ts.
func TestStampReusedAcrossBatchesWritesEachTS(t *testing.T) {
	a, _ := NewGenerator(GeneratorConfig{Rate: 20_000, Seed: 3})
	b, _ := NewGenerator(GeneratorConfig{Rate: 20_000, Seed: 3})
	var st stamp
	tss := []int64{0, 0, 1, 1764180000123456, 1764180000123456, 1764180000123457, 5, -1, -1764180000123456, math.MinInt64, math.MaxInt64, 0, 10, 9}
	for _, ts := range tss {
		sp := st.of(ts)
		for range 50 {
			r, _ := a.nextRaw()
			tk, _ := b.Next()
			tk.TS = ts
			if got, want := r.appendWire(nil, sp), tk.AppendJSON(nil); !bytes.Equal(got, want) {
				t.Fatalf("ts %d:\n wire %s\n json %s", ts, got, want)
			}
		}
	}
}
