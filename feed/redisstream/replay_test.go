package redisstream

import (
	"fmt"
	"strings"
	"testing"

	"github.com/redis/go-redis/v9"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/simulator"
)

// TestReplayKeepsSpacedLines guards replay against live reading for a batch
// line written with spaces (json.dumps's default, `{"sym": "AAPL", "seq": 2,
// …}`: any publisher but ours): the reader takes it through DecodeTick, so
// live subscribers get it, and a replay keeps it too (not only lines that
// begin exactly `{"sym":"`), so a raw subscriber resuming on another node
// misses no tick every live subscriber got.
func TestReplayKeepsSpacedLines(t *testing.T) {
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

// TestReplaySkipsTickRefusedLiveAsOld guards replay against live reading for
// an old seq: a tick whose seq is not above what the reader holds is refused
// live (seq_old), and a replay refuses it too, even when it is the first of
// its symbol after the resume cursor (Replay does not only compare seqs
// within the span it reads): a resumed subscriber never sees AAPL go from 3
// down to 2, which the live ones never see.
func TestReplaySkipsTickRefusedLiveAsOld(t *testing.T) {
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
