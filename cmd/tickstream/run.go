package main

import (
	"context"
	"io"
	"sync"

	"github.com/tickstream/tickstream/feed/redisstream"
)

// runDemo is the one-command demo: an embedded Redis-compatible store (or a
// real Redis with --redis), the simulator and one node with the dashboard.
func runDemo(ctx context.Context, args []string, stdout, stderr io.Writer) error {
	f := newFlags("run", "[run] [--redis URL] [--addr 127.0.0.1:8080] [flags]", stderr)
	var rf redisFlags
	rf.register(f, "")
	var sc simConfig
	sc.register(f)
	var nc nodeConfig
	nc.register(f, "127.0.0.1:8080")
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
	if err := nc.validate(); err != nil {
		return err
	}
	log := lf.logger(stderr)
	if *rf.url == "" && *rf.cluster == "" {
		*rf.url = redisstream.MemURL
	}
	rdb, err := rf.connect(ctx, log)
	if err != nil {
		return err
	}
	defer rdb.Close()

	simCtx, stopSim := context.WithCancel(context.Background())
	defer stopSim()
	var wg sync.WaitGroup
	simErr := make(chan error, 1)
	wg.Add(1)
	go func() { defer wg.Done(); simErr <- runSimulator(simCtx, rdb, &sc, log) }()
	defer wg.Wait()

	nodeCtx, stopNode := context.WithCancel(ctx)
	defer stopNode()
	go func() {
		// A simulator that cannot start stops the demo.
		if err := <-simErr; err != nil {
			log.Error("simulator stopped", "err", err)
			stopNode()
		}
	}()
	err = serveNode(nodeCtx, rdb, &nc, log, func(addr string) { printTry(stdout, addr) })
	stopSim()
	return err
}
