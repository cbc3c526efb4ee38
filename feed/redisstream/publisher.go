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
	rdb    redis.UniversalClient
	cfg    PublisherConfig
	epoch  string
	maxLen string
	// Reused from one Publish to the next: no allocation per tick.
	shardOf map[string]int // each symbol's shard, worked out once
	packs   [][]byte       // per shard: the ticks of this batch, packed
	counts  []int          // per shard: ticks in packs
	keys    [][]string     // per shard: its stream, latest-value hash and batch mark
	cmds    []*redis.Cmd   // per shard: the script run of this batch
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
	p := &Publisher{rdb: rdb, cfg: cfg, maxLen: strconv.FormatInt(cfg.MaxLen, 10), shardOf: map[string]int{},
		packs: make([][]byte, cfg.Shards), counts: make([]int, cfg.Shards), cmds: make([]*redis.Cmd, cfg.Shards)}
	for i := range cfg.Shards {
		p.keys = append(p.keys, []string{StreamKey(i), LastKey(i), batchKey(i)})
	}
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

// publishScript stores one shard's ticks of a batch: for each, an entry in
// the shard's stream (trimmed with MAXLEN ~), then the latest value of each
// symbol in the shard's hash. A script runs atomically, so a node that
// rebuilds from the hash and the stream's last ID (in one MULTI) always sees
// them agree, as the MULTI per batch used to ensure, and it is one command
// per shard instead of two per tick. A run is whole or nothing; a batch
// retried after its reply was lost is not stored twice: each run records
// its first tick's symbol and seq (a publisher's seqs only grow) in
// KEYS[3], and a run that finds its own there returns at once. ARGV[1] is
// the retention, ARGV[2] the ticks, four lines each (sym, seq, ts, JSON:
// none holds a newline).
var publishScript = redis.NewScript(`
local mark = string.match(ARGV[2], "^[^\n]*\n[^\n]*\n")
if not mark then return 0 end
if redis.call('GET', KEYS[3]) == mark then return 0 end
local kv, n = {}, 0
for s, q, t, d in string.gmatch(ARGV[2], "([^\n]*)\n([^\n]*)\n([^\n]*)\n([^\n]*)\n") do
  redis.call('XADD', KEYS[1], 'MAXLEN', '~', ARGV[1], '*', 's', s, 'q', q, 't', t, 'd', d)
  kv[#kv+1] = s
  kv[#kv+1] = d
  n = n + 1
end
if n > 0 then redis.call('HSET', KEYS[2], unpack(kv)) end
redis.call('SET', KEYS[3], mark)
return n
`)

// maxScriptTicks bounds the ticks of one script run (HSET's arguments are
// unpacked onto Lua's stack, which holds about 8,000).
const maxScriptTicks = 1000

// Publish stores ticks: for each, an entry in its shard's stream and its
// value in the shard's latest-value hash, one script run per shard (atomic:
// see publishScript), all shards and the epoch check in one pipeline (one
// round trip to a single Redis; a cluster pipeline sends each node its
// shards). Ticks are packed into reused buffers: no allocation per tick. If
// Redis came back without its data, Publish stores the universe and a new
// epoch again.
func (p *Publisher) Publish(ctx context.Context, ticks []feed.Tick) error {
	for len(ticks) > 0 {
		n := min(len(ticks), maxScriptTicks)
		if err := p.publish(ctx, ticks[:n]); err != nil {
			return err
		}
		ticks = ticks[n:]
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, ticks []feed.Tick) error {
	for i := range p.packs {
		p.packs[i], p.counts[i], p.cmds[i] = p.packs[i][:0], 0, nil
	}
	for i := range ticks {
		t := &ticks[i]
		sh, ok := p.shardOf[t.Sym]
		if !ok {
			sh = feed.ShardOf(t.Sym, p.cfg.Shards)
			p.shardOf[t.Sym] = sh
		}
		b := append(p.packs[sh], t.Sym...)
		b = append(b, '\n')
		b = strconv.AppendUint(b, t.Seq, 10)
		b = append(b, '\n')
		b = strconv.AppendInt(b, t.TS, 10)
		b = append(b, '\n')
		b = t.AppendJSON(b)
		p.packs[sh] = append(b, '\n')
		p.counts[sh]++
	}
	pipe := p.rdb.Pipeline()
	for sh, n := range p.counts {
		if n > 0 {
			p.cmds[sh] = publishScript.EvalSha(ctx, pipe, p.keys[sh], p.maxLen, p.packs[sh])
		}
	}
	epoch := pipe.Get(ctx, EpochKey)
	_, _ = pipe.Exec(ctx) // each command's error is looked at below
	for sh, c := range p.cmds {
		if c == nil {
			continue
		}
		err := c.Err()
		if err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			// A Redis that restarted (or a new cluster master) does not
			// know the script yet: this shard was not written; Run loads it.
			err = publishScript.Run(ctx, p.rdb, p.keys[sh], p.maxLen, p.packs[sh]).Err()
		}
		if err != nil {
			return fmt.Errorf("publish %d ticks: shard %d: %w", len(ticks), sh, err)
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

// batchKey returns the key where shard i's last stored batch is marked
// (its first tick's symbol and seq), in the shard's slot.
func batchKey(i int) string { return "batch:{" + strconv.Itoa(i) + "}" }
