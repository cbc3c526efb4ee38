package redisstream

import "testing"

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
	f.Fuzz(func(t *testing.T, s, q, ts, d string) {
		u, err := DecodeEntry(map[string]any{"s": s, "q": q, "t": ts, "d": d}, nil)
		if err != nil {
			return
		}
		if u.Sym != s || u.Seq == 0 || len(u.JSON) < 2 {
			t.Fatalf("accepted %+v", u)
		}
	})
}
