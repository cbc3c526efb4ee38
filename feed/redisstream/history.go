package redisstream

import (
	"context"
	"fmt"
	"slices"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"

	"tickstream/feed"
)

// ReadBack reads the retained entries of every shard up to and including
// cursor's position, for a node that seeds its charts at start: per shard,
// the newest max/shards ticks no older than window before that position
// (stream IDs carry Redis's clock). It calls fn once per shard with that
// shard's updates in stream order (so each symbol's ticks are in order);
// ticks that fail validation against u (DecodeTicks) are skipped. It
// honours ctx between shards.
func ReadBack(ctx context.Context, rdb redis.UniversalClient, u *feed.Universe, cursor string, window time.Duration, max int, fn func([]*feed.Update)) error {
	c, err := ParseCursor(cursor)
	if err != nil {
		return err
	}
	per := int64(max / len(c.IDs))
	if per < 1 {
		per = 1
	}
	for i, id := range c.IDs {
		if err := ctx.Err(); err != nil {
			return err
		}
		if id == (streamID{}) {
			continue // empty shard
		}
		lo := "-"
		if ms := int64(id.ms) - window.Milliseconds(); ms > 0 {
			lo = strconv.FormatInt(ms, 10)
		}
		msgs, err := rdb.XRevRangeN(ctx, StreamKey(i), id.String(), lo, per).Result()
		if err != nil {
			return fmt.Errorf("read back %s: %w", StreamKey(i), err)
		}
		slices.Reverse(msgs)
		var out []*feed.Update
		for _, m := range msgs {
			ups, _ := DecodeTicks(m.ID, m.Values, i, len(c.IDs), u, nil)
			out = append(out, ups...)
		}
		if len(out) > int(per) {
			out = out[len(out)-int(per):] // the newest
		}
		fn(out)
	}
	return nil
}
