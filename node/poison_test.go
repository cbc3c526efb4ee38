package node_test

import (
	"context"
	"fmt"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/nodetest"
)

// TestPoisonedValuesNeitherReachNorBloatANode: entries of 32 MB injected in
// two shards' streams while a simulator runs, and a poisoned latest value,
// beside a conflated and a raw subscriber. The node (connected as the
// binary connects: redisstream.Connect) refuses them as too large without
// ever holding them — the live read, the history checks and the snapshot
// of a node started after them — and both subscribers end with Redis's
// latest value of every symbol.
func TestPoisonedValuesNeitherReachNorBloatANode(t *testing.T) {
	f := nodetest.NewFeed(t)
	stop := runSim(t, f, 1000)
	ctx := context.Background()
	conn, err := redisstream.Connect(ctx, redisstream.ConnectConfig{URL: f.Redis.URL()})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	n := nodetest.StartNode(t, conn, nil)
	conf := nodetest.Subscribe(t, n.URL()+"/stream?symbols=*&interval=50ms")
	raw := nodetest.Subscribe(t, n.URL()+"/stream?symbols=*&mode=raw")
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if c := raw.Count("tick"); c < 50 {
			return fmt.Errorf("raw subscriber got %d ticks", c)
		}
		return nil
	})

	huge := strings.Repeat("x", 32<<20)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	for shard := range 2 {
		if err := f.RDB.XAdd(ctx, &redis.XAddArgs{Stream: redisstream.StreamKey(shard), Values: map[string]any{"b": huge}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	huge = ""
	tooLarge := func(base string) float64 {
		v, err := nodetest.Metric(base, "tickstream_redis_malformed_entries_total", `reason="too_large"`)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if v := tooLarge(n.URL()); v < 2 {
			return fmt.Errorf("%v entries refused as too large, want 2", v)
		}
		return nil
	})
	stop()
	converge(t, f, map[string]*nodetest.Sub{"conflated": conf, "raw": raw})
	// A node started after a latest value was poisoned reads it in its
	// snapshot (and both poisoned entries in its history checks and its
	// charts' read-back).
	victim := "AAPL"
	if err := f.RDB.HSet(ctx, redisstream.LastKey(feed.ShardOf(victim, nodetest.Shards)), victim, strings.Repeat("y", 32<<20)).Err(); err != nil {
		t.Fatal(err)
	}
	runtime.ReadMemStats(&before) // the poison itself was built by this test
	late := nodetest.StartNode(t, conn, nil)
	if v := tooLarge(late.URL()); v < 1 {
		t.Errorf("the late node refused %v values as too large, want the poisoned latest value", v)
	}
	runtime.ReadMemStats(&after)
	// Held whole, the two entries alone would be 64 MB (and the history
	// check would read one again every 100 ms while it is its stream's last).
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 24<<20 {
		t.Errorf("starting a node on the poisoned values allocated %d MB", grew>>20)
	}
}
