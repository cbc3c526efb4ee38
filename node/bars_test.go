package node_test

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"testing"
	"time"

	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/redistest"
)

// barsOf reads sym's 5 s bars from a node.
func barsOf(t *testing.T, url, sym string) (closes []string, seq uint64) {
	t.Helper()
	resp, err := http.Get(url + "/api/bars?tf=5s&symbol=" + sym)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var body struct {
		Bars []struct{ C string } `json:"bars"`
		Seq  uint64               `json:"seq"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&body); err != nil {
		t.Fatal(err)
	}
	for _, b := range body.Bars {
		closes = append(closes, b.C)
	}
	return closes, body.Seq
}

// pastTicks returns n AAPL ticks one second apart ending now, seq from 1,
// prices from base cents up.
func pastTicks(n int, base int64) []feed.Tick {
	now := time.Now()
	var ts []feed.Tick
	for i := range n {
		p := decimal.NewFromInt(base + int64(i)).Mul(decimal.RequireFromString("0.01"))
		ts = append(ts, feed.Tick{Sym: "AAPL", Seq: uint64(i + 1), Bid: p, Ask: p.Add(decimal.RequireFromString("0.01")), Last: p, Size: 1,
			TS: now.Add(time.Duration(i-n) * time.Second).UnixMicro()})
	}
	return ts
}

// TestBarsRebuiltWhenRedisLosesItsHistory: a node seeds its bars from the
// retained streams; when Redis comes back empty (a new epoch) it forgets
// them and rebuilds from what Redis holds now, as every other node does.
func TestBarsRebuiltWhenRedisLosesItsHistory(t *testing.T) {
	f := nodetest.NewFeed(t, redistest.WithPersistence())
	if err := f.Pub.Publish(context.Background(), pastTicks(30, 10_000)); err != nil {
		t.Fatal(err)
	}
	n := f.StartNode(nil)
	<-n.BarsSeeded()
	closes, seq := barsOf(t, n.URL(), "AAPL")
	if len(closes) < 6 || seq != 30 || closes[len(closes)-1] != "100.29" {
		t.Fatalf("seeded bars %v seq %d", closes, seq)
	}
	f.Redis.Restart(false) // Redis comes back without its data
	// The publisher stores the universe and a new epoch again; a new
	// history starts (seq from 1 again: the simulator lost its state too).
	nodetest.CheckFor(t, 10*time.Second, func() error {
		return f.Pub.Publish(context.Background(), pastTicks(10, 20_000))
	})
	nodetest.CheckFor(t, 15*time.Second, func() error {
		closes, seq := barsOf(t, n.URL(), "AAPL")
		if seq != 10 || len(closes) == 0 || len(closes) > 3 || closes[len(closes)-1] != "200.09" {
			return fmt.Errorf("bars after the new epoch %v seq %d", closes, seq)
		}
		return nil
	})
}
