package redisstream

import (
	"context"
	"fmt"
	"strings"

	"github.com/redis/go-redis/v9"

	"tickstream/feed"
)

// Replayer reads the entries between two cursors back from the streams, for
// a raw subscriber resuming after a disconnect. It is safe for concurrent
// use.
type Replayer struct {
	rdb    redis.UniversalClient
	shards int
	// Max is the most entries one replay reads before giving up with
	// ErrGap (the client then gets a resync and a fresh snapshot).
	Max int64
}

// NewReplayer returns a replayer over shards shard streams.
func NewReplayer(rdb redis.UniversalClient, shards int) *Replayer {
	return &Replayer{rdb: rdb, shards: shards, Max: 200_000}
}

// Replay returns, in stream order per shard, the updates of syms after from
// and up to and including to. It returns ErrGap when it cannot: the cursors
// belong to different epochs or shard counts, entries after from were
// trimmed, or there are more than Max of them.
func (p *Replayer) Replay(ctx context.Context, from, to string, syms []string) ([]*feed.Update, error) {
	fc, err := ParseCursor(from)
	if err != nil {
		return nil, err
	}
	tc, err := ParseCursor(to)
	if err != nil {
		return nil, err
	}
	if fc.Epoch != tc.Epoch {
		return nil, fmt.Errorf("%w: epoch %s, now %s", ErrGap, fc.Epoch, tc.Epoch)
	}
	if len(fc.IDs) != p.shards || len(tc.IDs) != p.shards {
		return nil, fmt.Errorf("%w: cursor has %d shards, redis %d", ErrGap, len(fc.IDs), p.shards)
	}
	want := make(map[string]bool, len(syms))
	shards := make(map[int]bool)
	for _, s := range syms {
		want[s] = true
		shards[feed.ShardOf(s, p.shards)] = true
	}
	var out []*feed.Update
	budget := p.Max
	for i := range p.shards {
		if !shards[i] || !fc.IDs[i].less(tc.IDs[i]) {
			continue
		}
		key := StreamKey(i)
		if err := p.checkRetained(ctx, key, fc.IDs[i]); err != nil {
			return nil, err
		}
		start := "(" + fc.IDs[i].String()
		if fc.IDs[i] == (streamID{}) {
			start = "-"
		}
		msgs, err := p.rdb.XRangeN(ctx, key, start, tc.IDs[i].String(), budget+1).Result()
		if err != nil {
			return nil, fmt.Errorf("replay %s: %w", key, err)
		}
		if int64(len(msgs)) > budget {
			return nil, fmt.Errorf("%w: more than %d entries to replay", ErrGap, p.Max)
		}
		budget -= int64(len(msgs))
		for _, m := range msgs {
			if s, _ := m.Values["s"].(string); !want[s] {
				continue
			}
			if u, err := DecodeEntry(m.Values); err == nil {
				out = append(out, u)
			}
		}
	}
	return out, nil
}

// checkRetained returns ErrGap if entries after from may have been trimmed
// from the stream.
func (p *Replayer) checkRetained(ctx context.Context, key string, from streamID) error {
	info, err := p.rdb.XInfoStream(ctx, key).Result()
	if err == nil && info.MaxDeletedEntryID != "" {
		del, err := parseID(info.MaxDeletedEntryID)
		if err == nil && from.less(del) {
			return fmt.Errorf("%w: %s trimmed up to %s", ErrGap, key, del)
		}
		return nil
	}
	if err != nil && !strings.Contains(strings.ToLower(err.Error()), "unknown") && !strings.Contains(err.Error(), "ERR") {
		return fmt.Errorf("replay %s: %w", key, err)
	}
	// Without XINFO's max-deleted-entry-id (an embedded store), be
	// conservative: a stream that starts after from may have lost entries.
	first, err := p.rdb.XRangeN(ctx, key, "-", "+", 1).Result()
	if err != nil {
		return fmt.Errorf("replay %s: %w", key, err)
	}
	if len(first) > 0 {
		id, err := parseID(first[0].ID)
		if err == nil && from.less(id) && from != (streamID{}) {
			return fmt.Errorf("%w: %s starts at %s", ErrGap, key, id)
		}
	}
	return nil
}
