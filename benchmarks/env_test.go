package benchmarks

import (
	"context"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/tickstream/tickstream/benchmarks/loadgen"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/internal/bintest"
	"github.com/tickstream/tickstream/internal/redistest"
	"github.com/tickstream/tickstream/simulator"
)

// load is a feed shape.
type load struct {
	name    string
	symbols int
	rate    float64 // ticks/s, whole universe
	skew    float64 // popularity skew of ticks and of watchlists
}

var loads = []load{
	// Every watched symbol ticks ~5 times a second.
	{name: "hot", symbols: 100, rate: 500, skew: 1e-9},
	// A 10-symbol watchlist changes about once every 30 s.
	{name: "sparse", symbols: 1000, rate: 1000.0 / 300, skew: 1e-9},
	// Skewed: a few hot symbols carry most ticks, and most watchlists.
	{name: "mixed", symbols: 200, rate: 2000, skew: 1.1},
}

// env is one load's world: redis-server, the feed, one node process.
type env struct {
	load  load
	uni   *feed.Universe
	pub   *loadgen.Published
	addr  string
	pid   int
	stopF func()
}

// recordingPub records what it publishes, for delay measurement.
type recordingPub struct {
	next *redisstream.Publisher
	rec  *loadgen.Published
}

func (r recordingPub) Publish(ctx context.Context, ts []feed.Tick) error {
	if err := r.next.Publish(ctx, ts); err != nil {
		return err
	}
	for i := range ts {
		r.rec.Add(ts[i].Sym, ts[i].Seq, ts[i].TS)
	}
	return nil
}

func startEnv(b *testing.B, l load) *env {
	b.Helper()
	srv := redistest.Start(b)
	rdb := srv.Client()
	ctx, cancel := context.WithCancel(context.Background())
	e := &env{load: l, uni: simulator.Universe(l.symbols), pub: loadgen.NewPublished()}
	p, err := redisstream.NewPublisher(ctx, rdb, redisstream.PublisherConfig{Universe: e.uni, Shards: 16})
	if err != nil {
		b.Fatal(err)
	}
	sim, err := simulator.New(simulator.Config{GeneratorConfig: simulator.GeneratorConfig{
		Symbols: l.symbols, Rate: l.rate, Skew: l.skew, Seed: 11,
	}, Window: 5 * time.Millisecond}, recordingPub{p, e.pub})
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() { defer wg.Done(); _ = sim.Run(ctx) }()

	args := []string{"serve", "--redis", srv.URL(), "--addr", "127.0.0.1:0", "--node", "bench",
		"--max-subscribers", "19000", "--drain", "100ms", "--max-per-address", "19000"}
	if a := os.Getenv("TICKSTREAM_BENCH_NODE_DEBUG"); a != "" {
		args = append(args, "--debug-addr", a) // go tool pprof http://<a>/debug/pprof/heap
	}
	if p := os.Getenv("TICKSTREAM_BENCH_NODE_PROFILE"); p != "" {
		args = append(args, "--cpuprofile", p+"."+l.name)
	}
	cmd := exec.Command(bintest.Tickstream(b), args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL}
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = nil
	if err := cmd.Start(); err != nil {
		b.Fatal(err)
	}
	if e.addr, err = loadgen.WaitListen(stdout, 30*time.Second); err != nil {
		b.Fatalf("node: %v", err)
	}
	e.pid = cmd.Process.Pid
	e.stopF = func() {
		_ = cmd.Process.Signal(syscall.SIGTERM)
		_ = cmd.Wait()
		cancel()
		wg.Wait()
	}
	b.Cleanup(e.stopF)
	// Let every symbol have a value before clients subscribe.
	time.Sleep(500 * time.Millisecond)
	return e
}
