package redisstream

// Review tests of the batch-entry change (c79af5f..d7f9e35): each proves a
// bug with a real redis-server. See the report for the fixes.

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

// TestReviewPublishRetryOfLongBatchStoresNoTickTwice: Publish stores a
// batch of more than MaxBatchTicks ticks in parts (one script run each; the
// simulator's batch after a stall holds up to MaxLag of ticks: 5,000 at
// 20,000/s). When the reply of the last part is lost, Publish fails and the
// simulator retries the same batch (simulator.Publisher's contract). Every
// part's mark goes to the batch key of its first shard, here the same key,
// so the retry of part 1 finds part 2's mark there, not its own, and stores
// part 1 again, then part 2 (which now finds part 1's mark): every tick
// twice. Readers refuse the copies as seq_old, but a raw subscriber resuming
// from a position between the two copies is replayed them: ticks twice,
// seqs going down.
func TestReviewPublishRetryOfLongBatchStoresNoTickTwice(t *testing.T) {
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

// TestReviewReaderErrorInSeqCheckLosesReadTicks: publish advances the
// reader's IDs (and held seqs) entry by entry but hands the admitted ticks
// to the sink only at a chunk's end. When a Redis look-up on the way (the
// latest-value HGET that confirms a seq jump or checks a seq_old tick)
// fails, publish returns the error: the ticks admitted before it are never
// handed, while the IDs already point past them, so the retry reads on
// after them. A raw subscriber gets a gap with no resync. Here the HGET
// fails for an ACL user that may not run it (deterministic); a timeout, a
// connection reset or a restart of a Redis with persistence at that moment
// does the same.
func TestReviewReaderErrorInSeqCheckLosesReadTicks(t *testing.T) {
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

// TestReviewBatchLineFramingAndUTF8: a line of a batch entry that is not in
// the publisher's exact form is judged by DecodeTick (encoding/json), which
// takes a CR as white space and replaces invalid UTF-8 in strings without a
// word, and the line's bytes then go to every subscriber as they are. A CR
// in an SSE data line ends the line (the client gets a truncated JSON, and
// the rest as an unknown field); a WebSocket text frame with invalid UTF-8
// makes a browser fail the connection. Such lines must be refused (or
// re-encoded) before the hub.
func TestReviewBatchLineFramingAndUTF8(t *testing.T) {
	_, rdb, pub := setup(t)
	defer pub.Close()
	ctx := t.Context()
	uni := simulator.Universe(0)
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00")}); err != nil {
		t.Fatal(err)
	}
	sink := &seqSink{}
	startReader(t, rdb, sink)
	sink.waitSynced(t)
	shard := feed.ShardOf("AAPL", 4)
	cr := strings.Replace(wireLine(t, uni, "AAPL", 2), `,"seq":`, ",\r\"seq\":", 1)
	bad := strings.TrimSuffix(wireLine(t, uni, "AAPL", 3), "}") + ",\"note\":\"\xff\xfe\"}"
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), Values: map[string]any{"b": cr + "\n" + bad}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 4, "100.04")}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "AAPL", 4)
	sink.mu.Lock()
	defer sink.mu.Unlock()
	for _, js := range sink.jsons {
		if bytes.ContainsAny(js, "\r\n") {
			t.Errorf("a tick with a line break reached the hub: %q", js)
		}
		if !utf8Valid(js) {
			t.Errorf("a tick with invalid UTF-8 reached the hub: %q", js)
		}
	}
}

func utf8Valid(b []byte) bool { return strings.ToValidUTF8(string(b), "\uFFFD") == string(b) }

// TestReviewReplayOfSpacedLines: the reader takes a batch line written with
// spaces (json.dumps's default, `{"sym": "AAPL", "seq": 2, …}`: any
// publisher but ours) through DecodeTick, so live subscribers get it; a
// replay keeps only lines that begin exactly `{"sym":"` for the wanted
// symbols (lineSym), so it drops it: a raw subscriber resuming on another
// node misses a tick every live subscriber got, without a resync.
func TestReviewReplayOfSpacedLines(t *testing.T) {
	_, rdb, pub := setup(t)
	defer pub.Close()
	ctx := t.Context()
	uni := simulator.Universe(0)
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00")}); err != nil {
		t.Fatal(err)
	}
	sink := &seqSink{}
	startReader(t, rdb, sink)
	sink.waitSynced(t)
	sink.mu.Lock()
	from := sink.cursor
	sink.mu.Unlock()
	shard := feed.ShardOf("AAPL", 4)
	spaced := strings.NewReplacer(`":`, `": `, `,"`, `, "`).Replace(wireLine(t, uni, "AAPL", 2))
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), Values: map[string]any{"b": spaced}})
		p.HSet(ctx, LastKey(shard), "AAPL", spaced)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 3, "100.03")}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "AAPL", 3)
	if got := sink.got("AAPL"); len(got) != 2 || got[0] != 2 {
		t.Fatalf("live: AAPL %v, want [2 3] (the spaced line is accepted live)", got)
	}
	sink.mu.Lock()
	to := sink.cursor
	sink.mu.Unlock()
	seqs := replaySeqs(t, rdb, uni, from, to, []string{"AAPL"})
	if len(seqs) != 2 || seqs[0] != 2 || seqs[1] != 3 {
		t.Errorf("replay of the same span: AAPL %v, live got [2 3]", seqs)
	}
}

// TestReviewCancelAfterReplyPoisonsOwnConn: roundTrip arms a context
// callback that sets a past deadline on the connection. When ctx is
// cancelled as the reply comes in, the call succeeds (the connection is
// kept) but the callback still runs; since deadlines are now cached
// (c.deadline still says 10 s ahead), the next call does not set one, and
// fails with an i/o timeout on a healthy connection.
func TestReviewCancelAfterReplyPoisonsOwnConn(t *testing.T) {
	srv := redistest.Start(t)
	rdb := srv.Client()
	c := newXReadConn(rdb, nil)
	if c == nil {
		t.Fatal("no own connection")
	}
	defer c.close()
	ping := appendCommand(nil, "PING")
	ctx, cancel := context.WithCancel(context.Background())
	err := c.do(ctx, ping, 10*time.Second, func(b []byte) error {
		if err := wholeReply(b); err != nil {
			return err
		}
		cancel() // e.g. a shutdown or a caller's timeout, just as the reply came
		// Wait until the callback has set its deadline (a raw read that
		// reads nothing reports an expired deadline).
		rc, err := c.conn.(syscall.Conn).SyscallConn()
		if err != nil {
			return err
		}
		deadline := time.Now().Add(5 * time.Second)
		for rc.Read(func(uintptr) bool { return true }) == nil {
			if time.Now().After(deadline) {
				return errors.New("the ctx callback did not run")
			}
			time.Sleep(time.Millisecond)
		}
		return nil
	})
	if err != nil {
		t.Fatalf("first call: %v", err)
	}
	if err := c.do(context.Background(), ping, 10*time.Second, wholeReply); err != nil {
		t.Errorf("a call with a live context on a healthy connection: %v", err)
	}
}

// TestReviewEntryWithBothLayouts: an entry holding both layouts' fields (s,
// q, t, d and b) is read live as a one-tick entry (reader.publish looks at
// s and d first) but replayed as a batch entry (DecodeTicks looks at b
// first): a live subscriber and a resumed one get different ticks from the
// same entry. Both must judge an entry the same way (refuse the mix).
func TestReviewEntryWithBothLayouts(t *testing.T) {
	_, rdb, pub := setup(t)
	defer pub.Close()
	ctx := t.Context()
	uni := simulator.Universe(0)
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00"), tick("MSFT", 1, "200.00")}); err != nil {
		t.Fatal(err)
	}
	shard := feed.ShardOf("AAPL", 4)
	if feed.ShardOf("MSFT", 4) != shard {
		t.Skip("the test needs AAPL and MSFT in one shard")
	}
	sink := &seqSink{}
	startReader(t, rdb, sink)
	sink.waitSynced(t)
	sink.mu.Lock()
	from := sink.cursor
	sink.mu.Unlock()
	aapl := wireLine(t, uni, "AAPL", 2)
	a, _ := feed.DecodeTick([]byte(aapl))
	msft := wireLine(t, uni, "MSFT", 2)
	_, err := rdb.TxPipelined(ctx, func(p redis.Pipeliner) error {
		p.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), Values: []any{"s", "AAPL", "q", "2", "t", fmt.Sprint(a.TS), "d", aapl, "b", msft}})
		p.HSet(ctx, LastKey(shard), "AAPL", aapl, "MSFT", msft)
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 3, "100.03"), tick("MSFT", 3, "200.03")}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "AAPL", 3)
	sink.waitFor(t, "MSFT", 3)
	sink.mu.Lock()
	to := sink.cursor
	live := fmt.Sprint(sink.seqs["AAPL"], sink.seqs["MSFT"])
	sink.mu.Unlock()
	rp := NewReplayer(rdb, 4)
	rp.Universe = uni
	ups, err := rp.Replay(ctx, from, to, []string{"AAPL", "MSFT"})
	if err != nil {
		t.Fatal(err)
	}
	got := map[string][]uint64{}
	for _, u := range ups {
		got[u.Sym] = append(got[u.Sym], u.Seq)
	}
	if replayed := fmt.Sprint(got["AAPL"], got["MSFT"]); replayed != live {
		t.Errorf("AAPL and MSFT seqs: live %s, replayed %s", live, replayed)
	}
}

// TestReviewReplayOfRefusedOldSeq (also before the batch layout): a tick
// whose seq is not above what the reader holds is refused live (seq_old),
// but Replay only compares seqs within the span it reads, so when that tick
// is the first of its symbol after the resume cursor it is replayed: the
// resumed subscriber sees AAPL go from 3 down to 2, which the live ones
// never see.
func TestReviewReplayOfRefusedOldSeq(t *testing.T) {
	_, rdb, pub := setup(t)
	defer pub.Close()
	ctx := t.Context()
	uni := simulator.Universe(0)
	sink := &seqSink{}
	startReader(t, rdb, sink)
	sink.waitSynced(t)
	for seq := uint64(1); seq <= 3; seq++ {
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", seq, "100.00")}); err != nil {
			t.Fatal(err)
		}
	}
	sink.waitFor(t, "AAPL", 3)
	sink.mu.Lock()
	from := sink.cursor // a raw subscriber has AAPL up to 3
	sink.mu.Unlock()
	if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(feed.ShardOf("AAPL", 4)), Values: map[string]any{"b": wireLine(t, uni, "AAPL", 2)}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 4, "100.04")}); err != nil {
		t.Fatal(err)
	}
	sink.waitFor(t, "AAPL", 4)
	if got := sink.got("AAPL"); fmt.Sprint(got) != "[1 2 3 4]" {
		t.Fatalf("live: %v", got)
	}
	sink.mu.Lock()
	to := sink.cursor
	sink.mu.Unlock()
	seqs := replaySeqs(t, rdb, uni, from, to, []string{"AAPL"})
	if fmt.Sprint(seqs) != "[4]" {
		t.Errorf("replay after AAPL 3: %v, live subscribers got [4]", seqs)
	}
}

// replaySeqs replays syms between two cursors and returns the seqs replayed.
func replaySeqs(t *testing.T, rdb redis.UniversalClient, uni *feed.Universe, from, to string, syms []string) []uint64 {
	t.Helper()
	rp := NewReplayer(rdb, 4)
	rp.Universe = uni
	ups, err := rp.Replay(t.Context(), from, to, syms)
	if err != nil {
		t.Fatal(err)
	}
	var seqs []uint64
	for _, u := range ups {
		seqs = append(seqs, u.Seq)
	}
	return seqs
}
