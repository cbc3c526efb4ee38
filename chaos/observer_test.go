package chaos

import (
	"context"
	"errors"
	"hash/fnv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"

	"tickstream/feed/redisstream"
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

	mu     sync.Mutex
	seen   map[tickKey]uint64 // hash of the entry's payload
	ids    []string
	caught chan struct{} // closed and replaced after each complete pass
}

func newObserver(rdb *redis.Client, shards int) *observer {
	o := &observer{rdb: rdb, shards: shards, seen: map[tickKey]uint64{}, ids: make([]string, shards), caught: make(chan struct{})}
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
		o.mu.Lock()
		close(o.caught)
		o.caught = make(chan struct{})
		o.mu.Unlock()
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// pass reads each shard up to its current end.
func (o *observer) pass(ctx context.Context) error {
	for i := range o.shards {
		key := redisstream.StreamKey(i)
		last, err := o.rdb.XRevRangeN(ctx, key, "+", "-", 1).Result()
		if err != nil {
			return err
		}
		if len(last) == 0 || idLess(last[0].ID, o.ids[i]) {
			o.ids[i] = "0-0" // emptied: read it again from the start
		}
		for {
			msgs, err := o.rdb.XRangeN(ctx, key, "("+o.ids[i], "+", 1000).Result()
			if err != nil {
				return err
			}
			o.mu.Lock()
			for _, m := range msgs {
				sym, _ := m.Values["s"].(string)
				d, _ := m.Values["d"].(string)
				var seq uint64
				if q, ok := m.Values["q"].(string); ok {
					for _, c := range q {
						seq = seq*10 + uint64(c-'0')
					}
				}
				o.seen[tickKey{sym, seq}] = hashOf([]byte(d))
				o.ids[i] = m.ID
			}
			o.mu.Unlock()
			if len(msgs) < 1000 {
				break
			}
		}
	}
	return nil
}

// catchUp waits until a complete pass started after the call has ended.
func (o *observer) catchUp(ctx context.Context) error {
	for range 2 {
		o.mu.Lock()
		ch := o.caught
		o.mu.Unlock()
		select {
		case <-ch:
		case <-ctx.Done():
			return errors.New("observer did not catch up")
		}
	}
	return nil
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
