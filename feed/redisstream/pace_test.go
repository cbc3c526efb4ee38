package redisstream

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
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

// TestBacklogIsReadWithoutPause guards catching up: the pause between reads
// (Pace: up to MaxCoalesce, 50ms, with nobody or a ≥500ms subscriber) is not
// taken after a full read (Count entries per shard: more are waiting).
// Otherwise a node would read at most Count entries per shard per pace (128 ×
// 20/s = 2,560 entries/s a shard) and one that falls behind (a Redis blip, a
// producer writing small entries) would catch up at that rate or never. Here
// 400 entries, Count 4: 100 reads, which paced would take ≥ 5 s.
func TestBacklogIsReadWithoutPause(t *testing.T) {
	_, conn := connectCapped(t)
	ctx := t.Context()
	u := simulator.Universe(0)
	pub, err := NewPublisher(ctx, conn, PublisherConfig{Universe: u, Shards: 1, MaxLen: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00")}); err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	r, err := NewReader(conn, sink, ReaderConfig{Shards: 1, Universe: u, Count: 4,
		Need: func() (time.Duration, bool) { return time.Second, true }}) // one 1s subscriber
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = r.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	wait.For(t, 10*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != 1 {
			return fmt.Errorf("AAPL = %v", u)
		}
		return nil
	})
	// A burst of 400 entries (one tick each), written far faster than the
	// paced reader reads them.
	const last = 401
	start := time.Now()
	for seq := uint64(2); seq <= last; seq++ {
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", seq, "100.00")}); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 20*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != last {
			return fmt.Errorf("AAPL = %v", u)
		}
		return nil
	})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a backlog of 400 entries took %v to read (Count 4, pace %v): full reads are paced", took.Round(time.Millisecond), r.Pace())
	}
}

// TestPaceAfterTinyRateRestsIdle guards the pause of a feed whose estimated
// byte rate became tiny (reads that return entries but no tick bytes halve
// the average each time): it rests the idle pace and keeps pausing;
// readBudget/rate in nanoseconds would overflow int64, and the float
// conversion give a negative duration on amd64.
func TestPaceAfterTinyRateRestsIdle(t *testing.T) {
	r := idleReader(t)
	t0 := time.Unix(1000, 0)
	r.readBytes = 100
	r.observe(t0)
	r.observe(t0.Add(time.Second)) // 100 B/s: the idle hour
	if d := r.pauseAfter(); d != time.Hour {
		t.Fatalf("pause at 100 B/s: %v, want the idle hour", d)
	}
	// Reads that return entries without tick bytes (entries refused as
	// malformed: no d nor b field): each halves the average.
	r.readBytes = 0
	for i := 2; i < 60; i++ {
		r.observe(t0.Add(time.Duration(i) * time.Second))
		if d := r.pauseAfter(); d <= 0 {
			t.Fatalf("after %d reads without tick bytes (rate %g B/s): pauseAfter %v (no pause at all), want the idle hour",
				i-1, r.byteRate, d)
		}
	}
}

// TestReaderStaysReadyDuringIdlePause guards Ready at rest: a reader resting
// for its idle pace (--read-idle) is caught up with Redis and stays Ready
// (the node's /readyz), so a balancer never takes a node nobody watches out
// of service for good (nobody would be sent to it, so it would stay idle).
func TestReaderStaysReadyDuringIdlePause(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	sink := &recSink{}
	r := runReader(t, rdb, sink, ReaderConfig{
		Shards: 4, Block: time.Second, EpochCheck: time.Hour, Idle: 10 * time.Second,
		Need: func() (time.Duration, bool) { return 0, false },
	})
	// Two reads that take a tick each: the second starts the idle pause.
	for seq := uint64(1); seq <= 2; seq++ {
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", seq, "100.00")}); err != nil {
			t.Fatal(err)
		}
		wait.For(t, 5*time.Second, func() error {
			if u := sink.get("AAPL"); u == nil || u.Seq != seq {
				return fmt.Errorf("AAPL not at seq %d yet", seq)
			}
			return nil
		})
	}
	start := time.Now()
	// Redis is up and the reader holds everything it has: Ready must hold
	// for the whole pause (watched for 6 s of the 10 s pause).
	for time.Since(start) < 6*time.Second {
		if !r.Ready() {
			t.Fatalf("reader not Ready %v into its idle pause (Redis up, nothing unread)", time.Since(start).Round(time.Millisecond))
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestClusterReaderRestsIdlePace guards the idle pace on a Redis Cluster:
// with nobody consuming, a reader on a cluster rests its idle pace like one
// on a single Redis (readCluster sets readBytes, so the feed's rate is known
// and the pause is not always MaxCoalesce, which would make --read-idle do
// nothing on a cluster).
func TestClusterReaderRestsIdlePace(t *testing.T) {
	t.Run("single", func(t *testing.T) {
		_, rdb, _ := setup(t)
		idleReads(t, rdb)
	})
	t.Run("cluster", func(t *testing.T) {
		opt, err := redis.ParseClusterURL(redistest.StartCluster(t).URL())
		if err != nil {
			t.Fatal(err)
		}
		rdb := redis.NewClusterClient(opt)
		t.Cleanup(func() { _ = rdb.Close() })
		idleReads(t, rdb)
	})
}

// idleReads publishes a tick every 20 ms for 1.5 s to a reader nobody
// consumes from (idle pace: an hour) and checks it read at most 5 times
// (twice expected: the first pause is MaxCoalesce, the rate being unknown).
func idleReads(t *testing.T, rdb redis.UniversalClient) {
	ctx := t.Context()
	pub, err := NewPublisher(ctx, rdb, PublisherConfig{Universe: simulator.Universe(0), Shards: 4, MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	r := runReader(t, rdb, sink, ReaderConfig{
		Shards: 4, Block: 50 * time.Millisecond, EpochCheck: time.Hour, Idle: time.Hour,
		Need: func() (time.Duration, bool) { return 0, false },
	})
	seq := uint64(0)
	end := time.Now().Add(1500 * time.Millisecond)
	for time.Now().Before(end) {
		seq++
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", seq, "100.00")}); err != nil {
			t.Fatal(err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := r.Stats().Reads.Load(); n > 5 {
		t.Errorf("%d reads in 1.5 s with nobody consuming and an idle pace of an hour (want at most 5; 2 expected)", n)
	}
}
