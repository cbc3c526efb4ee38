package redisstream

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// TestEveryPathJudgesEntriesAlike guards the one verdict on an entry: a
// tick with a key twice (in another case, escaped, or the same), an
// unknown key, an entry with a field twice (either layout) or an unknown
// field, and a seq jump the latest-value hash does not confirm are refused
// by the live reader (counted under their reason), left out of a replay
// and of the charts' read-back, while the genuine ticks around them go
// through every path unchanged.
func TestEveryPathJudgesEntriesAlike(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	u := simulator.Universe(0)
	const sym = "AAPL"
	if err := pub.Publish(ctx, []feed.Tick{tick(sym, 1, "100.00")}); err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	r := startReaderCfg(t, rdb, sink, ReaderConfig{Shards: 4, Universe: u, Block: 50 * time.Millisecond, EpochCheck: 50 * time.Millisecond})
	waitSynced(t, sink)
	from := mustCursor(t, rdb)

	js := func(seq uint64) string { x := tick(sym, seq, "100.00"); return string(x.AppendJSON(nil)) }
	g2 := js(2)
	head := g2[:len(g2)-1]
	tk2, _ := feed.DecodeTick([]byte(g2))
	forged := []struct {
		reason string
		fields []any
	}{
		{ReasonKeys, []any{"b", head + `,"BID":"1.00"}`}},
		{ReasonKeys, []any{"b", head + `,"bid":"1.00"}`}},
		{ReasonKeys, []any{"b", head + `,"b\u0069d":"1.00"}`}},
		{ReasonKeys, []any{"b", head + `,"pad":"x"}`}},
		{ReasonKeys, []any{"b", g2, "x", "1"}},
		{ReasonKeys, []any{"b", g2, "b", g2}},
		{ReasonKeys, []any{"s", sym, "q", "2", "t", strconv.FormatInt(tk2.TS, 10), "d", g2, "d", g2}},
		{ReasonSeqJump, []any{"b", js(1000)}},
	}
	key := StreamKey(feed.ShardOf(sym, 4))
	for _, f := range forged {
		if err := rdb.Do(ctx, append([]any{"xadd", key, "*"}, f.fields...)...).Err(); err != nil {
			t.Fatal(err)
		}
	}
	genuine := tick(sym, 2, "100.01")
	if err := pub.Publish(ctx, []feed.Tick{genuine}); err != nil {
		t.Fatal(err)
	}
	want := string(genuine.AppendJSON(nil))
	wait.For(t, 5*time.Second, func() error {
		if got := sink.get(sym); got == nil || string(got.JSON) != want {
			return fmt.Errorf("%s = %v, want the genuine seq 2", sym, got)
		}
		return nil
	})
	counts := map[string]uint64{}
	for _, f := range forged {
		counts[f.reason]++
	}
	for reason, n := range counts {
		if got := r.Stats().MalformedBy(reason); got != n {
			t.Errorf("live: %d refused as %s, want %d", got, reason, n)
		}
	}
	to := mustCursor(t, rdb)

	rp := NewReplayer(rdb, 4)
	rp.Universe = u
	replayed, err := rp.Replay(ctx, from, to, []string{sym})
	if err != nil {
		t.Fatal(err)
	}
	if len(replayed) != 1 || string(replayed[0].JSON) != want {
		t.Errorf("replay: %d ticks (%v), want the genuine seq 2 alone", len(replayed), replayed)
	}

	var back []string
	st, err := ReadBack(ctx, rdb, u, to, ReadBackLimits{Window: time.Hour, MaxTicks: 100}, func(ups []*feed.Update) {
		for _, up := range ups {
			back = append(back, string(up.JSON))
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(back) != 2 || back[1] != want {
		t.Errorf("read-back: %q, want seq 1 then the genuine seq 2", back)
	}
	if st.Refused != len(forged) {
		t.Errorf("read-back refused %d, want %d", st.Refused, len(forged))
	}
}

// gateSink is a recSink whose first Publish after the sync waits for the
// gate to open, holding the reader where it stands.
type gateSink struct {
	*recSink
	once    sync.Once
	waiting chan struct{} // closed when the reader waits at the gate
	gate    chan struct{}
}

func (g *gateSink) Publish(b []*feed.Update, cursor string) {
	if len(b) > 0 {
		g.once.Do(func() { close(g.waiting); <-g.gate })
	}
	g.recSink.Publish(b, cursor)
}

// TestSeqGapAfterTrimIsBelieved guards the genuine side of the seq rule: a
// reader held back while the stream is trimmed past its position resumes
// at a seq far ahead of the one it holds, which the latest-value hash
// confirms: it is believed (nothing refused, no resync), and the reader
// ends with the latest value.
func TestSeqGapAfterTrimIsBelieved(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	const sym = "AAPL"
	if err := pub.Publish(ctx, []feed.Tick{tick(sym, 1, "100.00")}); err != nil {
		t.Fatal(err)
	}
	sink := &gateSink{recSink: &recSink{}, waiting: make(chan struct{}), gate: make(chan struct{})}
	r := startReader(t, rdb, sink)
	waitSynced(t, sink.recSink)
	if err := pub.Publish(ctx, []feed.Tick{tick(sym, 2, "100.00")}); err != nil {
		t.Fatal(err)
	}
	<-sink.waiting // the reader holds seq 1 and waits to hand over seq 2
	const last = 3000
	for seq := uint64(3); seq <= last; seq++ { // one entry each: MaxLen 1000 trims the oldest
		if err := pub.Publish(ctx, []feed.Tick{tick(sym, seq, "100.00")}); err != nil {
			t.Fatal(err)
		}
	}
	first, err := rdb.XRangeN(ctx, StreamKey(feed.ShardOf(sym, 4)), "-", "+", 1).Result()
	if err != nil || len(first) == 0 {
		t.Fatal(first, err)
	}
	if tk, err := feed.DecodeTick([]byte(first[0].Values["b"].(string))); err != nil || tk.Seq <= 3 {
		t.Fatalf("the stream starts at %v (%v), want trimmed past seq 3", first[0].Values, err)
	}
	close(sink.gate)
	wait.For(t, 5*time.Second, func() error {
		if u := sink.get(sym); u == nil || u.Seq != last {
			return fmt.Errorf("%s = %v, want seq %d", sym, u, last)
		}
		return nil
	})
	if n := r.Stats().Malformed.Load(); n != 0 {
		t.Errorf("%d refused, want none", n)
	}
	if n := r.Stats().Resyncs.Load(); n != 1 {
		t.Errorf("%d state builds, want 1", n)
	}
}

// TestEntryWithBothLayoutsIsJudgedAlike guards one judgement per entry: an
// entry holding both layouts' fields (s, q, t, d and b) is judged the same
// way live (reader.publish) and in a replay (DecodeTicks), whichever fields
// each looks at first, so a live subscriber and a resumed one get the same
// ticks from the same entry.
func TestEntryWithBothLayoutsIsJudgedAlike(t *testing.T) {
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
