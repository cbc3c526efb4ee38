package simulator

import (
	"bytes"
	"math"
	"testing"
)

// TestReviewStampAcrossBatches: one stamp reused over batches whose ts
// changes (and goes back, negative, extreme) writes each batch's ts.
func TestReviewStampAcrossBatches(t *testing.T) {
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
