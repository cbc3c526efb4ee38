package main

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"runtime"
	"time"

	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/simulator"
)

// simConfig are the simulator's flags, shared by run and simulate.
type simConfig struct {
	rate     *float64
	seed     *int
	universe *int
	shards   *int
	maxLen   *int
	window   *time.Duration
	// ownThread: the simulator runs alone in its process, on one thread
	// (simulate --procs 1), and may pace itself on that thread.
	ownThread bool
}

func (c *simConfig) register(f *flags) {
	c.rate = f.float("rate", 2000, "ticks per second across the whole universe")
	c.seed = f.integer("seed", 1, "random seed: the same seed gives the same prices")
	c.universe = f.integer("universe", 0, fmt.Sprintf("universe size (number of symbols): the default %d symbols, padded with synthetic ones if larger", simulator.DefaultUniverseSize))
	c.shards = f.integer("shards", redisstream.DefaultShards, "number of shard streams ticks:{0..N-1}")
	c.maxLen = f.integer("retention", redisstream.DefaultMaxLen, "entries kept per shard stream (XADD MAXLEN ~)")
	c.window = f.duration("publish-every", simulator.DefaultWindow, "how often the simulator publishes the ticks generated since the last batch (one Redis script run per batch)")
}

func (c *simConfig) validate() error {
	switch {
	case *c.rate <= 0:
		return usageError{fmt.Errorf("--rate %v must be positive", *c.rate)}
	case *c.universe < 0:
		return usageError{fmt.Errorf("--universe %d must not be negative", *c.universe)}
	case *c.shards < 1 || *c.shards > 1024:
		return usageError{fmt.Errorf("--shards %d must be 1 to 1024", *c.shards)}
	case *c.maxLen < 1000:
		return usageError{fmt.Errorf("--retention %d must be at least 1000", *c.maxLen)}
	case *c.window < 100*time.Microsecond || *c.window > time.Second:
		return usageError{fmt.Errorf("--publish-every %v must be 100µs to 1s", *c.window)}
	case *c.seed < 0:
		return usageError{fmt.Errorf("--seed %d must not be negative", *c.seed)}
	}
	return nil
}

// runSimulator publishes into rdb until ctx is done. It continues each
// symbol's price and seq from what Redis holds.
func runSimulator(ctx context.Context, rdb redisstream.Client, c *simConfig, log *slog.Logger) error {
	uni := simulator.Universe(*c.universe)
	resume, err := redisstream.LoadLatest(ctx, rdb, *c.shards)
	if err != nil {
		return err
	}
	pub, err := redisstream.NewPublisher(ctx, rdb, redisstream.PublisherConfig{
		Shards: *c.shards, MaxLen: int64(*c.maxLen), Universe: uni, Logger: log,
	})
	if err != nil {
		return err
	}
	defer pub.Close()
	sim, err := simulator.New(simulator.Config{
		GeneratorConfig: simulator.GeneratorConfig{Symbols: *c.universe, Rate: *c.rate, Seed: uint64(*c.seed), Resume: resume},
		Window:          *c.window,
		Logger:          log,
		OwnThread:       c.ownThread,
	}, pub)
	if err != nil {
		return usageError{err}
	}
	log.Info("simulator publishing", "settings", sim.String(), "shards", *c.shards, "resumed_symbols", len(resume))
	return sim.Run(ctx)
}

func runSimulate(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("simulate", "simulate --redis URL [flags]", stderr)
	var rf redisFlags
	rf.register(f, "redis://127.0.0.1:6379")
	var sc simConfig
	sc.register(f)
	procs := f.integer("procs", 1, "threads running Go code (GOMAXPROCS); 0 keeps Go's default. The simulator is one goroutine: with one, a batch wakes one thread, not two, and (Linux, --publish-every up to 5ms) it sleeps between batches on that thread instead of a runtime timer: about half the CPU per wake-up")
	var lf logFlags
	lf.register(f)
	if err := f.parse(args); err != nil {
		return err
	}
	if err := rf.check(f); err != nil {
		return err
	}
	if err := sc.validate(); err != nil {
		return err
	}
	if *procs < 0 {
		return usageError{fmt.Errorf("--procs %d must not be negative", *procs)}
	}
	if *procs > 0 {
		runtime.GOMAXPROCS(*procs)
	}
	sc.ownThread = runtime.GOMAXPROCS(0) == 1
	log := lf.logger(stderr)
	rdb, err := rf.connect(ctx, log)
	if err != nil {
		return err
	}
	defer rdb.Close()
	return runSimulator(ctx, rdb, &sc, log)
}
