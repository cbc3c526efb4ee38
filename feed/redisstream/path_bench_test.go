package redisstream

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/bars"
	"github.com/tickstream/tickstream/simulator"
)

// teeSink is what a node's reader feeds: the hub and the bar builder.
type teeSink struct {
	hub  *fanout.Hub
	bars *bars.Builder
}

func (s teeSink) Publish(batch []*feed.Update, cursor string) {
	s.hub.Publish(batch, cursor)
	s.bars.Add(batch)
}

func (s teeSink) Reset(latest []*feed.Update, cursor string) { s.hub.Reset(latest, cursor) }

// BenchmarkReaderPath measures the node's CPU per feed tick after the read:
// a reply's batch entries (a 20,000 ticks/s feed of 500 symbols, 2 ms
// batches cut per shard) validated, admitted and handed to the hub (no
// subscribers) and the bar builder, as a node does. No Redis and no socket:
// the part of BenchmarkFeed's node figure that grows with the tick rate.
func BenchmarkReaderPath(b *testing.B) {
	u := simulator.Universe(0)
	hub, err := fanout.New(fanout.Config{Symbols: u.Names()})
	if err != nil {
		b.Fatal(err)
	}
	defer hub.Close()
	bb, err := bars.New(bars.Config{Universe: u})
	if err != nil {
		b.Fatal(err)
	}
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialed: the happy path asks Redis nothing
	defer rdb.Close()
	r, err := NewReader(rdb, teeSink{hub, bb}, ReaderConfig{Shards: DefaultShards, Universe: u})
	if err != nil {
		b.Fatal(err)
	}
	g, err := simulator.NewGenerator(simulator.GeneratorConfig{Rate: 20_000})
	if err != nil {
		b.Fatal(err)
	}
	const perRead = 100 // 5 ms of 20,000 ticks/s
	// Pregenerate reads of batch entries: ticks grouped per shard, one entry
	// per shard and read.
	reads := make([][]entryView, (b.N+perRead-1)/perRead)
	var ms uint64 = 1
	for i := range reads {
		lines := make([][]byte, DefaultShards)
		for range perRead {
			t, _ := g.Next()
			sh := feed.ShardOf(t.Sym, DefaultShards)
			if len(lines[sh]) > 0 {
				lines[sh] = append(lines[sh], '\n')
			}
			lines[sh] = t.AppendJSON(lines[sh])
		}
		for sh, l := range lines {
			if len(l) > 0 {
				reads[i] = append(reads[i], entryView{shard: sh, id: streamID{ms, 0}, b: l})
			}
		}
		ms++
	}
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for _, res := range reads {
		if err := r.publish(ctx, res); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	if got := hub.Stats().Ticks.Load(); got < uint64(b.N) {
		b.Fatalf("hub took %d ticks of %d", got, b.N)
	}
	if m := r.Stats().Malformed.Load(); m != 0 {
		b.Fatalf("%d ticks refused", m)
	}
}
