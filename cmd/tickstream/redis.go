package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"

	"github.com/tickstream/tickstream/feed/redisstream"
)

// redisFlags are the flags that choose a Redis: one server or a cluster.
type redisFlags struct {
	url     *string
	cluster *string
}

func (r *redisFlags) register(f *flags, def string) {
	r.url = f.str("redis", def, "Redis URL: redis://host:port, rediss://… (TLS), unix:///path, or mem:// for an embedded store")
	r.cluster = f.str("redis-cluster", "", "Redis Cluster URL instead of --redis: redis://h1:p1?addr=h2:p2&addr=h3:p3")
}

// check refuses --redis with --redis-cluster.
func (r *redisFlags) check(f *flags) error { return f.exclusive("redis", "redis-cluster") }

// connect opens the chosen Redis and checks that it answers.
func (r *redisFlags) connect(ctx context.Context, log *slog.Logger) (*redisstream.Conn, error) {
	cfg := redisstream.ConnectConfig{URL: *r.url, Logger: log}
	flag := "--redis"
	if *r.cluster != "" {
		cfg, flag = redisstream.ConnectConfig{ClusterURL: *r.cluster, Logger: log}, "--redis-cluster"
	}
	c, err := redisstream.Connect(ctx, cfg)
	if errors.Is(err, redisstream.ErrBadURL) {
		return nil, usageError{fmt.Errorf("%s: %w", flag, err)}
	}
	if err != nil {
		return nil, err
	}
	log.Info("redis connected", "redis", c.String())
	return c, nil
}
