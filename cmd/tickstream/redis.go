package main

import (
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"
)

// redisLogger keeps go-redis's internal messages (pool dial retries) out of
// the terminal; the commands report failures themselves.
type redisLogger struct{}

// Printf implements go-redis's logging interface.
func (redisLogger) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(redisLogger{}) }

// connectRedis opens a client for url (redis://, rediss:// or unix://) and
// checks that the server answers.
func connectRedis(ctx context.Context, url string) (redis.UniversalClient, error) {
	opt, err := redis.ParseURL(url)
	if err != nil {
		return nil, usageError{fmt.Errorf("--redis %q: %w", url, err)}
	}
	opt.PoolSize = max(opt.PoolSize, 32)
	rdb := redis.NewClient(opt)
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s does not answer: %w", url, err)
	}
	return rdb, nil
}
