package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"strings"
	"time"

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
	syms    [][]byte       // per shard: their symbols, one per line
	counts  []int          // per shard: ticks in packs
	keys    [][]string     // per shard: its stream, latest-value hash and batch mark
	cmds    []*redis.Cmd   // per shard: the script run of this batch (cluster)
	// One Redis: the keys and arguments of the batch's one script run.
	callKeys []string
	callArgs []any
	// One Redis: the script run goes over a connection of the publisher's
	// own, written from a reused buffer (no allocation per batch) with raw
	// system calls (see rawIO), as the reader's XREAD does; nil when the
	// client's options do not allow one (then through go-redis).
	own *xreadConn
	cmd []byte
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
		packs: make([][]byte, cfg.Shards), syms: make([][]byte, cfg.Shards), counts: make([]int, cfg.Shards), cmds: make([]*redis.Cmd, cfg.Shards)}
	for i := range cfg.Shards {
		p.keys = append(p.keys, []string{StreamKey(i), LastKey(i), batchKey(i)})
	}
	if err := p.init(ctx); err != nil {
		return nil, err
	}
	p.own = newXReadConn(unwrap(rdb), nil)
	return p, nil
}

// Close closes the publisher's own connection. The client stays open.
func (p *Publisher) Close() {
	if p.own != nil {
		p.own.close()
	}
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

// publishScript stores a batch for one or more shards: per shard, one
// stream entry holding all its ticks of the batch (field b: each tick's wire
// JSON, separated by newlines; trimmed with MAXLEN ~), then the latest
// value of each of those symbols in the shard's hash. A script runs whole
// or not at all, so a node that rebuilds from a hash and its stream's last
// ID (read in one MULTI) always sees them agree; and it is one command per
// batch (one per shard on a cluster) with one XADD per shard, instead of two
// commands per tick.
//
// KEYS: stream and hash of each shard, then the mark key, then (when
// ARGV[2] is not empty) the epoch key. ARGV: the retention, the epoch the
// publisher holds (or ""), the batch's mark, then per shard its ticks (the
// entry's b) and their symbols (one per line, in the same order). It returns
// -1 without writing when the epoch is not the publisher's (Redis lost its
// data), else the ticks stored. A batch retried after its reply was lost is
// not stored twice: each run records its mark (the batch's first tick's
// symbol and seq, a publisher's seqs only grow, then the part of the batch:
// Publish stores a long batch in parts, in order) under the mark key, and a
// run that finds there its batch at its part or a later one returns 0 at
// once.
var publishScript = redis.NewScript(publishLua)

const publishLua = `
local packs = (#ARGV - 3) / 2
if ARGV[2] ~= '' and redis.call('GET', KEYS[2*packs+2]) ~= ARGV[2] then return -1 end
local last = redis.call('GET', KEYS[2*packs+1])
if last then
  -- a mark is the batch's first tick, then the part: a part at or before
  -- the one stored last, of the same batch, was stored
  local lb, lp = string.match(last, '^(.*\n)(%d+)$')
  local mb, mp = string.match(ARGV[3], '^(.*\n)(%d+)$')
  if lb and lb == mb and tonumber(lp) >= tonumber(mp) then return 0 end
end
local total = 0
for i = 1, packs do
  local ticks, syms = ARGV[2*i+2], ARGV[2*i+3]
  redis.call('XADD', KEYS[2*i-1], 'MAXLEN', '~', ARGV[1], '*', 'b', ticks)
  -- plain finds (memchr), not patterns: Lua's matcher costs ~20 ns a byte
  local kv, n, at, dat, len = {}, 0, 1, 1, #ticks
  while dat <= len do
    local nl = string.find(syms, "\n", at, true)
    local dnl = string.find(ticks, "\n", dat, true) or len + 1
    kv[n+1] = string.sub(syms, at, nl - 1)
    kv[n+2] = string.sub(ticks, dat, dnl - 1)
    n, at, dat = n + 2, nl + 1, dnl + 1
  end
  redis.call('HSET', KEYS[2*i], unpack(kv))
  total = total + n / 2
end
redis.call('SET', KEYS[2*packs+1], ARGV[3])
return total
`

// maxScriptTicks bounds the ticks of one script run (HSET's arguments are
// unpacked onto Lua's stack, which holds about 8,000), and so of one batch
// entry.
const maxScriptTicks = MaxBatchTicks

// Publish stores ticks: per shard, one entry holding its ticks of the batch
// (at most MaxBatchTicks; a longer batch is stored in parts) in its stream,
// and each tick's value in the shard's latest-value hash. On one Redis that is one script
// run for the whole batch (atomic: see publishScript), which also checks
// the epoch; on a cluster, one run per shard (a shard's keys share a slot)
// and a GET of the epoch, all in one pipeline (go-redis sends each master
// its shards). Ticks are packed into reused buffers: no allocation per
// tick. If Redis came back without its data, Publish stores the universe
// and a new epoch again, then the ticks.
func (p *Publisher) Publish(ctx context.Context, ticks []feed.Tick) error {
	if len(ticks) == 0 {
		return nil
	}
	batch := mark(&ticks[0])
	for part := 0; len(ticks) > 0; part++ {
		n := min(len(ticks), maxScriptTicks)
		if err := p.publish(ctx, ticks[:n], batch+strconv.Itoa(part)); err != nil {
			return err
		}
		ticks = ticks[n:]
	}
	return nil
}

func (p *Publisher) publish(ctx context.Context, ticks []feed.Tick, m string) error {
	if len(ticks) == 0 {
		return nil
	}
	for i := range p.packs {
		p.packs[i], p.syms[i], p.counts[i], p.cmds[i] = p.packs[i][:0], p.syms[i][:0], 0, nil
	}
	for i := range ticks {
		t := &ticks[i]
		sh, ok := p.shardOf[t.Sym]
		if !ok {
			sh = feed.ShardOf(t.Sym, p.cfg.Shards)
			p.shardOf[t.Sym] = sh
		}
		if p.counts[sh] > 0 {
			p.packs[sh] = append(p.packs[sh], '\n')
		}
		p.packs[sh] = t.AppendJSON(p.packs[sh])
		p.syms[sh] = append(append(p.syms[sh], t.Sym...), '\n')
		p.counts[sh]++
	}
	if _, cluster := unwrap(p.rdb).(*redis.ClusterClient); cluster {
		return p.publishShards(ctx, ticks, m)
	}
	keys, args := p.callKeys[:0], append(p.callArgs[:0], p.maxLen, p.epoch, m)
	for sh, n := range p.counts {
		if n > 0 {
			keys = append(keys, p.keys[sh][0], p.keys[sh][1])
			args = append(args, p.packs[sh], p.syms[sh])
		}
	}
	keys = append(keys, p.keys[0][2], EpochKey) // one mark key: parts run in order
	p.callKeys, p.callArgs = keys, args
	n, err := p.run(ctx, keys, args)
	if err != nil {
		return fmt.Errorf("publish %d ticks: %w", len(ticks), err)
	}
	if n < 0 {
		if err := p.lostData(ctx); err != nil {
			return err
		}
		args[1] = p.epoch
		if n, err = p.run(ctx, keys, args); err != nil || n < 0 {
			return fmt.Errorf("publish %d ticks after a new epoch: %d %w", len(ticks), n, err)
		}
	}
	return nil
}

// run runs publishScript with keys and args (strings and byte slices), on
// the publisher's own connection when it has one.
func (p *Publisher) run(ctx context.Context, keys []string, args []any) (int, error) {
	if p.own == nil {
		return publishScript.Run(ctx, p.rdb, keys, args...).Int()
	}
	n, err := p.runOwn(ctx, "EVALSHA", publishScript.Hash(), keys, args)
	if err != nil && strings.Contains(err.Error(), "NOSCRIPT") {
		// A Redis that restarted or flushed its scripts: EVAL sends the
		// script and caches it again.
		n, err = p.runOwn(ctx, "EVAL", publishLua, keys, args)
	}
	return n, err
}

// runOwn sends one EVALSHA or EVAL over the own connection and reads its
// integer reply.
func (p *Publisher) runOwn(ctx context.Context, verb, script string, keys []string, args []any) (int, error) {
	cmd := append(p.cmd[:0], '*')
	cmd = strconv.AppendInt(cmd, int64(3+len(keys)+len(args)), 10)
	cmd = append(cmd, '\r', '\n')
	cmd = appendBulk(cmd, verb)
	cmd = appendBulk(cmd, script)
	var num [20]byte
	cmd = appendBulk(cmd, strconv.AppendInt(num[:0], int64(len(keys)), 10))
	for _, k := range keys {
		cmd = appendBulk(cmd, k)
	}
	for _, a := range args {
		switch a := a.(type) {
		case string:
			cmd = appendBulk(cmd, a)
		case []byte:
			cmd = appendBulk(cmd, a)
		default:
			return 0, fmt.Errorf("script argument of type %T", a)
		}
	}
	p.cmd = cmd
	var n int
	err := p.own.do(ctx, cmd, 10*time.Second, func(reply []byte) error {
		r := respReader{b: reply}
		typ, v, err := r.header()
		switch {
		case err != nil:
			return err
		case typ != ':':
			return fmt.Errorf("%w: a %q where an integer was expected", errRESP, typ)
		case r.i != len(reply):
			return fmt.Errorf("%w: %d bytes after the reply", errRESP, len(reply)-r.i)
		}
		n = v
		return nil
	})
	return n, err
}

// mark names a batch by its first tick (a publisher's seqs only grow, so no
// other batch has the same); Publish appends the part's number.
func mark(t *feed.Tick) string {
	return t.Sym + "\n" + strconv.FormatUint(t.Seq, 10) + "\n"
}

// lostData stores the universe and an epoch again in a Redis that lost
// them.
func (p *Publisher) lostData(ctx context.Context) error {
	old := p.epoch
	if err := p.init(ctx); err != nil {
		return err
	}
	p.cfg.Logger.Warn("redis lost its data (no epoch or a new one): stored the universe again", "old_epoch", old, "epoch", p.epoch)
	return nil
}

// publishShards is publish on a cluster: one script run per shard, and the
// epoch checked after them.
func (p *Publisher) publishShards(ctx context.Context, ticks []feed.Tick, m string) error {
	pipe := p.rdb.Pipeline()
	for sh, n := range p.counts {
		if n > 0 {
			p.cmds[sh] = publishScript.EvalSha(ctx, pipe, p.keys[sh], p.maxLen, "", m, p.packs[sh], p.syms[sh])
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
			// A master that restarted or was promoted does not know the
			// script yet: this shard was not written; Run loads it.
			err = publishScript.Run(ctx, p.rdb, p.keys[sh], p.maxLen, "", m, p.packs[sh], p.syms[sh]).Err()
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
		return p.lostData(ctx)
	}
	return nil
}

// batchKey returns the key where shard i's last stored batch is marked
// (its first tick's symbol and seq), in the shard's slot.
func batchKey(i int) string { return "batch:{" + strconv.Itoa(i) + "}" }
