package redisstream

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// TestReview6PauseAfterTinyRate: a feed whose estimated byte rate became
// tiny (reads that return entries but no tick bytes halve the average
// each time) must rest the idle pace, not stop pausing: readBudget/rate in
// nanoseconds overflows int64, and the float conversion gives a negative
// duration on amd64.
func TestReview6PauseAfterTinyRate(t *testing.T) {
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

// TestReview6ReadyDuringIdlePause: a reader resting for its idle pace
// (--read-idle) is caught up with Redis: it must stay Ready (the node's
// /readyz), or a balancer takes a node nobody watches out of service for
// good (nobody is sent to it, so it stays idle).
func TestReview6ReadyDuringIdlePause(t *testing.T) {
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

// overflowSink is a fanout.Sink that records what it is sent and why it
// was closed.
type overflowSink struct {
	mu     sync.Mutex
	ticks  int
	closed error
	isShut bool
}

func (s *overflowSink) Send(b *fanout.Batch) error {
	s.mu.Lock()
	s.ticks += len(b.Updates)
	s.mu.Unlock()
	return nil
}

func (s *overflowSink) Close(reason error) {
	s.mu.Lock()
	s.closed, s.isShut = reason, true
	s.mu.Unlock()
}

// joinSink feeds a hub and, once armed, subscribes a raw subscriber of
// every symbol at its next Publish: a subscriber that arrives while the
// reader is handing over a read (after publish chose its chunk size).
type joinSink struct {
	hub   *fanout.Hub
	armed atomic.Bool
	join  func()
	sizes []int // Publish sizes after the join
	mu    sync.Mutex
}

func (s *joinSink) Publish(b []*feed.Update, c string) {
	joined := s.armed.CompareAndSwap(true, false)
	if joined {
		s.join()
	}
	s.hub.Publish(b, c)
	s.mu.Lock()
	if joined || len(s.sizes) > 0 {
		s.sizes = append(s.sizes, len(b))
	}
	s.mu.Unlock()
}

func (s *joinSink) Reset(l []*feed.Update, c string) { s.hub.Reset(l, c) }

func (s *joinSink) RawBehind() bool { return s.hub.RawBehind() }

// TestReview6RawJoinDuringConflatedChunk: a raw subscriber of every symbol
// that arrives while the reader hands over a read it cut in conflated
// chunks (4096 ticks, and a whole entry more) is closed for overflow at
// the first chunk, before any writer could have taken anything: one
// Publish is larger than the hub's RawQueue (4096). No Publish may be
// larger than RawQueue. What follows the first chunk (4,200 ticks in all,
// more than RawQueue) is a race between the reader and the subscriber's
// writer: the reader yields to the writers after each Publish while one
// takes every tick, so the writer usually takes the first chunk in time
// and the subscriber keeps receiving; when its writer runs late (another
// thread, a busy machine), it is closed for overflow, as the design says,
// and then exactly at a chunk's end, where its cursor resumes it.
func TestReview6RawJoinDuringConflatedChunk(t *testing.T) { rawJoinDuringChunk(t, false) }

// TestRawJoinWriterTakesItsTurn: the same join on one thread (GOMAXPROCS
// 1), where the writer that the first Publish wakes can run only when the
// reader lets it: the reader must yield after each Publish while a
// consumer takes every tick, and the subscriber then takes each chunk
// before the next and is never closed. Without the yield it was closed in
// 18 runs of 20.
func TestRawJoinWriterTakesItsTurn(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	rawJoinDuringChunk(t, true)
}

// rawJoinDuringChunk runs the join of TestReview6RawJoinDuringConflatedChunk;
// oneThread says the process runs on one thread, where the subscriber
// must never be closed.
func rawJoinDuringChunk(t *testing.T, oneThread bool) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	uni := simulator.Universe(0)
	var names []string
	for _, s := range uni.Symbols() {
		names = append(names, s.Name)
	}
	hub, err := fanout.New(fanout.Config{Symbols: names})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = hub.Close() })
	rec := &overflowSink{}
	sink := &joinSink{hub: hub}
	sink.join = func() {
		s, _, _, err := hub.Subscribe(fanout.Options{Symbols: names, Mode: fanout.Raw}, rec)
		if err != nil {
			t.Error(err)
			return
		}
		s.Start()
	}
	needCh := make(chan struct{}, 1)
	r, err := NewReader(rdb, sink, ReaderConfig{
		Shards: 4, Block: 50 * time.Millisecond, EpochCheck: time.Hour, Idle: time.Hour,
		Need: hub.Tightest, NeedChanged: needCh,
	})
	if err != nil {
		t.Fatal(err)
	}
	runCtx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = r.Run(runCtx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	wait.For(t, 5*time.Second, func() error {
		if hub.Stats().Resets.Load() == 0 {
			return errors.New("no sync")
		}
		return nil
	})
	seq := uint64(0)
	publish := func(n int) {
		t.Helper()
		ticks := make([]feed.Tick, n)
		for i := range ticks {
			seq++
			ticks[i] = tick("AAPL", seq, "100.00")
		}
		if err := pub.Publish(ctx, ticks); err != nil {
			t.Fatal(err)
		}
	}
	// Two reads of a tick each: the second starts the idle hour.
	for want := uint64(1); want <= 2; want++ {
		publish(1)
		wait.For(t, 5*time.Second, func() error {
			if got := hub.Stats().Ticks.Load(); got < want {
				return fmt.Errorf("hub has %d ticks, want %d", got, want)
			}
			return nil
		})
	}
	// 4,200 ticks while it rests: four entries of 1,000 and one of 200.
	for range 4 {
		publish(1000)
	}
	publish(200)
	sink.armed.Store(true)
	needCh <- struct{}{} // end the pause (as a newcomer's poll would)
	wait.For(t, 10*time.Second, func() error {
		if got := hub.Stats().Ticks.Load(); got < 2+4200 {
			return fmt.Errorf("hub has %d ticks, want %d", got, 2+4200)
		}
		return nil
	})
	// Let the subscriber's writer work off what it was handed.
	wait.For(t, 10*time.Second, func() error {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		if rec.isShut || rec.ticks >= 4200 {
			return nil
		}
		return fmt.Errorf("raw subscriber has %d of 4200 ticks", rec.ticks)
	})
	rec.mu.Lock()
	defer rec.mu.Unlock()
	sink.mu.Lock()
	defer sink.mu.Unlock()
	// One Publish larger than RawQueue overflows a subscriber of the log
	// whatever its writer's speed: deterministic.
	for _, n := range sink.sizes {
		if n > hub.Config().RawQueue {
			t.Fatalf("after a raw subscriber joined, the reader handed the hub a Publish of %d ticks (RawQueue %d; sizes %v): the subscriber was closed (%v) after %d ticks",
				n, hub.Config().RawQueue, sink.sizes, rec.closed, rec.ticks)
		}
	}
	if rec.isShut && oneThread {
		t.Fatalf("the raw subscriber was closed (%v) after %d ticks on one thread (Publish sizes after it joined: %v): the reader handed over the next chunk before the writer it woke took the last",
			rec.closed, rec.ticks, sink.sizes)
	}
	if rec.isShut {
		atEnd, sum := false, 0
		for _, n := range sink.sizes {
			sum += n
			atEnd = atEnd || rec.ticks == sum
		}
		if !errors.Is(rec.closed, fanout.ErrOverflow) || !atEnd {
			t.Fatalf("the raw subscriber was closed (%v) after %d ticks, not at the end of a chunk (Publish sizes after it joined: %v)", rec.closed, rec.ticks, sink.sizes)
		}
		t.Logf("the writer ran late: closed for overflow after %d ticks, at the end of a chunk (sizes %v)", rec.ticks, sink.sizes)
	}
}

// TestReview6ClusterIdlePace: with nobody consuming, a reader on a Redis
// Cluster rests its idle pace like one on a single Redis. readCluster never
// sets readBytes, so the feed's rate stays 0 ("unknown") and every pause is
// MaxCoalesce: --read-idle does nothing on a cluster.
func TestReview6ClusterIdlePace(t *testing.T) {
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
