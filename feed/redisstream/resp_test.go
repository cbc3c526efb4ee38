package redisstream

import (
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// rawXRead returns XREAD's raw reply over keys from 0 in the protocol
// asked, and go-redis's decoding of the same read.
func rawXRead(t *testing.T, srv *redistest.Server, proto int, keys []string) ([]byte, []redis.XStream) {
	t.Helper()
	rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: strings.TrimPrefix(srv.URL(), "unix://"), Protocol: proto})
	defer rdb.Close()
	args := []any{"xread", "count", 1000, "streams"}
	ids := []string{}
	for _, k := range keys {
		args = append(args, k)
		ids = append(ids, "0")
	}
	for _, id := range ids {
		args = append(args, id)
	}
	raw := redis.NewRawCmd(t.Context(), args...)
	if err := rdb.Process(t.Context(), raw); err != nil {
		t.Fatal(err)
	}
	streams, err := rdb.XRead(t.Context(), &redis.XReadArgs{Streams: append(append([]string{}, keys...), ids...), Count: 1000, Block: -1}).Result()
	if err != nil && !errors.Is(err, redis.Nil) {
		t.Fatal(err)
	}
	return raw.Val(), streams
}

// TestParseXReadMatchesGoRedis: the raw walk of a real XREAD reply, in
// RESP2 and RESP3, finds the entries go-redis decodes (ids, s/q/t/d, b),
// including entries with extra, missing and repeated fields (an entry with
// a field twice is flagged, for checkLayout to refuse); every prefix
// of the reply is "truncated", and the end scanner finds the end however
// the reply is cut into reads.
func TestParseXReadMatchesGoRedis(t *testing.T) {
	srv, rdb, pub := setup(t)
	ctx := t.Context()
	for i := range uint64(20) {
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", i+1, "100.00"), tick("MSFT", i+1, "200.00"), tick("EURUSD", i+1, "1.08453")}); err != nil {
			t.Fatal(err)
		}
	}
	odd := [][]any{
		{"s", "AAPL", "x", strings.Repeat("y", 300)},
		{"d", "{}"},
		{"s", "AAPL", "s", "MSFT", "q", "1", "t", "2", "d", "x\r\ny"},
		{"s", ""},
		{"b", "x\ny", "d", "z"},
	}
	for _, v := range odd {
		if err := rdb.XAdd(ctx, &redis.XAddArgs{Stream: StreamKey(feed.ShardOf("AAPL", 4)), Values: v}).Err(); err != nil {
			t.Fatal(err)
		}
	}
	keys := []string{StreamKey(0), StreamKey(1), StreamKey(2), StreamKey(3), "ticks:{none}"}
	shardOf := func(k []byte) int {
		for i, key := range keys[:4] {
			if string(k) == key {
				return i
			}
		}
		return -1
	}
	for _, proto := range []int{2, 3} {
		t.Run(fmt.Sprintf("resp%d", proto), func(t *testing.T) {
			reply, streams := rawXRead(t, srv, proto, keys)
			views, err := parseXRead(reply, shardOf, nil)
			if err != nil {
				t.Fatal(err)
			}
			n, twice := 0, 0
			for _, st := range streams {
				shard := shardOf([]byte(st.Stream))
				for _, m := range st.Messages {
					if n >= len(views) {
						t.Fatalf("parsed %d entries, go-redis more", len(views))
					}
					v := views[n]
					n++
					if v.shard != shard || v.id.String() != m.ID {
						t.Fatalf("entry %d: shard %d id %s, go-redis %d %s", n, v.shard, v.id, shard, m.ID)
					}
					if v.twice {
						// go-redis's map keeps the last of a field
						// twice; the walk flags the entry (refused).
						twice++
						continue
					}
					for k, got := range map[string][]byte{"s": v.s, "q": v.q, "t": v.t, "d": v.d, "b": v.b} {
						want, ok := m.Values[k].(string)
						if ok != (got != nil) || string(got) != want {
							t.Fatalf("entry %s field %s: %q, go-redis %q (%v)", m.ID, k, got, want, ok)
						}
					}
				}
			}
			if n != len(views) || n < 25 {
				t.Fatalf("parsed %d entries, go-redis %d", len(views), n)
			}
			if twice != 1 {
				t.Fatalf("%d entries flagged with a field twice, want 1", twice)
			}
			for cut := 0; cut < len(reply); cut += 1 + cut%97 {
				if _, err := parseXRead(reply[:cut], shardOf, nil); cut > 0 && !errors.Is(err, errTruncated) {
					t.Fatalf("prefix of %d of %d bytes: %v, want truncated", cut, len(reply), err)
				}
			}
			for _, chunk := range []int{1, 7, 100, 4096} {
				var sk replySkipper
				end := 0
				for got := 0; end == 0; {
					got = min(got+chunk, len(reply))
					if end, err = sk.scan(reply[:got]); err != nil {
						t.Fatal(err)
					}
					if end == 0 && got == len(reply) {
						t.Fatalf("chunks of %d: no end found", chunk)
					}
				}
				if end != len(reply) {
					t.Fatalf("chunks of %d: end %d of %d", chunk, end, len(reply))
				}
			}
		})
	}
	// Nothing to read: a null reply in either protocol.
	for _, proto := range []int{2, 3} {
		reply, _ := rawXRead(t, srv, proto, []string{"ticks:{none}"})
		if views, err := parseXRead(reply, shardOf, nil); err != nil || len(views) != 0 {
			t.Fatalf("resp%d empty read %q: %v %v", proto, reply, views, err)
		}
	}
}

// FuzzParseXRead: any bytes give entries or an error, never a panic; a
// reply the walk accepts is one the end scanner sees end where it does.
func FuzzParseXRead(f *testing.F) {
	f.Add([]byte("*1\r\n*2\r\n$7\r\nticks:0\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*4\r\n$1\r\ns\r\n$4\r\nAAPL\r\n$1\r\nd\r\n$2\r\n{}\r\n"))
	f.Add([]byte("%1\r\n$7\r\nticks:0\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*2\r\n$1\r\ns\r\n$4\r\nAAPL\r\n"))
	f.Add([]byte("*-1\r\n"))
	f.Add([]byte("_\r\n"))
	f.Add([]byte("-ERR x\r\n"))
	f.Add([]byte("*1\r\n*2\r\n$7\r\nticks:0\r\n*1\r\n*2\r\n$3\r\n1-1\r\n*-1\r\n"))
	f.Fuzz(func(t *testing.T, b []byte) {
		views, err := parseXRead(b, func([]byte) int { return 0 }, nil)
		var sk replySkipper
		end, serr := sk.scan(b)
		if err != nil {
			return
		}
		if len(b) > 0 && (serr != nil || end != len(b)) {
			t.Fatalf("%q parsed (%d entries), the scanner says end %d, %v", b, len(views), end, serr)
		}
	})
}

// TestOwnConnectionAuthAndDB: the reader's own XREAD connection logs in as
// the client's options say (a password, an ACL user) and reads the
// database they select.
func TestOwnConnectionAuthAndDB(t *testing.T) {
	srv := redistest.Start(t)
	admin := srv.Client()
	ctx := t.Context()
	if err := admin.Do(ctx, "ACL", "SETUSER", "feed", "on", ">feedpw", "~*", "+@all").Err(); err != nil {
		t.Fatal(err)
	}
	if err := admin.ConfigSet(ctx, "requirepass", "s3cret").Err(); err != nil {
		t.Fatal(err)
	}
	sock := strings.TrimPrefix(srv.URL(), "unix://")
	for _, c := range []struct {
		name     string
		user, pw string
	}{{"password", "", "s3cret"}, {"acl user", "feed", "feedpw"}} {
		t.Run(c.name, func(t *testing.T) {
			rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, Username: c.user, Password: c.pw, DB: 3})
			defer rdb.Close()
			if err := rdb.FlushDB(ctx).Err(); err != nil {
				t.Fatal(err)
			}
			pub, err := NewPublisher(ctx, rdb, PublisherConfig{Universe: simulator.Universe(0), Shards: 4, MaxLen: 1000})
			if err != nil {
				t.Fatal(err)
			}
			sink := &recSink{}
			r := startReader(t, rdb, sink)
			if r.own == nil {
				t.Fatal("the reader reads through go-redis, not its own connection")
			}
			waitSynced(t, sink)
			if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00")}); err != nil {
				t.Fatal(err)
			}
			wait.For(t, 5*time.Second, func() error {
				if u := sink.get("AAPL"); u == nil || u.Seq != 1 {
					return errors.New("AAPL not read")
				}
				return nil
			})
			// Nothing of it in database 0.
			if n, err := rdb.Do(ctx, "EVAL", "redis.call('SELECT', 0) return redis.call('EXISTS', KEYS[1])", 1, StreamKey(feed.ShardOf("AAPL", 4))).Int(); err != nil || n != 0 {
				t.Fatalf("stream in database 0: %d %v", n, err)
			}
		})
	}
	t.Run("wrong password", func(t *testing.T) {
		rdb := redis.NewClient(&redis.Options{Network: "unix", Addr: sock, Password: "nope"})
		defer rdb.Close()
		c := newXReadConn(rdb, nil)
		if err := c.dial(ctx); err == nil || !strings.Contains(err.Error(), "AUTH") {
			t.Fatalf("dial with a wrong password: %v", err)
		}
	})
}

// TestEmbeddedStore: publisher (its script) and reader (its own
// connection) work on the embedded store of `tickstream run`.
func TestEmbeddedStore(t *testing.T) {
	ctx := t.Context()
	c, err := Connect(ctx, ConnectConfig{URL: MemURL})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	pub, err := NewPublisher(ctx, c, PublisherConfig{Universe: simulator.Universe(0), Shards: 4, MaxLen: 1000})
	if err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	startReader(t, c, sink)
	waitSynced(t, sink)
	for i := range uint64(5) {
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", i+1, "100.00"), tick("MSFT", i+1, "200.00")}); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 5*time.Second, func() error {
		if u := sink.get("MSFT"); u == nil || u.Seq != 5 {
			return errors.New("MSFT 5 not read")
		}
		return nil
	})
}

// TestRetriedBatchIsStoredOnce: a batch published again (its reply was
// lost, the simulator retries) stores no tick; the next one does.
func TestRetriedBatchIsStoredOnce(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	batch := []feed.Tick{tick("AAPL", 1, "100.00"), tick("MSFT", 1, "200.00"), tick("AAPL", 2, "100.01")}
	count := func() int { return storedTicks(t, ctx, rdb, 4) }
	for range 3 {
		if err := pub.Publish(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	if n := count(); n != 3 {
		t.Fatalf("%d ticks stored after the same batch three times, want 3", n)
	}
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 3, "100.02")}); err != nil {
		t.Fatal(err)
	}
	if n := count(); n != 4 {
		t.Fatalf("%d ticks stored after the next batch, want 4", n)
	}
	js, err := rdb.HGet(ctx, LastKey(feed.ShardOf("AAPL", 4)), "AAPL").Result()
	if err != nil || !bytes.Contains([]byte(js), []byte(`"seq":3`)) {
		t.Fatalf("latest AAPL %s %v", js, err)
	}
}

// TestPublishAfterScriptCacheFlush: a Redis that forgot the script (a
// restart, SCRIPT FLUSH) is given it again; nothing is lost.
func TestPublishAfterScriptCacheFlush(t *testing.T) {
	_, rdb, pub := setup(t)
	ctx := t.Context()
	for i := range uint64(3) {
		if err := rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", i+1, "100.00"), tick("MSFT", i+1, "200.00")}); err != nil {
			t.Fatal(err)
		}
	}
	if n := storedTicks(t, ctx, rdb, 4); n != 6 {
		t.Fatalf("%d ticks stored, want 6", n)
	}
}

// BenchmarkReaderDecode measures the reader's work per entry once a reply
// is in memory: the raw walk, the single scan and the copy into slabs.
func BenchmarkReaderDecode(b *testing.B) {
	u := simulator.Universe(0)
	syms := u.Names()
	var reply []byte
	reply = append(reply, "*1\r\n*2\r\n$9\r\nticks:{0}\r\n*100\r\n"...)
	for i := range 100 {
		tk := tick(syms[i%len(syms)], uint64(i+1), "100.00")
		if s, ok := u.Lookup(tk.Sym); ok {
			tk.Bid, tk.Ask, tk.Last = s.TickSize.Mul(mustDec("10000")), s.TickSize.Mul(mustDec("10002")), s.TickSize.Mul(mustDec("10001"))
		}
		js := tk.AppendJSON(nil)
		reply = append(reply, "*2\r\n"...)
		reply = appendBulk(reply, fmt.Sprintf("1764180000000-%d", i))
		reply = append(reply, "*8\r\n"...)
		for _, f := range []string{"s", tk.Sym, "q", fmt.Sprint(tk.Seq), "t", fmt.Sprint(tk.TS), "d"} {
			reply = appendBulk(reply, f)
		}
		reply = appendBulk(reply, js)
	}
	r := &Reader{uni: u}
	b.Run("raw+scan", func(b *testing.B) {
		b.ReportAllocs()
		var views []entryView
		for range b.N/100 + 1 {
			var err error
			if views, err = parseXRead(reply, func([]byte) int { return 0 }, views[:0]); err != nil {
				b.Fatal(err)
			}
			for i := range views {
				if _, err := r.decode(&views[i]); err != nil {
					b.Fatal(err)
				}
			}
		}
	})
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64((b.N/100+1)*100), "ns/entry")
}
