package redisstream

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// entry returns the fields of a stream entry carrying payload d for sym at seq.
func entry(sym string, seq uint64, ts int64, d string) map[string]any {
	return map[string]any{"s": sym, "q": strconv.FormatUint(seq, 10), "t": strconv.FormatInt(ts, 10), "d": d}
}

// TestForgedEntriesAreRefused injects, with XADD and HSET on a real Redis,
// the entries that reached subscribers before: float prices, an AAPL entry
// naming MSFT, {}, a seq a million ahead, off-grid prices, a huge payload;
// none reaches the sink, each is counted under its reason, and the genuine
// ticks around them go through.
func TestForgedEntriesAreRefused(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00"), tick("MSFT", 1, "200.00")}); err != nil {
		t.Fatal(err)
	}
	// A latest value with JSON numbers as prices is refused too.
	ms := tick("MSFT", 1, "200.00")
	bad := strings.Replace(string(ms.AppendJSON(nil)), `"bid":"200.00"`, `"bid":200.00`, 1)
	if err := rdb.HSet(ctx, LastKey(feed.ShardOf("MSFT", 4)), "MSFT", bad).Err(); err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	r := startReader(t, rdb, sink)
	waitSynced(t, sink)
	if sink.get("MSFT") != nil {
		t.Fatalf("MSFT built from a latest value with a number price: %s", sink.get("MSFT").JSON)
	}
	if got := r.Stats().MalformedBy(ReasonPayload); got != 1 {
		t.Errorf("latest value refused as payload %d times, want 1", got)
	}
	shard := feed.ShardOf("AAPL", 4)
	now := time.Now().UnixMicro()
	js := func(tk feed.Tick) string { return string(tk.AppendJSON(nil)) }
	msft := tick("MSFT", 2, "999.99")
	msft.TS = now
	huge := tick("AAPL", 2, "100.00")
	huge.TS = now
	hugeJS := js(huge)[:len(js(huge))-1] + `,"pad":"` + strings.Repeat("x", MaxEntryBytes) + `"}`
	forged := []struct {
		reason string
		v      map[string]any
	}{
		{ReasonPayload, entry("AAPL", 2, now, `{"sym":"AAPL","seq":2,"bid":1.5,"ask":"1.51","last":"1.5","size":1,"ts":`+fmt.Sprint(now)+`}`)},
		{ReasonMismatch, entry("AAPL", 2, now, js(msft))},
		{ReasonPayload, entry("AAPL", 2, now, `{}`)},
		{ReasonOffGrid, entry("AAPL", 2, now, js(func() feed.Tick { x := tick("AAPL", 2, "100.001"); x.TS = now; return x }()))},
		{ReasonSeqJump, entry("AAPL", 1_000_000, now, js(func() feed.Tick { x := tick("AAPL", 1_000_000, "100.00"); x.TS = now; return x }()))},
		{ReasonTooLarge, entry("AAPL", 2, now, hugeJS)},
		{ReasonFields, map[string]any{"s": "AAPL", "q": "x"}},
		{ReasonSeqOld, entry("AAPL", 1, now, js(func() feed.Tick { x := tick("AAPL", 1, "100.00"); x.TS = now; return x }()))},
	}
	for _, f := range forged {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), Values: f.v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 2, "100.01")}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != 2 {
			return fmt.Errorf("AAPL = %v, want the genuine seq 2", u)
		}
		return nil
	})
	if got := string(sink.get("AAPL").JSON); !strings.Contains(got, `"bid":"100.01"`) {
		t.Errorf("AAPL is %s, want the genuine tick", got)
	}
	want := map[string]uint64{}
	for _, f := range forged {
		want[f.reason]++
	}
	want[ReasonPayload]++ // the latest value above
	for reason, n := range want {
		if got := r.Stats().MalformedBy(reason); got != n {
			t.Errorf("refused for %s: %d, want %d", reason, got, n)
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.entries != 1 {
		t.Errorf("the sink got %d updates after the sync, want 1 (the genuine one)", sink.entries)
	}
}

// TestSeqJumpConfirmedByLatestValue: a jump that the latest-value hash
// confirms (ticks lost upstream) is believed.
func TestSeqJumpConfirmedByLatestValue(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	_ = pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00")})
	sink := &recSink{}
	startReader(t, rdb, sink)
	waitSynced(t, sink)
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 5000, "100.00")}); err != nil {
		t.Fatal(err)
	}
	wait.For(t, 5*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != 5000 {
			return fmt.Errorf("AAPL = %v, want the confirmed jump to 5000", u)
		}
		return nil
	})
}

// TestRedisRestoredFromOlderSnapshot: Redis comes back from an older
// snapshot with the same epoch (its last seconds lost). The reader sees a
// stream behind its position, starts a new epoch and rebuilds its values
// from Redis, lower seqs included; ticks published after that (a simulator
// resumed from Redis) are read, not dropped as stale.
func TestRedisRestoredFromOlderSnapshot(t *testing.T) {
	srv, rdb, pub := setup(t, redistest.WithPersistence())
	ctx := t.Context()
	sink := &recSink{}
	startReader(t, rdb, sink)
	waitSynced(t, sink)
	for i := uint64(1); i <= 5; i++ {
		_ = pub.Publish(ctx, []feed.Tick{tick("AAPL", i, "100.00")})
	}
	waitSeq(t, sink, "AAPL", 5)
	epoch := rdb.Get(ctx, EpochKey).Val()
	backup := srv.SaveData()
	for i := uint64(6); i <= 9; i++ {
		_ = pub.Publish(ctx, []feed.Tick{tick("AAPL", i, "105.00")})
	}
	waitSeq(t, sink, "AAPL", 9)
	srv.RestoreData(backup)
	wait.For(t, 10*time.Second, func() error {
		sink.mu.Lock()
		defer sink.mu.Unlock()
		if sink.resets < 2 || sink.latest["AAPL"] == nil || sink.latest["AAPL"].Seq != 5 {
			return fmt.Errorf("resets %d, AAPL %v: want a resync to Redis's seq 5", sink.resets, sink.latest["AAPL"])
		}
		return nil
	})
	if now := rdb.Get(ctx, EpochKey).Val(); now == epoch || now == "" {
		t.Errorf("epoch %q after Redis went back in time, was %q: want a new one", now, epoch)
	}
	// The simulator resumes from what Redis holds: seq 6 again, another price.
	for range 100 {
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 6, "101.00")}); err == nil {
			break
		}
		time.Sleep(20 * time.Millisecond)
	}
	waitSeq(t, sink, "AAPL", 6)
	if got := string(sink.get("AAPL").JSON); !strings.Contains(got, `"bid":"101.00"`) {
		t.Errorf("AAPL seq 6 is %s, want the price Redis now holds", got)
	}
}

// TestReplayBudget: a replay whose span is beyond the budget is refused
// before anything is read, and a replay stops at its entry cap.
func TestReplayBudget(t *testing.T) {
	_, rdb, _ := setup(t)
	ctx := t.Context()
	shard := feed.ShardOf("AAPL", 4)
	base := uint64(time.Now().UnixMilli()) - 600_000
	for i := uint64(1); i <= 30; i++ {
		tk := tick("AAPL", i, "100.00")
		id := fmt.Sprintf("%d-0", base+i*20_000) // 20 s apart: 10 minutes in all
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), ID: id, Values: entry("AAPL", i, tk.TS, string(tk.AppendJSON(nil)))}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := rdb.HSet(ctx, LastKey(shard), "AAPL", string(tk.AppendJSON(nil))).Err(); err != nil {
			t.Fatal(err)
		}
	}
	epoch, _ := ensureEpoch(ctx, rdb)
	ids := make([]streamID, 4)
	to := append([]streamID(nil), ids...)
	to[shard] = streamID{base + 30*20_000, 0}
	from := append([]streamID(nil), ids...) // "from the beginning": a forged cursor
	rp := NewReplayer(rdb, 4)
	fromS, toS := Cursor{Epoch: epoch, IDs: from}.String(), Cursor{Epoch: epoch, IDs: to}.String()
	if _, err := rp.Replay(ctx, fromS, toS, []string{"AAPL"}); !errors.Is(err, ErrReplayTooLong) {
		t.Fatalf("10 minutes from the beginning: %v, want ErrReplayTooLong", err)
	}
	// From seq 25: 100 s of history, within the span budget.
	from[shard] = streamID{base + 25*20_000, 0}
	fromS = Cursor{Epoch: epoch, IDs: from}.String()
	got, err := rp.Replay(ctx, fromS, toS, []string{"AAPL"})
	if err != nil || len(got) != 5 || got[0].Seq != 26 || got[0].Pos.MS != base+26*20_000 {
		t.Fatalf("replay from seq 25: %d updates, %v", len(got), err)
	}
	rp.MaxEntries, rp.Page = 3, 2
	if _, err := rp.Replay(ctx, fromS, toS, []string{"AAPL"}); !errors.Is(err, ErrReplayTooLong) {
		t.Fatalf("5 entries with a cap of 3: %v, want ErrReplayTooLong", err)
	}
	if behind, err := rp.Behind(fromS, toS, []string{"AAPL"}); err != nil || !behind {
		t.Errorf("Behind(from, to) = %v, %v", behind, err)
	}
	if behind, err := rp.Behind(toS, fromS, []string{"AAPL"}); err != nil || behind {
		t.Errorf("Behind(to, from) = %v, %v", behind, err)
	}
}

func waitSeq(t *testing.T, sink *recSink, sym string, seq uint64) {
	t.Helper()
	wait.For(t, 10*time.Second, func() error {
		if u := sink.get(sym); u == nil || u.Seq != seq {
			return fmt.Errorf("%s = %v, want seq %d", sym, u, seq)
		}
		return nil
	})
}

// TestForgedBatchEntriesAreRefused injects batch entries (field b, the
// publisher's layout) holding forged ticks among genuine ones: each forged
// tick is refused under its reason while the genuine ticks of the same
// entry go through; a batch that is too large or empty is refused whole.
func TestForgedBatchEntriesAreRefused(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	other := "EURUSD"
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00"), tick(other, 1, "1.08453")}); err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	r := startReader(t, rdb, sink)
	waitSynced(t, sink)
	shard := feed.ShardOf("AAPL", 4)
	if feed.ShardOf(other, 4) == shard {
		t.Fatalf("the test needs AAPL and %s in different shards", other)
	}
	now := time.Now().UnixMicro()
	js := func(sym string, seq uint64, px string) string {
		x := tick(sym, seq, px)
		x.TS = now
		return string(x.AppendJSON(nil))
	}
	batches := []string{
		// genuine AAPL 2, a number price, a tick of another shard, genuine AAPL 3
		js("AAPL", 2, "100.01") + "\n" + strings.Replace(js("AAPL", 3, "100.02"), `"bid":"100.02"`, `"bid":100.02`, 1) +
			"\n" + js(other, 2, "1.08454") + "\n" + js("AAPL", 3, "100.03"),
		strings.Repeat(js("AAPL", 4, "100.04")+"\n", MaxBatchTicks) + js("AAPL", 4, "100.04"),
		"",
		js("AAPL", 4, "100.001"),
	}
	for _, b := range batches {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), Values: map[string]any{"b": b}}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 5*time.Second, func() error {
		if got := r.Stats().MalformedBy(ReasonOffGrid); got != 1 {
			return fmt.Errorf("%d off-grid refusals, want 1", got)
		}
		return nil
	})
	if u := sink.get("AAPL"); u == nil || u.Seq != 3 || !strings.Contains(string(u.JSON), `"bid":"100.03"`) {
		t.Fatalf("AAPL = %v, want the genuine seq 3 of the first batch", u)
	}
	if u := sink.get(other); u == nil || u.Seq != 1 {
		t.Fatalf("%s = %v, want seq 1: its tick in AAPL's shard is refused", other, u)
	}
	for reason, n := range map[string]uint64{ReasonPayload: 1, ReasonMismatch: 1, ReasonTooLarge: 1, ReasonFields: 1, ReasonOffGrid: 1} {
		if got := r.Stats().MalformedBy(reason); got != n {
			t.Errorf("refused for %s: %d, want %d", reason, got, n)
		}
	}
	sink.mu.Lock()
	defer sink.mu.Unlock()
	if sink.entries != 2 {
		t.Errorf("the sink got %d updates after the sync, want 2 (AAPL 2 and 3)", sink.entries)
	}
}

// TestHugeEntryIsNeverBuffered: entries with a field or value larger than
// any entry can hold (64 MB here; Redis takes up to 512 MB) are refused as
// too large without the reader ever holding them: their bytes are thrown
// away as they arrive, and the genuine ticks around them go through.
func TestHugeEntryIsNeverBuffered(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00")}); err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	r, err := NewReader(rdb, sink, ReaderConfig{Shards: 4, Block: 50 * time.Millisecond, EpochCheck: 50 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	if r.own == nil {
		t.Fatal("the reader has no own connection")
	}
	rctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { _ = r.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	waitSynced(t, sink)

	shard := feed.ShardOf("AAPL", 4)
	huge := strings.Repeat("x", 64<<20)
	for i, v := range []map[string]any{
		{"b": huge},
		{"s": "AAPL", "q": "2", "t": "1", "d": huge},
		{huge[:8<<20]: "1"}, // a huge field name
	} {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(shard), Values: v}).Err(); err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", uint64(i+2), "100.01")}); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 20*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != 4 {
			return fmt.Errorf("AAPL = %v, want seq 4", u)
		}
		if got := r.Stats().MalformedBy(ReasonTooLarge); got != 3 {
			return fmt.Errorf("%d too-large refusals, want 3", got)
		}
		return nil
	})
	cancel()
	<-done
	if c := cap(r.own.reply); c > 4*maxString {
		t.Errorf("the reader's reply buffer grew to %d bytes", c)
	}
}

// TestBatchLineWithCROrBadUTF8IsRefused guards the framing of batch lines: a
// line of a batch entry that is not in the publisher's exact form is judged
// by DecodeTick (encoding/json), which takes a CR as white space and replaces
// invalid UTF-8 in strings without a word, while the line's bytes go to every
// subscriber as they are. A CR in an SSE data line ends the line (the client
// gets a truncated JSON, and the rest as an unknown field); a WebSocket text
// frame with invalid UTF-8 makes a browser fail the connection. Such lines
// are refused (or re-encoded) before the hub.
func TestBatchLineWithCROrBadUTF8IsRefused(t *testing.T) {
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
