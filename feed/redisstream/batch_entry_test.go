package redisstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// replyDropper makes a script run's reply go missing: the command reaches
// Redis and runs, then the connection breaks before its reply is read (a
// network blip, a proxy or server-side timeout), as the publisher must
// expect. dropAt counts script runs (EVALSHA or EVAL) over every connection.
type replyDropper struct {
	scripts atomic.Int64
	dropAt  atomic.Int64 // 0: off
	dropped atomic.Int64
}

func (d *replyDropper) dialer(network, addr string) func(ctx context.Context, _, _ string) (net.Conn, error) {
	return func(ctx context.Context, _, _ string) (net.Conn, error) {
		var nd net.Dialer
		c, err := nd.DialContext(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return &dropConn{Conn: c, d: d}, nil
	}
}

// dropConn hides syscall.Conn, so the publisher's own connection uses its
// Read and Write.
type dropConn struct {
	net.Conn
	d    *replyDropper
	drop bool
}

func (c *dropConn) Write(p []byte) (int, error) {
	head := p[:min(len(p), 32)]
	if bytes.Contains(head, []byte("\r\nEVALSHA\r\n")) || bytes.Contains(head, []byte("\r\nEVAL\r\n")) {
		if n := c.d.scripts.Add(1); n == c.d.dropAt.Load() {
			c.drop = true
		}
	}
	return c.Conn.Write(p)
}

func (c *dropConn) Read(p []byte) (int, error) {
	n, err := c.Conn.Read(p)
	if c.drop && n > 0 {
		// The reply came: the script ran. It is lost on the way back.
		c.drop = false
		c.d.dropped.Add(1)
		_ = c.Conn.Close()
		return 0, syscall.ECONNRESET
	}
	return n, err
}

func unixSock(t *testing.T, srv *redistest.Server) string {
	t.Helper()
	s, ok := strings.CutPrefix(srv.URL(), "unix://")
	if !ok {
		t.Fatalf("url %s", srv.URL())
	}
	return s
}

// TestPublishRetryOfLongBatchStoresNoTickTwice guards the retry of a long
// batch: Publish stores a batch of more than MaxBatchTicks ticks in parts
// (one script run each; the simulator's batch after a stall holds up to
// MaxLag of ticks: 5,000 at 20,000/s), every part's mark going to the batch
// key of its first shard (here the same key). When the reply of the last part
// is lost, Publish fails and the simulator retries the same batch
// (simulator.Publisher's contract); the retry recognises the parts already
// stored and stores no tick twice, so a raw subscriber resuming between parts
// is never replayed copies (ticks twice, seqs going down).
func TestPublishRetryOfLongBatchStoresNoTickTwice(t *testing.T) {
	srv := redistest.Start(t)
	d := &replyDropper{}
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: unixSock(t, srv), Dialer: d.dialer("unix", unixSock(t, srv))})
	t.Cleanup(func() { _ = rdb.Close() })
	ctx := t.Context()
	uni := simulator.Universe(0)
	pub, err := NewPublisher(ctx, rdb, PublisherConfig{Universe: uni, Shards: 4, MaxLen: 100_000})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if pub.own == nil {
		t.Fatal("the publisher has no own connection: the test is about it")
	}
	syms := uni.Symbols()
	const n = 2 * MaxBatchTicks // two script runs
	batch := make([]feed.Tick, n)
	for i := range batch {
		s := syms[i%len(syms)]
		tk := feed.Tick{Sym: s.Name, Seq: uint64(i/len(syms) + 1), Size: 100, TS: time.Now().UnixMicro()}
		tk.Bid = s.TickSize.Mul(mustDec(fmt.Sprint(1000 + i)))
		tk.Ask, tk.Last = tk.Bid.Add(s.TickSize), tk.Bid
		batch[i] = tk
	}
	// The script is known to Redis (no NOSCRIPT round), and the reply of
	// the second run (the batch's second part) is lost.
	if err := publishScript.Load(ctx, rdb).Err(); err != nil {
		t.Fatal(err)
	}
	d.dropAt.Store(d.scripts.Load() + 2)
	if err := pub.Publish(ctx, batch); err == nil {
		t.Fatal("Publish succeeded although the reply of its second part was lost")
	}
	if d.dropped.Load() != 1 {
		t.Fatalf("%d replies dropped, want 1", d.dropped.Load())
	}
	d.dropAt.Store(0)
	from := lastCursor(t, ctx, rdb)
	if err := pub.Publish(ctx, batch); err != nil { // the simulator's retry
		t.Fatal(err)
	}
	if got := storedTicks(t, ctx, rdb, 4); got != n {
		t.Errorf("the streams hold %d ticks, want %d (each tick once)", got, n)
	}
	// What a raw subscriber that resumes from the position after the first
	// attempt (it had every tick of the batch) is replayed: the copies.
	rp := NewReplayer(rdb, 4)
	rp.Universe = uni
	all := make([]string, 0, len(syms))
	for _, s := range syms {
		all = append(all, s.Name)
	}
	again, err := rp.Replay(ctx, from.String(), lastCursor(t, ctx, rdb).String(), all)
	if err != nil {
		t.Fatal(err)
	}
	if len(again) > 0 {
		t.Errorf("a resume after the first attempt replays %d ticks again (first %s seq %d)", len(again), again[0].Sym, again[0].Seq)
	}
}

// lastCursor is the cursor at the last entry of each of 4 shards.
func lastCursor(t *testing.T, ctx context.Context, rdb redis.UniversalClient) Cursor {
	t.Helper()
	epoch, err := rdb.Get(ctx, EpochKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	c := Cursor{Epoch: epoch, IDs: make([]streamID, 4)}
	for i := range 4 {
		msgs, err := rdb.XRevRangeN(ctx, StreamKey(i), "+", "-", 1).Result()
		if err != nil {
			t.Fatal(err)
		}
		if len(msgs) > 0 {
			if c.IDs[i], err = parseID(msgs[0].ID); err != nil {
				t.Fatal(err)
			}
		}
	}
	return c
}

// seqSink records every update a reader hands it, per symbol, in order.
type seqSink struct {
	mu     sync.Mutex
	seqs   map[string][]uint64
	jsons  [][]byte
	resets int
	cursor string
}

func (s *seqSink) Publish(b []*feed.Update, cursor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.seqs == nil {
		s.seqs = map[string][]uint64{}
	}
	for _, u := range b {
		s.seqs[u.Sym] = append(s.seqs[u.Sym], u.Seq)
		s.jsons = append(s.jsons, bytes.Clone(u.JSON))
	}
	s.cursor = cursor
}

func (s *seqSink) Reset(_ []*feed.Update, cursor string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.resets++
	s.cursor = cursor
}

func (s *seqSink) got(sym string) []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]uint64(nil), s.seqs[sym]...)
}

func (s *seqSink) waitFor(t *testing.T, sym string, seq uint64) {
	t.Helper()
	wait.For(t, 10*time.Second, func() error {
		if g := s.got(sym); len(g) == 0 || g[len(g)-1] < seq {
			return fmt.Errorf("%s: got %v, waiting for seq %d", sym, g, seq)
		}
		return nil
	})
}

func (s *seqSink) waitSynced(t *testing.T) {
	t.Helper()
	wait.For(t, 5*time.Second, func() error {
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.resets == 0 {
			return errors.New("no sync")
		}
		return nil
	})
}

// wireLine is the publisher's wire JSON of a valid tick of sym.
func wireLine(t *testing.T, uni *feed.Universe, sym string, seq uint64) string {
	t.Helper()
	s, ok := uni.Lookup(sym)
	if !ok {
		t.Fatalf("no %s", sym)
	}
	tk := feed.Tick{Sym: sym, Seq: seq, Size: 100, TS: time.Now().UnixMicro()}
	tk.Bid = s.TickSize.Mul(mustDec(fmt.Sprint(10_000 + seq)))
	tk.Ask, tk.Last = tk.Bid.Add(s.TickSize), tk.Bid
	return string(tk.AppendJSON(nil))
}

// TestReaderErrorInSeqCheckLosesNoTick guards the reader's IDs against its
// sink: publish advances the reader's IDs (and held seqs) entry by entry and
// hands the admitted ticks to the sink at a chunk's end. When a Redis look-up
// on the way (the latest-value HGET that confirms a seq jump or checks a
// seq_old tick) fails, the ticks admitted before it are still handed, or the
// IDs do not point past them, so a raw subscriber never gets a gap without a
// resync. Here the HGET fails for an ACL user that may not run it
// (deterministic); a timeout, a connection reset or a restart of a Redis with
// persistence at that moment does the same.
func TestReaderErrorInSeqCheckLosesNoTick(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	ctx := t.Context()
	uni := simulator.Universe(0)
	pub, err := NewPublisher(ctx, admin, PublisherConfig{Universe: uni, Shards: 4, MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := admin.Do(ctx, "ACL", "SETUSER", "node", "on", ">pw", "~*", "&*", "+@all", "-hget").Err(); err != nil {
		t.Fatal(err)
	}
	node := redis.NewClient(&redis.Options{Network: "unix", Addr: unixSock(t, srv), Username: "node", Password: "pw"})
	t.Cleanup(func() { _ = node.Close() })
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00")}); err != nil {
		t.Fatal(err)
	}
	sink := &seqSink{}
	r, err := NewReader(node, sink, ReaderConfig{Shards: 4, Block: 50 * time.Millisecond, EpochCheck: 50 * time.Millisecond, MaxBackoff: 100 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	sink.waitSynced(t)

	// In one read: a genuine entry (AAPL 2, with its latest value), then a
	// forged one whose seq jump needs the hash's confirmation.
	shard := feed.ShardOf("AAPL", 4)
	genuine := wireLine(t, uni, "AAPL", 2)
	_, err = admin.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), Values: map[string]any{"b": genuine}})
		p.HSet(ctx, LastKey(shard), "AAPL", genuine)
		p.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), Values: map[string]any{"b": wireLine(t, uni, "MSFT", 50_000)}})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if feed.ShardOf("MSFT", 4) != shard {
		t.Skip("the test needs AAPL and MSFT in one shard")
	}
	// The look-up failed once; the fault goes away (as a transient one does).
	wait.For(t, 5*time.Second, func() error {
		if r.Stats().Errors.Load() == 0 {
			return errors.New("no failed look-up yet")
		}
		return nil
	})
	if err := admin.Do(ctx, "ACL", "SETUSER", "node", "+hget").Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 3, "100.02")}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "AAPL", 3)
	sink.mu.Lock()
	resets := sink.resets
	sink.mu.Unlock()
	if got := sink.got("AAPL"); len(got) != 2 || got[0] != 2 || got[1] != 3 {
		t.Errorf("AAPL seqs handed after the sync: %v, want [2 3] (resyncs since: %d, read errors: %d)", got, resets-1, r.Stats().Errors.Load())
	}
}
