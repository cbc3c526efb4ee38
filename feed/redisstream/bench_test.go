package redisstream

import (
	"context"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/simulator"
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
	c0 := -1.0
	if _, cluster := rdb.(*redis.ClusterClient); !cluster {
		c0 = redisCPU(b, rdb)
	}
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
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "ticks/s")
	if c0 >= 0 {
		b.ReportMetric((redisCPU(b, rdb)-c0)*1e6/float64(b.N), "redis-µs/tick")
	}
}

// redisCPU returns the CPU seconds a Redis has used (INFO cpu).
func redisCPU(b *testing.B, rdb redis.UniversalClient) float64 {
	info, err := rdb.Info(context.Background(), "cpu").Result()
	if err != nil {
		b.Fatal(err)
	}
	sum := 0.0
	for _, line := range strings.Split(info, "\n") {
		k, v, _ := strings.Cut(strings.TrimSpace(line), ":")
		if k == "used_cpu_sys" || k == "used_cpu_user" {
			f, _ := strconv.ParseFloat(v, 64)
			sum += f
		}
	}
	return sum
}
