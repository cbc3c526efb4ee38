package feed

import (
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/shopspring/decimal"
)

func scanUniverse(tb testing.TB) *Universe {
	tb.Helper()
	u, err := NewUniverse([]Symbol{
		{Name: "AAPL", TickSize: decimal.RequireFromString("0.01")},
		{Name: "EUR/USD", TickSize: decimal.RequireFromString("0.00001")},
		{Name: "ES-FUT", TickSize: decimal.RequireFromString("0.25")},
		{Name: "BRK.A", TickSize: decimal.RequireFromString("1")},
		{Name: "TEN", TickSize: decimal.RequireFromString("1E+1")},
		{Name: "ODD", TickSize: decimal.RequireFromString("0.010")},
	})
	if err != nil {
		tb.Fatal(err)
	}
	return u
}

// oldVerdict is the validation before ScanTick: a generic JSON decode and
// the universe's check.
func oldVerdict(u *Universe, b []byte) (Tick, bool) {
	t, err := DecodeTick(b)
	if err != nil {
		return t, false
	}
	return t, u.Check(&t) == nil
}

// checkAgainstOld fails if ScanTick accepts what the old validation
// refuses, or reads other values than it.
func checkAgainstOld(t *testing.T, u *Universe, b []byte) bool {
	t.Helper()
	h, ok := u.ScanTick(b)
	if !ok {
		return false
	}
	old, oldOK := oldVerdict(u, b)
	if !oldOK {
		t.Fatalf("ScanTick accepted %s, the old decoder refuses it", b)
	}
	if string(h.Sym) != old.Sym || h.Name != old.Sym || h.Seq != old.Seq || h.TS != old.TS {
		t.Fatalf("%s: ScanTick read %s/%d/%d, the old decoder %s/%d/%d", b, h.Sym, h.Seq, h.TS, old.Sym, old.Seq, old.TS)
	}
	if u.syms[h.Index].Name != h.Name {
		t.Fatalf("%s: index %d is %s", b, h.Index, u.syms[h.Index].Name)
	}
	var side int8
	switch {
	case old.Last.LessThanOrEqual(old.Bid):
		side = -1
	case old.Last.GreaterThanOrEqual(old.Ask):
		side = 1
	}
	last := decimal.New(h.Px.Last, -int32(h.Px.Scale))
	if !h.Px.OK || !last.Equal(old.Last) || h.Px.Size != old.Size || h.Px.Side != side {
		t.Fatalf("%s: ScanTick read the trade %+v (%s), the old decoder last %s size %d side %d", b, h.Px, last, old.Last, old.Size, side)
	}
	return true
}

// randomTick is a valid tick of one of the universe's symbols, in the form
// a publisher writes.
func randomTick(u *Universe, rng *rand.Rand) Tick {
	syms := u.Symbols()
	s := syms[rng.IntN(len(syms))]
	p := func() decimal.Decimal { return decimal.NewFromInt(rng.Int64N(1_000_000) + 1).Mul(s.TickSize) }
	bid, ask := p(), p()
	if bid.GreaterThan(ask) {
		bid, ask = ask, bid
	}
	t := Tick{Sym: s.Name, Seq: rng.Uint64N(1 << 40), Bid: bid, Ask: ask, Last: p(), Size: rng.Int64N(MaxSize + 1), TS: rng.Int64N(1 << 52)}
	if rng.IntN(2) == 0 {
		t.Vol, t.High, t.Low = rng.Int64N(1<<50), p(), p()
	}
	return t
}

// TestScanTickAcceptsWhatPublishersWrite: every tick a publisher writes
// (AppendJSON) passes the single scan with the values the old decoder
// reads, except for a tick size it does not handle (left to the old path).
func TestScanTickAcceptsWhatPublishersWrite(t *testing.T) {
	u := scanUniverse(t)
	rng := rand.New(rand.NewPCG(1, 2))
	fast := 0
	for range 20000 {
		tk := randomTick(u, rng)
		b := tk.AppendJSON(nil)
		if _, ok := oldVerdict(u, b); !ok {
			t.Fatalf("generated an invalid tick %s", b)
		}
		if checkAgainstOld(t, u, b) {
			fast++
		} else if tk.Sym != "TEN" {
			t.Fatalf("ScanTick refused a publisher's tick %s", b)
		}
	}
	if fast < 15000 {
		t.Fatalf("only %d of 20000 on the fast path", fast)
	}
}

// TestScanTickTable: malformed, foreign and only differently written
// payloads are not accepted by the scan (the old path decides them), and
// the edges of the form it accepts.
func TestScanTickTable(t *testing.T) {
	u := scanUniverse(t)
	good := `{"sym":"AAPL","seq":7,"bid":"189.42","ask":"189.44","last":"189.43","size":200,"ts":1764180000123456}`
	for _, c := range []struct {
		name, b string
		ok      bool
	}{
		{"canonical", good, true},
		{"session figures", strings.TrimSuffix(good, "}") + `,"vol":12345,"hi":"190.00","lo":"0.00"}`, true},
		{"size 0", strings.Replace(good, `"size":200`, `"size":0`, 1), true},
		{"bid equals ask", strings.Replace(good, `"ask":"189.44"`, `"ask":"189.42"`, 1), true},
		{"quarter grid", `{"sym":"ES-FUT","seq":1,"bid":"5000.25","ask":"5000.50","last":"5000.50","size":1,"ts":1}`, true},
		{"whole grid", `{"sym":"BRK.A","seq":1,"bid":"600000","ask":"600001","last":"600001","size":1,"ts":1}`, true},
		{"fx", `{"sym":"EUR/USD","seq":1,"bid":"1.08001","ask":"1.08003","last":"1.08003","size":10000,"ts":1}`, true},
		{"three decimals", `{"sym":"ODD","seq":1,"bid":"1.010","ask":"1.020","last":"1.020","size":1,"ts":1}`, true},

		{"number price", strings.Replace(good, `"bid":"189.42"`, `"bid":189.42`, 1), false},
		{"off grid", strings.Replace(good, `"bid":"189.42"`, `"bid":"189.425"`, 1), false},
		{"quarter off grid", `{"sym":"ES-FUT","seq":1,"bid":"5000.10","ask":"5000.50","last":"5000.50","size":1,"ts":1}`, false},
		{"one decimal", strings.Replace(good, `"bid":"189.42"`, `"bid":"189.4"`, 1), false},
		{"exponent", strings.Replace(good, `"bid":"189.42"`, `"bid":"1.8942e2"`, 1), false},
		{"leading zero price", strings.Replace(good, `"bid":"189.42"`, `"bid":"0189.42"`, 1), false},
		{"negative price", strings.Replace(good, `"bid":"189.42"`, `"bid":"-189.42"`, 1), false},
		{"zero price", strings.Replace(good, `"last":"189.43"`, `"last":"0.00"`, 1), false},
		{"bid above ask", strings.Replace(good, `"bid":"189.42"`, `"bid":"189.45"`, 1), false},
		{"unknown symbol", strings.Replace(good, `AAPL`, `MSFT`, 1), false},
		{"lower-case symbol", strings.Replace(good, `AAPL`, `aapl`, 1), false},
		{"escaped symbol", strings.Replace(good, `AAPL`, `\u0041APL`, 1), false},
		{"negative size", strings.Replace(good, `"size":200`, `"size":-200`, 1), false},
		{"huge size", strings.Replace(good, `"size":200`, `"size":1000000000001`, 1), false},
		{"fraction size", strings.Replace(good, `"size":200`, `"size":200.0`, 1), false},
		{"leading zero seq", strings.Replace(good, `"seq":7`, `"seq":07`, 1), false},
		{"seq overflow", strings.Replace(good, `"seq":7`, `"seq":18446744073709551616`, 1), false},
		{"negative ts", strings.Replace(good, `"ts":1764180000123456`, `"ts":-1`, 1), false},
		{"null seq", strings.Replace(good, `"seq":7`, `"seq":null`, 1), false},
		{"missing last", strings.Replace(good, `,"last":"189.43"`, ``, 1), false},
		{"empty", `{}`, false},
		{"trailing bytes", good + `x`, false},
		{"trailing space", good + ` `, false},
		{"two objects", good + good, false},
		{"space", strings.Replace(good, `,"seq"`, `, "seq"`, 1), false},
		{"reordered", `{"seq":7,"sym":"AAPL","bid":"189.42","ask":"189.44","last":"189.43","size":200,"ts":1764180000123456}`, false},
		{"duplicate sym", strings.TrimSuffix(good, "}") + `,"sym":"MSFT"}`, false},
		{"case-folded key", strings.TrimSuffix(good, "}") + `,"SYM":"MSFT"}`, false},
		{"extra field", strings.TrimSuffix(good, "}") + `,"pad":"x"}`, false},
		{"negative hi", strings.TrimSuffix(good, "}") + `,"hi":"-1.00"}`, false},
		{"off-grid lo", strings.TrimSuffix(good, "}") + `,"lo":"1.001"}`, false},
		{"number vol", strings.TrimSuffix(good, "}") + `,"vol":1.5}`, false},
		{"lo before hi", strings.TrimSuffix(good, "}") + `,"lo":"1.00","hi":"2.00"}`, false},
		{"tick size 10", `{"sym":"TEN","seq":1,"bid":"10","ask":"20","last":"20","size":1,"ts":1}`, false},
		{"truncated", good[:len(good)-5], false},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, ok := u.ScanTick([]byte(c.b))
			if ok != c.ok {
				t.Fatalf("ScanTick(%s) = %v, want %v", c.b, ok, c.ok)
			}
			checkAgainstOld(t, u, []byte(c.b))
		})
	}
}

// FuzzScanTick: whatever the bytes, ScanTick never accepts what the old
// decoder and check refuse, and reads the same sym, seq and ts.
func FuzzScanTick(f *testing.F) {
	u := scanUniverse(f)
	rng := rand.New(rand.NewPCG(3, 4))
	for range 20 {
		tk := randomTick(u, rng)
		f.Add(tk.AppendJSON(nil))
	}
	f.Add([]byte(`{"sym":"AAPL","seq":7,"bid":"189.42","ask":"189.44","last":"189.43","size":200,"ts":1,"vol":1,"hi":"1.00","lo":"1.00"}`))
	f.Add([]byte(`{"sym":"ES-FUT","seq":1,"bid":"5000.25","ask":"5000.50","last":"5000.50","size":1,"ts":1}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		checkAgainstOld(t, u, b)
	})
}

// BenchmarkScanTick compares the single scan with the decoder and check it
// replaces on the reader's path.
func BenchmarkScanTick(b *testing.B) {
	u := scanUniverse(b)
	tk := Tick{Sym: "AAPL", Seq: 81234, Bid: decimal.RequireFromString("189.42"), Ask: decimal.RequireFromString("189.44"),
		Last: decimal.RequireFromString("189.43"), Size: 200, TS: 1764180000123456, Vol: 123456,
		High: decimal.RequireFromString("190.00"), Low: decimal.RequireFromString("188.00")}
	js := tk.AppendJSON(nil)
	b.Run("scan", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, ok := u.ScanTick(js); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("decode+check", func(b *testing.B) {
		b.ReportAllocs()
		for range b.N {
			if _, ok := oldVerdict(u, js); !ok {
				b.Fatal("refused")
			}
		}
	})
	b.Run("strict+check", func(b *testing.B) { // the reader's slow path
		b.ReportAllocs()
		for range b.N {
			t, err := DecodeTickStrict(js)
			if err != nil || u.Check(&t) != nil {
				b.Fatal("refused")
			}
		}
	})
}

// TestAppendPriceFastPath: prices written without allocating are what
// decimal's StringFixed writes.
func TestAppendPriceFastPath(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	for i := range 100000 {
		c := rng.Int64N(1 << uint(rng.IntN(62)+1))
		if i%3 == 0 {
			c = -c
		}
		exp := -int32(rng.IntN(19))
		if i%7 == 0 {
			exp = int32(rng.IntN(3))
		}
		d := decimal.New(c, exp)
		want := `"` + d.String()
		if e := d.Exponent(); e < 0 {
			want = `"` + d.StringFixed(-e)
		}
		if got := string(appendPrice(nil, `"`, d)); got != want {
			t.Fatalf("%v (coefficient %d, exponent %d): %s, want %s", d, c, exp, got, want)
		}
	}
	tk := Tick{Sym: "AAPL", Seq: 1, Bid: decimal.RequireFromString("189.42"), Ask: decimal.RequireFromString("189.44"),
		Last: decimal.RequireFromString("0.05"), Size: 1, TS: 1, High: decimal.RequireFromString("190.00"), Low: decimal.RequireFromString("1")}
	buf := make([]byte, 0, 256)
	if n := testing.AllocsPerRun(100, func() { buf = tk.AppendJSON(buf[:0]) }); n != 0 {
		t.Errorf("AppendJSON allocates %v times", n)
	}
}
