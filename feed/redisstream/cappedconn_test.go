package redisstream

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/simulator"
)

// TestLargeUniverseLoadsThroughCappedConn guards LoadUniverse on a big
// universe: the universe is one string (GET UniverseKey) that a publisher
// stores at any size (writes are not capped) and a node reads through a
// capped connection; a universe whose JSON passes maxReplyString (8 MB, ~75k
// simulator symbols) loads, rather than coming back as tooLarge ("decode
// universe: invalid character"), which would let no node start.
func TestLargeUniverseLoadsThroughCappedConn(t *testing.T) {
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

// TestCappedConnStaleIdleConnIsReplaced guards go-redis's health check
// through cappedConn: go-redis checks an idle pooled connection before
// handing it out (connCheck: a MSG_PEEK through syscall.Conn) and dials again
// when the server closed it (CLIENT KILL, the server's timeout, a proxy's
// idle timeout, a restart). cappedConn keeps that check working, so a pool
// holding 4 or more dead idle connections (more than go-redis's default 3
// retries) dials a fresh one and the command succeeds, instead of failing
// with EOF or a broken pipe.
func TestCappedConnStaleIdleConnIsReplaced(t *testing.T) {
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

// TestCappedReadAllocatesNothing guards cappedConn.Read's buffer: the
// filtered bytes kept in pend reuse one buffer (pend[:0:cap(pend)]) whose
// capacity is not eaten by returned bytes, so a Read allocates nothing and
// the bytes a node reads through go-redis make no garbage.
func TestCappedReadAllocatesNothing(t *testing.T) {
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

// TestCappedMarkerFollowsBody guards the tooLarge marker's timing: the filter
// emits it once a long string's body (up to 512 MB) is read off the socket,
// not at its header, so go-redis never sees the reply end, and puts the
// connection back in its pool as idle, with the body still on the socket.
// With data left on an idle connection, the pool's health check (see
// TestCappedConnStaleIdleConnIsReplaced) would call PeekReplyTypeForCheck
// with no deadline and the filter would swallow everything
// (TestPoisonedKeysAreNeverHeld would block forever in it).
func TestCappedMarkerFollowsBody(t *testing.T) {
	f := respFilter{max: 10}
	if got := f.filter(nil, []byte("$100\r\nabc")); len(got) != 0 {
		t.Errorf("after a header and 3 of 102 body bytes the filter emitted %q: the reply ends before its bytes are read", got)
	}
	got := f.filter(nil, append(bytes.Repeat([]byte{'x'}, 97), "\r\n+OK\r\n"...))
	if want := append(appendBulk(nil, tooLarge), "+OK\r\n"...); !bytes.Equal(got, want) {
		t.Errorf("at the body's end: %q, want %q", got, want)
	}
}
