package simulator

import (
	"testing"

	"tickstream/feed"
)

// BenchmarkGeneratorNext measures one tick drawn and encoded as the
// publisher encodes it (its wire JSON), 500 symbols.
func BenchmarkGeneratorNext(b *testing.B) {
	g, err := NewGenerator(GeneratorConfig{Rate: 20_000, Symbols: 500})
	if err != nil {
		b.Fatal(err)
	}
	var buf []byte
	b.ReportAllocs()
	for b.Loop() {
		t, _ := g.Next()
		t.TS = 1764180000123456
		buf = t.AppendJSON(buf[:0])
	}
	_ = feed.Tick{}
}
