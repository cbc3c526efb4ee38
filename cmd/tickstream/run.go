package main

import (
	"context"
	"fmt"
	"io"
	"sync"

	"github.com/alicebob/miniredis/v2"
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
	if err := f.parse(args); err != nil {
		return err
	}
	if err := sc.validate(); err != nil {
		return err
	}
	log := newLogger(stderr)
	if *rf.url == "" && *rf.cluster == "" {
		mr := miniredis.NewMiniRedis()
		if err := mr.StartAddr("127.0.0.1:0"); err != nil {
			return fmt.Errorf("start embedded store: %w", err)
		}
		defer mr.Close()
		log.Info("embedded Redis-compatible store (miniredis) started", "addr", mr.Addr())
		*rf.url = "redis://" + mr.Addr()
	}
	rdb, err := rf.connect(ctx)
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
