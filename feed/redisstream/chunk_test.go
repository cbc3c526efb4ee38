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

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

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

// TestRawJoinDuringConflatedChunkGetsNoOversizedPublish guards the reader's
// chunks for a raw subscriber of every symbol that arrives while the reader
// hands over a read it cut in conflated chunks (4096 ticks, and a whole entry
// more): no Publish after it joins is larger than the hub's RawQueue (4096),
// so the subscriber is never closed for overflow at the first chunk, before
// any writer could take anything. What follows the first chunk (4,200 ticks
// in all, more than RawQueue) is a race between the reader and the
// subscriber's writer: the reader yields to the writers after each Publish
// while one takes every tick, so the writer usually takes the first chunk in
// time and the subscriber keeps receiving; when its writer runs late (another
// thread, a busy machine), it is closed for overflow, as the design says, and
// then exactly at a chunk's end, where its cursor resumes it.
func TestRawJoinDuringConflatedChunkGetsNoOversizedPublish(t *testing.T) {
	rawJoinDuringChunk(t, false)
}

// TestRawJoinWriterTakesItsTurn guards the reader's yield: the same join on
// one thread (GOMAXPROCS 1), where the writer that the first Publish wakes
// can run only when the reader lets it. The reader yields after each Publish
// while a consumer takes every tick, so the subscriber takes each chunk
// before the next and is never closed.
func TestRawJoinWriterTakesItsTurn(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	rawJoinDuringChunk(t, true)
}

// rawJoinDuringChunk runs the join of
// TestRawJoinDuringConflatedChunkGetsNoOversizedPublish;
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
