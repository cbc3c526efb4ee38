package redisstream

import (
	"context"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"tickstream/feed"
	"tickstream/internal/redistest"
	"tickstream/simulator"
)

// BenchmarkPublisher measures ticks stored per second in a real local
// redis-server, in batches as the simulator sends them (2ms of a 100k/s
// feed = 200 ticks), each batch one MULTI/EXEC of XADDs and HSETs.
func BenchmarkPublisher(b *testing.B) {
	b.Run("redis=single", func(b *testing.B) { benchPublish(b, redistest.Start(b).Client()) })
	b.Run("redis=cluster3x2", func(b *testing.B) {
		opt, err := redis.ParseClusterURL(redistest.StartCluster(b).URL())
		if err != nil {
			b.Fatal(err)
		}
		rdb := redis.NewClusterClient(opt)
		defer rdb.Close()
		benchPublish(b, rdb)
	})
}

func benchPublish(b *testing.B, rdb redis.UniversalClient) {
	u := simulator.Universe(0)
	pub, err := NewPublisher(context.Background(), rdb, PublisherConfig{Universe: u, Shards: DefaultShards})
	if err != nil {
		b.Fatal(err)
	}
	g, _ := simulator.NewGenerator(simulator.GeneratorConfig{Rate: 100_000})
	const batch = 200
	ticks := make([]feed.Tick, batch)
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i += batch {
		for j := range ticks {
			ticks[j], _ = g.Next()
			ticks[j].TS = time.Now().UnixMicro()
		}
		if err := pub.Publish(context.Background(), ticks); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ticks/s")
}
