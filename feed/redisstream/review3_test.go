package redisstream

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// Review 3 findings. Each test fails on cbc3afe.

// TestReview3LargeUniverseLoads: the universe is one string (GET
// UniverseKey). A publisher stores a universe of any size (writes are not
// capped), but a node reads it through a capped connection: a universe whose
// JSON passes maxReplyString (8 MB, ~75k simulator symbols) comes back as
// tooLarge and LoadUniverse fails with "decode universe: invalid character",
// so no node can start.
func TestReview3LargeUniverseLoads(t *testing.T) {
	srv, conn := connectCapped(t)
	ctx := t.Context()
	u := simulator.Universe(100_000)
	b, _ := json.Marshal(universeDoc{Shards: 16, Symbols: u.Symbols()})
	if len(b) <= maxReplyString {
		t.Fatalf("the universe's JSON is %d bytes: the test needs more than %d", len(b), maxReplyString)
	}
	if err := StoreUniverse(ctx, conn, u, 16); err != nil {
		t.Fatal(err)
	}
	// Uncapped, it loads.
	if got, _, err := LoadUniverse(ctx, srv.Client()); err != nil || got.Len() != u.Len() {
		t.Fatalf("uncapped: LoadUniverse = %v, %v", got, err)
	}
	got, shards, err := LoadUniverse(ctx, conn)
	if err != nil {
		t.Fatalf("a universe of %d symbols (%d bytes of JSON), read through the node's connection: %v", u.Len(), len(b), err)
	}
	if got.Len() != u.Len() || shards != 16 {
		t.Fatalf("loaded %d symbols, %d shards", got.Len(), shards)
	}
}

// TestReview3StaleIdleConnIsReplaced: go-redis checks an idle pooled
// connection before handing it out (connCheck: a MSG_PEEK through
// syscall.Conn) and dials again when the server closed it (CLIENT KILL, the
// server's timeout, a proxy's idle timeout, a restart). cappedConn hides
// syscall.Conn, so the check is skipped and dead connections are used: each
// attempt of a command takes the next dead one, and with go-redis's default
// retries (3) a pool holding 4 or more dead idle connections fails the
// command (EOF / broken pipe) instead of dialing a fresh one.
func TestReview3StaleIdleConnIsReplaced(t *testing.T) {
	srv := redistest.Start(t, redistest.WithTCP())
	ctx := t.Context()
	for _, capped := range []bool{false, true} {
		for net, url := range map[string]string{"unix": srv.URL(), "tcp": srv.TCPURL()} {
			t.Run(fmt.Sprintf("capped=%v/%s", capped, net), func(t *testing.T) {
				opt, err := redis.ParseURL(url)
				if err != nil {
					t.Fatal(err)
				}
				opt.PoolSize = 8
				if capped {
					capOptions(opt)
				}
				rdb := redis.NewClient(opt)
				defer rdb.Close()
				// 8 idle connections in the pool.
				var conns []*redis.Conn
				for range 8 {
					c := rdb.Conn()
					if err := c.Ping(ctx).Err(); err != nil {
						t.Fatal(err)
					}
					conns = append(conns, c)
				}
				for _, c := range conns {
					_ = c.Close()
				}
				if n := rdb.PoolStats().IdleConns; n != 8 {
					t.Fatalf("%d idle connections, want 8", n)
				}
				killer := srv.Client()
				defer killer.Close()
				if err := killer.ClientKillByFilter(ctx, "TYPE", "normal", "SKIPME", "yes").Err(); err != nil {
					t.Fatal(err)
				}
				wait.For(t, 5*time.Second, func() error {
					list, err := killer.ClientList(ctx).Result()
					if err != nil {
						return err
					}
					if n := strings.Count(list, "\n"); n != 1 {
						return fmt.Errorf("%d clients listed", n)
					}
					return nil
				})
				if err := rdb.Get(ctx, "nothing").Err(); !errors.Is(err, redis.Nil) {
					t.Fatalf("GET on a pool whose idle connections the server closed: %v, want redis.Nil (a fresh connection)", err)
				}
			})
		}
	}
}

// fakeConn returns reply on every Read.
type fakeConn struct {
	net.Conn
	reply []byte
}

func (c *fakeConn) Read(p []byte) (int, error) { return copy(p, c.reply), nil }

// TestReview3CappedReadAllocatesNothing: cappedConn.Read keeps its filtered
// bytes in pend and means to reuse that buffer (pend[:0:cap(pend)]), but
// pend = pend[n:] moves the slice's start forward, so the capacity left
// shrinks by every byte returned and append allocates a new buffer about
// once per Read: every byte a node reads through go-redis is also garbage.
func TestReview3CappedReadAllocatesNothing(t *testing.T) {
	c := &cappedConn{Conn: &fakeConn{reply: []byte(":12345\r\n")}, f: respFilter{max: maxReplyString}}
	p := make([]byte, 32<<10)
	allocs := testing.AllocsPerRun(1000, func() {
		if _, err := c.Read(p); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 0.01 {
		t.Errorf("cappedConn.Read: %.2f allocations per Read, want 0", allocs)
	}
}

// TestReview3BacklogIsNotPaced: the pause between reads (Pace: up to
// MaxCoalesce, 50ms, with nobody or a ≥500ms subscriber) is taken after
// every read that returned entries, even a full one (Count entries per
// shard: more are waiting). A node then reads at most Count entries per
// shard per pace — 128 × 20/s = 2,560 entries/s a shard — and one that
// falls behind (a Redis blip, a producer writing small entries) catches up
// at that rate or never. Here 400 entries, Count 4: 100 reads, ≥ 5 s paced.
func TestReview3BacklogIsNotPaced(t *testing.T) {
	_, conn := connectCapped(t)
	ctx := t.Context()
	u := simulator.Universe(0)
	pub, err := NewPublisher(ctx, conn, PublisherConfig{Universe: u, Shards: 1, MaxLen: 10_000})
	if err != nil {
		t.Fatal(err)
	}
	defer pub.Close()
	if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", 1, "100.00")}); err != nil {
		t.Fatal(err)
	}
	sink := &recSink{}
	r, err := NewReader(conn, sink, ReaderConfig{Shards: 1, Universe: u, Count: 4,
		Need: func() (time.Duration, bool) { return time.Second, true }}) // one 1s subscriber
	if err != nil {
		t.Fatal(err)
	}
	rctx, cancel := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() { _ = r.Run(rctx); close(done) }()
	defer func() { cancel(); <-done }()
	wait.For(t, 10*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != 1 {
			return fmt.Errorf("AAPL = %v", u)
		}
		return nil
	})
	// A burst of 400 entries (one tick each), written far faster than the
	// paced reader reads them.
	const last = 401
	start := time.Now()
	for seq := uint64(2); seq <= last; seq++ {
		if err := pub.Publish(ctx, []feed.Tick{tick("AAPL", seq, "100.00")}); err != nil {
			t.Fatal(err)
		}
	}
	wait.For(t, 20*time.Second, func() error {
		if u := sink.get("AAPL"); u == nil || u.Seq != last {
			return fmt.Errorf("AAPL = %v", u)
		}
		return nil
	})
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("a backlog of 400 entries took %v to read (Count 4, pace %v): full reads are paced", took.Round(time.Millisecond), r.Pace())
	}
}

// TestReview3MarkerAfterBody: the filter emits tooLarge as soon as it reads
// a long string's header, so go-redis sees the reply end — and puts the
// connection back in its pool as idle — while the body (up to 512 MB) is
// still on the socket. Today that is latent (the next command on that
// connection skips the rest under its own ReadTimeout), but it is why the
// obvious fix of TestReview3StaleIdleConnIsReplaced (exposing SyscallConn)
// hangs: the pool's health check then sees data on an idle connection,
// calls PeekReplyTypeForCheck with no deadline, and the filter swallows
// everything (TestPoisonedKeysAreNeverHeld blocks forever in it). The
// marker must go out once the body is read.
func TestReview3MarkerAfterBody(t *testing.T) {
	f := respFilter{max: 10}
	if got := f.filter(nil, []byte("$100\r\nabc")); len(got) != 0 {
		t.Errorf("after a header and 3 of 102 body bytes the filter emitted %q: the reply ends before its bytes are read", got)
	}
	got := f.filter(nil, append(bytes.Repeat([]byte{'x'}, 97), "\r\n+OK\r\n"...))
	if want := append(appendBulk(nil, tooLarge), "+OK\r\n"...); !bytes.Equal(got, want) {
		t.Errorf("at the body's end: %q, want %q", got, want)
	}
}
