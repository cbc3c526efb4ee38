package feed

import (
	"errors"
	"testing"

	"github.com/shopspring/decimal"
)

func TestDecodeTickRefusesNumberPrices(t *testing.T) {
	for _, in := range []string{
		`{"sym":"AAPL","seq":1,"bid":1.5,"ask":"2","last":"1.5","ts":1}`,
		`{"sym":"AAPL","seq":1,"bid":"1.5","ask":2,"last":"1.5","ts":1}`,
		`{"sym":"AAPL","seq":1,"bid":"1.5","ask":"2","last":1.5,"ts":1}`,
		`{"sym":"AAPL","seq":1,"bid":"1.5","ask":"2","last":"1.5","ts":1,"hi":3}`,
	} {
		if _, err := DecodeTick([]byte(in)); !errors.Is(err, ErrBadTick) {
			t.Errorf("DecodeTick(%s) = %v, want ErrBadTick", in, err)
		}
	}
}

func TestUniverseCheck(t *testing.T) {
	u, err := NewUniverse([]Symbol{
		{Name: "AAPL", TickSize: decimal.RequireFromString("0.01")},
		{Name: "ES", TickSize: decimal.RequireFromString("0.25")},
	})
	if err != nil {
		t.Fatal(err)
	}
	d := decimal.RequireFromString
	tests := []struct {
		tk   Tick
		want error
	}{
		{Tick{Sym: "AAPL", Bid: d("189.42"), Ask: d("189.44"), Last: d("189.43"), Size: 100}, nil},
		{Tick{Sym: "ES", Bid: d("5150.25"), Ask: d("5150.50"), Last: d("5150.5"), Size: 1}, nil},
		{Tick{Sym: "ES", Bid: d("5150.10"), Ask: d("5150.50"), Last: d("5150.5"), Size: 1}, ErrOffGrid},
		{Tick{Sym: "AAPL", Bid: d("189.421"), Ask: d("189.44"), Last: d("189.43")}, ErrOffGrid},
		{Tick{Sym: "AAPL", Bid: d("1e30"), Ask: d("1e30"), Last: d("1e30")}, ErrOffGrid},
		{Tick{Sym: "AAPL", Bid: d("1"), Ask: d("1"), Last: d("1"), High: d("1.001")}, ErrOffGrid},
		{Tick{Sym: "AAPL", Bid: d("1"), Ask: d("1"), Last: d("1"), Size: -1}, ErrBadSize},
		{Tick{Sym: "MSFT", Bid: d("1"), Ask: d("1"), Last: d("1")}, ErrUnknownSymbol},
	}
	for _, tt := range tests {
		if err := u.Check(&tt.tk); !errors.Is(err, tt.want) {
			t.Errorf("Check(%s) = %v, want %v", tt.tk.AppendJSON(nil), err, tt.want)
		}
	}
}

func TestPositionAfter(t *testing.T) {
	a := Position{Shard: 1, MS: 10, Seq: 2}
	if !(Position{Shard: 1, MS: 10, Seq: 3}).After(a) || !(Position{Shard: 1, MS: 11}).After(a) {
		t.Error("later position not after")
	}
	if a.After(a) || (Position{Shard: 2, MS: 99}).After(a) || (Position{Shard: 1, MS: 9, Seq: 9}).After(a) {
		t.Error("same, other shard or earlier position counted as after")
	}
}

// TestDecodeTickStrictKeySet guards the strict decoder's contract: a tick
// holds exactly the wire keys; a duplicate, a case variant, an escaped key,
// an unknown key or a missing size is refused with ErrTickKeys, and every
// form AppendJSON writes is accepted.
func TestDecodeTickStrictKeySet(t *testing.T) {
	const head = `{"sym":"AAPL","seq":1,"bid":"189.42","ask":"189.44","last":"189.43","size":200,"ts":1764180000123456`
	for name, js := range map[string]string{
		"upper-case duplicate": head + `,"BID":"1"}`,
		"duplicate":            head + `,"bid":"1"}`,
		"escaped duplicate":    head + `,"b\u0069d":"1"}`,
		"case variant":         `{"SYM":"AAPL","seq":1,"bid":"189.42","ask":"189.44","last":"189.43","size":200,"ts":1764180000123456}`,
		"unknown":              head + `,"pad":"x"}`,
		"optional twice":       head + `,"vol":1,"vol":2}`,
		"no size":              `{"sym":"AAPL","seq":1,"bid":"189.42","ask":"189.44","last":"189.43","ts":1764180000123456}`,
	} {
		if _, err := DecodeTickStrict([]byte(js)); !errors.Is(err, ErrTickKeys) {
			t.Errorf("%s: %s → %v, want ErrTickKeys", name, js, err)
		}
	}
	for _, tk := range []Tick{
		{Sym: "AAPL", Seq: 1, Bid: decimal.RequireFromString("1.00"), Ask: decimal.RequireFromString("1.01"), Last: decimal.RequireFromString("1.00"), Size: 0, TS: 1},
		{Sym: "AAPL", Seq: 2, Bid: decimal.RequireFromString("1.00"), Ask: decimal.RequireFromString("1.01"), Last: decimal.RequireFromString("1.00"), Size: 5, TS: 1,
			Vol: 9, High: decimal.RequireFromString("1.10"), Low: decimal.RequireFromString("0.90")},
	} {
		if _, err := DecodeTickStrict(tk.AppendJSON(nil)); err != nil {
			t.Errorf("%s refused: %v", tk.AppendJSON(nil), err)
		}
	}
}
