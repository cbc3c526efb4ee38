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

// redisFlags are the flags that choose a Redis: one server or a cluster.
type redisFlags struct {
	url     *string
	cluster *string
}

func (r *redisFlags) register(f *flags, def string) {
	r.url = f.str("redis", def, "Redis URL (redis://host:port, rediss://…, unix:///path)")
	r.cluster = f.str("redis-cluster", "", "Redis Cluster URL instead, as go-redis reads it: redis://h1:p1?addr=h2:p2&addr=h3:p3")
}

// connect opens the chosen client and checks that Redis answers.
func (r *redisFlags) connect(ctx context.Context) (redis.UniversalClient, error) {
	var rdb redis.UniversalClient
	what := *r.url
	if *r.cluster != "" {
		opt, err := redis.ParseClusterURL(*r.cluster)
		if err != nil {
			return nil, usageError{fmt.Errorf("--redis-cluster %q: %w", *r.cluster, err)}
		}
		opt.PoolSize = max(opt.PoolSize, 32)
		rdb, what = redis.NewClusterClient(opt), *r.cluster
	} else {
		opt, err := redis.ParseURL(*r.url)
		if err != nil {
			return nil, usageError{fmt.Errorf("--redis %q: %w", *r.url, err)}
		}
		opt.PoolSize = max(opt.PoolSize, 32)
		rdb = redis.NewClient(opt)
	}
	pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if err := rdb.Ping(pctx).Err(); err != nil {
		_ = rdb.Close()
		return nil, fmt.Errorf("redis at %s does not answer: %w", what, err)
	}
	return rdb, nil
}
