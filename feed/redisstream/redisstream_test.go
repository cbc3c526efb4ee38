package redisstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// recSink records what a reader hands it.
type recSink struct {
	mu      sync.Mutex
	latest  map[string]*feed.Update
	resets  int
	cursor  string
	entries int
}

func (s *recSink) Publish(b []*feed.Update, cursor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, u := range b {
		if cur := s.latest[u.Sym]; cur == nil || cur.Seq < u.Seq {
			s.latest[u.Sym] = clone(u) // the reader's until Publish returns
		}
	}
	s.entries += len(b)
	s.cursor = cursor
}

func (s *recSink) Reset(l []*feed.Update, cursor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.latest = map[string]*feed.Update{}
	for _, u := range l {
		s.latest[u.Sym] = clone(u)
	}
	s.resets++
	s.cursor = cursor
}

// clone copies u and its JSON: what a sink keeps of a Publish.
func clone(u *feed.Update) *feed.Update {
	c := *u
	c.JSON = bytes.Clone(u.JSON)
	return &c
}

func (s *recSink) get(sym string) *feed.Update {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.latest[sym]
}

func tick(sym string, seq uint64, bid string) feed.Tick {
	t := feed.Tick{Sym: sym, Seq: seq, Size: 100, TS: time.Now().UnixMicro()}
	t.Bid = mustDec(bid)
	t.Ask = t.Bid.Add(mustDec("0.01"))
	t.Last = t.Bid
	return t
}

func setup(t *testing.T, opts ...redistest.Option) (*redistest.Server, *redis.Client, *Publisher) {
	srv := redistest.Start(t, opts...)
	rdb := srv.Client()
	pub, err := NewPublisher(t.Context(), rdb, PublisherConfig{Universe: simulator.Universe(0), Shards: 4, MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	return srv, rdb, pub
}

func startReader(t *testing.T, rdb redis.UniversalClient, sink Sink) *Reader {
	return startReaderCfg(t, rdb, sink, ReaderConfig{Shards: 4, Block: 50 * time.Millisecond, EpochCheck: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
}

// startReaderCfg starts a reader with cfg until the test ends.
func startReaderCfg(t *testing.T, rdb redis.UniversalClient, sink Sink, cfg ReaderConfig) *Reader {
	t.Helper()
	r, err := NewReader(rdb, sink, cfg)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
	return r
}

func TestPublishReadRebuild(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "189.42"), tick("EURUSD", 1, "1.08453")}); err != nil {
		t.Fatal(err)
	}
	u, shards, err := LoadUniverse(ctx, rdb)
	if err != nil || shards != 4 || u.Len() != simulator.DefaultUniverseSize {
		t.Fatalf("universe %v shards %d: %v", u, shards, err)
	}
	sink := &recSink{}
	startReader(t, rdb, sink)
	// The state is rebuilt before reading on: both ticks are there.
	wait.For(t, 5*time.Second, func() error {
		if sink.get("AAPL") == nil || sink.get("EURUSD") == nil {
			return errors.New("state not rebuilt")
		}
		return nil
	})
	if got := string(sink.get("EURUSD").JSON); got != `{"sym":"EURUSD","seq":1,"bid":"1.08453","ask":"1.09453","last":"1.08453","size":100,"ts":`+fmt.Sprint(sink.get("EURUSD").TS)+`}` {
		t.Errorf("EURUSD json %s", got)
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 2, "189.43")}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, func() error {
		if u := sink.get("AAPL"); u.Seq != 2 {
			return fmt.Errorf("AAPL seq %d", u.Seq)
		}
		return nil
	})
}

func TestReplayBetweenCursors(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	sink := &recSink{}
	startReader(t, rdb, sink)
	waitSynced(t, sink)
	for i := uint64(1); i <= 5; i++ {
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", i, "100.00"), tick("MSFT", i, "200.00")}); err != nil {
			t.Fatal(err)
		}
		if i == 2 {
			wait.For(t, 5*time.Second, func() error {
				if u := sink.get("AAPL"); u == nil || u.Seq != 2 {
					return errors.New("not read yet")
				}
				return nil
			})
		}
	}
	sink.mu.Lock()
	from := sink.cursor
	sink.mu.Unlock()
	for i := uint64(6); i <= 8; i++ {
		_ = pub.Publish(ctx, []feed.Tick{tick("AAPL", i, "100.00"), tick("MSFT", i, "200.00")})
	}
	wait.For(t, 5*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != 8 {
			return errors.New("not read yet")
		}
		return nil
	})
	sink.mu.Lock()
	to := sink.cursor
	sink.mu.Unlock()
	rp := NewReplayer(rdb, 4)
	got, err := rp.Replay(ctx, from, to, []string{"AAPL"})
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, u := range got {
		seqs = append(seqs, u.Seq)
	}
	// from was taken at some point after seq 2: the replay continues from
	// there to 8, gap-free.
	if len(seqs) == 0 || seqs[len(seqs)-1] != 8 {
		t.Fatalf("replayed %v", seqs)
	}
	for i := 1; i < len(seqs); i++ {
		if seqs[i] != seqs[i-1]+1 {
			t.Fatalf("gap in replay %v", seqs)
		}
	}
	if _, err := rp.Replay(ctx, "zz.1.x.x.x.x", to, []string{"AAPL"}); !errors.Is(err, ErrGap) {
		t.Errorf("other epoch: %v", err)
	}
	if _, err := rp.Replay(ctx, "garbage", to, []string{"AAPL"}); !errors.Is(err, ErrBadCursor) {
		t.Errorf("garbage cursor: %v", err)
	}
}

func TestReaderSurvivesRestarts(t *testing.T) {
	for _, keep := range []bool{true, false} {
		t.Run(fmt.Sprintf("keepData=%v", keep), func(t *testing.T) {
			srv, rdb, pub := setup(t, redistest.WithPersistence())
			ctx := t.Context()
			sink := &recSink{}
			startReader(t, rdb, sink)
			_ = pub.Publish(ctx, []feed.Tick{tick("AAPL", 10, "100.00")})
			wait.For(t, 5*time.Second, func() error {
				if u := sink.get("AAPL"); u == nil || u.Seq != 10 {
					return errors.New("not read")
				}
				return nil
			})
			srv.Restart(keep)
			// The publisher retries until Redis is back, as the simulator does.
			var err error
			for range 100 {
				if err = pub.Publish(ctx, []feed.Tick{tick("AAPL", 11, "101.00")}); err == nil {
					break
				}
				time.Sleep(20 * time.Millisecond)
			}
			if err != nil {
				t.Fatal(err)
			}
			wait.For(t, 10*time.Second, func() error {
				if u := sink.get("AAPL"); u == nil || u.Seq != 11 {
					return fmt.Errorf("AAPL = %v", u)
				}
				return nil
			})
			sink.mu.Lock()
			resets := sink.resets
			sink.mu.Unlock()
			if keep && resets != 1 {
				t.Errorf("restart with data: %d syncs, want 1 (resume, no resync)", resets)
			}
			if !keep && resets < 2 {
				t.Errorf("restart empty: %d syncs, want a resync", resets)
			}
		})
	}
}

func TestCursorRoundTrip(t *testing.T) {
	c := Cursor{Epoch: "ab12", IDs: []streamID{{1764180000123, 0}, {}, {1764180000100, 7}}}
	s := c.String()
	got, err := ParseCursor(s)
	if err != nil {
		t.Fatal(err)
	}
	if got.Epoch != c.Epoch || fmt.Sprint(got.IDs) != fmt.Sprint(c.IDs) {
		t.Fatalf("%s → %+v", s, got)
	}
	for _, bad := range []string{"", "a", "a.b", "a.zz.1-", "a.1.5-0", ".1.x"} {
		if _, err := ParseCursor(bad); err == nil {
			t.Errorf("ParseCursor(%q) accepted", bad)
		}
	}
}

func TestMalformedEntryIsSkippedAndCounted(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	sink := &recSink{}
	r := startReader(t, rdb, sink)
	waitSynced(t, sink)
	// Garbage in the shard of AAPL, then a good tick after it.
	shard := feed.ShardOf("AAPL", 4)
	for _, v := range []map[string]any{{"s": "AAPL", "q": "x"}, {"s": "AAPL", "q": "9", "t": "1", "d": "not json"}, {"junk": "1"}} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), Values: v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00")}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != 1 {
			return errors.New("the good tick after the garbage did not arrive")
		}
		return nil
	})
	if m := r.Stats().Malformed.Load(); m != 3 {
		t.Errorf("malformed counted %d, want 3", m)
	}
}

// waitSynced waits until the reader has built its first state.
func waitSynced(t *testing.T, sink *recSink) {
	t.Helper()
	wait.For(t, 5*time.Second, func() error {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if sink.resets == 0 {
			return errors.New("no sync")
		}
		return nil
	})
}

// batchSink records every Publish: its updates and its cursor.
type batchSink struct {
	mu    sync.Mutex
	calls []sinkCall
	ready chan struct{}
	once  sync.Once
}

type sinkCall struct {
	ups    []*feed.Update
	cursor string
}

func (s *batchSink) Publish(b []*feed.Update, cursor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	ups := make([]*feed.Update, len(b))
	for i, u := range b {
		ups[i] = clone(u) // the reader's until Publish returns
	}
	s.calls = append(s.calls, sinkCall{ups, cursor})
}

func (s *batchSink) Reset([]*feed.Update, string) { s.once.Do(func() { close(s.ready) }) }

// TestEntriesAreNeverSplitAcrossPublishes: a read returning many batch
// entries of hundreds of ticks (more than a Publish chunk) hands each
// entry's ticks to the sink in one Publish, and each Publish's cursor
// covers every tick it carries: a raw subscriber given that cursor has
// all of each entry it names, so resuming from it skips nothing and
// repeats nothing.
func TestEntriesAreNeverSplitAcrossPublishes(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	ctx := t.Context()
	uni := simulator.Universe(2000)
	pub, err := NewPublisher(ctx, rdb, PublisherConfig{Universe: uni, Shards: 4, MaxLen: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	sink := &batchSink{ready: make(chan struct{})}
	startReader(t, rdb, sink)
	<-sink.ready
	syms := uni.Symbols()[:1500]
	const batches = 6
	for b := range uint64(batches) {
		ticks := make([]feed.Tick, 0, len(syms))
		for _, s := range syms {
			tk := tick(s.Name, b+1, "1.00")
			tk.Bid, tk.Ask, tk.Last = s.TickSize.Mul(mustDec("1000")), s.TickSize.Mul(mustDec("1001")), s.TickSize.Mul(mustDec("1000"))
			ticks = append(ticks, tk)
		}
		if err := pub.Publish(ctx, ticks); err != nil {
			t.Fatal(err)
		}
	}
	want := batches * len(syms)
	wait.For(t, 10*time.Second, func() error {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		n := 0
		for _, c := range sink.calls {
			n += len(c.ups)
		}
		if n < want {
			return fmt.Errorf("%d of %d ticks handed over", n, want)
		}
		return nil
	})
	sink.mu.Lock()
	defer sink.mu.Unlock()
	callOf := map[feed.Position]int{}
	n, big := 0, 0
	for i, c := range sink.calls {
		cur, err := ParseCursor(c.cursor)
		if err != nil {
			t.Fatal(err)
		}
		n += len(c.ups)
		if len(c.ups) > publishChunk {
			big++
		}
		for _, u := range c.ups {
			if j, ok := callOf[u.Pos]; ok && j != i {
				t.Fatalf("entry %+v split across Publish %d and %d", u.Pos, j, i)
			}
			callOf[u.Pos] = i
			id := cur.IDs[u.Pos.Shard]
			if (streamID{u.Pos.MS, u.Pos.Seq}) != id && !(streamID{u.Pos.MS, u.Pos.Seq}).less(id) {
				t.Fatalf("Publish %d carries %s seq %d at %+v beyond its cursor %s", i, u.Sym, u.Seq, u.Pos, c.cursor)
			}
		}
	}
	if n != want {
		t.Fatalf("%d ticks handed over, want %d", n, want)
	}
	if len(callOf) < 4*batches || big == 0 {
		t.Fatalf("%d entries in %d Publish calls, %d above a chunk: the test did not exercise large entries", len(callOf), len(sink.calls), big)
	}
}
