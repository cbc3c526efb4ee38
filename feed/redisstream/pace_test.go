package redisstream

import (
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
)

func TestPaceFollowsNeed(t *testing.T) {
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"}) // never dialed
	defer rdb.Close()
	const ms = time.Millisecond
	var (
		need time.Duration
		any  bool
	)
	needFn := func() (time.Duration, bool) { return need, any }
	for _, c := range []struct {
		name          string
		coalesce, max time.Duration
		noNeed        bool
		need          time.Duration
		any           bool
		want          time.Duration
	}{
		{"no Need: Coalesce", 5 * ms, 50 * ms, true, 0, false, 5 * ms},
		{"nobody: the ceiling", 5 * ms, 50 * ms, false, 0, false, 50 * ms},
		{"raw: the floor", 5 * ms, 50 * ms, false, 0, true, 5 * ms},
		{"250ms: a tenth", 5 * ms, 50 * ms, false, 250 * ms, true, 25 * ms},
		{"1s: capped", 5 * ms, 50 * ms, false, time.Second, true, 50 * ms},
		{"20ms: at least the floor", 5 * ms, 50 * ms, false, 20 * ms, true, 5 * ms},
		{"default ceiling", 5 * ms, 0, false, 0, false, 50 * ms},
		{"ceiling below the floor", 80 * ms, 50 * ms, false, time.Second, true, 80 * ms},
		{"pauses off", -1, 50 * ms, false, time.Second, true, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ReaderConfig{Shards: 1, Coalesce: c.coalesce, MaxCoalesce: c.max}
			if !c.noNeed {
				cfg.Need = needFn
			}
			r, err := NewReader(rdb, nil, cfg)
			if err != nil {
				t.Fatal(err)
			}
			need, any = c.need, c.any
			if got := r.Pace(); got != c.want {
				t.Errorf("Pace() = %v, want %v", got, c.want)
			}
		})
	}
}
