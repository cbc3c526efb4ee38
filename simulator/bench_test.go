package simulator

import "testing"

// BenchmarkGeneratorNext measures one tick drawn and encoded, 500
// symbols: as a feed.Tick and its AppendJSON (ticks), or straight from its
// integers as the simulator sends a WireSender (wire).
func BenchmarkGeneratorNext(b *testing.B) {
	b.Run("ticks", func(b *testing.B) {
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
	})
	b.Run("wire", func(b *testing.B) {
		g, err := NewGenerator(GeneratorConfig{Rate: 20_000, Symbols: 500})
		if err != nil {
			b.Fatal(err)
		}
		var (
			buf []byte
			st  stamp
		)
		b.ReportAllocs()
		for b.Loop() {
			r, _ := g.nextRaw()
			buf = r.appendWire(buf[:0], st.of(1764180000123456))
		}
	})
}
