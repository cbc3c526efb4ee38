package redisstream

import (
	"fmt"
	"strconv"
	"testing"
	"time"

	"tickstream/feed"
	"tickstream/internal/wait"
	"tickstream/simulator"
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
