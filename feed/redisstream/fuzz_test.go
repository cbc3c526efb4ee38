package redisstream

import (
	"testing"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/simulator"
)

// FuzzParseCursor: any Last-Event-ID gives a cursor or an error; accepted
// cursors survive a round trip.
func FuzzParseCursor(f *testing.F) {
	for _, s := range []string{"ab12.mwy598oa.2f-0.0-0.x", "e.0.x", "", ".", "a.b", "a.zz.1-", "a.1.5-0", "a.1.0-zzzzzzzzzzzzzzzzz", "a.-1.0-0"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		c, err := ParseCursor(s)
		if err != nil {
			return
		}
		back, err := ParseCursor(c.String())
		if err != nil || back.Epoch != c.Epoch || len(back.IDs) != len(c.IDs) {
			t.Fatalf("%q → %+v → %+v %v", s, c, back, err)
		}
		for i := range c.IDs {
			if back.IDs[i] != c.IDs[i] {
				t.Fatalf("%q shard %d: %v → %v", s, i, c.IDs[i], back.IDs[i])
			}
		}
	})
}

// FuzzDecodeEntry: a malformed stream entry is an error (skipped and
// counted by the reader), never a panic or a bad update.
func FuzzDecodeEntry(f *testing.F) {
	f.Add("AAPL", "1", "1764180000123456", `{"sym":"AAPL","seq":1}`)
	f.Add("", "x", "", "")
	f.Add("AAPL", "0", "1", "{}")
	f.Add("A A", "18446744073709551616", "9", "{")
	// Key sets that are not exactly the wire keys (refused as keys).
	const head = `{"sym":"AAPL","seq":1,"bid":"1.00","ask":"1.01","last":"1.00","size":1,"ts":1`
	for _, tail := range []string{`,"BID":"2.00"}`, `,"bid":"2.00"}`, `,"b\u0069d":"2.00"}`, `,"pad":"x"}`, `,"vol":1,"vol":2}`} {
		f.Add("AAPL", "1", "1", head+tail)
	}
	f.Fuzz(func(t *testing.T, s, q, ts, d string) {
		u, err := DecodeEntry(map[string]any{"s": s, "q": q, "t": ts, "d": d}, nil)
		if err != nil {
			return
		}
		if u.Sym != s || u.Seq == 0 || len(u.JSON) < 2 {
			t.Fatalf("accepted %+v", u)
		}
		if _, err := feed.DecodeTickStrict(u.JSON); err != nil {
			t.Fatalf("accepted %s, not the wire keys: %v", u.JSON, err)
		}
	})
}

// FuzzScanEntry: the reader's fast path never accepts an entry that
// DecodeEntry refuses, and reads the same symbol, seq and ts.
func FuzzScanEntry(f *testing.F) {
	u := simulator.Universe(0)
	for _, sym := range []string{"AAPL", "EURUSD", "BTC-USD"} {
		s, _ := u.Lookup(sym)
		tk := feed.Tick{Sym: sym, Seq: 7, Bid: s.TickSize.Mul(decimal.NewFromInt(1000)), Ask: s.TickSize.Mul(decimal.NewFromInt(1002)),
			Last: s.TickSize.Mul(decimal.NewFromInt(1001)), Size: 100, TS: 1764180000123456}
		js := tk.AppendJSON(nil)
		if _, _, _, ok := scanEntry(&entryView{s: []byte(sym), q: []byte("7"), t: []byte("1764180000123456"), d: js}, u); !ok {
			f.Fatalf("the fast path refuses a publisher's entry %s", js)
		}
		f.Add(sym, "7", "1764180000123456", string(js))
	}
	f.Add("AAPL", "07", "1", `{"sym":"AAPL","seq":7,"bid":"1.00","ask":"1.01","last":"1.00","size":1,"ts":1}`)
	f.Fuzz(func(t *testing.T, s, q, ts, d string) {
		e := entryView{s: []byte(s), q: []byte(q), t: []byte(ts), d: []byte(d)}
		sym, seq, tsv, ok := scanEntry(&e, u)
		if !ok {
			return
		}
		up, err := DecodeEntry(map[string]any{"s": s, "q": q, "t": ts, "d": d}, u)
		if err != nil {
			t.Fatalf("fast path accepted %q %q %q %s; DecodeEntry: %v", s, q, ts, d, err)
		}
		if up.Sym != sym || up.Seq != seq || up.TS != tsv {
			t.Fatalf("fast path read %s/%d/%d, DecodeEntry %s/%d/%d", sym, seq, tsv, up.Sym, up.Seq, up.TS)
		}
	})
}
