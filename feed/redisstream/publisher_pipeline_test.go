package redisstream

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// The publisher is what the simulator sends through.
var _ simulator.WireSender = (*Publisher)(nil)

// streamSeqs reads back every tick the first shards streams hold, per
// symbol in stream order, and their count.
func streamSeqs(t *testing.T, ctx context.Context, rdb redis.UniversalClient, shards int) (map[string][]uint64, int) {
	t.Helper()
	seqs := map[string][]uint64{}
	n := 0
	for i := range shards {
		msgs, err := rdb.XRange(ctx, StreamKey(i), "-", "+").Result()
		if err != nil {
			t.Fatal(err)
		}
		for _, m := range msgs {
			b, _ := m.Values["b"].(string)
			for _, line := range strings.Split(b, "\n") {
				var tk struct {
					Sym string `json:"sym"`
					Seq uint64 `json:"seq"`
				}
				if err := json.Unmarshal([]byte(line), &tk); err != nil {
					t.Fatalf("entry %s of shard %d: %v: %q", m.ID, i, err, line)
				}
				seqs[tk.Sym] = append(seqs[tk.Sym], tk.Seq)
				n++
			}
		}
	}
	return seqs, n
}

// checkExactlyOnce fails unless every symbol's stored seqs are 1, 2, 3, …
// (each tick stored once, in order, none missing) and want ticks are
// stored in all.
func checkExactlyOnce(t *testing.T, ctx context.Context, rdb redis.UniversalClient, want int) {
	t.Helper()
	seqs, n := streamSeqs(t, ctx, rdb, 4)
	for sym, ss := range seqs {
		for i, s := range ss {
			if s != uint64(i+1) {
				t.Fatalf("%s: stored seq %d at position %d (seqs %v…): a tick lost, twice or out of order", sym, s, i, ss[:min(len(ss), 12)])
			}
		}
	}
	if n != want {
		t.Fatalf("%d ticks stored, want %d", n, want)
	}
}

// draw draws n ticks from one generator (seqs 1, 2, 3, … per symbol).
func draw(n int) []feed.Tick {
	g, _ := simulator.NewGenerator(simulator.GeneratorConfig{Rate: 20_000, Seed: 3})
	out := make([]feed.Tick, n)
	for i := range out {
		out[i], _ = g.Next()
		out[i].TS = time.Now().UnixMicro()
	}
	return out
}

// split cuts ticks into batches of the given sizes, then of the last size.
func split(ticks []feed.Tick, sizes ...int) [][]feed.Tick {
	var out [][]feed.Tick
	for i := 0; len(ticks) > 0; i++ {
		n := min(len(ticks), sizes[min(i, len(sizes)-1)])
		out, ticks = append(out, ticks[:n]), ticks[n:]
	}
	return out
}

// batches draws k batches of per ticks.
func batches(k, per int) [][]feed.Tick { return split(draw(k*per), per) }

func count(bs [][]feed.Tick) int {
	n := 0
	for _, b := range bs {
		n += len(b)
	}
	return n
}

// sendAll sends each batch with Send, calling between(i) after batch i was
// sent (its reply not read yet), then flushes.
func sendAll(t *testing.T, pub *Publisher, bs [][]feed.Tick, between func(i int)) {
	t.Helper()
	ctx := t.Context()
	for i, b := range bs {
		if err := pub.Send(ctx, b); err != nil {
			t.Fatalf("send batch %d: %v", i, err)
		}
		if between != nil {
			between(i)
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if pub.pending {
		t.Fatal("a batch is still in flight after Flush")
	}
}

// TestSendStoresEveryBatchOnceInOrder: batches sent without waiting for
// their replies, one batch larger than a script run (stored in parts), are
// all stored, each tick once, in order.
func TestSendStoresEveryBatchOnceInOrder(t *testing.T) {
	_, rdb, pub := setup(t)
	defer pub.Close()
	if pub.own == nil {
		t.Fatal("no own connection: the test is about it")
	}
	sizes := make([]int, 61)
	for i := range sizes {
		sizes[i] = 40
	}
	sizes[30] = 2*MaxBatchTicks + 17
	bs := split(draw(60*40+sizes[30]), sizes...)
	inFlight := 0
	sendAll(t, pub, bs, func(int) {
		if pub.pending {
			inFlight++
		}
	})
	if inFlight != len(bs) {
		t.Errorf("%d of %d batches were left in flight by Send", inFlight, len(bs))
	}
	checkExactlyOnce(t, t.Context(), rdb, count(bs))
}

// TestSendAfterConnectionKilled: the publisher's connection is killed
// (CLIENT KILL from another client) after Redis ran a batch and before its
// reply was read; with Redis stopped, closed by the publisher after a batch
// was written and before Redis read it (its outcome unknown); and a write
// fails (the batch is then stored at once): the next Send stores such a
// batch again, and nothing is lost or stored twice.
func TestSendAfterConnectionKilled(t *testing.T) {
	srv, rdb, pub := setup(t)
	defer pub.Close()
	ctx := t.Context()
	bs := batches(40, 30)
	stored := 0
	for i, b := range bs {
		if i%5 == 4 { // written while Redis is stopped, then closed
			srv.Pause()
		}
		if err := pub.Send(ctx, b); err != nil {
			t.Fatalf("send batch %d: %v", i, err)
		}
		stored += len(b)
		switch i % 5 {
		case 1: // ran; the connection killed (the reply may be read still)
			wait.For(t, 5*time.Second, func() error {
				if _, n := streamSeqs(t, ctx, rdb, 4); n != stored {
					return fmt.Errorf("%d ticks stored, want %d", n, stored)
				}
				return nil
			})
			if err := rdb.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
				t.Fatal(err)
			}
		case 2: // confirmed; then the next write fails (a deadline passed)
			if err := pub.Flush(ctx); err != nil {
				t.Fatal(err)
			}
			_ = pub.own.conn.SetDeadline(time.Unix(1, 0))
		case 4:
			pub.own.close()
			srv.Resume()
			// Redis runs what it read before the close: the batch is
			// stored, its reply lost.
			wait.For(t, 5*time.Second, func() error {
				if _, n := streamSeqs(t, ctx, rdb, 4); n != stored {
					return fmt.Errorf("%d ticks stored, want %d", n, stored)
				}
				return nil
			})
		}
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, ctx, rdb, count(bs))
}

// TestSendAfterErrorReplies: a batch whose run answers NOSCRIPT (the
// script cache flushed) is stored again with EVAL; one that answers that
// the epoch is gone (Redis lost its data) re-stores the universe and a new
// epoch, then the batch. Nothing is lost or stored twice.
func TestSendAfterErrorReplies(t *testing.T) {
	_, rdb, pub := setup(t)
	defer pub.Close()
	ctx := t.Context()
	bs := batches(30, 25)
	sendAll(t, pub, bs, func(i int) {
		if i%3 == 0 { // the next batch's run answers NOSCRIPT
			if err := rdb.ScriptFlush(ctx).Err(); err != nil {
				t.Fatal(err)
			}
		}
	})
	checkExactlyOnce(t, ctx, rdb, count(bs))

	// Redis loses everything between two batches: the next run answers
	// -1 at settle time.
	epoch := pub.epoch
	more := draw(count(bs) + 20)[count(bs):] // the same walks, on
	if err := rdb.FlushAll(ctx).Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Send(ctx, more); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	if pub.epoch == epoch {
		t.Error("no new epoch after Redis lost its data")
	}
	if _, n, err := LoadUniverse(ctx, rdb); err != nil || n != 4 {
		t.Errorf("universe not stored again: %d shards, %v", n, err)
	}
	seqs, n := streamSeqs(t, ctx, rdb, 4)
	if n != len(more) {
		t.Fatalf("%d ticks stored after the flush, want %d", n, len(more))
	}
	for _, tk := range more {
		if ss := seqs[tk.Sym]; len(ss) == 0 || ss[0] > tk.Seq {
			t.Fatalf("%s seq %d missing", tk.Sym, tk.Seq)
		}
	}
}

// TestSendCancelled: a Send whose context is done returns its error; a
// batch left in flight is stored by a later Flush.
func TestSendCancelled(t *testing.T) {
	srv, rdb, pub := setup(t)
	defer pub.Close()
	bs := batches(2, 30)
	// Redis stopped: the reply of batch 0 cannot come; the Send of batch
	// 1 waits for it until its context is done.
	srv.Pause()
	if err := pub.Send(t.Context(), bs[0]); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	err := pub.Send(ctx, bs[1])
	cancel()
	srv.Resume()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("send with a done context: %v", err)
	}
	if !pub.pending {
		t.Fatal("batch 0 no longer in flight though its reply was never read")
	}
	if err := pub.Send(t.Context(), bs[1]); err != nil { // the caller's retry
		t.Fatal(err)
	}
	if err := pub.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, t.Context(), rdb, count(bs))

	// A context done between two calls (its cancellation armed on the
	// connection fires while nothing waits): the next call, with another
	// context, neither fails nor stores anything twice.
	more := draw(count(bs) + 60)[count(bs):]
	ctx, cancel = context.WithCancel(t.Context())
	if err := pub.Send(ctx, more[:30]); err != nil {
		t.Fatal(err)
	}
	cancel()
	if err := pub.Send(t.Context(), more[30:]); err != nil {
		t.Fatal(err)
	}
	if err := pub.Flush(t.Context()); err != nil {
		t.Fatal(err)
	}
	checkExactlyOnce(t, t.Context(), rdb, count(bs)+len(more))
}

// TestSimulatorThroughSendLosesNothing runs the simulator on the
// publisher while another client kills its connections again and again:
// when Run returns, every tick it counted is stored, once, in order. Both
// ways the simulator paces itself: on a runtime timer, and on its own
// thread (simulate --procs 1: GOMAXPROCS 1, OwnThread).
func TestSimulatorThroughSendLosesNothing(t *testing.T) {
	t.Run("timer", func(t *testing.T) { simulatorThroughSend(t, false) })
	t.Run("own-thread", func(t *testing.T) {
		defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
		simulatorThroughSend(t, true)
	})
}

func simulatorThroughSend(t *testing.T, ownThread bool) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := t.Context()
	pub, err := NewPublisher(ctx, rdb, PublisherConfig{Universe: simulator.Universe(200), Shards: 4, MaxLen: 1_000_000})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sim, err := simulator.New(simulator.Config{
		GeneratorConfig: simulator.GeneratorConfig{Symbols: 200, Rate: 20_000, Seed: 5},
		Window:          2 * time.Millisecond,
		OwnThread:       ownThread,
	}, pub)
	if err != nil {
		t.Fatal(err)
	}
	runCtx, stop := context.WithCancel(ctx)
	done := make(chan error, 1)
	go func() { done <- sim.Run(runCtx) }()
	killer := redis.NewClient(&redis.Options{Network: "unix", Addr: unixSock(t, srv)})
	defer killer.Close()
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		for k := 0; k < 15; k++ {
			// Wait for progress, then kill: every kill lands while the
			// simulator sends.
			from, deadline := sim.Published(), time.Now().Add(10*time.Second)
			for sim.Published() < from+500 && time.Now().Before(deadline) {
				time.Sleep(time.Millisecond)
			}
			_ = killer.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Err()
		}
	}()
	wg.Wait()
	stop()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if sim.Published() == 0 {
		t.Fatal("nothing published")
	}
	checkExactlyOnce(t, ctx, rdb, int(sim.Published()))
}

// TestSendWireStoresTheSameAsSend: a batch sent as wire JSON is stored as
// the same batch sent as ticks, and a batch whose lengths disagree is
// refused.
func TestSendWireStoresTheSameAsSend(t *testing.T) {
	ctx := t.Context()
	ticks := draw(2*MaxBatchTicks + 300)
	entries := func(send func(pub *Publisher) error) []string {
		_, rdb, pub := setup(t)
		defer pub.Close()
		if err := send(pub); err != nil {
			t.Fatal(err)
		}
		if err := pub.Flush(ctx); err != nil {
			t.Fatal(err)
		}
		var out []string
		for i := range 4 {
			msgs, err := rdb.XRange(ctx, StreamKey(i), "-", "+").Result()
			if err != nil {
				t.Fatal(err)
			}
			for _, m := range msgs {
				out = append(out, m.Values["b"].(string))
			}
			last, err := rdb.HGetAll(ctx, LastKey(i)).Result()
			if err != nil {
				t.Fatal(err)
			}
			out = append(out, fmt.Sprint(last))
		}
		return out
	}
	want := entries(func(pub *Publisher) error { return pub.Send(ctx, ticks) })
	got := entries(func(pub *Publisher) error {
		var wire []byte
		var ends []int
		var syms []string
		for i := range ticks {
			wire = ticks[i].AppendJSON(wire)
			ends, syms = append(ends, len(wire)), append(syms, ticks[i].Sym)
		}
		if err := pub.SendWire(ctx, syms[:2], ticks[0].Seq, wire, ends); err == nil {
			t.Error("SendWire took 2 symbols for all ticks")
		}
		return pub.SendWire(ctx, syms, ticks[0].Seq, wire, ends)
	})
	if len(got) != len(want) {
		t.Fatalf("%d entries and hashes, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i] != want[i] {
			t.Fatalf("entry or hash %d differs:\n%.200s\n%.200s", i, got[i], want[i])
		}
	}
}
