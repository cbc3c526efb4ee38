package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/alicebob/miniredis/v2"
	"github.com/redis/go-redis/v9"
)

// Client is a connection to one Redis server or a Redis Cluster, as every
// function of this package takes it. It is go-redis's UniversalClient,
// named here so that callers hold one without importing go-redis: only
// this package (and test helpers) import it.
type Client = redis.UniversalClient

// MemURL is the URL of an embedded, in-process Redis-compatible store
// (miniredis): nothing to install, nothing kept after the process ends.
// It is for the one-command demo and examples, not for production.
const MemURL = "mem://"

// ErrBadURL is returned (wrapped) by Connect for a URL it cannot parse or
// an impossible combination of options: a caller's mistake, not an outage.
var ErrBadURL = errors.New("bad redis url")

// ConnectConfig chooses a Redis and how to reach it. Exactly one of URL and
// ClusterURL is set.
type ConnectConfig struct {
	// URL of one server: redis://[user:pass@]host:port[/db],
	// rediss://… (TLS), unix:///path/to.sock, or MemURL for an embedded
	// store started by Connect and stopped by Conn.Close.
	URL string
	// ClusterURL of a Redis Cluster, as go-redis reads it:
	// redis://h1:p1?addr=h2:p2&addr=h3:p3 (any reachable members).
	ClusterURL string
	// PoolSize is the least number of pooled connections (per cluster
	// node); a URL's pool_size may ask more. Default 32: a node's reader
	// blocks one, the replayer and the health checks use others.
	PoolSize int
	// Timeout bounds the first PING that checks Redis answers. Default 5s.
	Timeout time.Duration
	// Logger receives go-redis's own messages (pool dial retries) at debug
	// level. Nil discards them: failures reach the caller as errors anyway.
	Logger *slog.Logger
}

// Conn is a connected Client. Close closes it and stops the embedded store
// if Connect started one.
type Conn struct {
	Client
	desc string
	mem  *miniredis.Miniredis
}

// String names what the connection reaches, without credentials, for logs.
func (c *Conn) String() string { return c.desc }

// Close closes the client, then the embedded store if any. Safe to call
// twice.
func (c *Conn) Close() error {
	err := c.Client.Close()
	if errors.Is(err, redis.ErrClosed) {
		err = nil
	}
	if c.mem != nil {
		c.mem.Close()
	}
	return err
}

// Connect opens the Redis that cfg names and checks that it answers (one
// PING within cfg.Timeout). A URL it cannot parse is an error wrapping
// ErrBadURL; a Redis that does not answer is any other error.
func Connect(ctx context.Context, cfg ConnectConfig) (*Conn, error) {
	setLogger(cfg.Logger)
	if cfg.PoolSize <= 0 {
		cfg.PoolSize = 32
	}
	if cfg.Timeout <= 0 {
		cfg.Timeout = 5 * time.Second
	}
	c, err := open(cfg)
	if err != nil {
		return nil, err
	}
	pctx, cancel := context.WithTimeout(ctx, cfg.Timeout)
	defer cancel()
	if err := c.Ping(pctx).Err(); err != nil {
		_ = c.Close()
		return nil, fmt.Errorf("redis at %s does not answer: %w", c.desc, err)
	}
	return c, nil
}

func open(cfg ConnectConfig) (*Conn, error) {
	switch {
	case cfg.URL != "" && cfg.ClusterURL != "":
		return nil, fmt.Errorf("%w: a server URL (%s) and a cluster URL (%s) are both set: choose one", ErrBadURL, redact(cfg.URL), redact(cfg.ClusterURL))
	case cfg.ClusterURL != "":
		opt, err := redis.ParseClusterURL(cfg.ClusterURL)
		if err != nil {
			return nil, fmt.Errorf("%w: cluster %s: %w", ErrBadURL, redact(cfg.ClusterURL), err)
		}
		opt.PoolSize = max(opt.PoolSize, cfg.PoolSize)
		capClusterOptions(opt)
		return &Conn{Client: redis.NewClusterClient(opt), desc: "cluster " + strings.Join(opt.Addrs, ",")}, nil
	case cfg.URL == MemURL || cfg.URL == "mem:":
		mem := miniredis.NewMiniRedis()
		if err := mem.StartAddr("127.0.0.1:0"); err != nil {
			return nil, fmt.Errorf("start the embedded store: %w", err)
		}
		opt := &redis.Options{Addr: mem.Addr(), PoolSize: cfg.PoolSize}
		capOptions(opt)
		rdb := redis.NewClient(opt)
		return &Conn{Client: rdb, desc: "embedded store (miniredis) " + mem.Addr(), mem: mem}, nil
	case cfg.URL == "":
		return nil, fmt.Errorf("%w: no redis URL", ErrBadURL)
	default:
		opt, err := redis.ParseURL(cfg.URL)
		if err != nil {
			return nil, fmt.Errorf("%w: %s: %w", ErrBadURL, redact(cfg.URL), err)
		}
		opt.PoolSize = max(opt.PoolSize, cfg.PoolSize)
		capOptions(opt)
		return &Conn{Client: redis.NewClient(opt), desc: opt.Network + " " + opt.Addr}, nil
	}
}

// redact drops the password from a URL for messages.
func redact(u string) string {
	at := strings.LastIndexByte(u, '@')
	scheme := strings.Index(u, "://")
	if at < 0 || scheme < 0 || at < scheme {
		return u
	}
	return u[:scheme+3] + "…@" + u[at+1:]
}

var loggerOnce sync.Once

// setLogger routes go-redis's package-wide logger to l at debug level (or
// nowhere) the first time Connect runs.
func setLogger(l *slog.Logger) {
	loggerOnce.Do(func() { redis.SetLogger(redisLogger{l}) })
}

// redisLogger adapts go-redis's logging interface to slog.
type redisLogger struct{ l *slog.Logger }

// Printf implements go-redis's internal.Logging.
func (r redisLogger) Printf(ctx context.Context, format string, v ...any) {
	if r.l != nil {
		r.l.DebugContext(ctx, "go-redis: "+fmt.Sprintf(format, v...))
	}
}

// unwrap returns the go-redis client inside a Conn (so that a Conn of a
// cluster is seen as one), or rdb itself.
func unwrap(rdb redis.UniversalClient) redis.UniversalClient {
	if c, ok := rdb.(*Conn); ok {
		return c.Client
	}
	return rdb
}
