package chaos

import (
	"context"
	"encoding/json"
	"fmt"
	"hash/fnv"
	"strings"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed/redisstream"
)

// tickKey names one tick: a symbol at a seq.
type tickKey struct {
	sym string
	seq uint64
}

// observer records every entry Redis ever holds, across restarts, so that
// the test can check that no subscriber ever received a tick (a symbol at a
// seq, with its prices) that Redis never had.
type observer struct {
	rdb    *redis.Client
	shards int

	mu   sync.Mutex
	seen map[tickKey]uint64 // hash of the entry's payload
	ids  []string
}

func newObserver(rdb *redis.Client, shards int) *observer {
	o := &observer{rdb: rdb, shards: shards, seen: map[tickKey]uint64{}, ids: make([]string, shards)}
	for i := range o.ids {
		o.ids[i] = "0-0"
	}
	return o
}

func hashOf(b []byte) uint64 {
	h := fnv.New64a()
	_, _ = h.Write(b)
	return h.Sum64()
}

// run reads every shard until ctx is done. When a stream's last ID is
// below the observer's position (Redis restarted empty), it starts that
// shard again from the beginning.
func (o *observer) run(ctx context.Context) {
	for ctx.Err() == nil {
		if err := o.pass(ctx); err != nil {
			select {
			case <-ctx.Done():
			case <-time.After(20 * time.Millisecond):
			}
			continue
		}
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// pass reads each shard up to its current end: one round trip for the
// shards' last IDs, then only the shards that have new entries.
func (o *observer) pass(ctx context.Context) error {
	lasts := make([]*redis.XMessageSliceCmd, o.shards)
	if _, err := o.rdb.Pipelined(ctx, func(p redis.Pipeliner) error {
		for i := range o.shards {
			lasts[i] = p.XRevRangeN(ctx, redisstream.StreamKey(i), "+", "-", 1)
		}
		return nil
	}); err != nil {
		return err
	}
	for i := range o.shards {
		key := redisstream.StreamKey(i)
		last := lasts[i].Val()
		o.mu.Lock()
		from := o.ids[i]
		o.mu.Unlock()
		if len(last) == 0 || idLess(last[0].ID, from) {
			from = "0-0" // emptied: read it again from the start
		}
		if len(last) == 0 || !idLess(from, last[0].ID) {
			o.setID(i, from)
			continue
		}
		for {
			msgs, err := o.rdb.XRangeN(ctx, key, "("+from, "+", 1000).Result()
			if err != nil {
				return err
			}
			o.mu.Lock()
			for _, m := range msgs {
				if b, ok := m.Values["b"].(string); ok {
					// A batch entry: one tick's wire JSON per line.
					for _, d := range strings.Split(b, "\n") {
						var head struct {
							Sym string `json:"sym"`
							Seq uint64 `json:"seq"`
						}
						if json.Unmarshal([]byte(d), &head) == nil {
							o.seen[tickKey{head.Sym, head.Seq}] = hashOf([]byte(d))
						}
					}
					from = m.ID
					continue
				}
				sym, _ := m.Values["s"].(string)
				d, _ := m.Values["d"].(string)
				var seq uint64
				if q, ok := m.Values["q"].(string); ok {
					for _, c := range q {
						seq = seq*10 + uint64(c-'0')
					}
				}
				o.seen[tickKey{sym, seq}] = hashOf([]byte(d))
				from = m.ID
			}
			o.ids[i] = from
			o.mu.Unlock()
			if len(msgs) < 1000 {
				break
			}
		}
	}
	return nil
}

func (o *observer) setID(i int, id string) {
	o.mu.Lock()
	o.ids[i] = id
	o.mu.Unlock()
}

// catchUp waits until the observer has read every shard up to the last ID
// it has now (call it while nothing is published). The deadline comes
// from progress: it fails after stall without the observer moving.
func (o *observer) catchUp(ctx context.Context, stall time.Duration) error {
	want := make([]string, o.shards)
	for i := range o.shards {
		last, err := o.rdb.XRevRangeN(ctx, redisstream.StreamKey(i), "+", "-", 1).Result()
		if err != nil {
			return err
		}
		if len(last) > 0 {
			want[i] = last[0].ID
		}
	}
	prev, moved := "", time.Now()
	for {
		o.mu.Lock()
		behind, pos := 0, ""
		for i, id := range o.ids {
			pos += id + ","
			if want[i] != "" && idLess(id, want[i]) {
				behind++
			}
		}
		o.mu.Unlock()
		if behind == 0 {
			return nil
		}
		if pos != prev {
			prev, moved = pos, time.Now()
		}
		if time.Since(moved) > stall {
			return fmt.Errorf("observer still behind on %d shards, no progress for %v", behind, stall)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(10 * time.Millisecond):
		}
	}
}

// had reports whether Redis ever held this tick with exactly these bytes.
func (o *observer) had(k tickKey, h uint64) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	got, ok := o.seen[k]
	return ok && got == h
}

// idLess compares two stream IDs.
func idLess(a, b string) bool {
	pa, pb := parseID(a), parseID(b)
	return pa[0] < pb[0] || pa[0] == pb[0] && pa[1] < pb[1]
}

func parseID(s string) [2]uint64 {
	var out [2]uint64
	k := 0
	for _, c := range s {
		if c == '-' {
			k = 1
			continue
		}
		out[k] = out[k]*10 + uint64(c-'0')
	}
	return out
}
