package redisstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
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
	packs  [][]byte     // per shard: the ticks of this batch, packed
	syms   [][]byte     // per shard: their symbols, one per line
	counts []int        // per shard: ticks in packs
	keys   [][]string   // per shard: its stream, latest-value hash and batch mark
	cmds   []*redis.Cmd // per shard: the script run of this batch (cluster)
	// One Redis: the keys and arguments of the batch's one script run.
	callKeys []string
	callArgs []any
	// One Redis: the script run goes over a connection of the publisher's
	// own, written from a reused buffer (no allocation per batch) with raw
	// system calls (see rawIO), as the reader's XREAD does; nil when the
	// client's options do not allow one (then through go-redis).
	own *xreadConn
	cmd []byte
	// A batch that Send wrote on the own connection and whose reply is
	// not read yet (at most one): its keys and arguments stay in
	// callKeys and callArgs (and packs and syms) until settle reads the
	// reply or stores the batch again.
	pending      bool
	pendingTicks int
	// A context's cancellation armed on the own connection (see watch).
	watchDone <-chan struct{}
	watchConn net.Conn
	watchStop func() bool
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
	p := &Publisher{rdb: rdb, cfg: cfg, maxLen: strconv.FormatInt(cfg.MaxLen, 10),
		packs: make([][]byte, cfg.Shards), syms: make([][]byte, cfg.Shards), counts: make([]int, cfg.Shards), cmds: make([]*redis.Cmd, cfg.Shards)}
	for i := range cfg.Shards {
		p.keys = append(p.keys, []string{StreamKey(i), LastKey(i), batchKey(i)})
	}
	if err := p.init(ctx); err != nil {
		return nil, err
	}
	if p.own = newXReadConn(unwrap(rdb), nil); p.own != nil {
		p.own.detached = true // Send reads a reply at the next batch: no wake-up for it before
	}
	return p, nil
}

// Close closes the publisher's own connection; not while a Publish, Send
// or Flush runs (a publisher is used by one goroutine). The client stays
// open. A batch sent by Send whose reply was not read yet is not waited
// for (it may or may not be stored): call Flush first.
func (p *Publisher) Close() {
	p.pending = false
	p.unwatch()
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
	return p.parts(ctx, &batchSrc{ticks: ticks}, mark(ticks[0].Sym, ticks[0].Seq), false)
}

// batchSrc is a batch to pack: ticks, or (when ticks is nil) ticks already
// in their wire JSON (see SendWire).
type batchSrc struct {
	ticks []feed.Tick
	syms  []string
	wire  []byte
	ends  []int
}

func (b *batchSrc) len() int {
	if b.ticks != nil {
		return len(b.ticks)
	}
	return len(b.syms)
}

// parts stores src in parts of at most maxScriptTicks, in order, each
// marked with its part's number after batch; with async, the last part's
// reply is not waited for (see Send).
func (p *Publisher) parts(ctx context.Context, src *batchSrc, batch string, async bool) error {
	async = async && p.own != nil
	n := src.len()
	for lo, part := 0, 0; lo < n; part++ {
		hi := min(n, lo+maxScriptTicks)
		m := batch + strconv.Itoa(part)
		if async && hi == n {
			if err := p.settle(ctx); err != nil {
				return err
			}
			p.prepare(src, lo, hi, m)
			return p.send(ctx)
		}
		if err := p.publish(ctx, src, lo, hi, m); err != nil {
			return err
		}
		lo = hi
	}
	return nil
}

// publish stores ticks lo to hi of src with mark m and waits for the
// reply.
func (p *Publisher) publish(ctx context.Context, src *batchSrc, lo, hi int, m string) error {
	if err := p.settle(ctx); err != nil {
		return err
	}
	if p.prepare(src, lo, hi, m) {
		return p.publishShards(ctx, hi-lo, m)
	}
	return p.store(ctx)
}

// prepare packs ticks lo to hi of src per shard into the reused buffers
// and, on one Redis, sets callKeys and callArgs to their script run with
// mark m. It reports whether the client is a cluster (then publishShards
// stores the packs).
func (p *Publisher) prepare(src *batchSrc, lo, hi int, m string) (cluster bool) {
	for i := range p.packs {
		p.packs[i], p.syms[i], p.counts[i], p.cmds[i] = p.packs[i][:0], p.syms[i][:0], 0, nil
	}
	for i := lo; i < hi; i++ {
		var sym string
		if src.ticks != nil {
			sym = src.ticks[i].Sym
		} else {
			sym = src.syms[i]
		}
		sh := feed.ShardOf(sym, p.cfg.Shards) // a few multiplications: cheaper than a map's look-up
		if p.counts[sh] > 0 {
			p.packs[sh] = append(p.packs[sh], '\n')
		}
		if src.ticks != nil {
			p.packs[sh] = src.ticks[i].AppendJSON(p.packs[sh])
		} else {
			from := 0
			if i > 0 {
				from = src.ends[i-1]
			}
			p.packs[sh] = append(p.packs[sh], src.wire[from:src.ends[i]]...)
		}
		p.syms[sh] = append(append(p.syms[sh], sym...), '\n')
		p.counts[sh]++
	}
	if _, cluster := unwrap(p.rdb).(*redis.ClusterClient); cluster {
		return true
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
	p.pendingTicks = hi - lo
	return false
}

// store runs the script prepared in callKeys and callArgs and waits for
// its reply; after a reply saying Redis lost its data it stores the
// universe and a new epoch, then runs it again. Running it again after a
// lost reply stores nothing twice (see publishScript's mark).
func (p *Publisher) store(ctx context.Context) error {
	keys, args := p.callKeys, p.callArgs
	n, err := p.run(ctx, keys, args)
	if err != nil {
		return fmt.Errorf("publish %d ticks: %w", p.pendingTicks, err)
	}
	return p.stored(ctx, n)
}

// stored finishes a script run that answered n: -1 (the epoch is not the
// publisher's: Redis lost its data) stores the universe and a new epoch,
// then runs the script again.
func (p *Publisher) stored(ctx context.Context, n int) error {
	if n >= 0 {
		return nil
	}
	if err := p.lostData(ctx); err != nil {
		return err
	}
	p.callArgs[1] = p.epoch
	n, err := p.run(ctx, p.callKeys, p.callArgs)
	if err != nil || n < 0 {
		return fmt.Errorf("publish %d ticks after a new epoch: %d %w", p.pendingTicks, n, err)
	}
	return nil
}

// Send is Publish without waiting for Redis's reply to the batch's last
// script run (on one Redis, over the publisher's own connection; otherwise
// it is Publish): the run is written and Send returns; the next Send, a
// Publish or Flush reads its reply (by then usually arrived, so reading it
// does not wait) and, if it is not a success, stores the batch again
// before anything else, in order. So a publisher that sends a batch every
// few milliseconds does not wait for each reply, and (its own connection
// being off Go's network poller on Linux: detach_linux.go) is not woken by
// it either: it wakes once per batch, for its timer. At most one batch is
// in flight: a reply that has not arrived when the next batch is due is
// waited for (Redis slower than the batches throttles the sender).
//
// Send returns nil when the ticks were taken: stored, or in flight (the
// packed batch is kept, the caller may reuse ticks). On an error they were
// not taken (the caller sends the same ticks again, as after Publish), and
// a batch still in flight stays so until a later call stores it.
func (p *Publisher) Send(ctx context.Context, ticks []feed.Tick) error {
	if len(ticks) == 0 {
		return p.settle(ctx)
	}
	return p.parts(ctx, &batchSrc{ticks: ticks}, mark(ticks[0].Sym, ticks[0].Seq), true)
}

// SendWire is Send for ticks already in their wire JSON (what
// feed.Tick.AppendJSON writes; the publisher stores them as they are, the
// nodes validate them): tick i is of symbol syms[i] and its JSON is
// wire[ends[i-1]:ends[i]] (from 0 for tick 0); firstSeq is tick 0's seq,
// and names the batch with syms[0] as Publish's first tick does. wire, syms
// and ends may be reused once it returns.
func (p *Publisher) SendWire(ctx context.Context, syms []string, firstSeq uint64, wire []byte, ends []int) error {
	if len(syms) != len(ends) {
		return fmt.Errorf("publish: %d symbols for %d ticks", len(syms), len(ends))
	}
	if len(syms) == 0 {
		return p.settle(ctx)
	}
	if ends[len(ends)-1] > len(wire) {
		return fmt.Errorf("publish: ticks end at %d in %d bytes", ends[len(ends)-1], len(wire))
	}
	return p.parts(ctx, &batchSrc{syms: syms, wire: wire, ends: ends}, mark(syms[0], firstSeq), true)
}

// Flush waits until the batch in flight, if any, is stored (reading its
// reply, storing it again if need be).
func (p *Publisher) Flush(ctx context.Context) error {
	return p.settle(ctx)
}

// send writes the prepared script run on the own connection and marks it
// in flight. A write that fails (the connection is closed, the batch not
// run: Redis runs only a whole command) is followed by storing the batch
// and waiting, as Publish does.
func (p *Publisher) send(ctx context.Context) error {
	cmd, err := p.encode("EVALSHA", publishScript.Hash(), p.callKeys, p.callArgs)
	if err != nil {
		return err
	}
	c := p.own
	if c.conn == nil {
		if err := c.dial(ctx); err != nil {
			return err
		}
	}
	p.watch(ctx)
	if c.conn == nil { // the watch found it tainted
		return p.storeTaken(ctx)
	}
	err = p.own.keepDeadline(ownTimeout)
	if err == nil {
		_, err = c.write(cmd)
	}
	if err != nil {
		c.close()
		if ctx.Err() != nil {
			return ctx.Err() // cut short by ctx: Redis runs no partial command
		}
		return p.storeTaken(ctx)
	}
	// Written whole: Redis runs it, so the ticks are taken even if ctx
	// ended meanwhile (settle then finds the connection the watch armed
	// closed, and stores the batch again: a no-op if it was stored).
	p.pending = true
	return nil
}

// storeTaken stores the prepared batch and waits, for Send: if ctx ends
// meanwhile, Redis may have run it, so the ticks are taken and the batch
// stays in flight (settle or Flush stores it again: a no-op if it ran).
func (p *Publisher) storeTaken(ctx context.Context) error {
	err := p.store(ctx)
	if err != nil && ctx.Err() != nil {
		p.pending = true
		return nil
	}
	return err
}

// settle reads the reply of the batch in flight, if any. A reply that is
// not a success (an error such as NOSCRIPT, a connection lost or out of
// step, a deadline) stores the batch again and waits for that: the mark
// makes a run of a batch already stored a no-op. The batch stays in flight
// when that fails too.
func (p *Publisher) settle(ctx context.Context) error {
	if !p.pending {
		return nil
	}
	n, err := p.readReply(ctx)
	switch {
	case err == nil:
		err = p.stored(ctx, n)
	case ctx.Err() != nil:
		return ctx.Err()
	default:
		err = p.store(ctx)
	}
	if err != nil {
		return err
	}
	p.pending = false
	return nil
}

// watch arms ctx's cancellation on the own connection: once ctx is done,
// a past deadline ends any wait on it. The registration is kept while the
// context and the connection stay the same (the simulator's one context
// for every batch), not made and undone for each write and read: that was
// a map insertion and two allocations each. A registration for another
// context or connection is undone first; if it had fired, the connection
// it armed may get its past deadline at any time and is closed (the next
// call dials again), as xreadConn.do does after a ctx done mid-call.
func (p *Publisher) watch(ctx context.Context) {
	c := p.own
	done := ctx.Done()
	if p.watchStop != nil && done == p.watchDone && c.conn == p.watchConn {
		return
	}
	p.unwatch()
	if done == nil || c.conn == nil {
		return // never cancelled; or nothing to arm
	}
	conn := c.conn
	p.watchDone, p.watchConn = done, conn
	p.watchStop = context.AfterFunc(ctx, func() { _ = conn.SetDeadline(time.Unix(1, 0)) })
}

// unwatch undoes watch's registration, closing the connection it armed if
// it fired.
func (p *Publisher) unwatch() {
	if p.watchStop != nil && !p.watchStop() && p.own != nil && p.own.conn == p.watchConn {
		p.own.close()
	}
	p.watchDone, p.watchConn, p.watchStop = nil, nil, nil
}

// ownTimeout bounds the wait for one script run's reply.
const ownTimeout = 10 * time.Second

// readReply reads the integer reply of the run that send wrote. Any error
// closes the connection (as xreadConn.do does); one closed since the send
// is an error (the run's outcome is unknown).
func (p *Publisher) readReply(ctx context.Context) (int, error) {
	c := p.own
	if p.watch(ctx); c.conn == nil {
		return 0, errors.New("the connection closed before the reply")
	}
	n, err := p.readInt()
	if err != nil || ctx.Err() != nil {
		c.close()
	}
	return n, err
}

// readInt reads one reply on the own connection and parses it as
// intReply does.
func (p *Publisher) readInt() (int, error) {
	c := p.own
	if err := c.keepDeadline(ownTimeout); err != nil {
		return 0, err
	}
	var n int
	err := c.readReply(func(b []byte) (err error) {
		n, err = intReply(b)
		return err
	})
	return n, err
}

// intReply parses a script run's reply: one integer, nothing after it.
func intReply(reply []byte) (int, error) {
	r := respReader{b: reply}
	typ, v, err := r.header()
	switch {
	case err != nil:
		return 0, err
	case typ != ':':
		return 0, fmt.Errorf("%w: a %q where an integer was expected", errRESP, typ)
	case r.i != len(reply):
		return 0, fmt.Errorf("%w: %d bytes after the reply", errRESP, len(reply)-r.i)
	}
	return v, nil
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
	cmd, err := p.encode(verb, script, keys, args)
	if err != nil {
		return 0, err
	}
	var n int
	err = p.own.do(ctx, cmd, ownTimeout, func(reply []byte) error {
		var err error
		n, err = intReply(reply)
		return err
	})
	return n, err
}

// encode writes one EVALSHA or EVAL of keys and args into the reused
// command buffer.
func (p *Publisher) encode(verb, script string, keys []string, args []any) ([]byte, error) {
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
			return nil, fmt.Errorf("script argument of type %T", a)
		}
	}
	p.cmd = cmd
	return cmd, nil
}

// mark names a batch by its first tick's symbol and seq (a publisher's
// seqs only grow, so no other batch has the same); Publish appends the
// part's number.
func mark(sym string, seq uint64) string {
	return sym + "\n" + strconv.FormatUint(seq, 10) + "\n"
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
func (p *Publisher) publishShards(ctx context.Context, n int, m string) error {
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
			return fmt.Errorf("publish %d ticks: shard %d: %w", n, sh, err)
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
