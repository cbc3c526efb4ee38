package redisstream

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
)

// DefaultSeedMaxBytes is ReadBackLimits.MaxBytes's default: 64 MiB, above
// what a read-back of 400,000 ticks of the publisher's (~140 bytes each)
// reads, far below what a forged stream can hold.
const DefaultSeedMaxBytes = 64 << 20

// maxReadBackPage bounds the entries of one XREVRANGE of a read-back.
const maxReadBackPage = 512

// ReadBackLimits bounds what ReadBack reads.
type ReadBackLimits struct {
	// Window is how far back before the cursor's position the ticks may be
	// (stream IDs carry Redis's clock).
	Window time.Duration
	// MaxTicks is the most ticks read back, all shards together: the
	// newest MaxTicks/shards of each shard.
	MaxTicks int
	// MaxBytes is the most entry bytes (fields and values) read, all
	// shards together; each shard may use what is left divided by the
	// shards left, so one forged shard cannot starve the others. Default
	// DefaultSeedMaxBytes.
	MaxBytes int64
}

// ReadBackStats say what a read-back read.
type ReadBackStats struct {
	Entries int   // stream entries read
	Bytes   int64 // their bytes (fields and values)
	Ticks   int   // ticks handed over
	Refused int   // ticks or entries refused (DecodeTicks, or a seq beyond the latest value)
	// Capped counts the shards whose read stopped at their share of
	// MaxBytes before MaxTicks or Window did.
	Capped int
}

// ReadBack reads the retained entries of every shard up to and including
// cursor's position, for a node that seeds its charts at start: per shard,
// the newest lim.MaxTicks/shards ticks no older than lim.Window before that
// position. It calls fn once per shard with that shard's updates in stream
// order (so each symbol's ticks are in order); it honours ctx between
// reads.
//
// A shard is read newest first, a page at a time, and its read stops once
// it has enough ticks or has read its share of lim.MaxBytes (what is left
// over the shards left): a page holds at most what is left of the budget
// over the largest entry the publisher writes (maxBatchBytes), so a
// read-back reads at most lim.MaxBytes of such entries whatever Redis
// holds. Each
// entry is judged as the live reader judges it (DecodeTicks); a tick whose
// seq is beyond its symbol's latest value, or not above the seq before it,
// is refused, as replay refuses it.
func ReadBack(ctx context.Context, rdb redis.UniversalClient, u *feed.Universe, cursor string, lim ReadBackLimits, fn func([]*feed.Update)) (ReadBackStats, error) {
	var st ReadBackStats
	c, err := ParseCursor(cursor)
	if err != nil {
		return st, err
	}
	if lim.MaxBytes <= 0 {
		lim.MaxBytes = DefaultSeedMaxBytes
	}
	per := max(lim.MaxTicks/len(c.IDs), 1)
	left := lim.MaxBytes
	for i, id := range c.IDs {
		if err := ctx.Err(); err != nil {
			return st, err
		}
		if id == (streamID{}) {
			continue // empty shard
		}
		share := left / int64(len(c.IDs)-i)
		out, used, err := readBackShard(ctx, rdb, u, i, len(c.IDs), id, lim.Window, per, share, left, &st)
		if err != nil {
			return st, err
		}
		left -= used
		st.Ticks += len(out)
		fn(out)
	}
	return st, nil
}

// readBackShard reads shard's entries back from id, newest first, until it
// holds per ticks, passes window or has read share bytes; a page holds at
// most what is left of the whole budget (left) over the largest entry the
// publisher writes, so the read-back as a whole never reads more than its
// budget. It returns the accepted ticks in stream order and the bytes it
// read.
func readBackShard(ctx context.Context, rdb redis.UniversalClient, u *feed.Universe, shard, shards int, id streamID, window time.Duration, per int, share, left int64, st *ReadBackStats) ([]*feed.Update, int64, error) {
	key := StreamKey(shard)
	latest, err := latestSeqs(ctx, rdb, u, shard, shards)
	if err != nil {
		return nil, 0, err
	}
	lo := "-"
	if ms := int64(id.ms) - window.Milliseconds(); ms > 0 {
		lo = strconv.FormatInt(ms, 10)
	}
	var (
		ents [][]*feed.Update // each entry's accepted ticks, newest entry first
		n    int
		used int64
		hi   = id.String()
	)
	for n < per {
		page := min(int64(maxReadBackPage), (left-used)/maxBatchBytes)
		if used >= share || page < 1 {
			st.Capped++
			break
		}
		msgs, err := rangeEntries(ctx, rdb, "xrevrange", key, hi, lo, "count", page)
		if err != nil {
			return nil, used, fmt.Errorf("read back %s: %w", key, err)
		}
		for _, m := range msgs {
			used += entryBytes(m)
			st.Entries++
			ups, errs := DecodeTicks(m.ID, m.Values, shard, shards, u, nil)
			st.Refused += len(errs)
			kept := ups[:0]
			for _, up := range ups {
				if up.Seq > latest[up.Sym] {
					st.Refused++ // beyond the latest value: forged
					continue
				}
				kept = append(kept, up)
			}
			if len(kept) > 0 {
				n += len(kept)
				ents = append(ents, kept)
			}
		}
		if int64(len(msgs)) < page {
			break
		}
		hi = "(" + msgs[len(msgs)-1].ID
	}
	st.Bytes += used
	var out []*feed.Update
	for _, e := range slices.Backward(ents) {
		out = append(out, e...)
	}
	if len(out) > per {
		out = out[len(out)-per:] // the newest
	}
	// In stream order, a symbol's seq only grows: a tick not above the one
	// before it was refused live (seq_old) and is left out here too.
	prev := make(map[string]uint64)
	kept := out[:0]
	for _, up := range out {
		if up.Seq <= prev[up.Sym] {
			st.Refused++
			continue
		}
		prev[up.Sym] = up.Seq
		kept = append(kept, up)
	}
	clear(out[len(kept):])
	return kept, used, nil
}

// latestSeqs returns the seq of each symbol's latest value in shard's
// latest-value hash (validated as the reader validates it). With a
// universe, only the shard's symbols are read (HMGET), so a hash padded
// with forged fields costs nothing.
func latestSeqs(ctx context.Context, rdb redis.UniversalClient, u *feed.Universe, shard, shards int) (map[string]uint64, error) {
	key := LastKey(shard)
	vals := map[string]string{}
	if u == nil {
		m, err := rdb.HGetAll(ctx, key).Result()
		if err != nil {
			return nil, fmt.Errorf("read back %s: %w", key, err)
		}
		vals = m
	} else {
		var syms []string
		for _, s := range u.Symbols() {
			if feed.ShardOf(s.Name, shards) == shard {
				syms = append(syms, s.Name)
			}
		}
		if len(syms) > 0 {
			got, err := rdb.HMGet(ctx, key, syms...).Result()
			if err != nil {
				return nil, fmt.Errorf("read back %s: %w", key, err)
			}
			for i, v := range got {
				if s, ok := v.(string); ok {
					vals[syms[i]] = s
				}
			}
		}
	}
	latest := make(map[string]uint64, len(vals))
	for sym, js := range vals {
		if t, err := checkTick([]byte(js), sym, u); err == nil {
			latest[sym] = t.Seq
		}
	}
	return latest, nil
}

// entryBytes returns the bytes of an entry's fields and values.
func entryBytes(m redis.XMessage) int64 {
	n := 0
	for k, v := range m.Values {
		s, _ := v.(string)
		n += len(k) + len(s)
	}
	return int64(n)
}
