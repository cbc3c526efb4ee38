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
	"github.com/tickstream/tickstream/node"
)

// nextTick returns sym's latest value in Redis as the publisher's next
// tick of it would look (seq + ahead, ts now): a tick every check but the
// one under test accepts.
func nextTick(t *testing.T, f *nodetest.Feed, sym string, ahead uint64) feed.Tick {
	t.Helper()
	js, err := f.RDB.HGet(context.Background(), redisstream.LastKey(feed.ShardOf(sym, nodetest.Shards)), sym).Result()
	if err != nil {
		t.Fatal(err)
	}
	tk, err := feed.DecodeTick([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	tk.Seq += ahead
	tk.TS = time.Now().UnixMicro()
	return tk
}

// forge appends an entry of fields (field, value, …: a field may repeat)
// to sym's shard stream, as anyone with write access to Redis can.
func forge(t *testing.T, f *nodetest.Feed, sym string, fields ...any) {
	t.Helper()
	key := redisstream.StreamKey(feed.ShardOf(sym, nodetest.Shards))
	if err := f.RDB.Do(context.Background(), append([]any{"xadd", key, "*"}, fields...)...).Err(); err != nil {
		t.Fatal(err)
	}
}

// metric reads a counter of a node's /metrics.
func metric(t *testing.T, n *node.Node, name, sel string) float64 {
	t.Helper()
	v, err := nodetest.Metric(n.URL(), name, sel)
	if err != nil {
		t.Fatal(err)
	}
	return v
}

// TestForgedKeySetsNeverReachSubscribers guards the exact key sets: a tick
// whose JSON holds a key twice (in another case, escaped, or the same), or
// an unknown key, and an entry with a field twice or an unknown field, are
// refused and counted as reason "keys", though every other check passes
// (the symbol's next seq, prices on its grid); a conflated and a raw
// subscriber beside them keep receiving, never see the forged value, and
// end with Redis's latest value of every symbol.
func TestForgedKeySetsNeverReachSubscribers(t *testing.T) {
	f := nodetest.NewFeed(t)
	stop := runSim(t, f, 1000)
	n := f.StartNode(nil)
	conf := nodetest.Subscribe(t, n.URL()+"/stream?symbols=*&interval=50ms")
	raw := nodetest.Subscribe(t, n.URL()+"/stream?symbols=*&mode=raw")
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if c := raw.Count("tick"); c < 50 {
			return fmt.Errorf("raw subscriber got %d ticks", c)
		}
		return nil
	})
	const sym = "AAPL"
	tk := nextTick(t, f, sym, 1)
	line := string(tk.AppendJSON(nil))
	head := line[:len(line)-1]
	const forgedBid = `"1.00"`
	lines := []string{
		head + `,"BID":` + forgedBid + `}`,
		head + `,"bid":` + forgedBid + `}`,
		head + `,"b\u0069d":` + forgedBid + `}`,
		head + `,"pad":"x"}`,
	}
	for _, l := range lines {
		forge(t, f, sym, "b", l)
	}
	forge(t, f, sym, "b", line, "x", "1")  // an unknown field
	forge(t, f, sym, "b", line, "b", line) // a field twice
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if v := metric(t, n, "tickstream_redis_malformed_entries_total", `reason="keys"`); v < 6 {
			return fmt.Errorf("%v entries refused for their keys, want 6", v)
		}
		return nil
	})
	before := raw.Count("tick")
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if c := raw.Count("tick"); c < before+50 {
			return fmt.Errorf("raw subscriber got %d ticks after the forged entries, want 50", c-before)
		}
		return nil
	})
	stop()
	converge(t, f, map[string]*nodetest.Sub{"conflated": conf, "raw": raw})
	for name, s := range map[string]*nodetest.Sub{"conflated": conf, "raw": raw} {
		s.Close()
		for _, got := range s.Ticks {
			if got.Sym == sym && got.Bid.String() == strings.Trim(forgedBid, `"`) {
				t.Errorf("%s received the forged bid: %+v", name, got)
			}
		}
	}
}

// TestForgedSeqJumpNeitherResyncsNorBecomesLatest guards the seq rule: an
// entry whose tick jumps 999 ahead of its symbol's seq, not confirmed by
// the latest-value hash, is refused and counted (seq_jump) by every node;
// it never becomes the latest value, no node starts a new epoch or
// resynchronises, no subscriber gets a resync, and subscribers of both
// nodes keep receiving and end with Redis's latest value of every symbol.
func TestForgedSeqJumpNeitherResyncsNorBecomesLatest(t *testing.T) {
	f := nodetest.NewFeed(t)
	stop := runSim(t, f, 1000)
	a, b := f.StartNode(nil), f.StartNode(nil)
	subs := map[string]*nodetest.Sub{
		"a conflated": nodetest.Subscribe(t, a.URL()+"/stream?symbols=*&interval=50ms"),
		"a raw":       nodetest.Subscribe(t, a.URL()+"/stream?symbols=*&mode=raw"),
		"b conflated": nodetest.Subscribe(t, b.URL()+"/stream?symbols=*&interval=50ms"),
		"b raw":       nodetest.Subscribe(t, b.URL()+"/stream?symbols=*&mode=raw"),
	}
	nodetest.CheckFor(t, 10*time.Second, func() error {
		for name, s := range subs {
			if c := s.Count("tick"); c < 50 {
				return fmt.Errorf("%s got %d ticks", name, c)
			}
		}
		return nil
	})
	const sym = "AAPL"
	forged := nextTick(t, f, sym, 999)
	forge(t, f, sym, "b", string(forged.AppendJSON(nil)))
	for _, n := range []*node.Node{a, b} {
		nodetest.CheckFor(t, 10*time.Second, func() error {
			if v := metric(t, n, "tickstream_redis_malformed_entries_total", `reason="seq_jump"`); v < 1 {
				return fmt.Errorf("node %s: no seq jump refused", n.Name)
			}
			return nil
		})
	}
	// The genuine ticks after the forged one go on: every subscriber gets
	// more of the symbol.
	counts := map[string]int{}
	for name, s := range subs {
		counts[name] = s.Count("tick")
	}
	nodetest.CheckFor(t, 10*time.Second, func() error {
		for name, s := range subs {
			if c := s.Count("tick"); c < counts[name]+50 {
				return fmt.Errorf("%s got %d ticks after the forged one", name, c-counts[name])
			}
		}
		return nil
	})
	stop()
	converge(t, f, subs)
	for _, n := range []*node.Node{a, b} {
		if st := n.Reader.Stats(); st.Resyncs.Load() != 1 || st.Behind.Load() != 0 {
			t.Errorf("node %s: %d state builds and %d new epochs, want 1 and 0", n.Name, st.Resyncs.Load(), st.Behind.Load())
		}
	}
	for name, s := range subs {
		s.Close()
		if c := s.Count("resync"); c != 0 {
			t.Errorf("%s got %d resyncs", name, c)
		}
		for _, got := range s.Ticks {
			if got.Sym == sym && got.Seq == forged.Seq && got.TS == forged.TS {
				t.Errorf("%s received the forged tick", name)
			}
		}
	}
}

// TestSeedingStopsAtSeedMaxBytes guards the seeding bound: a node that
// starts beside a forged shard (entries of 1,000 ticks each, many times
// SeedMaxBytes) reads at most SeedMaxBytes of it to seed its charts, at
// start and again at every new epoch, says so (tickstream_seed_capped_total,
// tickstream_seed_bytes), allocates far less than the forged shard holds,
// and its subscriber keeps receiving and ends with Redis's latest value of
// every symbol.
func TestSeedingStopsAtSeedMaxBytes(t *testing.T) {
	f := nodetest.NewFeed(t)
	stop := runSim(t, f, 500)
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if n := len(nodetest.RedisLatest(t, f.RDB, nodetest.Shards)); n < 40 {
			return fmt.Errorf("%d symbols in redis", n)
		}
		return nil
	})
	const sym = "AAPL"
	tk := nextTick(t, f, sym, 0) // at or below the latest value: read, as the worst case
	line := string(tk.AppendJSON(nil))
	batch := strings.TrimSuffix(strings.Repeat(line+"\n", redisstream.MaxBatchTicks), "\n")
	const entries = 300 // ~40 MB
	ctx := context.Background()
	p := f.RDB.Pipeline()
	for range entries {
		p.XAdd(ctx, &redis.XAddArgs{Stream: redisstream.StreamKey(feed.ShardOf(sym, nodetest.Shards)), Values: []any{"b", batch}})
	}
	if _, err := p.Exec(ctx); err != nil {
		t.Fatal(err)
	}
	forgedBytes := entries * len(batch)
	batch = ""

	const maxBytes = 4 << 20
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	n := f.StartNode(func(c *node.Config) { c.SeedMaxBytes = maxBytes })
	sub := nodetest.Subscribe(t, n.URL()+"/stream?symbols=*&interval=50ms")
	<-n.BarsSeeded()
	runtime.ReadMemStats(&after)
	if v := metric(t, n, "tickstream_seed_capped_total", ""); v != 1 {
		t.Errorf("%v seedings capped, want 1", v)
	}
	if v := metric(t, n, "tickstream_seed_bytes", ""); v > maxBytes || v == 0 {
		t.Errorf("seeding read %v bytes, want some and at most %d", v, maxBytes)
	}
	if grew := after.TotalAlloc - before.TotalAlloc; grew > uint64(forgedBytes)/2 {
		t.Errorf("starting the node allocated %d MB, the forged shard holds %d MB", grew>>20, forgedBytes>>20)
	}
	// A new epoch (Redis lost its history, as far as the node knows): the
	// node seeds again, within the bound again.
	if err := f.RDB.Set(ctx, redisstream.EpochKey, "forged-epoch", 0).Err(); err != nil {
		t.Fatal(err)
	}
	nodetest.CheckFor(t, 20*time.Second, func() error {
		if v := metric(t, n, "tickstream_seed_capped_total", ""); v < 2 {
			return fmt.Errorf("%v seedings capped, want 2 (at start and after the new epoch)", v)
		}
		return nil
	})
	if v := metric(t, n, "tickstream_seed_bytes", ""); v > maxBytes {
		t.Errorf("the second seeding read %v bytes, want at most %d", v, maxBytes)
	}
	base := sub.Count("tick")
	nodetest.CheckFor(t, 10*time.Second, func() error {
		if c := sub.Count("tick"); c < base+50 {
			return fmt.Errorf("subscriber got %d ticks since the new epoch", c-base)
		}
		return nil
	})
	stop()
	converge(t, f, map[string]*nodetest.Sub{"conflated": sub})
}
