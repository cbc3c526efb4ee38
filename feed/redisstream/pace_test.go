package redisstream

import (
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/wait"
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
		idle          time.Duration
		noNeed        bool
		need          time.Duration
		any           bool
		want          time.Duration
	}{
		{"no Need: Coalesce", 5 * ms, 50 * ms, 0, true, 0, false, 5 * ms},
		{"nobody: idle", 5 * ms, 50 * ms, 0, false, 0, false, time.Second},
		{"nobody: idle as set", 5 * ms, 50 * ms, 300 * ms, false, 0, false, 300 * ms},
		{"idle below the ceiling", 5 * ms, 50 * ms, 20 * ms, false, 0, false, 50 * ms},
		{"raw: the floor", 5 * ms, 50 * ms, 0, false, 0, true, 5 * ms},
		{"250ms: a tenth", 5 * ms, 50 * ms, 0, false, 250 * ms, true, 25 * ms},
		{"1s: capped", 5 * ms, 50 * ms, 0, false, time.Second, true, 50 * ms},
		{"20ms: at least the floor", 5 * ms, 50 * ms, 0, false, 20 * ms, true, 5 * ms},
		{"default ceiling", 5 * ms, 0, 0, false, time.Second, true, 100 * ms},
		{"ceiling below the floor", 80 * ms, 50 * ms, 0, false, time.Second, true, 80 * ms},
		{"pauses off", -1, 50 * ms, 0, false, time.Second, true, -1},
	} {
		t.Run(c.name, func(t *testing.T) {
			cfg := ReaderConfig{Shards: 1, Coalesce: c.coalesce, MaxCoalesce: c.max, Idle: c.idle}
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

// TestNeedChangedEndsThePause: a reader resting for its idle pace reads at
// once when its need grows (a newcomer's first values are fresh however
// long the pause), and not before.
func TestNeedChangedEndsThePause(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	sink := &recSink{}
	needCh := make(chan struct{}, 1)
	runReader(t, rdb, sink, ReaderConfig{
		Shards: 4, Block: 50 * time.Millisecond, EpochCheck: time.Hour, Idle: time.Hour,
		Need:        func() (time.Duration, bool) { return 0, false },
		NeedChanged: needCh,
	})
	seqOf := func(sym string) uint64 {
		if u := sink.get(sym); u != nil {
			return u.Seq
		}
		return 0
	}
	// Two reads that return entries (the first pauses at most MaxCoalesce:
	// the feed's rate is not known yet); the second starts an hour's pause
	// (a tick is handed over before the pause: one published after it
	// arrived waits).
	for seq := uint64(1); seq <= 2; seq++ {
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", seq, "100.00")}); err != nil {
			t.Fatal(err)
		}
		wait.For(t, 5*time.Second, func() error {
			if s := seqOf("AAPL"); s != seq {
				return fmt.Errorf("AAPL seq %d, want %d", s, seq)
			}
			return nil
		})
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 3, "100.01")}); err != nil {
		t.Fatal(err)
	}
	// Resting: a while later it still has not read the third tick (a check
	// that cannot pass by luck the other way: the pause is an hour).
	end := time.Now().Add(300 * time.Millisecond)
	for time.Now().Before(end) {
		if s := seqOf("AAPL"); s != 2 {
			t.Fatalf("AAPL seq %d during the pause, want 2", s)
		}
		time.Sleep(10 * time.Millisecond)
	}
	needCh <- struct{}{}
	wait.For(t, 5*time.Second, func() error {
		if s := seqOf("AAPL"); s != 3 {
			return fmt.Errorf("AAPL seq %d after the need grew, want 3", s)
		}
		return nil
	})
}

// TestPauseKeepsReadsSmall: a reader resting for its idle pace on a fast
// feed reads sooner, so that a read returns about readBudget bytes; until
// it knows the feed's rate it rests at most MaxCoalesce.
func TestPauseKeepsReadsSmall(t *testing.T) {
	r := idleReader(t)
	if d := r.pauseAfter(); d != 50*time.Millisecond {
		t.Errorf("pause with no rate known: %v, want 50ms", d)
	}
	t0 := time.Unix(1000, 0)
	r.readBytes = 100
	r.observe(t0)
	r.readBytes = 2 * readBudget // two budgets in a second
	r.observe(t0.Add(time.Second))
	if d := r.pauseAfter(); d != 500*time.Millisecond {
		t.Errorf("pause at two budgets a second: %v, want 500ms", d)
	}
	r.readBytes = 100 // a quiet feed: the idle pace again, once the average follows
	for i := 2; i < 40; i++ {
		r.observe(t0.Add(time.Duration(i) * time.Second))
	}
	if d := r.pauseAfter(); d != time.Hour {
		t.Errorf("pause on a quiet feed: %v, want the idle hour", d)
	}
}

// runReader starts a reader with cfg until the test ends and waits until
// it has built its state.
func runReader(t *testing.T, rdb redis.UniversalClient, sink *recSink, cfg ReaderConfig) *Reader {
	t.Helper()
	r := startReaderCfg(t, rdb, sink, cfg)
	waitSynced(t, sink)
	return r
}

// idleReader returns a reader that is never run (its client never dials),
// with nobody consuming, MaxCoalesce 50ms and an idle pace of an hour: for
// the pause's arithmetic.
func idleReader(t *testing.T) *Reader {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	t.Cleanup(func() { _ = rdb.Close() })
	r, err := NewReader(rdb, nil, ReaderConfig{Shards: 1, MaxCoalesce: 50 * time.Millisecond, Idle: time.Hour,
		Need: func() (time.Duration, bool) { return 0, false }})
	if err != nil {
		t.Fatal(err)
	}
	return r
}
