package node_test

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/simulator"
)

// runSim runs the real simulator into the feed's Redis until stop is
// called.
func runSim(t *testing.T, f *nodetest.Feed, rate float64) (stop func()) {
	t.Helper()
	resume, _ := redisstream.LoadLatest(context.Background(), f.RDB, nodetest.Shards)
	sim, err := simulator.New(simulator.Config{
		GeneratorConfig: simulator.GeneratorConfig{Rate: rate, Seed: 3, Symbols: 40, Resume: resume},
		Logger:          nodetest.Quiet(),
	}, f.Pub)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = sim.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); wg.Wait() }) }
	t.Cleanup(stop)
	return stop
}

// converge waits until every subscriber holds exactly Redis's latest seq
// of every symbol it watches, and that none saw a seq go down.
func converge(t *testing.T, f *nodetest.Feed, subs map[string]*nodetest.Sub) {
	t.Helper()
	convergeOn(t, f.RDB, nodetest.Shards, 1, subs)
}

// convergeOn is converge on any Redis, once it holds at least minSymbols.
func convergeOn(t *testing.T, rdb redis.UniversalClient, shards, minSymbols int, subs map[string]*nodetest.Sub) {
	t.Helper()
	nodetest.CheckFor(t, 30*time.Second, func() error {
		want := nodetest.RedisLatest(t, rdb, shards)
		if len(want) < minSymbols {
			return fmt.Errorf("only %d symbols in redis", len(want))
		}
		for name, s := range subs {
			got, viol := s.Snapshot()
			if viol != nil {
				t.Fatalf("%s: %v", name, viol)
			}
			for sym, seq := range want {
				if got[sym] != seq {
					return fmt.Errorf("%s: %s at seq %d, redis has %d", name, sym, got[sym], seq)
				}
			}
		}
		return nil
	})
}

func TestTwoNodesServeTheSamePrices(t *testing.T) {
	f := nodetest.NewFeed(t)
	stop := runSim(t, f, 3000)
	a := f.StartNode(nil)
	b := f.StartNode(nil)
	subs := map[string]*nodetest.Sub{
		"a/conflated": nodetest.Subscribe(t, a.URL()+"/stream?symbols=*&interval=20ms"),
		"b/conflated": nodetest.Subscribe(t, b.URL()+"/stream?symbols=*&interval=100ms"),
		"b/raw":       nodetest.Subscribe(t, b.URL()+"/stream?symbols=*&mode=raw"),
	}
	time.Sleep(1500 * time.Millisecond)
	stop()
	converge(t, f, subs)
	if n := subs["a/conflated"].Count("tick"); n < 40 {
		t.Errorf("node a delivered only %d ticks", n)
	}
}

func TestRedisRestartMidStream(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepData=%v", keep), func(t *testing.T) {
			f := nodetest.NewFeed(t, redistest.WithPersistence())
			stop := runSim(t, f, 1000)
			n := f.StartNode(nil)
			conf := nodetest.Subscribe(t, n.URL()+"/stream?symbols=*&interval=50ms")
			raw := nodetest.Subscribe(t, n.URL()+"/stream?symbols=*&mode=raw")
			time.Sleep(500 * time.Millisecond)
			f.Redis.Restart(keep)
			time.Sleep(1000 * time.Millisecond)
			stop()
			converge(t, f, map[string]*nodetest.Sub{"conflated": conf, "raw": raw})
			if keep {
				// Raw mode misses nothing still retained: every symbol's
				// seqs arrived contiguous, across the restart.
				raw.Close()
				last := map[string]uint64{}
				for _, tk := range raw.Ticks {
					if p, ok := last[tk.Sym]; ok && tk.Seq != p+1 {
						t.Fatalf("raw gap on %s: %d after %d", tk.Sym, tk.Seq, p)
					}
					last[tk.Sym] = tk.Seq
				}
				if raw.Count("resync") != 0 {
					t.Error("resync after a restart that kept the data")
				}
			} else if conf.Count("resync") == 0 || raw.Count("resync") == 0 {
				t.Errorf("restart without data: resync events conflated=%d raw=%d, want both", conf.Count("resync"), raw.Count("resync"))
			}
		})
	}
}
