package feed

import (
	"encoding/json"
	"errors"
	"hash/fnv"
	"math"
	"math/rand/v2"
	"strconv"
	"strings"
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

// TestAppendFixedAsStrconv: AppendFixed and AppendUint write what the
// strconv-based forms write, on edges and a million random values.
func TestAppendFixedAsStrconv(t *testing.T) {
	ref := func(c int64, places int) string {
		var b []byte
		u := uint64(c)
		if c < 0 {
			b, u = append(b, '-'), -u
		}
		d := strconv.FormatUint(u, 10)
		switch {
		case places == 0:
			return string(b) + d
		case len(d) <= places:
			return string(b) + "0." + strings.Repeat("0", places-len(d)) + d
		}
		return string(b) + d[:len(d)-places] + "." + d[len(d)-places:]
	}
	check := func(c int64, places int) {
		t.Helper()
		if got, want := string(AppendFixed([]byte("x"), c, places)), "x"+ref(c, places); got != want {
			t.Fatalf("AppendFixed(%d, %d) = %q, want %q", c, places, got, want)
		}
	}
	edges := []int64{0, 1, 9, 10, 99, 100, 101, 999, 1000, 9999, 10000, 123456789, math.MaxInt64, math.MinInt64, -1, -10, -100}
	for _, c := range edges {
		for places := range 21 {
			check(c, places)
		}
	}
	for p := uint64(1); p != 0 && p < math.MaxUint64/10; p *= 10 {
		for _, u := range []uint64{p - 1, p, p + 1} {
			if got, want := string(AppendUint(nil, u)), strconv.FormatUint(u, 10); got != want {
				t.Fatalf("AppendUint(%d) = %q", u, got)
			}
		}
	}
	if got := string(AppendUint(nil, math.MaxUint64)); got != strconv.FormatUint(math.MaxUint64, 10) {
		t.Fatalf("AppendUint(MaxUint64) = %q", got)
	}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 1_000_000 {
		c := int64(rng.Uint64() >> rng.IntN(64))
		if rng.IntN(4) == 0 {
			c = -c
		}
		check(c, rng.IntN(20))
	}
}

// TestShardOfIsFNV1a: a symbol's shard is FNV-1a (32 bits) of its name
// modulo the shard count, as it always was: nodes and publishers of
// different versions must agree on it.
func TestShardOfIsFNV1a(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range 100_000 {
		b := make([]byte, 1+rng.IntN(12))
		for j := range b {
			b[j] = byte(rng.Uint32())
		}
		shards := 1 + i%1024
		h := fnv.New32a()
		h.Write(b)
		if got, want := ShardOf(string(b), shards), int(h.Sum32()%uint32(shards)); got != want {
			t.Fatalf("ShardOf(%q, %d) = %d, want %d", b, shards, got, want)
		}
	}
}
