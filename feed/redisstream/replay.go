package redisstream

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"tickstream/feed"
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
	fc, tc, err := p.pair(from, to)
	if err != nil {
		return nil, err
	}
	want := make(map[string]bool, len(syms))
	for _, s := range syms {
		want[s] = true
	}
	shards := p.shardsOf(syms)
	// First the cheap checks of every shard, before reading any entry.
	var todo []int
	var estimate float64
	for i := range p.shards {
		if !shards[i] || !fc.IDs[i].less(tc.IDs[i]) {
			continue
		}
		n, err := p.check(ctx, i, fc.IDs[i], tc.IDs[i])
		if err != nil {
			return nil, err
		}
		if estimate += n; estimate > float64(p.MaxEntries) {
			return nil, fmt.Errorf("%w: about %.0f entries to replay, the budget is %d", ErrReplayTooLong, estimate, p.MaxEntries)
		}
		todo = append(todo, i)
	}
	b := budget{entries: p.MaxEntries, bytes: p.MaxBytes}
	var out []*feed.Update
	for _, i := range todo {
		if out, err = p.replayShard(ctx, i, fc.IDs[i], tc.IDs[i], want, &b, out); err != nil {
			return nil, err
		}
	}
	return out, nil
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
func (p *Replayer) check(ctx context.Context, shard int, from, to streamID) (float64, error) {
	key := StreamKey(shard)
	st, err := p.retained(ctx, key, from)
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

// replayShard reads one shard's entries in (from, to] page by page,
// appending those of the wanted symbols to out.
func (p *Replayer) replayShard(ctx context.Context, shard int, from, to streamID, want map[string]bool, b *budget, out []*feed.Update) ([]*feed.Update, error) {
	key := StreamKey(shard)
	// No genuine entry is newer than the latest value the publisher stores
	// with it: an entry beyond it was injected (a seq jump the reader
	// refused as well).
	latest := map[string]uint64{}
	if m, err := p.rdb.HGetAll(ctx, LastKey(shard)).Result(); err == nil {
		for sym, js := range m {
			if t, err := checkTick([]byte(js), sym, p.Universe); err == nil {
				latest[sym] = t.Seq
			}
		}
	} else {
		return nil, fmt.Errorf("replay %s: %w", LastKey(shard), err)
	}
	fromPos := feed.Position{Shard: shard, MS: from.ms, Seq: from.seq}
	prev, err := p.seqsAt(ctx, shard, from, want, latest, b)
	if err != nil {
		return nil, err
	}
	cur := from
	for {
		start := "(" + cur.String()
		if cur == (streamID{}) {
			start = "-"
		}
		msgs, err := rangeEntries(ctx, p.rdb, "xrange", key, start, to.String(), "count", p.Page)
		if err != nil {
			return nil, fmt.Errorf("replay %s: %w", key, err)
		}
		for _, m := range msgs {
			id, err := parseID(m.ID)
			if err != nil {
				return nil, fmt.Errorf("replay %s: %w", key, err)
			}
			cur = id
			if !b.spend(m, 1) {
				return nil, p.tooLong()
			}
			ups, _ := DecodeTicks(m.ID, m.Values, shard, p.shards, p.Universe, want)
			for _, u := range ups {
				if u.Seq > latest[u.Sym] || u.Seq <= prev[u.Sym] || !u.Pos.After(fromPos) {
					continue
				}
				prev[u.Sym] = u.Seq
				out = append(out, u)
			}
		}
		if int64(len(msgs)) < p.Page || !cur.less(to) {
			return out, nil
		}
	}
}

// seqsAt returns the seq each wanted symbol of shard had at from, as far
// as one page of entries back from it shows (a symbol not in it: 0). A
// tick after from whose seq is not above that one was refused live (an
// old seq injected or repeated) and must not be replayed either: without
// this, such a tick, when first of its symbol after from, went to a
// resuming subscriber as a seq going down. Ticks above the latest value
// are left out (a forged jump the reader refused too). What it reads
// counts against the budget.
func (p *Replayer) seqsAt(ctx context.Context, shard int, from streamID, want map[string]bool, latest map[string]uint64, b *budget) (map[string]uint64, error) {
	prev := map[string]uint64{}
	if from == (streamID{}) {
		return prev, nil
	}
	key := StreamKey(shard)
	msgs, err := rangeEntries(ctx, p.rdb, "xrevrange", key, from.String(), "-", "count", p.Page)
	if err != nil {
		return nil, fmt.Errorf("replay %s: %w", key, err)
	}
	for _, m := range msgs {
		if !b.spend(m, 0) {
			return nil, p.tooLong()
		}
		ups, _ := DecodeTicks(m.ID, m.Values, shard, p.shards, p.Universe, want)
		for _, u := range ups {
			if u.Seq <= latest[u.Sym] && u.Seq > prev[u.Sym] {
				prev[u.Sym] = u.Seq
			}
		}
	}
	return prev, nil
}

// streamInfo is what a replay needs to know of a stream before reading it.
type streamInfo struct {
	first, last streamID
	length      int64
}

// retained returns ErrGap if entries after from may have been trimmed from
// the stream, and the stream's first and last entry IDs and length.
func (p *Replayer) retained(ctx context.Context, key string, from streamID) (streamInfo, error) {
	info, err := p.rdb.XInfoStream(ctx, key).Result()
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
