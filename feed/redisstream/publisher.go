package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"

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
	byShard := make(map[int][]int, p.cfg.Shards)
	for i := range ticks {
		sh := feed.ShardOf(ticks[i].Sym, p.cfg.Shards)
		byShard[sh] = append(byShard[sh], i)
	}
	buf := p.buf[:0]
	js := make([]string, len(ticks))
	for i := range ticks {
		start := len(buf)
		buf = ticks[i].AppendJSON(buf)
		js[i] = string(buf[start:])
	}
	p.buf = buf
	var epoch *redis.StringCmd
	if _, cluster := p.rdb.(*redis.ClusterClient); cluster {
		if err := p.publishCluster(ctx, ticks, js, byShard); err != nil {
			return fmt.Errorf("publish %d ticks: %w", len(ticks), err)
		}
		epoch = p.rdb.Get(ctx, EpochKey) // its own slot: a round trip of its own
	} else {
		// One Redis: every shard and the epoch check in one MULTI, one round trip.
		pipe := p.rdb.TxPipeline()
		for sh, idx := range byShard {
			p.queueShard(ctx, pipe, sh, ticks, js, idx)
		}
		epoch = pipe.Get(ctx, EpochKey)
		if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("publish %d ticks: %w", len(ticks), err)
		}
	}
	e, err := epoch.Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("check epoch: %w", err)
	}
	if e != p.epoch {
		p.cfg.Logger.Warn("redis lost its data (no epoch or a new one): storing the universe again", "old_epoch", p.epoch, "epoch", e)
		return p.init(ctx)
	}
	return nil
}

// queueShard queues one shard's entries and its latest-value update.
func (p *Publisher) queueShard(ctx context.Context, pipe redis.Pipeliner, shard int, ticks []feed.Tick, js []string, idx []int) {
	kv := make([]any, 0, 2*len(idx))
	for _, i := range idx {
		t := &ticks[i]
		pipe.XAdd(ctx, &redis.XAddArgs{
			Stream: StreamKey(shard),
			MaxLen: p.cfg.MaxLen,
			Approx: true,
			Values: []string{"s", t.Sym, "q", strconv.FormatUint(t.Seq, 10), "t", strconv.FormatInt(t.TS, 10), "d", js[i]},
		})
		kv = append(kv, t.Sym, js[i])
	}
	pipe.HSet(ctx, LastKey(shard), kv...)
}

// publishCluster writes each shard in its own MULTI/EXEC (a cluster has no
// cross-slot transaction; a shard's keys share a slot), all shards at once.
func (p *Publisher) publishCluster(ctx context.Context, ticks []feed.Tick, js []string, byShard map[int][]int) error {
	var wg sync.WaitGroup
	errs := make(chan error, len(byShard))
	for sh, idx := range byShard {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := p.rdb.TxPipelined(ctx, func(pipe redis.Pipeliner) error {
				p.queueShard(ctx, pipe, sh, ticks, js, idx)
				return nil
			})
			if err != nil {
				errs <- fmt.Errorf("shard %d: %w", sh, err)
			}
		}()
	}
	wg.Wait()
	close(errs)
	return <-errs
}
