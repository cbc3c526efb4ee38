package redisstream

import (
	"context"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/internal/redistest"
)

func mustDec(s string) decimal.Decimal { return decimal.RequireFromString(s) }

// storedTicks counts the ticks held by the first shards streams: a line of
// a batch entry's b each, one for an entry of the first layout.
func storedTicks(t *testing.T, ctx context.Context, rdb redis.UniversalClient, shards int) int {
	t.Helper()
	n := 0
	for i := range shards {
		msgs, err := rdb.XRange(ctx, StreamKey(i), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			if b, ok := m.Values["b"].(string); ok {
				n += strings.Count(b, "\n") + 1
			} else {
				n++
			}
		}
	}
	return n
}

// connectCapped starts a private redis-server and connects to it as a node
// does (Connect: reply strings capped), closing it when the test ends.
func connectCapped(t *testing.T) (*redistest.Server, *Conn) {
	t.Helper()
	srv := redistest.Start(t)
	conn, err := Connect(t.Context(), ConnectConfig{URL: srv.URL()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = conn.Close() })
	return srv, conn
}
