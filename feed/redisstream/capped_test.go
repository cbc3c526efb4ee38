package redisstream

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// genRESP appends a random RESP2/RESP3 value of depth at most d to raw,
// and to want as the filter must pass it (strings longer than max
// replaced by tooLarge).
func genRESP(rng *rand.Rand, d, max int, raw, want []byte) ([]byte, []byte) {
	both := func(s string) { raw = append(raw, s...); want = append(want, s...) }
	k := rng.IntN(12)
	if d == 0 {
		k = rng.IntN(6)
	}
	switch k {
	case 0:
		both("+OK\r\n")
	case 1:
		both(":" + strconv.Itoa(rng.IntN(1e6)-5e5) + "\r\n")
	case 2:
		both("-ERR something went wrong\r\n")
	case 3:
		both("$-1\r\n")
	case 4, 5: // a bulk or verbatim string, sometimes too long
		n := rng.IntN(max * 3 / 2)
		if rng.IntN(4) == 0 {
			n = rng.IntN(4)
		}
		body := bytes.Repeat([]byte{byte('a' + rng.IntN(26))}, n)
		if n > 0 {
			body[rng.IntN(n)] = '\n' // a body may hold CR and LF
		}
		typ := "$"
		if k == 5 {
			typ = "="
		}
		raw = append(raw, typ+strconv.Itoa(n)+"\r\n"...)
		raw = append(append(raw, body...), "\r\n"...)
		if n > max {
			want = appendBulk(want, tooLarge)
		} else {
			want = append(want, typ+strconv.Itoa(n)+"\r\n"...)
			want = append(append(want, body...), "\r\n"...)
		}
	case 6:
		both("_\r\n")
	default: // an aggregate
		typ := "*%~>"[rng.IntN(4)]
		n := rng.IntN(5)
		m := n
		if typ == '%' {
			m = 2 * n
		}
		both(string(typ) + strconv.Itoa(n) + "\r\n")
		for range m {
			raw, want = genRESP(rng, d-1, max, raw, want)
		}
	}
	return raw, want
}

// TestRespFilterCapsStrings: random replies, cut into random reads, come
// out of the filter as they went in, except for the strings longer than
// its cap.
func TestRespFilterCapsStrings(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	const max = 100
	for round := range 2000 {
		var raw, want []byte
		for range 1 + rng.IntN(4) {
			raw, want = genRESP(rng, 3, max, raw, want)
		}
		f := respFilter{max: max}
		var got []byte
		for in := raw; len(in) > 0; {
			k := 1 + rng.IntN(min(len(in), 1+rng.IntN(300)))
			got = f.filter(got, in[:k])
			in = in[k:]
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d:\nin   %q\ngot  %q\nwant %q", round, raw, got, want)
		}
		if f.skip != 0 || f.body != 0 || f.line || len(f.hdr) != 0 {
			t.Fatalf("round %d: the filter ends inside a value: %+v", round, f)
		}
	}
}

// TestPoisonedKeysAreNeverHeld: a latest value and stream entries of 64 MB
// (Redis takes up to 512 MB a value) reach every path a node reads through
// go-redis — the snapshot, the history check (XINFO STREAM returns a
// stream's last entry), replay and the charts' read-back — and the node
// never holds them: go-redis gets tooLarge instead, every decoder refuses
// it as too large, and the genuine ticks around them go through.
func TestPoisonedKeysAreNeverHeld(t *testing.T) {
	srv, conn := connectCapped(t)
	ctx := t.Context()
	u := simulator.Universe(0)
	pub, err := NewPublisher(ctx, conn, PublisherConfig{Universe: u, Shards: 4, MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00"), tick("EURUSD", 1, "1.08453")}); err != nil {
		t.Fatal(err)
	}
	from := mustCursor(t, conn)
	aapl, fx := feed.ShardOf("AAPL", 4), feed.ShardOf("EURUSD", 4)
	if aapl == fx {
		t.Fatal("the test needs AAPL and EURUSD in different shards")
	}
	huge := strings.Repeat("x", 64<<20)
	if err := srv.Client().XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(aapl), Values: map[string]any{"b": huge}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 2, "100.01")}); err != nil {
		t.Fatal(err)
	}
	// EURUSD's stream ends with a poisoned entry (XINFO STREAM returns it at
	// every history check), and its latest value is poisoned.
	poison := srv.Client()
	if err := poison.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(fx), Values: map[string]any{"s": "EURUSD", "q": "2", "t": "1", "d": huge}}).Err(); err != nil {
		t.Fatal(err)
	}
	if err := poison.HSet(ctx, LastKey(fx), "EURUSD", huge).Err(); err != nil {
		t.Fatal(err)
	}
	to := mustCursor(t, conn)
	huge = ""

	var before runtime.MemStats
	runtime.ReadMemStats(&before)
	sink := &recSink{}
	r, err := NewReader(conn, sink, ReaderConfig{Shards: 4, Universe: u, Block: 50 * time.Millisecond, EpochCheck: 20 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = r.Run(rctx); close(done) }()
	defer cancel()
	wait.For(t, 10*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != 2 {
			return fmt.Errorf("AAPL = %v, want seq 2", u)
		}
		if n := r.Stats().MalformedBy(ReasonTooLarge); n < 1 {
			return fmt.Errorf("%d too-large refusals", n)
		}
		return nil
	})
	cancel()
	<-done
	for range 5 { // each reads EURUSD's last entry
		if err := r.checkHistory(ctx); err != nil {
			t.Fatal(err)
		}
	}
	rp := NewReplayer(conn, 4)
	rp.Universe = u
	got, err := rp.Replay(ctx, from, to, []string{"AAPL", "EURUSD"})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].Sym != "AAPL" || got[0].Seq != 2 {
		t.Errorf("replay = %v, want AAPL 2 alone", got)
	}
	var back []*feed.Update
	if _, err := ReadBack(ctx, conn, u, to, ReadBackLimits{Window: time.Hour, MaxTicks: 100}, func(ups []*feed.Update) { back = append(back, ups...) }); err != nil {
		t.Fatal(err)
	}
	// EURUSD's ticks are beyond its latest value (the poisoned one reads
	// as none), as replay judges them.
	if len(back) != 2 {
		t.Errorf("read back %d ticks, want 2 (AAPL 1 and 2)", len(back))
	}
	var after runtime.MemStats
	runtime.ReadMemStats(&after)
	if grew := after.TotalAlloc - before.TotalAlloc; grew > 32<<20 {
		t.Errorf("reading the poisoned keys allocated %d MB", grew>>20)
	}
	if u := sink.get("EURUSD"); u != nil {
		t.Errorf("EURUSD = %v, want none (its only latest value is the poisoned one)", u)
	}
}

func mustCursor(t *testing.T, rdb redis.UniversalClient) string {
	t.Helper()
	var ids []streamID
	for i := range 4 {
		msgs, err := rdb.XRevRangeN(t.Context(), StreamKey(i), "+", "-", 1).Result()
		if err != nil {
			t.Fatal(err)
		}
		var id streamID
		if len(msgs) > 0 {
			id, _ = parseID(msgs[0].ID)
		}
		ids = append(ids, id)
	}
	epoch, err := rdb.Get(t.Context(), EpochKey).Result()
	if err != nil {
		t.Fatal(err)
	}
	return Cursor{Epoch: epoch, IDs: ids}.String()
}

// TestCappedFilterPassesRESP3Types guards the filter's transparency:
// attributes, push, maps, sets, doubles, big numbers, booleans, nulls, blob
// errors and verbatim strings pass the filter as they are, cut at every
// place.
func TestCappedFilterPassesRESP3Types(t *testing.T) {
	in := []byte("|1\r\n+key\r\n,1.5\r\n(123456789012345678901234567890\r\n#t\r\n!5\r\nER\nR!\r\n=8\r\ntxt:a\nb$\r\n>2\r\n$3\r\n$\n*\r\n_\r\n%1\r\n$1\r\nk\r\n=12\r\ntxt:12345678\r\n~1\r\n:-5\r\n$-1\r\n*-1\r\n")
	want := append([]byte(nil), in[:bytes.Index(in, []byte("%1"))]...)
	want = append(want, "%1\r\n$1\r\nk\r\n"...)
	want = appendBulk(want, tooLarge)
	want = append(want, "~1\r\n:-5\r\n$-1\r\n*-1\r\n"...)
	for step := 1; step < 8; step++ {
		f := respFilter{max: 10}
		var got []byte
		for i := 0; i < len(in); i += step {
			got = f.filter(got, in[i:min(i+step, len(in))])
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("step %d:\n got %q\nwant %q", step, got, want)
		}
	}
}

// scriptConn serves data in reads of random sizes.
type scriptConn struct {
	net.Conn
	data []byte
	rng  *rand.Rand
}

func (c *scriptConn) Write(p []byte) (int, error) { return len(p), nil }

func (c *scriptConn) SetDeadline(time.Time) error { return nil }

func (c *scriptConn) Close() error { return nil }

func (c *scriptConn) Read(p []byte) (int, error) {
	if len(c.data) == 0 {
		return 0, io.EOF
	}
	k := min(len(p), len(c.data), 1+c.rng.IntN(1<<c.rng.IntN(22)))
	n := copy(p, c.data[:k])
	c.data = c.data[n:]
	return n, nil
}

// TestCappedFilterReplacesBigStringsAtAnyCut guards the filter on XREAD
// replies with strings over maxString at random places, read in random cuts:
// roundTrip hands parse the reply with each replaced by tooLarge.
func TestCappedFilterReplacesBigStringsAtAnyCut(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	for round := range 60 {
		var raw, want []byte
		n := 1 + rng.IntN(4)
		hdr := "*1\r\n*2\r\n$4\r\nkey0\r\n*" + strconv.Itoa(n) + "\r\n"
		raw, want = append(raw, hdr...), append(want, hdr...)
		for i := range n {
			e := "*2\r\n$3\r\n1-" + strconv.Itoa(i) + "\r\n*2\r\n$1\r\nb\r\n"
			raw, want = append(raw, e...), append(want, e...)
			size := rng.IntN(100)
			if rng.IntN(3) == 0 {
				size = maxString + 1 + rng.IntN(100)
			}
			body := bytes.Repeat([]byte{'\n'}, size)
			raw = appendBulk(raw, body)
			if size > maxString {
				want = appendBulk(want, tooLarge)
			} else {
				want = appendBulk(want, body)
			}
		}
		c := &xreadConn{conn: &scriptConn{data: raw, rng: rng}}
		var got []byte
		err := c.roundTrip(context.Background(), []byte("x"), time.Minute, func(b []byte) error {
			if err := wholeReply(b); err != nil {
				return err
			}
			got = append([]byte(nil), b...)
			return nil
		})
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("round %d: got %d bytes, want %d", round, len(got), len(want))
		}
	}
}
