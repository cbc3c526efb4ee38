package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
)

// ErrReplayTooLong means a replay was refused because the span between the
// cursors is beyond the replay budget (it wraps ErrGap: the client gets a
// resync and a fresh snapshot instead).
var ErrReplayTooLong = fmt.Errorf("%w: beyond the replay budget", ErrGap)

// Replayer reads the entries between two cursors back from the streams, for
// a raw subscriber resuming after a disconnect. A replay is cheap to refuse:
// the span is checked against the budget (MaxSpan), and the entries it
// would read are estimated against MaxEntries (from the stream IDs and XINFO
// STREAM: length over time spanned), before anything is read; the entries
// are read in pages and
// the replay stops at MaxEntries entries or MaxBytes bytes read. It is safe
// for concurrent use; set the fields before the first Replay.
type Replayer struct {
	rdb    redis.UniversalClient
	shards int
	// Universe validates replayed entries as the reader does. Default:
	// none (only the entry's own consistency is checked).
	Universe *feed.Universe
	// MaxSpan is the longest time between the cursor and now that a replay
	// covers, per shard. Default 2 minutes.
	MaxSpan time.Duration
	// MaxEntries is the most stream entries one replay reads (of every
	// symbol of the shards it reads; a batch entry holds the ticks of one
	// publish batch of its shard). Default 20,000.
	MaxEntries int64
	// MaxBytes is the most payload bytes one replay reads. Default 8 MiB.
	MaxBytes int64
	// Page is the entries read per XRANGE. Default 500.
	Page int64
}

// NewReplayer returns a replayer over shards shard streams, with the
// default budget.
func NewReplayer(rdb redis.UniversalClient, shards int) *Replayer {
	return &Replayer{rdb: rdb, shards: shards, MaxSpan: 2 * time.Minute, MaxEntries: 20_000, MaxBytes: 8 << 20, Page: 500}
}

// Behind reports whether position have is before position want on a
// shard of syms: a node at have has not read what a client at want has
// seen. Cursors of different epochs or shard counts are an error wrapping
// ErrGap; malformed ones wrap ErrBadCursor.
func (p *Replayer) Behind(have, want string, syms []string) (bool, error) {
	hc, wc, err := p.pair(have, want)
	if err != nil {
		return false, err
	}
	for i := range p.shardsOf(syms) {
		if hc.IDs[i].less(wc.IDs[i]) {
			return true, nil
		}
	}
	return false, nil
}

func (p *Replayer) pair(a, b string) (Cursor, Cursor, error) {
	ac, err := ParseCursor(a)
	if err != nil {
		return Cursor{}, Cursor{}, err
	}
	bc, err := ParseCursor(b)
	if err != nil {
		return Cursor{}, Cursor{}, err
	}
	if ac.Epoch != bc.Epoch {
		return Cursor{}, Cursor{}, fmt.Errorf("%w: epoch %.16s, now %.16s", ErrGap, ac.Epoch, bc.Epoch)
	}
	if len(ac.IDs) != p.shards || len(bc.IDs) != p.shards {
		return Cursor{}, Cursor{}, fmt.Errorf("%w: cursor has %d shards, redis %d", ErrGap, len(ac.IDs), p.shards)
	}
	return ac, bc, nil
}

func (p *Replayer) shardsOf(syms []string) map[int]bool {
	shards := make(map[int]bool)
	for _, s := range syms {
		shards[feed.ShardOf(s, p.shards)] = true
	}
	return shards
}

// Replay returns, in stream order per shard, the updates of syms after from
// and up to and including to, each with its position, all after from. It
// returns ErrGap when it cannot: the cursors belong to different epochs or
// shard counts, entries after from were trimmed, or the replay is beyond
// the budget (ErrReplayTooLong).
func (p *Replayer) Replay(ctx context.Context, from, to string, syms []string) ([]*feed.Update, error) {
	pg, err := p.ReplayPage(ctx, from, to, syms, nil, int(p.MaxEntries))
	if err != nil {
		return nil, err
	}
	if !pg.Done {
		return nil, p.tooLong()
	}
	return pg.Updates, nil
}

// budget is what a replay may still read.
type budget struct{ entries, bytes int64 }

// spend takes an entry's payload and the given count of entries off the
// budget and reports whether it still holds.
func (b *budget) spend(m redis.XMessage, entries int64) bool {
	d, _ := m.Values["d"].(string)
	bt, _ := m.Values["b"].(string)
	b.entries, b.bytes = b.entries-entries, b.bytes-int64(len(d)+len(bt))
	return b.entries >= 0 && b.bytes >= 0
}

// tooLong is the error of a replay that ran out of budget while reading.
func (p *Replayer) tooLong() error {
	return fmt.Errorf("%w: more than %d entries or %d bytes to replay", ErrReplayTooLong, p.MaxEntries, p.MaxBytes)
}

// check refuses a shard's replay that cannot be exact (entries after from
// trimmed) or is beyond the time budget, and estimates the entries it would
// read from the stream's length and the time it spans (0 when unknown).
func (p *Replayer) check(ctx context.Context, shard int, from, to streamID, info *redis.XInfoStreamCmd) (float64, error) {
	key := StreamKey(shard)
	st, err := p.retained(ctx, key, from, info)
	if err != nil {
		return 0, err
	}
	start := from
	if from == (streamID{}) {
		start = st.first // "from the beginning": the span starts at the first entry
	}
	if start.ms >= to.ms {
		return 0, nil
	}
	span := time.Duration(to.ms-start.ms) * time.Millisecond
	if span > p.MaxSpan {
		return 0, fmt.Errorf("%w: %s: %v of history to replay, the budget is %v", ErrReplayTooLong, key, span, p.MaxSpan)
	}
	if st.length == 0 || !st.first.less(st.last) {
		return 0, nil
	}
	rate := float64(st.length) / float64(st.last.ms-st.first.ms+1) // entries per ms
	return rate * float64(to.ms-start.ms), nil
}

// shardRead is the reading of one shard's entries for a replay.
type shardRead struct {
	p     *Replayer
	shard int
	want  map[string]bool
	seqs  map[string]uint64 // each symbol's last seq so far: not above it is not replayed
	// latest is the seq of each symbol's latest value the publisher stored
	// (latestSeqs): no genuine entry is newer.
	latest map[string]uint64
	b      *budget
}

// read appends the wanted symbols' updates of the entries in (from, to] to
// out, until to or until the budget runs out (the entry that spends its
// last is read whole). It reports where it stopped (the last entry read)
// and whether that is to. mark, if not nil, is called after each entry
// with out and the entry's ID. No genuine entry is newer than the latest
// value the publisher stores with it: an entry beyond it was injected (a
// seq jump the reader refused as well) and is left out.
func (r *shardRead) read(ctx context.Context, from, to streamID, out []*feed.Update, mark func([]*feed.Update, streamID)) ([]*feed.Update, streamID, bool, error) {
	p, key, latest := r.p, StreamKey(r.shard), r.latest
	fromPos := feed.Position{Shard: r.shard, MS: from.ms, Seq: from.seq}
	cur := from
	for {
		start := "(" + cur.String()
		if cur == (streamID{}) {
			start = "-"
		}
		msgs, err := rangeEntries(ctx, p.rdb, "xrange", key, start, to.String(), "count", p.Page)
		if err != nil {
			return nil, cur, false, fmt.Errorf("replay %s: %w", key, err)
		}
		for _, m := range msgs {
			id, err := parseID(m.ID)
			if err != nil {
				return nil, cur, false, fmt.Errorf("replay %s: %w", key, err)
			}
			cur = id
			left := r.b.spend(m, 1)
			ups, _ := DecodeTicks(m.ID, m.Values, r.shard, p.shards, p.Universe, r.want)
			for _, u := range ups {
				if u.Seq > latest[u.Sym] || u.Seq <= r.seqs[u.Sym] || !u.Pos.After(fromPos) {
					continue
				}
				r.seqs[u.Sym] = u.Seq
				out = append(out, u)
			}
			if mark != nil {
				mark(out, cur)
			}
			if !left || r.b.entries == 0 {
				return out, cur, !cur.less(to), nil
			}
		}
		if int64(len(msgs)) < p.Page || !cur.less(to) {
			return out, to, true, nil
		}
	}
}

// markEvery is the least number of updates between two resume points of a
// replay page: a point is a cursor (~70 bytes), attached to a tick.
const markEvery = 32

// ReplayPage reads part of a raw subscriber's missed ticks: the updates of
// syms after from and up to and including to, shard by shard, at most max
// entries (and MaxBytes bytes) of the streams. The first page refuses, before
// reading, a replay whose whole span is estimated above MaxEntries (as
// Replay does); the pages after it follow a client catching up, bounded by
// MaxSpan. seqs is the previous page's
// Seqs (nil on the first page: each symbol's seq at from is then read from
// the entries before it). The page carries a resume point every few
// updates and after its last, so a client cut anywhere resumes exactly;
// Next is where the following page starts, Done when it reached to. It
// returns ErrGap when the missed ticks cannot be read exactly (another
// epoch or shard count, entries after from trimmed, or from older than
// MaxSpan).
func (p *Replayer) ReplayPage(ctx context.Context, from, to string, syms []string, seqs map[string]uint64, max int) (feed.ReplayPage, error) {
	fc, tc, err := p.pair(from, to)
	if err != nil {
		return feed.ReplayPage{}, err
	}
	want := make(map[string]bool, len(syms))
	for _, s := range syms {
		want[s] = true
	}
	first := seqs == nil
	if first {
		seqs = map[string]uint64{}
	}
	var estimate float64
	next := Cursor{Epoch: fc.Epoch, IDs: append([]streamID(nil), fc.IDs...)}
	pg := feed.ReplayPage{Seqs: seqs}
	b := budget{entries: int64(max), bytes: p.MaxBytes}
	lastMark := 0
	markAt := func(out []*feed.Update, id streamID, shard int) {
		next.IDs[shard] = id
		if len(out)-lastMark >= markEvery {
			pg.Marks = append(pg.Marks, feed.Mark{End: len(out), Cursor: next.String()})
			lastMark = len(out)
		}
	}
	shards := p.shardsOf(syms)
	var todo []int
	for i := range p.shards {
		if shards[i] && fc.IDs[i].less(tc.IDs[i]) {
			todo = append(todo, i)
		}
	}
	// What every shard's check needs, in one round trip.
	infos, lasts := p.prefetch(ctx, todo)
	latest := make([]map[string]uint64, len(todo))
	for k, i := range todo {
		n, err := p.check(ctx, i, fc.IDs[i], tc.IDs[i], infos[k])
		if err != nil {
			return feed.ReplayPage{}, err
		}
		if estimate += n; first && estimate > float64(p.MaxEntries) {
			return feed.ReplayPage{}, fmt.Errorf("%w: about %.0f entries to replay, the budget is %d", ErrReplayTooLong, estimate, p.MaxEntries)
		}
		if latest[k], err = p.latestOf(i, lasts[k]); err != nil {
			return feed.ReplayPage{}, err
		}
	}
	if err := p.seedShards(ctx, todo, fc, syms, seqs, latest); err != nil {
		return feed.ReplayPage{}, err
	}
	for k, i := range todo {
		r := shardRead{p: p, shard: i, want: want, seqs: seqs, latest: latest[k], b: &b}
		var done bool
		var err error
		pg.Updates, next.IDs[i], done, err = r.read(ctx, fc.IDs[i], tc.IDs[i], pg.Updates,
			func(out []*feed.Update, id streamID) { markAt(out, id, i) })
		if err != nil {
			return feed.ReplayPage{}, err
		}
		if !done {
			return p.endPage(pg, next, lastMark, false), nil
		}
	}
	return p.endPage(pg, next, lastMark, true), nil
}

// seedShards records in seqs the seq at from of the symbols of syms in
// the shards todo that it does not hold yet (0 when unknown), the first
// time a page of the replay reads those shards. The first read back of
// every shard goes in one round trip.
func (p *Replayer) seedShards(ctx context.Context, todo []int, from Cursor, syms []string, seqs map[string]uint64, latest []map[string]uint64) error {
	wants := make([]map[string]bool, len(todo))
	firsts := make([]*redis.Cmd, len(todo))
	pipe := p.rdb.Pipeline()
	for k, i := range todo {
		for _, s := range syms {
			if _, ok := seqs[s]; !ok && feed.ShardOf(s, p.shards) == i {
				if wants[k] == nil {
					wants[k] = map[string]bool{}
				}
				wants[k][s] = true
			}
		}
		if wants[k] != nil && from.IDs[i] != (streamID{}) {
			firsts[k] = pipe.Do(ctx, "xrevrange", StreamKey(i), from.IDs[i].String(), "-", "count", seedFirst)
		}
	}
	if pipe.Len() > 0 {
		_, _ = pipe.Exec(ctx) // each command's own error is read below
	}
	for k, i := range todo {
		if wants[k] == nil {
			continue
		}
		if firsts[k] != nil {
			seed := budget{entries: p.Page, bytes: p.MaxBytes}
			if err := p.seedSeqs(ctx, i, from.IDs[i], wants[k], seqs, latest[k], firsts[k], &seed); err != nil {
				return err
			}
		}
		for s := range wants[k] {
			seqs[s] += 0 // known from now on, 0 if nothing showed it
		}
	}
	return nil
}

// seedFirst is the entries of the first read back of a shard's seeding: a
// busy symbol is among them.
const seedFirst = 16

// prefetch sends, in one round trip, XINFO STREAM and the latest-value
// hash of each shard of todo.
func (p *Replayer) prefetch(ctx context.Context, todo []int) ([]*redis.XInfoStreamCmd, []*redis.MapStringStringCmd) {
	infos := make([]*redis.XInfoStreamCmd, len(todo))
	lasts := make([]*redis.MapStringStringCmd, len(todo))
	if len(todo) == 0 {
		return infos, lasts
	}
	pipe := p.rdb.Pipeline()
	for k, i := range todo {
		infos[k] = pipe.XInfoStream(ctx, StreamKey(i))
		lasts[k] = pipe.HGetAll(ctx, LastKey(i))
	}
	_, _ = pipe.Exec(ctx) // each command's own error is read by its user
	return infos, lasts
}

// endPage closes a page at next: a resume point after its last update.
func (p *Replayer) endPage(pg feed.ReplayPage, next Cursor, lastMark int, done bool) feed.ReplayPage {
	pg.Next, pg.Done = next.String(), done
	if len(pg.Updates) > lastMark {
		pg.Marks = append(pg.Marks, feed.Mark{End: len(pg.Updates), Cursor: pg.Next})
	}
	return pg
}

// Beyond reports whether want is past the newest entry the source holds on
// a shard of syms: a position no reader will reach (a forged cursor, or
// one from a Redis that has since lost its newest entries). Cursors of
// another epoch or shard count are an error wrapping ErrGap.
func (p *Replayer) Beyond(ctx context.Context, want string, syms []string) (bool, error) {
	wc, err := ParseCursor(want)
	if err != nil {
		return false, err
	}
	if len(wc.IDs) != p.shards {
		return false, fmt.Errorf("%w: cursor has %d shards, redis %d", ErrGap, len(wc.IDs), p.shards)
	}
	for i := range p.shards {
		if !p.shardsOf(syms)[i] || wc.IDs[i] == (streamID{}) {
			continue
		}
		msgs, err := p.rdb.XRevRangeN(ctx, StreamKey(i), "+", "-", 1).Result()
		if err != nil {
			return false, fmt.Errorf("replay %s: %w", StreamKey(i), err)
		}
		if len(msgs) == 0 {
			return true, nil
		}
		last, err := parseID(msgs[0].ID)
		if err != nil {
			return false, fmt.Errorf("replay %s: %w", StreamKey(i), err)
		}
		if last.less(wc.IDs[i]) {
			return true, nil
		}
	}
	return false, nil
}

// seedSeqs records in prev the seq each wanted symbol of shard had at
// from, as far as Page entries back from it show (a symbol not in them:
// 0); it stops reading once every wanted symbol is found. A tick after from whose seq is not above that one was refused
// live (an old seq injected or repeated) and is not replayed either: such
// a tick, first of its symbol after from, would reach a resuming
// subscriber as a seq going down. Ticks above the latest value the
// publisher stored are left out (a forged jump the reader refuses too).
// What it reads counts against the budget.
func (p *Replayer) seedSeqs(ctx context.Context, shard int, from streamID, want map[string]bool, prev, latest map[string]uint64, first *redis.Cmd, b *budget) error {
	key := StreamKey(shard)
	// Newest first, in pages that grow, until every wanted symbol is found
	// (a busy symbol is in the last few entries) or Page entries are read.
	found := map[string]bool{}
	end, read := from.String(), int64(0)
	for n := int64(seedFirst); read < p.Page; n *= 4 {
		var msgs []redis.XMessage
		var err error
		if first != nil {
			msgs, err = entriesOf("xrevrange", first)
			first = nil
		} else {
			msgs, err = rangeEntries(ctx, p.rdb, "xrevrange", key, end, "-", "count", min(n, p.Page-read))
		}
		if err != nil {
			return fmt.Errorf("replay %s: %w", key, err)
		}
		for _, m := range msgs {
			if !b.spend(m, 0) {
				return p.tooLong()
			}
			ups, _ := DecodeTicks(m.ID, m.Values, shard, p.shards, p.Universe, want)
			for _, u := range ups {
				if u.Seq <= latest[u.Sym] && u.Seq > prev[u.Sym] {
					prev[u.Sym] = u.Seq
					found[u.Sym] = true
				}
			}
		}
		read += int64(len(msgs))
		if len(found) == len(want) || int64(len(msgs)) < min(n, p.Page-read+int64(len(msgs))) {
			return nil
		}
		end = "(" + msgs[len(msgs)-1].ID
	}
	return nil
}

// latestOf returns the seq of each symbol's latest value that the
// publisher stored with shard's entries, from the reply of an HGETALL of
// its latest-value hash.
func (p *Replayer) latestOf(shard int, c *redis.MapStringStringCmd) (map[string]uint64, error) {
	m, err := c.Result()
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", LastKey(shard), err)
	}
	latest := make(map[string]uint64, len(m))
	for sym, js := range m {
		if t, err := checkTick([]byte(js), sym, p.Universe); err == nil {
			latest[sym] = t.Seq
		}
	}
	return latest, nil
}

// streamInfo is what a replay needs to know of a stream before reading it.
type streamInfo struct {
	first, last streamID
	length      int64
}

// retained returns ErrGap if entries after from may have been trimmed from
// the stream, and the stream's first and last entry IDs and length, from
// the reply of an XINFO STREAM of it.
func (p *Replayer) retained(ctx context.Context, key string, from streamID, cmd *redis.XInfoStreamCmd) (streamInfo, error) {
	info, err := cmd.Result()
	if isNoSuchKey(err) {
		return streamInfo{}, nil
	}
	if err == nil && info.MaxDeletedEntryID != "" {
		if del, err := parseID(info.MaxDeletedEntryID); err == nil && from.less(del) {
			return streamInfo{}, fmt.Errorf("%w: %s trimmed up to %s", ErrGap, key, del)
		}
		st := streamInfo{length: info.Length}
		st.first, _ = parseID(info.FirstEntry.ID)
		st.last, _ = parseID(info.LastEntry.ID)
		return st, nil
	}
	if err != nil && !strings.Contains(strings.ToLower(err.Error()), "unknown") && !strings.Contains(err.Error(), "ERR") {
		return streamInfo{}, fmt.Errorf("replay %s: %w", key, err)
	}
	// Without XINFO's max-deleted-entry-id (an embedded store), be
	// conservative: a stream that starts after from may have lost entries.
	msgs, err := p.rdb.XRangeN(ctx, key, "-", "+", 1).Result()
	if err != nil {
		return streamInfo{}, fmt.Errorf("replay %s: %w", key, err)
	}
	if len(msgs) == 0 {
		return streamInfo{}, nil
	}
	first, err := parseID(msgs[0].ID)
	if err != nil {
		return streamInfo{}, err
	}
	if from.less(first) && from != (streamID{}) {
		return streamInfo{}, fmt.Errorf("%w: %s starts at %s", ErrGap, key, first)
	}
	return streamInfo{first: first}, nil
}

// IsBudget reports whether err is a replay refused for its size (as
// opposed to history that is gone).
func IsBudget(err error) bool { return errors.Is(err, ErrReplayTooLong) }
