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
