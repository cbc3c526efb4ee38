package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"tickstream/feed"
)

// Sink receives what a Reader reads. *fanout.Hub satisfies it. Both methods
// are called from the reader's goroutine only and must not block for long.
type Sink interface {
	// Publish applies updates read in stream order and the cursor after them.
	Publish(batch []*feed.Update, cursor string)
	// Reset replaces every symbol's value: the reader (re)built the state
	// from Redis, after starting or after Redis lost its history.
	Reset(latest []*feed.Update, cursor string)
}

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	// Shards is the shard count, as the universe stored in Redis says.
	Shards int
	// Block is how long one XREAD waits for entries. Default 1s.
	Block time.Duration
	// Count is the most entries one XREAD returns per shard. Default 1000.
	Count int64
	// EpochCheck is how often the reader checks that Redis still holds the
	// same history. Default 1s.
	EpochCheck time.Duration
	// MaxBackoff caps the jittered backoff between reconnect attempts.
	// Default 2s.
	MaxBackoff time.Duration
	// Coalesce is the shortest time between the starts of two reads that
	// return entries: a publisher that writes every 2ms then costs the node
	// one round trip per Coalesce instead of one per batch, for at most
	// that much added latency. Default 3ms; negative turns it off.
	Coalesce time.Duration
	// Logger reports disconnects and resynchronisations.
	Logger *slog.Logger
}

// ReaderStats are the reader's counters.
type ReaderStats struct {
	Entries   atomic.Uint64 // entries read
	Malformed atomic.Uint64 // entries skipped as malformed
	Errors    atomic.Uint64 // failed reads
	Resyncs   atomic.Uint64 // state rebuilt from Redis
	// MaxLagUs is the largest feed lag seen (µs from an entry's feed
	// timestamp to its read) since it was last swapped to zero.
	MaxLagUs atomic.Int64
}

// Reader follows every shard stream and feeds a Sink. It resumes from the
// last IDs after any error, with capped, jittered backoff, and rebuilds the
// state when Redis lost its history.
type Reader struct {
	rdb   redis.UniversalClient
	cfg   ReaderConfig
	sink  Sink
	keys  []string
	ids   []streamID
	epoch string
	stats ReaderStats
	ready atomic.Bool
}

// NewReader returns a reader; Run starts it.
func NewReader(rdb redis.UniversalClient, sink Sink, cfg ReaderConfig) (*Reader, error) {
	if cfg.Shards <= 0 {
		return nil, fmt.Errorf("redisstream: reader shard count %d", cfg.Shards)
	}
	if cfg.Block <= 0 {
		cfg.Block = time.Second
	}
	if cfg.Count <= 0 {
		cfg.Count = 1000
	}
	if cfg.EpochCheck <= 0 {
		cfg.EpochCheck = time.Second
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Coalesce == 0 {
		cfg.Coalesce = 3 * time.Millisecond
	}
	r := &Reader{rdb: rdb, cfg: cfg, sink: sink, ids: make([]streamID, cfg.Shards)}
	for i := range cfg.Shards {
		r.keys = append(r.keys, StreamKey(i))
	}
	return r, nil
}

// Stats returns the reader's counters.
func (r *Reader) Stats() *ReaderStats { return &r.stats }

// Ready reports whether the reader has built the state and its last read
// succeeded: the node is caught up with Redis.
func (r *Reader) Ready() bool { return r.ready.Load() }

// Cursor returns the current position.
func (r *Reader) cursor() string { return Cursor{Epoch: r.epoch, IDs: r.ids}.String() }

// Sync builds the state from Redis and hands it to the sink. Run calls it;
// a caller may call it first to serve only once the state is built.
func (r *Reader) Sync(ctx context.Context) error {
	epoch, err := ensureEpoch(ctx, r.rdb)
	if err != nil {
		return err
	}
	latest, ids, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	r.epoch, r.ids = epoch, ids
	r.sink.Reset(latest, r.cursor())
	r.stats.Resyncs.Add(1)
	r.ready.Store(true)
	return nil
}

// snapshot reads, per shard and atomically, the stream's last ID and the
// latest value of each symbol.
func (r *Reader) snapshot(ctx context.Context) ([]*feed.Update, []streamID, error) {
	ids := make([]streamID, r.cfg.Shards)
	var latest []*feed.Update
	for i := range r.cfg.Shards {
		var rng *redis.XMessageSliceCmd
		var all *redis.MapStringStringCmd
		_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			rng = p.XRevRangeN(ctx, StreamKey(i), "+", "-", 1)
			all = p.HGetAll(ctx, LastKey(i))
			return nil
		})
		if err != nil {
			return nil, nil, fmt.Errorf("snapshot shard %d: %w", i, err)
		}
		if msgs := rng.Val(); len(msgs) > 0 {
			if ids[i], err = parseID(msgs[0].ID); err != nil {
				return nil, nil, err
			}
		}
		for sym, js := range all.Val() {
			t, err := feed.DecodeTick([]byte(js))
			if err != nil || t.Sym != sym {
				r.stats.Malformed.Add(1)
				continue
			}
			latest = append(latest, &feed.Update{Sym: t.Sym, Seq: t.Seq, TS: t.TS, JSON: []byte(js)})
		}
	}
	return latest, ids, nil
}

// Run reads until ctx is done, then returns nil. It never gives up on
// Redis: errors are logged, counted and retried.
func (r *Reader) Run(ctx context.Context) error {
	backoff := 50 * time.Millisecond
	needSync := !r.ready.Load()
	lastCheck := time.Now()
	failing := false
	for ctx.Err() == nil {
		start := time.Now()
		n := r.stats.Entries.Load()
		err := r.step(ctx, &needSync, &lastCheck)
		if err == nil && r.stats.Entries.Load() != n {
			if d := r.cfg.Coalesce - time.Since(start); d > 0 {
				select {
				case <-ctx.Done():
				case <-time.After(d):
				}
			}
		}
		if err == nil {
			if failing {
				r.cfg.Logger.Info("redis reachable again; resumed from the last ids")
				failing = false
			}
			backoff = 50 * time.Millisecond
			continue
		}
		if ctx.Err() != nil {
			break
		}
		r.ready.Store(false)
		r.stats.Errors.Add(1)
		if !failing {
			r.cfg.Logger.Warn("reading redis failed; retrying with backoff", "err", err)
			failing = true
		}
		// On reconnect, look at the epoch before reading on.
		lastCheck = time.Time{}
		d := backoff/2 + rand.N(backoff/2+1)
		select {
		case <-ctx.Done():
		case <-time.After(d):
		}
		backoff = min(2*backoff, r.cfg.MaxBackoff)
	}
	return nil
}

// step does one unit of work: a resync, an epoch check or one XREAD.
func (r *Reader) step(ctx context.Context, needSync *bool, lastCheck *time.Time) error {
	if *needSync {
		if err := r.Sync(ctx); err != nil {
			return err
		}
		*needSync = false
		*lastCheck = time.Now()
	}
	if time.Since(*lastCheck) >= r.cfg.EpochCheck {
		e, err := r.rdb.Get(ctx, EpochKey).Result()
		if err != nil && !errors.Is(err, redis.Nil) {
			return fmt.Errorf("check epoch: %w", err)
		}
		*lastCheck = time.Now()
		if e != r.epoch {
			r.cfg.Logger.Warn("redis lost its history (new epoch): rebuilding the state", "old", r.epoch, "new", e)
			*needSync = true
			return nil
		}
	}
	return r.read(ctx)
}

// read does one XREAD over all shards and publishes what it returns.
func (r *Reader) read(ctx context.Context) error {
	if _, cluster := r.rdb.(*redis.ClusterClient); cluster {
		return r.readCluster(ctx)
	}
	args := make([]string, 0, 2*len(r.keys))
	args = append(args, r.keys...)
	for _, id := range r.ids {
		args = append(args, id.String())
	}
	res, err := r.rdb.XRead(ctx, &redis.XReadArgs{Streams: args, Count: r.cfg.Count, Block: r.cfg.Block}).Result()
	if errors.Is(err, redis.Nil) {
		r.ready.Store(true)
		return nil
	}
	if err != nil {
		return fmt.Errorf("xread: %w", err)
	}
	r.publish(res)
	return nil
}

// readCluster reads every shard in one pipeline, one XREAD per shard (the
// shards live in different slots, and a blocking read would hold its
// connection), and waits a little when nothing came.
func (r *Reader) readCluster(ctx context.Context) error {
	cmds := make([]*redis.XStreamSliceCmd, len(r.keys))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range r.keys {
			cmds[i] = p.XRead(ctx, &redis.XReadArgs{Streams: []string{k, r.ids[i].String()}, Count: r.cfg.Count, Block: -1})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("xread: %w", err)
	}
	var res []redis.XStream
	for _, c := range cmds {
		res = append(res, c.Val()...)
	}
	if len(res) == 0 {
		r.ready.Store(true)
		select {
		case <-ctx.Done():
		case <-time.After(max(r.cfg.Coalesce, time.Millisecond)):
		}
		return nil
	}
	r.publish(res)
	return nil
}

// publish hands what a read returned to the sink, advancing the IDs.
func (r *Reader) publish(res []redis.XStream) {
	var batch []*feed.Update
	for _, st := range res {
		shard := r.shardOf(st.Stream)
		if shard < 0 {
			continue
		}
		for _, m := range st.Messages {
			id, err := parseID(m.ID)
			if err != nil {
				continue
			}
			r.ids[shard] = id
			r.stats.Entries.Add(1)
			u, err := DecodeEntry(m.Values)
			if err != nil {
				r.stats.Malformed.Add(1)
				continue
			}
			batch = append(batch, u)
		}
	}
	if len(batch) > 0 {
		// The oldest entry of a read lags most.
		lag := time.Now().UnixMicro() - batch[0].TS
		for cur := r.stats.MaxLagUs.Load(); lag > cur && !r.stats.MaxLagUs.CompareAndSwap(cur, lag); cur = r.stats.MaxLagUs.Load() {
		}
	}
	r.sink.Publish(batch, r.cursor())
	r.ready.Store(true)
}

func (r *Reader) shardOf(key string) int {
	for i, k := range r.keys {
		if k == key {
			return i
		}
	}
	return -1
}

// DecodeEntry turns a stream entry's fields into an update. It rejects an
// entry with a missing or malformed field, or whose JSON is not a valid
// tick object; such an entry is skipped and counted, never fatal.
func DecodeEntry(v map[string]any) (*feed.Update, error) {
	sym, _ := v["s"].(string)
	qs, _ := v["q"].(string)
	ts, _ := v["t"].(string)
	d, _ := v["d"].(string)
	if err := feed.ValidateSymbolName(sym); err != nil {
		return nil, fmt.Errorf("entry: %w", err)
	}
	seq, err := strconv.ParseUint(qs, 10, 64)
	if err != nil || seq == 0 {
		return nil, fmt.Errorf("entry %s: bad seq %q", sym, qs)
	}
	tsv, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, fmt.Errorf("entry %s: bad ts %q", sym, ts)
	}
	if len(d) < 2 || d[0] != '{' || d[len(d)-1] != '}' || !json.Valid([]byte(d)) {
		return nil, fmt.Errorf("entry %s: payload is not a JSON object", sym)
	}
	return &feed.Update{Sym: sym, Seq: seq, TS: tsv, JSON: []byte(d)}, nil
}

// ShardMasters returns, for a Redis Cluster, the address of the master
// that holds each shard (index = shard); nil for a single Redis.
func ShardMasters(ctx context.Context, rdb redis.UniversalClient, shards int) ([]string, error) {
	cc, ok := rdb.(*redis.ClusterClient)
	if !ok {
		return nil, nil
	}
	out := make([]string, shards)
	for i := range shards {
		m, err := cc.MasterForKey(ctx, StreamKey(i))
		if err != nil {
			return nil, fmt.Errorf("master of shard %d: %w", i, err)
		}
		out[i] = m.Options().Addr
	}
	return out, nil
}
