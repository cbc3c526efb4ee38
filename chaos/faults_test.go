package chaos

import (
	"fmt"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/nodetest"
	"github.com/tickstream/tickstream/internal/redistest"
)

// TestInjectedEntriesNeverReachSubscribers injects, with XADD and HSET into
// the Redis a real node reads while the simulator runs, the entries that
// reached subscribers before: float prices, an AAPL entry naming MSFT at
// 999.99, {}, a seq a million ahead, an off-grid price, a latest value with
// number prices. No subscriber (raw or conflated) receives any of them,
// AAPL and MSFT keep updating (nothing froze them), and the node counts
// each refusal under its reason.
func TestInjectedEntriesNeverReachSubscribers(t *testing.T) {
	bin := bintest.Tickstream(t)
	rs := redistest.Start(t)
	rdb := rs.Client()
	sim := &proc{t: t, args: []string{bin, "simulate", "--redis", rs.URL(), "--rate", "400", "--universe", "30"}}
	sim.start()
	t.Cleanup(sim.kill)
	_, u := startServe(t, bin, rs.URL(), "n")
	raw := openStream(t, u+"/stream?symbols=*&mode=raw", "")
	conf := openStream(t, u+"/stream?symbols=*&interval=50ms", "")
	nodetest.CheckFor(t, 20*time.Second, func() error {
		if raw.count("tick") < 100 || conf.count("tick") < 30 {
			return fmt.Errorf("ticks: raw %d, conflated %d", raw.count("tick"), conf.count("tick"))
		}
		return nil
	})
	ctx := t.Context()
	shard := feed.ShardOf("AAPL", 16)
	seq := latestSeq(t, rdb, "AAPL") + 1
	now := time.Now().UnixMicro()
	q, ts := strconv.FormatUint(seq, 10), strconv.FormatInt(now, 10)
	tickJS := func(sym string, seq uint64, bid string) string {
		return fmt.Sprintf(`{"sym":%q,"seq":%d,"bid":"%s","ask":"%s","last":"%s","size":100,"ts":%d}`, sym, seq, bid, bid, bid, now)
	}
	forged := []struct {
		reason string
		v      []string
	}{
		{redisstream.ReasonPayload, []string{"s", "AAPL", "q", q, "t", ts, "d", strings.Replace(tickJS("AAPL", seq, "1.50"), `"bid":"1.50"`, `"bid":1.5`, 1)}},
		{redisstream.ReasonMismatch, []string{"s", "AAPL", "q", q, "t", ts, "d", tickJS("MSFT", seq, "999.99")}},
		{redisstream.ReasonPayload, []string{"s", "AAPL", "q", q, "t", ts, "d", `{}`}},
		{redisstream.ReasonSeqJump, []string{"s", "AAPL", "q", strconv.FormatUint(seq+1_000_000, 10), "t", ts, "d", tickJS("AAPL", seq+1_000_000, "999.99")}},
		{redisstream.ReasonOffGrid, []string{"s", "AAPL", "q", q, "t", ts, "d", tickJS("AAPL", seq, "999.991")}},
		// Batch entries, the publisher's layout.
		{redisstream.ReasonOffGrid, []string{"b", tickJS("AAPL", seq, "999.991")}},
		{redisstream.ReasonPayload, []string{"b", strings.Replace(tickJS("AAPL", seq, "1.50"), `"bid":"1.50"`, `"bid":1.5`, 1)}},
		{redisstream.ReasonTooLarge, []string{"b", strings.Repeat(tickJS("AAPL", seq, "999.99")+"\n", redisstream.MaxBatchTicks) + tickJS("AAPL", seq, "999.99")}},
		// A carriage return would cut an SSE data line; invalid UTF-8 fails a WebSocket.
		{redisstream.ReasonPayload, []string{"b", strings.Replace(tickJS("AAPL", seq, "999.99"), `,"seq"`, ",\r\"seq\"", 1)}},
		{redisstream.ReasonPayload, []string{"b", strings.TrimSuffix(tickJS("AAPL", seq, "999.99"), "}") + ",\"x\":\"\xff\"}"}},
	}
	for _, f := range forged {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: redisstream.StreamKey(shard), Values: f.v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	// A latest value with number prices: a node that starts now refuses it.
	// The simulator waits meanwhile, or it would overwrite it first.
	sim.signal(syscall.SIGSTOP)
	msftShard := feed.ShardOf("MSFT", 16)
	if err := rdb.HSet(ctx, redisstream.LastKey(msftShard), "MSFT", `{"sym":"MSFT","seq":999999,"bid":999.99,"ask":999.99,"last":999.99,"size":1,"ts":1}`).Err(); err != nil {
		t.Fatal(err)
	}
	_, u2 := startServe(t, bin, rs.URL(), "late") // returns once it has built its state
	sim.signal(syscall.SIGCONT)
	late := openStream(t, u2+"/stream?symbols=*&mode=raw", "")
	// AAPL and MSFT keep moving on every stream after the injection.
	marks := map[*rawStream]int{raw: len(raw.snapshot()), conf: len(conf.snapshot())}
	nodetest.CheckFor(t, 30*time.Second, func() error {
		for s, from := range marks {
			seen := map[string]bool{}
			for _, e := range s.snapshot()[from:] {
				if e.typ == "tick" {
					tk, _ := feed.DecodeTick(e.data)
					seen[tk.Sym] = true
				}
			}
			if !seen["AAPL"] || !seen["MSFT"] {
				return fmt.Errorf("after the injection: AAPL %v, MSFT %v", seen["AAPL"], seen["MSFT"])
			}
		}
		if late.count("tick") < 100 {
			return fmt.Errorf("late node: %d ticks", late.count("tick"))
		}
		return nil
	})
	for name, s := range map[string]*rawStream{"raw": raw, "conflated": conf, "late raw": late} {
		for _, e := range s.snapshot() {
			if e.typ != "tick" {
				continue
			}
			tk, err := feed.DecodeTick(e.data)
			switch {
			case err != nil:
				t.Errorf("%s subscriber: malformed tick %s", name, e.data)
			case strings.Contains(string(e.data), "999.99") || tk.Sym == "AAPL" && tk.Bid.LessThan(decimal.NewFromInt(10)):
				t.Errorf("%s subscriber received an injected tick: %s", name, e.data)
			case tk.Seq >= 999_999:
				t.Errorf("%s subscriber received a forged seq: %s", name, e.data)
			}
		}
	}
	want := map[string]float64{}
	for _, f := range forged {
		want[f.reason]++
	}
	for reason, n := range want {
		name := fmt.Sprintf(`tickstream_redis_malformed_entries_total{reason=%q}`, reason)
		if got := metric(t, u, name); got < n {
			t.Errorf("%s = %v, want %v", name, got, n)
		}
	}
	if got := metric(t, u2, `tickstream_redis_malformed_entries_total{reason="payload"}`); got < 1 {
		t.Errorf("the late node did not count the latest value with number prices: %v", got)
	}
}

// latestSeq reads sym's seq in its latest-value hash.
func latestSeq(t *testing.T, rdb *redis.Client, sym string) uint64 {
	t.Helper()
	js, err := rdb.HGet(t.Context(), redisstream.LastKey(feed.ShardOf(sym, 16)), sym).Result()
	if err != nil {
		t.Fatal(err)
	}
	tk, err := feed.DecodeTick([]byte(js))
	if err != nil {
		t.Fatal(err)
	}
	return tk.Seq
}

// TestRedisRestoredFromOlderSnapshotResyncs: Redis is restored from an
// older snapshot (same epoch, the last seconds lost) and the simulator is
// restarted from what Redis holds, so seqs the nodes already sent are
// published again with other prices. Every subscriber gets a resync and
// ends with Redis's values; the nodes count Redis behind them.
func TestRedisRestoredFromOlderSnapshotResyncs(t *testing.T) {
	bin := bintest.Tickstream(t)
	rs := redistest.Start(t, redistest.WithPersistence())
	rdb := rs.Client()
	simArgs := []string{bin, "simulate", "--redis", rs.URL(), "--rate", "300", "--universe", "30"}
	sim := &proc{t: t, args: simArgs}
	sim.start()
	t.Cleanup(func() { sim.kill() })
	_, u := startServe(t, bin, rs.URL(), "n")
	raw := openStream(t, u+"/stream?symbols=*&mode=raw", "")
	conf := openStream(t, u+"/stream?symbols=*&interval=50ms", "")
	nodetest.CheckFor(t, 20*time.Second, func() error {
		if raw.count("tick") < 100 {
			return fmt.Errorf("raw ticks %d", raw.count("tick"))
		}
		return nil
	})
	sim.signal(syscall.SIGSTOP)
	backup := rs.SaveData()
	sim.signal(syscall.SIGCONT)
	before := raw.count("tick")
	nodetest.CheckFor(t, 20*time.Second, func() error {
		if raw.count("tick") < before+300 {
			return fmt.Errorf("raw ticks %d", raw.count("tick"))
		}
		return nil
	})
	sim.kill()
	rs.RestoreData(backup)
	sim = &proc{t: t, args: simArgs}
	sim.start()
	nodetest.CheckFor(t, 30*time.Second, func() error {
		if raw.count("resync") == 0 || conf.count("resync") == 0 {
			return fmt.Errorf("resyncs: raw %d, conflated %d", raw.count("resync"), conf.count("resync"))
		}
		return nil
	})
	sim.kill()
	want := nodetest.RedisLatest(t, rdb, 16)
	for name, s := range map[string]*rawStream{"raw": raw, "conflated": conf} {
		nodetest.CheckFor(t, 20*time.Second, func() error {
			held := map[string]string{}
			for _, e := range s.snapshot() {
				switch e.typ {
				case "resync":
					clear(held)
				case "tick":
					tk, _ := feed.DecodeTick(e.data)
					held[tk.Sym] = string(e.data)
				}
			}
			for sym, seq := range want {
				tk, _ := feed.DecodeTick([]byte(held[sym]))
				if tk.Seq != seq {
					return fmt.Errorf("%s subscriber: %s at %d, redis has %d", name, sym, tk.Seq, seq)
				}
			}
			return nil
		})
	}
	if got := metric(t, u, "tickstream_redis_behind_total"); got < 1 {
		t.Errorf("tickstream_redis_behind_total = %v, want at least 1", got)
	}
}
