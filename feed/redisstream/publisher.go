package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"

	"github.com/redis/go-redis/v9"

	"tickstream/feed"
)

// PublisherConfig configures a Publisher.
type PublisherConfig struct {
	// Shards is the number of shard streams. Default DefaultShards.
	Shards int
	// MaxLen is the approximate retention of each shard stream, in
	// entries. Default DefaultMaxLen.
	MaxLen int64
	// Universe is stored in Redis for the nodes. Required.
	Universe *feed.Universe
	// Logger reports re-initialisation after Redis lost its data.
	Logger *slog.Logger
}

// Publisher stores ticks in the shard streams. Publish is not safe for
// concurrent use (one simulator calls it).
type Publisher struct {
	rdb   redis.UniversalClient
	cfg   PublisherConfig
	epoch string
	buf   []byte
}

// NewPublisher returns a publisher and stores the universe, the shard count
// and (if missing) an epoch.
func NewPublisher(ctx context.Context, rdb redis.UniversalClient, cfg PublisherConfig) (*Publisher, error) {
	if cfg.Universe == nil {
		return nil, errors.New("redisstream: publisher needs a universe")
	}
	if cfg.Shards <= 0 {
		cfg.Shards = DefaultShards
	}
	if cfg.MaxLen <= 0 {
		cfg.MaxLen = DefaultMaxLen
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Publisher{rdb: rdb, cfg: cfg}
	if err := p.init(ctx); err != nil {
		return nil, err
	}
	return p, nil
}

func (p *Publisher) init(ctx context.Context) error {
	if err := StoreUniverse(ctx, p.rdb, p.cfg.Universe, p.cfg.Shards); err != nil {
		return err
	}
	e, err := ensureEpoch(ctx, p.rdb)
	if err != nil {
		return err
	}
	p.epoch = e
	return nil
}

// Shards returns the shard count.
func (p *Publisher) Shards() int { return p.cfg.Shards }

// Publish stores ticks: for each, an entry in its shard's stream (trimmed
// with MAXLEN ~) and its value in the shard's latest-value hash, all in one
// MULTI/EXEC per shard so that a node rebuilding from the hashes sees a
// state consistent with the stream positions. If Redis came back without
// its data, Publish stores the universe and a new epoch again.
func (p *Publisher) Publish(ctx context.Context, ticks []feed.Tick) error {
	if len(ticks) == 0 {
		return nil
	}
	pipe := p.rdb.TxPipeline()
	last := make(map[int][]any, p.cfg.Shards)
	buf := p.buf[:0]
	for i := range ticks {
		t := &ticks[i]
		shard := feed.ShardOf(t.Sym, p.cfg.Shards)
		start := len(buf)
		buf = t.AppendJSON(buf)
		js := string(buf[start:])
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: StreamKey(shard),
			MaxLen: p.cfg.MaxLen,
			Approx: true,
			Values: []string{"s", t.Sym, "q", strconv.FormatUint(t.Seq, 10), "t", strconv.FormatInt(t.TS, 10), "d", js},
		})
		last[shard] = append(last[shard], t.Sym, js)
	}
	p.buf = buf
	for shard, kv := range last {
		pipe.HSet(ctx, LastKey(shard), kv...)
	}
	epoch := pipe.Get(ctx, EpochKey)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("publish %d ticks: %w", len(ticks), err)
	}
	if e, err := epoch.Result(); err != nil || e != p.epoch {
		p.cfg.Logger.Warn("redis lost its data (no epoch or a new one): storing the universe again", "old_epoch", p.epoch, "epoch", e)
		if err := p.init(ctx); err != nil {
			return err
		}
	}
	return nil
}
