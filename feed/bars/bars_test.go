package bars

import (
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
)

func TestPriceRoundTrip(t *testing.T) {
	for _, c := range []struct {
		in    string
		scale int
		n     int64
		out   string
	}{
		{"189.43", 2, 18943, "189.43"}, {"189.4", 2, 18940, "189.40"}, {"5150", 2, 515000, "5150.00"},
		{"1.08450", 5, 108450, "1.08450"}, {"109.515625", 6, 109515625, "109.515625"}, {"0.00001", 5, 1, "0.00001"},
		{"2345.60", 1, 23456, "2345.6"},
	} {
		n, ok := parsePrice([]byte(c.in), c.scale)
		if !ok || n != c.n {
			t.Errorf("parsePrice(%q, %d) = %d %v, want %d", c.in, c.scale, n, ok, c.n)
		}
		if got := string(appendPrice(nil, n, c.scale)); got != c.out {
			t.Errorf("appendPrice(%d, %d) = %q, want %q", n, c.scale, got, c.out)
		}
	}
	for _, bad := range []string{"", "-1", "1e5", "1.001", "1..0", "x", "1234567890123456789"} {
		if _, ok := parsePrice([]byte(bad), 2); ok {
			t.Errorf("parsePrice(%q) accepted", bad)
		}
	}
}

func testBuilder(t *testing.T) *Builder {
	t.Helper()
	u, err := feed.NewUniverse([]feed.Symbol{
		{Name: "AAPL", TickSize: decimal.RequireFromString("0.01")},
		{Name: "ES", TickSize: decimal.RequireFromString("0.25")},
	})
	if err != nil {
		t.Fatal(err)
	}
	b, err := New(Config{Universe: u, Keep: [4]int{4, 4, 4, 4}, Trades: 3})
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func tick(sym string, seq uint64, sec float64, last string, size int64) *feed.Update {
	d := decimal.RequireFromString(last)
	tk := feed.Tick{Sym: sym, Seq: seq, Bid: d, Ask: d.Add(decimal.RequireFromString("0.01")), Last: d, Size: size, TS: int64(sec * 1e6)}
	return feed.NewUpdate(&tk)
}

type jbar struct {
	T          int64
	O, H, L, C string
	V          int64
}

func bars(t *testing.T, b *Builder, sym string, tf Timeframe, limit int) []jbar {
	t.Helper()
	js, _, err := b.AppendBars(nil, sym, tf, limit)
	if err != nil {
		t.Fatal(err)
	}
	var out []jbar
	if err := json.Unmarshal(js, &out); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	return out
}

func TestBuilderBars(t *testing.T) {
	b := testBuilder(t)
	b.Add([]*feed.Update{
		tick("AAPL", 1, 1000.5, "100.00", 100), // bar 1000 (5s), 960 (1m), 900 (5m)
		tick("AAPL", 2, 1001, "101.50", 200),
		tick("AAPL", 3, 1004.9, "99.75", 100),
		tick("AAPL", 4, 1005, "100.25", 300), // bar 1005
		tick("AAPL", 4, 1006, "120.00", 300), // repeated seq: ignored
		tick("AAPL", 5, 1021, "100.10", 1),   // bar 1020
	})
	got := bars(t, b, "AAPL", TF5s, 10)
	want := []jbar{
		{1000, "100.00", "101.50", "99.75", "99.75", 400},
		{1005, "100.25", "100.25", "100.25", "100.25", 300},
		{1020, "100.10", "100.10", "100.10", "100.10", 1},
	}
	if len(got) != len(want) {
		t.Fatalf("got %+v", got)
	}
	for i := range want {
		if got[i] != want[i] {
			t.Errorf("bar %d: %+v, want %+v", i, got[i], want[i])
		}
	}
	if m := bars(t, b, "AAPL", TF1m, 10); len(m) != 2 || m[0].T != 960 || m[0].V != 700 || m[0].H != "101.50" || m[0].C != "100.25" || m[1].T != 1020 {
		t.Errorf("1m bars %+v", m)
	}
	if l := bars(t, b, "AAPL", TF5s, 2); len(l) != 2 || l[0].T != 1005 {
		t.Errorf("limit 2: %+v", l)
	}
	// Keep bounds the bars: the oldest go.
	for i := range 6 {
		b.Add([]*feed.Update{tick("AAPL", uint64(6+i), 2000+5*float64(i), "1", 1)})
	}
	if l := bars(t, b, "AAPL", TF5s, 100); len(l) != 4 || l[0].T != 2010 || l[3].T != 2025 {
		t.Errorf("kept %+v", l)
	}
	if _, _, err := b.AppendBars(nil, "NOPE", TF5s, 1); !errors.Is(err, ErrUnknownSymbol) {
		t.Errorf("unknown symbol: %v", err)
	}
	if _, err := ParseTimeframe("1h"); !errors.Is(err, ErrBadTimeframe) {
		t.Errorf("1h: %v", err)
	}
	for _, s := range []string{"5s", "1m", "5m"} {
		if tf, err := ParseTimeframe(s); err != nil || tf.String() != s {
			t.Errorf("%s: %v %v", s, tf, err)
		}
	}
}

func TestBuilderTrades(t *testing.T) {
	b := testBuilder(t)
	b.Add([]*feed.Update{tick("ES", 1, 1, "5150.25", 1), tick("ES", 2, 2, "5150.50", 2), tick("ES", 3, 3, "5150.00", 3), tick("ES", 4, 4, "5150.75", 4)})
	js, _ := b.AppendTrades(nil, "ES", 10)
	var tr []struct {
		TS    int64
		Seq   uint64
		Price string
		Size  int64
		Side  string
	}
	if err := json.Unmarshal(js, &tr); err != nil {
		t.Fatalf("%s: %v", js, err)
	}
	if len(tr) != 3 || tr[0].Seq != 2 || tr[2].Price != "5150.75" || tr[2].Side != "sell" || tr[2].TS != 4e6 {
		t.Errorf("trades %s", js)
	}
}

// TestMergeSeed: a seed of older ticks, built apart, merges into a builder
// that already took newer live ticks; a bar both hold is combined.
func TestMergeSeed(t *testing.T) {
	live := testBuilder(t)
	gen := live.Clear()
	live.Add([]*feed.Update{tick("AAPL", 3, 1003, "105.00", 10), tick("AAPL", 4, 1010, "104.00", 10)})
	seed := testBuilder(t)
	seed.Add([]*feed.Update{tick("AAPL", 1, 995, "90.00", 1), tick("AAPL", 2, 1001, "100.00", 1)})
	if !live.Merge(seed, gen) {
		t.Fatal("merge refused")
	}
	got := bars(t, live, "AAPL", TF5s, 10)
	want := []jbar{
		{995, "90.00", "90.00", "90.00", "90.00", 1},
		{1000, "100.00", "105.00", "100.00", "105.00", 11},
		{1010, "104.00", "104.00", "104.00", "104.00", 10},
	}
	if len(got) != 3 || got[0] != want[0] || got[1] != want[1] || got[2] != want[2] {
		t.Errorf("merged %+v", got)
	}
	js, _ := live.AppendTrades(nil, "AAPL", 10)
	var tr []struct{ Seq uint64 }
	_ = json.Unmarshal(js, &tr)
	if len(tr) != 3 || tr[0].Seq != 2 || tr[2].Seq != 4 {
		t.Errorf("merged trades %s", js)
	}
	// A merge for an older generation is refused.
	live.Clear()
	if live.Merge(seed, gen) {
		t.Error("stale merge accepted")
	}
}

func BenchmarkAdd(b *testing.B) {
	u, _ := feed.NewUniverse([]feed.Symbol{{Name: "AAPL", TickSize: decimal.RequireFromString("0.01")}})
	bl, _ := New(Config{Universe: u})
	ups := make([]*feed.Update, 1000)
	for i := range ups {
		ups[i] = tick("AAPL", uint64(i+1), 1000+float64(i)/10, "189.43", 100)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		u := ups[i%len(ups)]
		u.Seq = uint64(i + 1)
		bl.add(u)
	}
}

// TestScannedPricesBuildTheSameBars: ticks the reader scanned into numbers
// (Update.Px) build the same bars and tape as the same ticks read from
// their JSON, across prices at and between bid and ask and bars that close.
func TestScannedPricesBuildTheSameBars(t *testing.T) {
	u, err := feed.NewUniverse([]feed.Symbol{{Name: "AAPL", TickSize: decimal.RequireFromString("0.01")}})
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := New(Config{Universe: u})
	scanned, _ := New(Config{Universe: u})
	prices := []string{"189.40", "189.45", "189.41", "189.50", "189.38", "189.44"}
	for i := range 300 {
		last := decimal.RequireFromString(prices[i%len(prices)])
		bid := decimal.RequireFromString("189.41")
		tk := feed.Tick{Sym: "AAPL", Seq: uint64(i + 1), Bid: bid, Ask: bid.Add(decimal.RequireFromString("0.03")), Last: last,
			Size: int64(100 + i), TS: int64(1_700_000_000+i/7) * 1_000_000}
		up := feed.NewUpdate(&tk)
		plain.Add([]*feed.Update{up})
		h, ok := u.ScanTick(up.JSON)
		if !ok || !h.Px.OK {
			t.Fatalf("ScanTick refused %s", up.JSON)
		}
		withPx := *up
		withPx.Px = h.Px
		scanned.Add([]*feed.Update{&withPx})
	}
	for _, tf := range Timeframes {
		a, _, _ := plain.AppendBars(nil, "AAPL", tf, 100)
		b, _, _ := scanned.AppendBars(nil, "AAPL", tf, 100)
		if string(a) != string(b) || len(a) < 10 {
			t.Fatalf("%v bars differ:\n from JSON %s\n scanned   %s", tf, a, b)
		}
	}
	a, _ := plain.AppendTrades(nil, "AAPL", 50)
	b, _ := scanned.AppendTrades(nil, "AAPL", 50)
	if string(a) != string(b) {
		t.Fatalf("tapes differ:\n from JSON %s\n scanned   %s", a, b)
	}
}

// TestRingKeepsTheNewest: pushed past its capacity, a ring holds the newest
// max elements, oldest first, wherever its start has wrapped to.
func TestRingKeepsTheNewest(t *testing.T) {
	for _, max := range []int{1, 2, 3, 7} {
		r := ring[int]{max: max}
		var all []int
		for v := range 3*max + 2 {
			r.push(v)
			all = append(all, v)
			want := all[len(all)-min(len(all), max):]
			got := r.slice()
			if fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("max %d after %d pushes: %v, want %v", max, v+1, got, want)
			}
			if p := r.ptr(r.n - 1); *p != v {
				t.Fatalf("max %d: newest %d, want %d", max, *p, v)
			}
		}
	}
}

// returnsWithin reports whether f returns within d.
func returnsWithin(d time.Duration, f func()) bool {
	ch := make(chan struct{})
	go func() { f(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-time.After(d):
		return false
	}
}

// TestMergeWithItselfReturns guards Merge's locking: Merge(b, gen) with older
// == b returns (it never takes b's lock twice).
func TestMergeWithItselfReturns(t *testing.T) {
	b := testBuilder(t)
	b.Add([]*feed.Update{tick("AAPL", 1, 10, "189.40", 100)})
	gen := b.Generation()
	if !returnsWithin(5*time.Second, func() { b.Merge(b, gen) }) {
		t.Fatal("b.Merge(b) did not return in 5 s (self-deadlock: older.mu.RLock then b.mu.Lock on one RWMutex)")
	}
}

// TestCrossMergeDoesNotDeadlock guards Merge's lock order: a.Merge(b) and
// b.Merge(a) at once both return (Merge copies the older builder before it
// locks its own).
func TestCrossMergeDoesNotDeadlock(t *testing.T) {
	a, b := testBuilder(t), testBuilder(t)
	a.Add([]*feed.Update{tick("AAPL", 1, 10, "189.40", 100)})
	b.Add([]*feed.Update{tick("AAPL", 1, 10, "189.40", 100)})
	ok := returnsWithin(20*time.Second, func() {
		var wg sync.WaitGroup
		for range 2000 {
			wg.Add(2)
			go func() { defer wg.Done(); a.Merge(b, a.Generation()) }()
			go func() { defer wg.Done(); b.Merge(a, b.Generation()) }()
		}
		wg.Wait()
	})
	if !ok {
		t.Fatal("a.Merge(b) with b.Merge(a) deadlocked")
	}
}

// TestBuilderConcurrentUse guards the one-lock builder: Add from one
// goroutine, chart reads, Clear and Merge of a seed run concurrently without
// a data race (go test -race).
func TestBuilderConcurrentUse(t *testing.T) {
	b := testBuilder(t)
	var stop atomic.Bool
	var wg sync.WaitGroup
	for range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for !stop.Load() {
				if _, _, err := b.AppendBars(nil, "AAPL", TF5s, 10); err != nil {
					t.Error(err)
				}
				if _, err := b.AppendTrades(nil, "ES", 10); err != nil {
					t.Error(err)
				}
				_ = b.Has("ES")
				_ = b.Keep(TF1m)
				_ = b.Stats().Ticks.Load()
			}
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; !stop.Load(); k++ {
			gen := b.Clear()
			old := testBuilder(t)
			old.Add([]*feed.Update{tick("AAPL", 1, 1, "1.00", 1), tick("ES", 1, 1, "1.00", 1)})
			b.Merge(old, gen)
		}
	}()
	for seq := uint64(1); seq < 5_000; seq++ {
		b.Add([]*feed.Update{tick("AAPL", seq, float64(seq)/100, "189.40", 1), tick("ES", seq, float64(seq)/100, "5000.25", 1)})
	}
	stop.Store(true)
	wg.Wait()
}
