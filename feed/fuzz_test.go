package feed

import (
	"bytes"
	"encoding/json"
	"errors"
	"slices"
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

// FuzzDecodeTickStrict: DecodeTickStrict accepts only what DecodeTick
// accepts, and only an object of distinct wire keys (as encoding/json's
// tokens show them, case and escapes kept); what AppendJSON writes is
// accepted.
func FuzzDecodeTickStrict(f *testing.F) {
	const ok = `{"sym":"AAPL","seq":1,"bid":"189.42","ask":"189.44","last":"189.43","size":200,"ts":1764180000123456`
	for _, s := range []string{
		ok + `}`,
		ok + `,"vol":5,"hi":"190.00","lo":"188.00"}`,
		ok + `,"BID":"1"}`,
		ok + `,"bid":"1"}`,
		ok + `,"b\u0069d":"1"}`,
		ok + `,"Sym":"MSFT"}`,
		ok + `,"pad":"x"}`,
		ok + `,"vol":5,"vol":6}`,
		ok + `,"x":{"bid":"1","y":[1,"}",{"z":"\""}]}}`,
		` { "sym" : "AAPL" , "seq" : 1 , "bid" : "1.00" , "ask" : "1.01" , "last" : "1.00" , "size" : 1 , "ts" : 1 } `,
		`{"sym":"AAPL","seq":1,"bid":"1.00","ask":"1.01","last":"1.00","ts":1}`,
		`{"sym":"A","seq":1,"bid":"1e400","ask":"1e401","last":"1e400","ts":1}`,
		`{"ſym":"AAPL","seq":1,"bid":"1.00","ask":"1.01","last":"1.00","size":1,"ts":1}`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, b []byte) {
		tk, err := DecodeTickStrict(b)
		if err != nil {
			if _, lerr := DecodeTick(b); lerr == nil && !errors.Is(err, ErrTickKeys) {
				t.Fatalf("%s: refused for %v, which DecodeTick accepts and is no key error", b, err)
			}
			return
		}
		if _, err := DecodeTick(b); err != nil {
			t.Fatalf("%s: strict accepts what DecodeTick refuses (%v)", b, err)
		}
		keys := topKeys(t, b)
		seen := map[string]bool{}
		for _, k := range keys {
			if seen[k] || !slices.Contains(wireKeys[:], k) {
				t.Fatalf("%s: accepted with keys %q", b, keys)
			}
			seen[k] = true
		}
		for _, k := range wireKeys[:requiredKeys] {
			if !seen[k] {
				t.Fatalf("%s: accepted without %s", b, k)
			}
		}
		if _, err := DecodeTickStrict(tk.AppendJSON(nil)); err != nil {
			t.Fatalf("%s: its re-encoding %s is refused: %v", b, tk.AppendJSON(nil), err)
		}
	})
}

// topKeys returns the top-level keys of the JSON object b as written
// (escapes decoded), in order, duplicates kept.
func topKeys(t *testing.T, b []byte) []string {
	t.Helper()
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		t.Fatalf("%s: %v", b, err)
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil {
		t.Fatal(err)
	}
	var keys []string
	for dec.More() {
		k, err := dec.Token()
		if err != nil {
			t.Fatal(err)
		}
		keys = append(keys, k.(string))
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			t.Fatal(err)
		}
	}
	return keys
}
