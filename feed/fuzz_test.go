package feed

import (
	"testing"

	"github.com/shopspring/decimal"
)

// FuzzParseSymbolList: any query string gives a valid list or an error,
// never a panic; accepted lists hold only known, well-formed symbols.
func FuzzParseSymbolList(f *testing.F) {
	u, _ := NewUniverse([]Symbol{{Name: "AAPL", TickSize: decimal.RequireFromString("0.01")}, {Name: "BTC-USD", TickSize: decimal.RequireFromString("0.01")}})
	for _, s := range []string{"AAPL", "aapl, btc-usd", "*", "", ",,,", "AAPL,AAPL", "A\x00B", "é", "AAPL,<script>", string(make([]byte, 5000))} {
		f.Add(s, 3)
	}
	f.Fuzz(func(t *testing.T, s string, max int) {
		got, err := u.ParseSymbolList(s, max)
		if err != nil {
			return
		}
		if len(got) == 0 || (max > 0 && len(got) > max) {
			t.Fatalf("%q → %v", s, got)
		}
		for _, g := range got {
			if _, ok := u.Lookup(g); !ok {
				t.Fatalf("%q accepted unknown %q", s, g)
			}
		}
	})
}

// FuzzDecodeTick: malformed payloads are errors; accepted ticks re-encode
// to JSON that decodes to the same tick.
func FuzzDecodeTick(f *testing.F) {
	f.Add([]byte(`{"sym":"AAPL","seq":1,"bid":"189.42","ask":"189.44","last":"189.43","size":200,"ts":1764180000123456}`))
	f.Add([]byte(`{"sym":"A","seq":1,"bid":"1e400","ask":"1e401","last":"1e400","ts":1}`))
	f.Add([]byte(`{"sym":"A","seq":18446744073709551615,"bid":"0.1","ask":"0.2","last":"0.1","ts":-1}`))
	f.Add([]byte(`nul`))
	f.Fuzz(func(t *testing.T, b []byte) {
		tk, err := DecodeTick(b)
		if err != nil {
			return
		}
		back, err := DecodeTick(tk.AppendJSON(nil))
		if err != nil || back.Seq != tk.Seq || !back.Bid.Equal(tk.Bid) || !back.Ask.Equal(tk.Ask) || back.Sym != tk.Sym {
			t.Fatalf("%s → %+v → %+v %v", b, tk, back, err)
		}
	})
}
