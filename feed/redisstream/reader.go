package redisstream

import (
	"bytes"
	"context"
	crand "crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
)

// Sink receives what a Reader reads. *fanout.Hub satisfies it. Both methods
// are called from the reader's goroutine only and must not block for long.
type Sink interface {
	// Publish applies updates read in stream order and the cursor after
	// them. The batch and its updates are the reader's, valid only until
	// Publish returns: an update is cut from a reused scratch and its JSON
	// is a slice of the reply buffer the next read overwrites, so a sink
	// keeps a copy of what it keeps (feed.Slabs). Most ticks of a read are
	// replaced by a newer one of the same symbol before anyone looks: the
	// reader copies none of them.
	Publish(batch []*feed.Update, cursor string)
	// Reset replaces every symbol's value: the reader (re)built the state
	// from Redis, after starting or after Redis lost its history. As with
	// Publish, the updates are the reader's only until Reset returns.
	Reset(latest []*feed.Update, cursor string)
}

// CatchUpSink is a Sink told when the reader has handed over everything up
// to the head of the feed (CaughtUp: a read that returned all there was,
// or none) and when it pauses (Resting): fanout.Hub's, whose newcomers wait
// for a resting reader to catch up.
type CatchUpSink interface {
	Sink
	CaughtUp()
	Resting()
}

// BehindSink is a Sink that says when a consumer of every tick has fallen
// behind what it was handed (fanout.Hub's RawBehind: a raw subscriber owes
// more than half its queue): the reader then yields its thread after that
// Publish, so that the writers it woke run before it hands over more.
type BehindSink interface {
	Sink
	RawBehind() bool
}

// ReaderConfig configures a Reader.
type ReaderConfig struct {
	// Shards is the shard count, as the universe stored in Redis says.
	Shards int
	// Universe validates every entry (known symbol, prices on its tick
	// grid). Default: the universe stored in Redis, loaded by Sync.
	Universe *feed.Universe
	// Block is how long one XREAD waits for entries. Default 1s.
	Block time.Duration
	// Count is the most entries one XREAD returns per shard. Default 128
	// (a batch entry holds up to MaxBatchTicks ticks: this bounds what one
	// read holds in memory, and a read after a stall is handed over in
	// several).
	Count int64
	// EpochCheck is how often the reader checks that Redis still holds the
	// same history (its epoch, and no stream behind the node). Default 1s.
	EpochCheck time.Duration
	// MaxBackoff caps the jittered backoff between reconnect attempts.
	// Default 2s.
	MaxBackoff time.Duration
	// Coalesce is the shortest time between the starts of two reads that
	// return entries: a publisher that writes every 2ms then costs the node
	// one round trip per Coalesce instead of one per batch, for at most
	// that much added latency. Default 3ms; negative turns every pause off
	// (Need and MaxCoalesce are then ignored).
	Coalesce time.Duration
	// Need, when set, returns the shortest interval the consumers of the
	// ticks were granted (0: one takes every tick as it comes) and whether
	// there is any consumer. The reader then paces its reads by it: a tenth
	// of that interval, within [Coalesce, MaxCoalesce], and Idle with no
	// consumer. A conflated consumer then gets a tick at most a tenth of
	// its interval later; a node nobody watches reads about once a second.
	Need func() (time.Duration, bool)
	// NeedChanged, when set, receives when Need grows (a first consumer,
	// a shorter interval): the reader ends its pause and reads at once, so
	// a newcomer's first values are fresh however long the reader rested.
	NeedChanged <-chan struct{}
	// MaxCoalesce caps the pace Need sets while there is a consumer.
	// Default 100ms (at least Coalesce): a subscriber of 1s or more gets a
	// tick at most 100ms later.
	MaxCoalesce time.Duration
	// Idle is the pace with no consumer. Default 1s (at least
	// MaxCoalesce). Without NeedChanged a newcomer's first values may be
	// this old.
	Idle time.Duration
	// LogEvery is the shortest time between two log lines about refused
	// entries, and between two errors about an unreachable Redis (each
	// says for how long it has been). Default 10s.
	LogEvery time.Duration
	// Logger reports disconnects and resynchronisations.
	Logger *slog.Logger
}

// ReaderStats are the reader's counters.
type ReaderStats struct {
	Entries   atomic.Uint64 // entries read
	Reads     atomic.Uint64 // reads that returned entries
	Malformed atomic.Uint64 // entries and hash values refused, all reasons
	Errors    atomic.Uint64 // failed reads
	Resyncs   atomic.Uint64 // state rebuilt from Redis
	// Behind counts the times Redis was found behind the node (a stream
	// or a latest value older than what the node holds: an older snapshot
	// restored), each answered with a new epoch.
	Behind atomic.Uint64
	// MaxLagUs is the largest feed lag seen (µs from an entry's feed
	// timestamp to its read) since it was last swapped to zero.
	MaxLagUs atomic.Int64
	// NewestUs is the feed timestamp (Unix µs) of the newest tick handed
	// to the sink (by a read, or by the last state build); 0 before any.
	// Now minus it is the feed's lag as of now, whenever it is asked.
	NewestUs atomic.Int64

	readLag lagHistogram // per read: the lag of its oldest tick

	byReason [10]atomic.Uint64 // indexed like Reasons
}

// MalformedBy returns the entries refused for reason (one of Reasons).
func (s *ReaderStats) MalformedBy(reason string) uint64 {
	for i, r := range Reasons {
		if r == reason {
			return s.byReason[i].Load()
		}
	}
	return 0
}

// Reader follows every shard stream and feeds a Sink. It resumes from the
// last IDs after any error, with capped, jittered backoff, and rebuilds the
// state when Redis lost its history.
type Reader struct {
	rdb     redis.UniversalClient
	cfg     ReaderConfig
	sink    Sink
	catchUp CatchUpSink // sink, when it is one
	behind  BehindSink  // sink, when it is one
	keys    []string
	ids     []streamID
	// The latest seq handed to the sink, per symbol: by universe index
	// (no map look-up per tick), by name for a symbol the universe lacks.
	held    []heldSeq
	heldBy  map[string]uint64
	uni     *feed.Universe
	epoch   string
	stats   ReaderStats
	ready   atomic.Bool
	readyAt atomic.Int64 // UnixNano of the last successful read
	restTo  atomic.Int64 // UnixNano the pause in progress ends (0: none)
	// lagSeen is set once the read being handed over has its lag
	// observed (its first chunk).
	lagSeen bool
	// down is set while Redis is unreachable (Run's outage).
	down atomic.Bool
	// dialed is set when the client opens a connection: the server may be
	// a restarted one, so what the next read returns is believed only
	// after a look at the epoch and the streams.
	dialed atomic.Bool

	// What one read uses again and again: the raw reply, its entries, the
	// command's arguments, and the scratch the updates of one Publish are
	// cut from (their JSON is not copied: it stays in the reply).
	reply bytes.Buffer
	views []entryView
	batch []*feed.Update // the updates of one Publish, reused
	full  bool           // the last read returned Count entries of a shard
	// The ticks' bytes the last read returned, when the last read that
	// returned entries started, and the feed's rate: it bounds the pause
	// (pauseAfter).
	readBytes int
	lastStart time.Time
	byteRate  float64 // bytes a second; 0: not known yet
	args      []any
	scratch   scratch
	keyIdx    map[string]int
	// symShard is each universe symbol's shard (by Universe index): a
	// batch entry's ticks must be of its shard.
	symShard []int32
	block    time.Duration
	own      *xreadConn // XREAD's own connection (one Redis), or nil
	cmd      []byte     // the XREAD command, on own

	logMu      sync.Mutex
	lastLog    time.Time
	suppressed int
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
		cfg.Count = 128
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
	if cfg.MaxCoalesce <= 0 {
		cfg.MaxCoalesce = 100 * time.Millisecond
	}
	cfg.MaxCoalesce = max(cfg.MaxCoalesce, cfg.Coalesce)
	if cfg.Idle <= 0 {
		cfg.Idle = time.Second
	}
	cfg.Idle = max(cfg.Idle, cfg.MaxCoalesce)
	if cfg.LogEvery <= 0 {
		cfg.LogEvery = 10 * time.Second
	}
	rdb = unwrap(rdb)
	catchUp, _ := sink.(CatchUpSink)
	behind, _ := sink.(BehindSink)
	r := &Reader{rdb: rdb, cfg: cfg, sink: sink, catchUp: catchUp, behind: behind, ids: make([]streamID, cfg.Shards), uni: cfg.Universe, heldBy: map[string]uint64{},
		keyIdx: make(map[string]int, cfg.Shards), block: cfg.Block}
	for i := range cfg.Shards {
		r.keys = append(r.keys, StreamKey(i))
		r.keyIdx[StreamKey(i)] = i
	}
	r.setUniverse(cfg.Universe)
	r.own = newXReadConn(rdb, func() { r.dialed.Store(true) })
	// Through go-redis, a raw XREAD cannot say it blocks (its read deadline
	// is the client's ReadTimeout): block a little less than that.
	if c, ok := rdb.(*redis.Client); ok && r.own == nil {
		if rt := c.Options().ReadTimeout; rt > 0 && r.block > rt-500*time.Millisecond {
			r.block = max(rt-500*time.Millisecond, 10*time.Millisecond)
		}
	}
	rdb.AddHook(dialHook{&r.dialed})
	return r, nil
}

// setUniverse sets the universe entries are validated against.
func (r *Reader) setUniverse(u *feed.Universe) {
	r.uni, r.symShard, r.held = u, nil, nil
	clear(r.heldBy)
	if u != nil {
		r.held = make([]heldSeq, u.Len())
		for _, s := range u.Symbols() {
			r.symShard = append(r.symShard, int32(feed.ShardOf(s.Name, r.cfg.Shards)))
		}
	}
}

// dialHook marks every new connection of the client.
type dialHook struct{ dialed *atomic.Bool }

func (h dialHook) DialHook(next redis.DialHook) redis.DialHook {
	return func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := next(ctx, network, addr)
		if err == nil {
			h.dialed.Store(true)
		}
		return c, err
	}
}

func (dialHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook { return next }

func (dialHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return next
}

// Stats returns the reader's counters.
func (r *Reader) Stats() *ReaderStats { return &r.stats }

// Reachable reports whether Redis answers the reader: false from a failed
// read (or state build) until one succeeds again.
func (r *Reader) Reachable() bool { return !r.down.Load() }

// Ready reports whether the reader has built the state and its last read
// succeeded: the node is caught up with Redis.
func (r *Reader) Ready() bool {
	limit := r.cfg.Block + 2*time.Second
	if to := r.restTo.Load(); to != 0 {
		limit += time.Duration(max(0, to-r.readyAt.Load())) // resting is not lagging
	}
	return r.ready.Load() && time.Since(time.Unix(0, r.readyAt.Load())) < limit
}

// markReady records a successful read (or state build). A reader whose
// Redis stopped answering (a hung server, a partition that drops packets)
// is not ready once a blocking read has taken well over its Block, without
// waiting for the client's own timeouts.
func (r *Reader) markReady() {
	r.readyAt.Store(time.Now().UnixNano())
	r.ready.Store(true)
}

// Cursor returns the current position.
func (r *Reader) cursor() string { return Cursor{Epoch: r.epoch, IDs: r.ids}.String() }

// Sync builds the state from Redis and hands it to the sink. Run calls it;
// a caller may call it first to serve only once the state is built.
func (r *Reader) Sync(ctx context.Context) error {
	if r.uni == nil {
		u, _, err := LoadUniverse(ctx, r.rdb)
		if err != nil {
			return err
		}
		r.setUniverse(u)
	}
	r.dialed.Store(false) // what follows is read after this look
	epoch, err := ensureEpoch(ctx, r.rdb)
	if err != nil {
		return err
	}
	latest, ids, err := r.snapshot(ctx)
	if err != nil {
		return err
	}
	r.epoch, r.ids = epoch, ids
	clear(r.held)
	clear(r.heldBy)
	for _, u := range latest {
		r.setHeld(u.Sym, r.symIndex(u), u.Seq, true)
	}
	r.sink.Reset(latest, r.cursor())
	newest := int64(0)
	for _, u := range latest {
		newest = max(newest, u.TS)
	}
	r.stats.NewestUs.Store(newest)
	r.stats.Resyncs.Add(1)
	r.markReady()
	return nil
}

// snapshot reads, per shard and atomically, the stream's last ID and the
// latest value of each symbol of the universe in the shard (HMGET: fields
// added to the hash for no symbol of the universe are never read, so a
// padded hash costs a node nothing).
func (r *Reader) snapshot(ctx context.Context) ([]*feed.Update, []streamID, error) {
	ids := make([]streamID, r.cfg.Shards)
	var latest []*feed.Update
	syms := make([][]string, r.cfg.Shards)
	for i, s := range r.uni.Symbols() {
		syms[r.symShard[i]] = append(syms[r.symShard[i]], s.Name)
	}
	for i := range r.cfg.Shards {
		var rng *redis.XMessageSliceCmd
		all := &redis.SliceCmd{}
		_, err := r.rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
			rng = p.XRevRangeN(ctx, StreamKey(i), "+", "-", 1)
			if len(syms[i]) > 0 {
				all = p.HMGet(ctx, LastKey(i), syms[i]...)
			}
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
		for k, v := range all.Val() {
			js, ok := v.(string)
			if !ok {
				continue // no value
			}
			sym := syms[i][k]
			t, err := checkTick([]byte(js), sym, r.uni)
			if err != nil {
				r.refused(err)
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
	if r.own != nil {
		defer r.own.close()
	}
	backoff := 50 * time.Millisecond
	needSync := !r.ready.Load()
	lastCheck := time.Now()
	var out outage
	pause := time.NewTimer(time.Hour) // reused: a pause per read allocates nothing
	defer pause.Stop()
	for ctx.Err() == nil {
		start := time.Now()
		n := r.stats.Entries.Load()
		err := r.step(ctx, &needSync, &lastCheck)
		got := err == nil && r.stats.Entries.Load() != n
		if got {
			r.observe(start)
		}
		if r.catchUp != nil && err == nil && !r.full {
			r.catchUp.CaughtUp()
		}
		// A read that filled a shard's Count leaves more to read: at once.
		if got && !r.full {
			if d := r.pauseAfter() - time.Since(start); d > 0 {
				if r.catchUp != nil {
					r.catchUp.Resting()
				}
				pause.Reset(d)
				r.restTo.Store(time.Now().Add(d).UnixNano())
				select {
				case <-ctx.Done():
				case <-pause.C:
				case <-r.cfg.NeedChanged:
					pause.Stop() // Go ≥ 1.23: no stale tick survives a Stop
				}
				r.restTo.Store(0)
			}
		}
		if err == nil {
			backoff = 50 * time.Millisecond
			if out.failing && needSync {
				out.lost = true // said once the state is rebuilt (the next step)
				continue
			}
			r.recovered(&out)
			continue
		}
		if ctx.Err() != nil {
			break
		}
		r.ready.Store(false)
		r.stats.Errors.Add(1)
		r.failed(&out, err)
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

// readBudget is about the most tick bytes one read should return: a reader
// resting long on a fast feed reads sooner (pauseAfter), so its reply buffer
// stays under the size it keeps between reads (maxKeptReply) and no read's
// reply is allocated anew. At 20,000 ticks/s a second of ticks is ~2.8 MB.
const readBudget = 3 << 20

// pauseAfter returns the time to leave between the start of the read that
// just returned entries and the next: Pace, shortened so that the next
// returns about readBudget bytes at the feed's rate (observe); at most
// MaxCoalesce until a rate is known.
func (r *Reader) pauseAfter() time.Duration {
	d := r.Pace()
	if r.byteRate <= 0 {
		return min(d, r.cfg.MaxCoalesce)
	}
	if secs := readBudget / r.byteRate; secs < d.Seconds() {
		return time.Duration(secs * float64(time.Second))
	}
	return d
}

// observe updates the feed's rate in bytes a second (a moving average)
// with a read that started at start and returned entries.
func (r *Reader) observe(start time.Time) {
	if el := start.Sub(r.lastStart).Seconds(); !r.lastStart.IsZero() && el > 0 {
		rate := float64(r.readBytes) / el
		if r.byteRate > 0 {
			rate = (rate + r.byteRate) / 2
		}
		r.byteRate = rate
	}
	r.lastStart = start
}

// Pace returns the time the reader now leaves between the starts of two
// reads that return entries (see ReaderConfig.Need); negative: none.
func (r *Reader) Pace() time.Duration {
	c := r.cfg.Coalesce
	if r.cfg.Need == nil || c < 0 {
		return c
	}
	d, any := r.cfg.Need()
	if !any {
		return r.cfg.Idle
	}
	return min(max(d/10, c), r.cfg.MaxCoalesce)
}

// errLost says Redis lost history the node holds: the state is rebuilt.
var errLost = errors.New("redis lost history")

// step does one unit of work: a resync, a history check or one XREAD.
func (r *Reader) step(ctx context.Context, needSync *bool, lastCheck *time.Time) error {
	if *needSync {
		if err := r.Sync(ctx); err != nil {
			return err
		}
		*needSync = false
		*lastCheck = time.Now()
	}
	if time.Since(*lastCheck) >= r.cfg.EpochCheck || r.dialed.Swap(false) {
		err := r.checkHistory(ctx)
		if err == nil {
			*lastCheck = time.Now()
		}
		if errors.Is(err, errLost) {
			*needSync = true
			return nil
		}
		if err != nil {
			return err
		}
	}
	res, err := r.read(ctx)
	if err != nil || len(res) == 0 {
		return err
	}
	// A connection opened during the read (go-redis retries a command on a
	// new connection by itself) may reach a restarted Redis: nothing it
	// returned is believed before a look at the epoch and the streams.
	if r.dialed.Swap(false) {
		err := r.checkHistory(ctx)
		if errors.Is(err, errLost) {
			*needSync = true
			return nil
		}
		if err != nil {
			return err
		}
		*lastCheck = time.Now()
	}
	err = r.publish(ctx, res)
	if errors.Is(err, errLost) {
		*needSync = true
		return nil
	}
	return err
}

// checkHistory returns errLost if Redis no longer holds the history the
// node has: another epoch (Redis restarted empty), or a stream whose last
// ID is before the node's position (an older snapshot restored), in which
// case it starts a new epoch so that every node and client resynchronises.
func (r *Reader) checkHistory(ctx context.Context) error {
	var epoch *redis.StringCmd
	infos := make([]*redis.XInfoStreamCmd, len(r.keys))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		epoch = p.Get(ctx, EpochKey)
		for i, k := range r.keys {
			infos[i] = p.XInfoStream(ctx, k)
		}
		return nil
	})
	e, eerr := epoch.Result()
	if eerr != nil && !errors.Is(eerr, redis.Nil) {
		if err == nil {
			err = eerr
		}
		return fmt.Errorf("check epoch: %w", err)
	}
	if e != r.epoch {
		if !r.down.Load() { // after an outage, the recovery line says it
			r.cfg.Logger.Warn("redis lost its history (new epoch): rebuilding the state", "old", r.epoch, "new", e)
		}
		return errLost
	}
	for i, c := range infos {
		last := streamID{}
		info, err := c.Result()
		switch {
		case err == nil:
			if last, err = parseID(info.LastGeneratedID); err != nil {
				return fmt.Errorf("check %s: %w", r.keys[i], err)
			}
		case isNoSuchKey(err):
		default:
			return fmt.Errorf("check %s: %w", r.keys[i], err)
		}
		if last.less(r.ids[i]) {
			r.cfg.Logger.Warn("redis is behind this node (an older snapshot restored?): starting a new epoch",
				"stream", r.keys[i], "redis_last_id", last.String(), "node_id", r.ids[i].String())
			return r.lostHistory(ctx)
		}
	}
	return nil
}

func isNoSuchKey(err error) bool {
	return err != nil && strings.Contains(strings.ToLower(err.Error()), "no such key")
}

// bumpEpoch replaces the epoch, only if it is still old (several nodes may
// find Redis behind at once: one new epoch).
var bumpEpoch = redis.NewScript(`if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('SET', KEYS[1], ARGV[2]) return 1 end return 0`)

// lostHistory starts a new epoch and returns errLost.
func (r *Reader) lostHistory(ctx context.Context) error {
	r.stats.Behind.Add(1)
	var b [6]byte
	_, _ = crand.Read(b[:])
	if err := bumpEpoch.Run(ctx, r.rdb, []string{EpochKey}, r.epoch, hex.EncodeToString(b[:])).Err(); err != nil && !errors.Is(err, redis.Nil) {
		return fmt.Errorf("new epoch: %w", err)
	}
	return errLost
}

// read does one XREAD over all shards. On one Redis the reply is read raw
// (RawWriteToCmd into a reused buffer) and walked in place: no map, string
// or interface per entry. The entries it returns are valid until the next
// read.
func (r *Reader) read(ctx context.Context) ([]entryView, error) {
	if _, cluster := r.rdb.(*redis.ClusterClient); cluster {
		return r.readCluster(ctx)
	}
	if r.own != nil {
		cmd := append(r.cmd[:0], '*')
		cmd = strconv.AppendInt(cmd, int64(6+2*len(r.keys)), 10)
		cmd = append(cmd, "\r\n$5\r\nXREAD\r\n$5\r\nCOUNT\r\n"...)
		var num [40]byte
		cmd = appendBulk(cmd, strconv.AppendInt(num[:0], r.cfg.Count, 10))
		cmd = append(cmd, "$5\r\nBLOCK\r\n"...)
		cmd = appendBulk(cmd, strconv.AppendInt(num[:0], max(r.block.Milliseconds(), 1), 10))
		cmd = append(cmd, "$7\r\nSTREAMS\r\n"...)
		for _, k := range r.keys {
			cmd = appendBulk(cmd, k)
		}
		for _, id := range r.ids {
			b := strconv.AppendUint(num[:0], id.ms, 10)
			b = append(b, '-')
			cmd = appendBulk(cmd, strconv.AppendUint(b, id.seq, 10))
		}
		r.cmd = cmd
		var views []entryView
		err := r.own.do(ctx, cmd, r.block+10*time.Second, func(reply []byte) (err error) {
			views, err = parseXRead(reply, r.shardOfKey, r.views[:0])
			return err
		})
		return r.readDone(views, err)
	}
	args := append(r.args[:0], "xread", "count", r.cfg.Count, "block", max(r.block.Milliseconds(), 1), "streams")
	for _, k := range r.keys {
		args = append(args, k)
	}
	for _, id := range r.ids {
		args = append(args, id.String())
	}
	r.args = args
	r.reply.Reset()
	cmd := redis.NewRawWriteToCmd(ctx, &r.reply, args...)
	if err := r.rdb.Process(ctx, cmd); err != nil {
		return nil, fmt.Errorf("xread: %w", err)
	}
	views, err := parseXRead(r.reply.Bytes(), r.shardOfKey, r.views[:0])
	return r.readDone(views, err)
}

// readDone ends a read that returned views.
func (r *Reader) readDone(views []entryView, err error) ([]entryView, error) {
	if cap(views) > cap(r.views) {
		r.views = views[:0]
	}
	if err != nil {
		return nil, fmt.Errorf("xread: %w", err)
	}
	if len(views) == 0 {
		r.markReady()
	} else {
		r.stats.Reads.Add(1)
	}
	r.full = r.anyFull(views)
	r.readBytes = tickBytes(views)
	return views, nil
}

// tickBytes returns the bytes of the ticks in views (pauseAfter's measure
// of a read).
func tickBytes(views []entryView) int {
	n := 0
	for i := range views {
		n += len(views[i].b) + len(views[i].d)
	}
	return n
}

// shardOfKey returns the shard of a stream key, -1 for another key.
func (r *Reader) shardOfKey(k []byte) int {
	if i, ok := r.keyIdx[string(k)]; ok {
		return i
	}
	return -1
}

// readCluster reads every shard in one pipeline, one XREAD per shard (the
// shards live in different slots, and a blocking read would hold its
// connection), and waits a little when nothing came. It decodes with
// go-redis (which follows the cluster's redirections).
func (r *Reader) readCluster(ctx context.Context) ([]entryView, error) {
	cmds := make([]*redis.XStreamSliceCmd, len(r.keys))
	_, err := r.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i, k := range r.keys {
			cmds[i] = p.XRead(ctx, &redis.XReadArgs{Streams: []string{k, r.ids[i].String()}, Count: r.cfg.Count, Block: -1})
		}
		return nil
	})
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("xread: %w", err)
	}
	var res []entryView
	for _, c := range cmds {
		for _, st := range c.Val() {
			shard := r.shardOf(st.Stream)
			if shard < 0 {
				continue
			}
			for _, m := range st.Messages {
				id, err := parseID(m.ID)
				if err != nil {
					continue
				}
				e := viewOf(m.Values)
				e.shard, e.id = shard, id
				res = append(res, e)
			}
		}
	}
	if len(res) == 0 {
		r.markReady()
		select {
		case <-ctx.Done():
		case <-time.After(max(r.cfg.Coalesce, time.Millisecond)):
		}
	} else {
		r.stats.Reads.Add(1)
	}
	r.full = r.anyFull(res)
	r.readBytes = tickBytes(res)
	return res, nil
}

// anyFull reports whether a read returned Count entries of a shard (more
// may be waiting).
func (r *Reader) anyFull(views []entryView) bool {
	run := 0
	for i := range views {
		if i > 0 && views[i].shard != views[i-1].shard {
			run = 0
		}
		if run++; int64(run) >= r.cfg.Count {
			return true
		}
	}
	return false
}

// decode validates an entry (DecodeEntry's checks; the single scan first)
// and returns its update: cut from the scratch, its JSON in the reply.
func (r *Reader) decode(e *entryView) (*feed.Update, error) {
	if sym, seq, ts, ok := scanEntry(e, r.uni); ok {
		u := r.scratch.next()
		*u = feed.Update{Sym: sym, Seq: seq, TS: ts, JSON: e.d}
		return u, nil
	}
	return decodeFields(string(e.s), string(e.q), string(e.t), bytes.Clone(e.d), r.uni)
}

// decodeLine validates one tick of a batch entry (the single scan first,
// with the shard looked up by the symbol's universe index) and returns its
// update: cut from the scratch, its JSON in the reply.
func (r *Reader) decodeLine(line []byte, shard int) (*feed.Update, error) {
	if r.uni != nil && len(line) <= MaxEntryBytes {
		if h, ok := r.uni.ScanTick(line); ok && int(r.symShard[h.Index]) == shard {
			u := r.scratch.next()
			*u = feed.Update{Sym: h.Name, Seq: h.Seq, TS: h.TS, JSON: line, Index: int32(h.Index), Px: h.Px}
			return u, nil
		}
	}
	return decodeLine(bytes.Clone(line), shard, r.cfg.Shards, r.uni)
}

// scratch hands out the updates of one Publish. They are used again once
// the sink returns (reset): a sink copies what it keeps.
type scratch struct {
	chunks [][]feed.Update
	c, i   int // the next update: chunks[c][i]
}

// scratchChunk is the updates of one chunk: a chunk is never moved, so an
// update handed out stays put while more are.
const scratchChunk = 512

func (s *scratch) next() *feed.Update {
	if s.c < len(s.chunks) && s.i == len(s.chunks[s.c]) {
		s.c, s.i = s.c+1, 0
	}
	if s.c == len(s.chunks) {
		s.chunks = append(s.chunks, make([]feed.Update, scratchChunk))
	}
	u := &s.chunks[s.c][s.i]
	s.i++
	return u
}

// reset makes every update handed out free again, and clears them (the
// scratch pins no reply). It keeps at most maxScratchChunks chunks.
func (s *scratch) reset() {
	for c := range min(s.c+1, len(s.chunks)) {
		if c == s.c {
			clear(s.chunks[c][:s.i]) // the rest was not handed out
		} else {
			clear(s.chunks[c])
		}
	}
	clear(s.chunks[min(len(s.chunks), maxScratchChunks):])
	s.chunks = s.chunks[:min(len(s.chunks), maxScratchChunks)]
	s.c, s.i = 0, 0
}

// maxScratchChunks bounds the scratch kept between Publishes: a Publish's
// ticks (a chunk's and one entry's more); an entry of more (only a forged
// one) is handed out in chunks dropped after it.
const maxScratchChunks = conflatedChunk/scratchChunk + 2

// publish validates what a read returned and hands it to the sink,
// advancing the IDs. It returns errLost if an entry showed that Redis is
// behind the node. The ticks of one entry are always handed over in one
// Publish: a cursor covers whole entries.
func (r *Reader) publish(ctx context.Context, res []entryView) error {
	r.lagSeen = false
	var (
		batch      = r.batch[:0] // reused: the sink keeps no batch
		oldChecked bool
		e          *entryView // the entry being admitted
		// What admitting e changed in r.held, to take back when a look-up
		// in Redis fails in the middle of it.
		undoHeld []heldWas
		// The latest-value hash's seqs looked up during this read. Read
		// after the read returned, the hash holds every genuine seq of it
		// (the publisher writes both in one script run): one look-up per
		// symbol answers for the whole read.
		hashSeq map[string]uint64
	)
	// confirmed reports whether the latest-value hash holds sym at seq or
	// later (see the seq rule in the package doc).
	confirmed := func(shard int, sym string, seq uint64) (bool, error) {
		got, seen := hashSeq[sym]
		if !seen {
			var err error
			if got, err = r.latestSeq(ctx, shard, sym); err != nil {
				return false, err
			}
			if hashSeq == nil {
				hashSeq = make(map[string]uint64)
			}
			hashSeq[sym] = got
		}
		return got >= seq, nil
	}
	admit := func(u *feed.Update, err error) error {
		if err != nil {
			r.refused(err)
			return nil
		}
		u.Pos = feed.Position{Shard: e.shard, MS: e.id.ms, Seq: e.id.seq}
		idx := r.symIndex(u)
		held, ok := r.heldOf(u.Sym, idx)
		switch {
		case ok && u.Seq <= held:
			// Not newer than what the node holds. Either an injected or
			// repeated entry (refused), or Redis went back in time while
			// keeping its epoch (lost history): its latest value says.
			if !oldChecked {
				oldChecked = true
				if behind, err := r.latestBehind(ctx, e.shard, u.Sym, held); err != nil {
					return err
				} else if behind {
					r.cfg.Logger.Warn("redis's latest value is behind this node: starting a new epoch", "sym", u.Sym, "node_seq", held)
					return r.lostHistory(ctx)
				}
			}
			r.refused(refuse(ReasonSeqOld, "%s: seq %d, the node holds %d", u.Sym, u.Seq, held))
			return nil
		case u.Seq != held+1:
			// A jump (held is 0 for a symbol the node does not hold: its
			// first seq is 1): believed only when the hash confirms it.
			if yes, err := confirmed(e.shard, u.Sym, u.Seq); err != nil {
				return err
			} else if !yes {
				r.refused(refuse(ReasonSeqJump, "%s: seq %d after %d, not confirmed by %s", u.Sym, u.Seq, held, LastKey(e.shard)))
				return nil
			}
		}
		undoHeld = append(undoHeld, heldWas{u.Sym, idx, held, ok})
		r.setHeld(u.Sym, idx, u.Seq, true)
		batch = append(batch, u)
		return nil
	}
	for i := range res {
		e = &res[i]
		prevID, start := r.ids[e.shard], len(batch)
		undoHeld = undoHeld[:0]
		r.ids[e.shard] = e.id
		r.stats.Entries.Add(1)
		if err := r.eachTick(e, admit); err != nil {
			if !errors.Is(err, errLost) {
				// A look-up in Redis failed: the entries before this one
				// are handed over with the cursor after them, and the next
				// read starts again at this one.
				for i := len(undoHeld) - 1; i >= 0; i-- {
					h := undoHeld[i]
					r.setHeld(h.sym, h.idx, h.seq, h.ok)
				}
				r.ids[e.shard] = prevID
				r.hand(batch[:start])
			}
			return err
		}
		if len(batch) >= r.chunk() {
			r.hand(batch)
			batch = batch[:0]
		}
	}
	r.hand(batch)
	r.markReady()
	return nil
}

// heldSeq is a symbol's latest seq handed to the sink.
type heldSeq struct {
	seq uint64
	ok  bool // the node holds the symbol
}

// symIndex returns u's place in the universe (setting u.Index when the
// reader had to look it up), or -1 for a symbol it lacks.
func (r *Reader) symIndex(u *feed.Update) int {
	if r.uni == nil {
		return -1
	}
	if i := u.Index; uint(i) < uint(len(r.held)) && r.uni.Symbols()[i].Name == u.Sym {
		return int(i)
	}
	i, ok := r.uni.Index(u.Sym)
	if !ok {
		return -1
	}
	u.Index = int32(i)
	return i
}

// heldOf returns the seq held of sym (at universe index idx, or -1).
func (r *Reader) heldOf(sym string, idx int) (uint64, bool) {
	if idx >= 0 {
		h := r.held[idx]
		return h.seq, h.ok
	}
	seq, ok := r.heldBy[sym]
	return seq, ok
}

// setHeld records seq as held of sym (at universe index idx, or -1), or
// forgets the symbol when !ok.
func (r *Reader) setHeld(sym string, idx int, seq uint64, ok bool) {
	switch {
	case idx >= 0:
		r.held[idx] = heldSeq{seq, ok}
	case ok:
		r.heldBy[sym] = seq
	default:
		delete(r.heldBy, sym)
	}
}

// heldWas is a symbol's held seq before an entry changed it.
type heldWas struct {
	sym string
	idx int
	seq uint64
	ok  bool // the node held the symbol
}

// eachTick decodes an entry's ticks in order and calls fn with each, or
// with the refusal of a tick or of the whole entry; it stops at fn's first
// error.
func (r *Reader) eachTick(e *entryView, fn func(*feed.Update, error) error) error {
	if err := checkLayout(e); err != nil {
		return fn(nil, err)
	}
	if e.b == nil {
		return fn(r.decode(e))
	}
	if _, err := checkBatch(e.b); err != nil {
		return fn(nil, err)
	}
	for rest := e.b; rest != nil; {
		var line []byte
		line, rest = nextLine(rest)
		if err := fn(r.decodeLine(line, e.shard)); err != nil {
			return err
		}
	}
	return nil
}

// publishChunk bounds the ticks of one Publish, give or take one entry (a
// chunk ends after a whole entry), while a consumer takes every tick (raw,
// or interval 0). A read after a stall can return thousands; handed over
// in chunks, each with the exact cursor after it, no Publish holds the hub
// for long, and a raw subscriber's writes can be cut at every chunk. With
// none, chunks are conflatedChunk long: the sink keeps only the newest
// tick of a symbol in a Publish, so the longer the chunk, the fewer it
// copies (at 20,000 ticks/s and 500 symbols, a read every 50 ms hands over
// ~1,000 ticks of which ~430 are kept), and its ticks cost little more
// than their ordering. The size is asked again after every entry (a raw
// subscriber may arrive mid-read), and a conflated chunk and one entry
// (MaxBatchTicks) stay below the hub's RawQueue (4096): a raw subscriber of
// every symbol that arrives mid-chunk reads the shared log, and one Publish
// longer than its queue would close it at once.
const (
	publishChunk   = 256
	conflatedChunk = 2048
)

// chunk returns the ticks of one Publish now (see publishChunk).
func (r *Reader) chunk() int {
	if r.cfg.Need == nil {
		return publishChunk
	}
	if d, any := r.cfg.Need(); any && d == 0 {
		return publishChunk
	}
	return conflatedChunk
}

// hand publishes batch with the cursor after it (even an empty one: the
// cursor still moves past refused entries).
func (r *Reader) hand(batch []*feed.Update) {
	if len(batch) > 0 {
		// The oldest entry of a read lags most.
		now := time.Now().UnixMicro()
		lag := now - batch[0].TS
		for cur := r.stats.MaxLagUs.Load(); lag > cur && !r.stats.MaxLagUs.CompareAndSwap(cur, lag); cur = r.stats.MaxLagUs.Load() {
		}
		if !r.lagSeen {
			r.lagSeen = true
			r.stats.readLag.observe(lag)
		}
		if ts := batch[len(batch)-1].TS; ts > r.stats.NewestUs.Load() {
			r.stats.NewestUs.Store(ts) // only this goroutine writes it
		}
	}
	r.sink.Publish(batch, r.cursor())
	if r.behind != nil && r.behind.RawBehind() {
		// Let the writers this Publish woke take it before the next chunk:
		// Go readies a woken goroutine on this thread's queue, behind the
		// reader, so a read of thousands of ticks could be handed over
		// whole before a raw subscriber's writer ran once, and a subscriber
		// that joined mid-read would owe more than its queue and be closed
		// however fast it reads. Only then: a yield on a busy node may
		// leave the reader waiting for a CPU.
		runtime.Gosched()
	}
	clear(batch) // pins no update
	r.scratch.reset()
	if cap(batch) > cap(r.batch) {
		r.batch = batch[:0]
	}
}

// latestSeq reads sym's value in the latest-value hash of shard: its seq,
// or 0 when it has none or a malformed one.
func (r *Reader) latestSeq(ctx context.Context, shard int, sym string) (uint64, error) {
	js, err := r.rdb.HGet(ctx, LastKey(shard), sym).Result()
	if errors.Is(err, redis.Nil) {
		return 0, nil
	}
	if err != nil {
		return 0, fmt.Errorf("read %s %s: %w", LastKey(shard), sym, err)
	}
	t, err := checkTick([]byte(js), sym, r.uni)
	if err != nil {
		r.refused(err)
		return 0, nil
	}
	return t.Seq, nil
}

// latestBehind reports whether Redis's latest value of sym is older than
// held (the publisher writes it in the same MULTI as the entries, so it is
// never behind the node unless Redis lost writes).
func (r *Reader) latestBehind(ctx context.Context, shard int, sym string, held uint64) (bool, error) {
	seq, err := r.latestSeq(ctx, shard, sym)
	return err == nil && seq != 0 && seq < held, err
}

// refused counts a refused entry and logs it, at most once per LogEvery.
func (r *Reader) refused(err error) {
	r.stats.Malformed.Add(1)
	reason := reasonOf(err)
	for i, rs := range Reasons {
		if rs == reason {
			r.stats.byReason[i].Add(1)
		}
	}
	r.logMu.Lock()
	defer r.logMu.Unlock()
	if now := time.Now(); now.Sub(r.lastLog) >= r.cfg.LogEvery {
		r.cfg.Logger.Warn("refused a redis entry", "reason", reason, "err", err, "refused_since_last_log", r.suppressed)
		r.lastLog, r.suppressed = now, 0
		return
	}
	r.suppressed++
}

func (r *Reader) shardOf(key string) int {
	for i, k := range r.keys {
		if k == key {
			return i
		}
	}
	return -1
}

// ShardMasters returns, for a Redis Cluster, the address of the master
// that holds each shard (index = shard); nil for a single Redis.
func ShardMasters(ctx context.Context, rdb redis.UniversalClient, shards int) ([]string, error) {
	cc, ok := unwrap(rdb).(*redis.ClusterClient)
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
