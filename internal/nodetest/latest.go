package nodetest

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed/redisstream"
)

// RedisLatest returns the latest seq of every symbol as Redis holds it: the
// ground truth subscribers must end with.
func RedisLatest(tb testing.TB, rdb redis.UniversalClient, shards int) map[string]uint64 {
	tb.Helper()
	m, err := redisstream.LoadLatest(context.Background(), rdb, shards)
	if err != nil {
		tb.Fatal(err)
	}
	out := make(map[string]uint64, len(m))
	for k, v := range m {
		out[k] = v.Seq
	}
	return out
}
