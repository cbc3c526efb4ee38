package node_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/node"
	"github.com/tickstream/tickstream/simulator"
)

// TestChurnDeliversTicksByteForByte guards the integrity of delivered ticks:
// with updates cut from the reader's scratch and their JSON left in the reply
// buffer, every tick any subscriber receives is byte for byte the tick Redis
// holds for its symbol and seq, while raw subscribers (of every symbol: the
// shared log; of a few: their own queue) join and leave and conflated ones
// keep receiving; raw ones see no gap and no seq going down, and every
// subscriber ends with the latest value of every symbol.
func TestChurnDeliversTicksByteForByte(t *testing.T) {
	f := nodetest.NewFeed(t)
	n := f.StartNode(func(c *node.Config) { c.Reader.Idle = 200 * time.Millisecond })
	stop := f.RunSimulator(3000, 0)
	base := n.URL()
	conf := nodetest.Subscribe(t, base+"/stream?symbols=*&interval=100ms")
	var all []*nodetest.Sub
	var raws []*nodetest.Sub
	all = append(all, conf)
	waitTicks := func(s *nodetest.Sub, k int) {
		t.Helper()
		nodetest.CheckFor(t, 15*time.Second, func() error {
			if c := s.Count("tick"); c < k {
				return fmt.Errorf("%d ticks, want %d", c, k)
			}
			return nil
		})
	}
	waitTicks(conf, 50)
	for i := range 12 {
		few := nodetest.Subscribe(t, base+"/stream?symbols=AAPL,MSFT,EURUSD&mode=raw")
		var rawAll *nodetest.Sub
		if i%2 == 0 {
			rawAll = nodetest.Subscribe(t, base+"/stream?symbols=*&mode=raw")
			waitTicks(rawAll, 1500)
			raws = append(raws, rawAll)
		}
		waitTicks(few, 20)
		raws = append(raws, few)
		if i < 11 {
			few.Close()
			if rawAll != nil {
				rawAll.Close()
			}
		}
	}
	conf0 := nodetest.Subscribe(t, base+"/stream?symbols=*&interval=0")
	all = append(all, conf0)
	waitTicks(conf0, 200)
	stop()
	all = append(all, raws...)
	latest := nodetest.RedisLatest(t, f.RDB, nodetest.Shards)
	for _, s := range []*nodetest.Sub{conf, conf0, raws[len(raws)-1]} {
		nodetest.CheckFor(t, 15*time.Second, func() error {
			got, err := s.Snapshot()
			if err != nil {
				return err
			}
			for sym, want := range latest {
				if len(got) < 5 { // the few-symbol subscriber
					if _, ok := got[sym]; !ok {
						continue
					}
				}
				if got[sym] != want {
					return fmt.Errorf("%s: seq %d, want %d", sym, got[sym], want)
				}
			}
			return nil
		})
	}
	// What Redis holds, by symbol and seq.
	stored := map[string]string{}
	_, err := redisstream.ReadBack(context.Background(), f.RDB, simulator.Universe(0), n.Hub.Cursor(),
		redisstream.ReadBackLimits{Window: time.Hour, MaxTicks: 10_000_000, MaxBytes: 1 << 40},
		func(ups []*feed.Update) {
			for _, u := range ups {
				stored[fmt.Sprintf("%s/%d", u.Sym, u.Seq)] = string(u.JSON)
			}
		})
	if err != nil {
		t.Fatal(err)
	}
	checked := 0
	for k, s := range all {
		if _, err := s.Snapshot(); err != nil {
			t.Errorf("subscriber %d: %v", k, err)
		}
		if k >= 2 && s.Gaps() != 0 {
			t.Errorf("raw subscriber %d: %d gaps", k, s.Gaps())
		}
		s.Close()
		for _, tk := range s.Ticks {
			js, ok := stored[fmt.Sprintf("%s/%d", tk.Sym, tk.Seq)]
			if !ok {
				continue // trimmed
			}
			checked++
			want, err := feed.DecodeTick([]byte(js))
			if err != nil {
				t.Fatal(err)
			}
			if a, b := string(tk.AppendJSON(nil)), string(want.AppendJSON(nil)); a != b {
				t.Errorf("subscriber %d got %s for %s/%d, Redis holds %s", k, a, tk.Sym, tk.Seq, b)
			}
		}
	}
	if checked < 1000 {
		t.Errorf("only %d ticks checked against Redis", checked)
	}
	t.Logf("%d ticks checked against Redis, %d stored", checked, len(stored))
}
