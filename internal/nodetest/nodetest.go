// Package nodetest starts real fan-out nodes on a private redis-server for
// tests and benchmarks, and publishes controlled ticks into it.
package nodetest

import (
	"context"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/internal/wait"
	"github.com/tickstream/tickstream/node"
	"github.com/tickstream/tickstream/simulator"
)

// Shards is the shard count test feeds use.
const Shards = 4

// Feed is a publisher into a private Redis with controlled ticks.
type Feed struct {
	tb    testing.TB
	Redis *redistest.Server
	RDB   *redis.Client
	Pub   *redisstream.Publisher
	seq   map[string]uint64
	price map[string]decimal.Decimal
}

// NewFeed starts a private redis-server and stores the default universe.
func NewFeed(tb testing.TB, opts ...redistest.Option) *Feed {
	tb.Helper()
	return NewFeedN(tb, 0, opts...)
}

// NewFeedN is NewFeed with a universe of n symbols (see simulator.Universe).
func NewFeedN(tb testing.TB, n int, opts ...redistest.Option) *Feed {
	tb.Helper()
	srv := redistest.Start(tb, opts...)
	rdb := srv.Client()
	pub, err := redisstream.NewPublisher(context.Background(), rdb, redisstream.PublisherConfig{
		Universe: simulator.Universe(n), Shards: Shards, MaxLen: 10_000, Logger: Quiet(),
	})
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(pub.Close)
	return &Feed{tb: tb, Redis: srv, RDB: rdb, Pub: pub, seq: map[string]uint64{}, price: map[string]decimal.Decimal{}}
}

// Tick publishes one tick of each symbol, with the next seq and a price one
// cent above the previous, and returns them.
func (f *Feed) Tick(syms ...string) []feed.Tick {
	f.tb.Helper()
	ts := make([]feed.Tick, 0, len(syms))
	for _, s := range syms {
		f.seq[s]++
		// Prices on the symbol's tick grid (a node refuses others): 100 plus
		// a cent per tick published, or a tick where the tick is coarser.
		step := decimal.RequireFromString("0.01")
		if sym, ok := simulator.Universe(0).Lookup(s); ok && !step.Mod(sym.TickSize).IsZero() {
			step = sym.TickSize
		}
		p, ok := f.price[s]
		if !ok {
			p = decimal.RequireFromString("100.00")
		}
		p = p.Add(step)
		f.price[s] = p
		ts = append(ts, feed.Tick{Sym: s, Seq: f.seq[s], Bid: p, Ask: p.Add(step.Mul(decimal.NewFromInt(2))), Last: p, Size: 100, TS: time.Now().UnixMicro()})
	}
	if err := f.Pub.Publish(context.Background(), ts); err != nil {
		f.tb.Fatal(err)
	}
	return ts
}

// Seq returns the last seq published for sym.
func (f *Feed) Seq(sym string) uint64 { return f.seq[sym] }

// StartNode starts a node on the feed's Redis, on a free loopback port, and
// shuts it down when the test ends.
func (f *Feed) StartNode(mutate func(*node.Config)) *node.Node {
	f.tb.Helper()
	return StartNode(f.tb, f.RDB, mutate)
}

// StartNode starts a node on rdb on a free loopback port and shuts it down
// when the test ends.
func StartNode(tb testing.TB, rdb redis.UniversalClient, mutate func(*node.Config)) *node.Node {
	tb.Helper()
	cfg := node.Config{
		Addr: "127.0.0.1:0", Drain: 10 * time.Millisecond, Logger: Quiet(),
		Reader: redisstream.ReaderConfig{Block: 100 * time.Millisecond, EpochCheck: 100 * time.Millisecond, MaxBackoff: 200 * time.Millisecond},
	}
	if mutate != nil {
		mutate(&cfg)
	}
	n, err := node.Start(context.Background(), rdb, cfg)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = n.Shutdown(ctx)
	})
	return n
}

// Quiet returns a logger that discards everything below errors.
func Quiet() *slog.Logger {
	return slog.New(slog.NewTextHandler(io.Discard, nil))
}

// CheckFor polls cond until it returns nil or timeout passes (wait.For).
func CheckFor(tb testing.TB, timeout time.Duration, cond func() error) {
	tb.Helper()
	wait.For(tb, timeout, cond)
}

// FreeAddr returns a loopback address with a port that was free a moment
// ago, for a node that must come back on the same address.
func FreeAddr(tb testing.TB) string {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// RunSimulator runs the real simulator into the feed's Redis (symbols 0
// means the default universe) until the returned stop is called or the
// test ends.
func (f *Feed) RunSimulator(rate float64, symbols int) (stop func()) {
	f.tb.Helper()
	resume, _ := redisstream.LoadLatest(context.Background(), f.RDB, Shards)
	sim, err := simulator.New(simulator.Config{
		GeneratorConfig: simulator.GeneratorConfig{Rate: rate, Seed: 3, Symbols: symbols, Resume: resume},
		Logger:          Quiet(),
	}, f.Pub)
	if err != nil {
		f.tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); _ = sim.Run(ctx) }()
	var once sync.Once
	stop = func() { once.Do(func() { cancel(); <-done }) }
	f.tb.Cleanup(stop)
	return stop
}

// quietRedisLog keeps go-redis's pool messages (dial retries while a test
// kills a server on purpose) out of the test output.
type quietRedisLog struct{}

func (quietRedisLog) Printf(context.Context, string, ...any) {}

func init() { redis.SetLogger(quietRedisLog{}) }
