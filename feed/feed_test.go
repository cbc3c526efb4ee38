package feed

import (
	"encoding/json"
	"errors"
	"testing"

	"github.com/shopspring/decimal"
)

func TestTickJSONRoundTripIsExact(t *testing.T) {
	tk := Tick{Sym: "AAPL", Seq: 81234, Bid: decimal.RequireFromString("189.40"), Ask: decimal.RequireFromString("189.44"),
		Last: decimal.RequireFromString("189.43"), Size: 200, TS: 1764180000123456}
	b := tk.AppendJSON(nil)
	want := `{"sym":"AAPL","seq":81234,"bid":"189.40","ask":"189.44","last":"189.43","size":200,"ts":1764180000123456}`
	if string(b) != want {
		t.Fatalf("got  %s\nwant %s", b, want)
	}
	if !json.Valid(b) {
		t.Fatal("invalid JSON")
	}
	back, err := DecodeTick(b)
	if err != nil {
		t.Fatal(err)
	}
	if string(back.AppendJSON(nil)) != want {
		t.Errorf("round trip changed the tick: %s", back.AppendJSON(nil))
	}
	// Prices built on the tick grid keep the grid's decimals.
	grid := decimal.RequireFromString("0.00001")
	p := decimal.NewFromInt(108450).Mul(grid)
	tk.Bid, tk.Ask, tk.Last = p, p, p
	if got := string(tk.AppendJSON(nil)); got != `{"sym":"AAPL","seq":81234,"bid":"1.08450","ask":"1.08450","last":"1.08450","size":200,"ts":1764180000123456}` {
		t.Errorf("fx price: %s", got)
	}
	// The same bytes as encoding/json through MarshalJSON.
	if js, _ := json.Marshal(tk); string(js) != string(tk.AppendJSON(nil)) {
		t.Errorf("MarshalJSON differs: %s", js)
	}
}

func TestDecodeTickRejects(t *testing.T) {
	for _, in := range []string{
		``, `{}`, `[]`, `{"sym":"A"}`,
		`{"sym":"A","seq":1,"bid":"1","ask":"2","last":"1","ts":1}x`,
		`{"sym":"A","seq":1,"bid":"3","ask":"2","last":"1","ts":1}`,
		`{"sym":"A","seq":1,"bid":"-1","ask":"2","last":"1","ts":1}`,
		`{"sym":"A","seq":1,"bid":1.5,"ask":"2","last":"1","ts":1}x`,
		`{"sym":"A","seq":-1,"bid":"1","ask":"2","last":"1","ts":1}`,
	} {
		if _, err := DecodeTick([]byte(in)); !errors.Is(err, ErrBadTick) {
			t.Errorf("DecodeTick(%q) = %v, want ErrBadTick", in, err)
		}
	}
}

func TestParseSymbolList(t *testing.T) {
	u, err := NewUniverse([]Symbol{
		{Name: "AAPL", TickSize: decimal.RequireFromString("0.01")},
		{Name: "BTC-USD", TickSize: decimal.RequireFromString("0.01")},
		{Name: "EURUSD", TickSize: decimal.RequireFromString("0.00001")},
	})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		in   string
		max  int
		want string
		err  error
	}{
		{"AAPL,eurusd", 0, "[AAPL EURUSD]", nil},
		{" AAPL , AAPL ,btc-usd", 0, "[AAPL BTC-USD]", nil},
		{"*", 0, "[AAPL BTC-USD EURUSD]", nil},
		{"*", 2, "", ErrTooManySymbols},
		{"AAPL,EURUSD,BTC-USD", 2, "", ErrTooManySymbols},
		{"", 0, "", ErrBadSymbol},
		{",,", 0, "", ErrBadSymbol},
		{"AAPL,<script>", 0, "", ErrBadSymbol},
		{"MSFT", 0, "", ErrUnknownSymbol},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) {
			got, err := u.ParseSymbolList(tt.in, tt.max)
			if !errors.Is(err, tt.err) || (err == nil && tt.want != fmtList(got)) {
				t.Errorf("got %v, %v; want %s, %v", got, err, tt.want, tt.err)
			}
		})
	}
}

func fmtList(s []string) string {
	b, _ := json.Marshal(s)
	out := string(b)
	out = "[" + out[1:len(out)-1] + "]"
	r := []rune{}
	for _, c := range out {
		if c != '"' {
			if c == ',' {
				c = ' '
			}
			r = append(r, c)
		}
	}
	return string(r)
}

func TestShardOfIsStable(t *testing.T) {
	// Nodes and publishers in different processes and releases must agree.
	for sym, want := range map[string]int{"AAPL": ShardOf("AAPL", 16), "EURUSD": ShardOf("EURUSD", 16)} {
		for range 3 {
			if got := ShardOf(sym, 16); got != want || got < 0 || got >= 16 {
				t.Fatalf("ShardOf(%s) = %d", sym, got)
			}
		}
	}
	if got := ShardOf("AAPL", 16); got != 11 {
		t.Errorf("ShardOf(AAPL,16) = %d: the hash changed, which breaks running deployments", got)
	}
}

func TestTickSessionFields(t *testing.T) {
	tk := Tick{Sym: "AAPL", Seq: 2, Bid: decimal.RequireFromString("189.40"), Ask: decimal.RequireFromString("189.44"),
		Last: decimal.RequireFromString("189.40"), Size: 100, TS: 1, Vol: 12300,
		High: decimal.RequireFromString("190.10"), Low: decimal.RequireFromString("188.00")}
	want := `{"sym":"AAPL","seq":2,"bid":"189.40","ask":"189.44","last":"189.40","size":100,"ts":1,"vol":12300,"hi":"190.10","lo":"188.00"}`
	if got := string(tk.AppendJSON(nil)); got != want {
		t.Fatalf("got  %s\nwant %s", got, want)
	}
	back, err := DecodeTick([]byte(want))
	if err != nil || string(back.AppendJSON(nil)) != want {
		t.Fatalf("round trip: %s %v", back.AppendJSON(nil), err)
	}
	if _, err := DecodeTick([]byte(`{"sym":"A","seq":1,"bid":"1","ask":"2","last":"1","ts":1,"vol":-5}`)); !errors.Is(err, ErrBadTick) {
		t.Errorf("negative vol accepted: %v", err)
	}
}
