package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/redis/go-redis/v9"

	"tickstream/fanout"
	"tickstream/fanout/transport"
	"tickstream/feed"
	"tickstream/feed/redisstream"
)

// nodeConfig are a fan-out node's flags, shared by run and serve.
type nodeConfig struct {
	addr            *string
	node            *string
	maxSymbols      *int
	maxSubscribers  *int
	minInterval     *time.Duration
	maxInterval     *time.Duration
	defaultInterval *time.Duration
	heartbeat       *time.Duration
	slowDropAfter   *time.Duration
	writeTimeout    *time.Duration
	drain           *time.Duration
}

func (c *nodeConfig) register(f *flags, defaultAddr string) {
	c.addr = f.str("addr", defaultAddr, "address to listen on (host:port; port 0 picks a free one)")
	c.node = f.str("node", "", "node name shown to clients (default: hostname:port)")
	c.maxSymbols = f.integer("max-symbols", 1000, "most symbols in one subscription")
	c.maxSubscribers = f.integer("max-subscribers", 19000, "most streaming subscribers on this node (a process holds ~19,900 sockets here)")
	c.minInterval = f.duration("min-interval", 0, "smallest conflation interval granted (0: every change)")
	c.maxInterval = f.duration("max-interval", 10*time.Second, "largest conflation interval granted (below the heartbeat)")
	c.defaultInterval = f.duration("default-interval", 250*time.Millisecond, "interval granted when a client asks for none")
	c.heartbeat = f.duration("heartbeat", 15*time.Second, "keep-alive period of idle streams")
	c.slowDropAfter = f.duration("slow-drop-after", 30*time.Second, "drop a subscriber whose socket stays blocked this long")
	c.writeTimeout = f.duration("write-timeout", 100*time.Millisecond, "one write to a subscriber; past it the subscriber counts as slow")
	c.drain = f.duration("drain", 3*time.Second, "on SIGTERM, spread subscribers' reconnects over this long")
}

// node is a running fan-out node.
type node struct {
	addr string
	done chan error
}

// startNode builds a node on rdb and starts serving. It returns once the
// node listens and has built its state from Redis; the node stops when ctx
// is done, and its error (nil after a clean shutdown) arrives on done.
func startNode(ctx context.Context, rdb redis.UniversalClient, c *nodeConfig, log *slog.Logger) (*node, error) {
	uni, shards, err := waitUniverse(ctx, rdb, log)
	if err != nil {
		return nil, err
	}
	hub, err := fanout.New(fanout.Config{
		Symbols:        uni.Names(),
		MaxSubscribers: *c.maxSubscribers,
		MinInterval:    *c.minInterval,
		MaxInterval:    *c.maxInterval,
		Heartbeat:      *c.heartbeat,
		SlowDropAfter:  *c.slowDropAfter,
	})
	if err != nil {
		return nil, usageError{err}
	}
	reader, err := redisstream.NewReader(rdb, hub, redisstream.ReaderConfig{Shards: shards, Logger: log})
	if err != nil {
		_ = hub.Close()
		return nil, err
	}
	if err := reader.Sync(ctx); err != nil {
		_ = hub.Close()
		return nil, fmt.Errorf("build state from redis: %w", err)
	}
	ln, err := net.Listen("tcp", *c.addr)
	if err != nil {
		_ = hub.Close()
		return nil, fmt.Errorf("listen on %s: %w", *c.addr, err)
	}
	name := *c.node
	if name == "" {
		host, _ := os.Hostname()
		name = fmt.Sprintf("%s:%d", host, ln.Addr().(*net.TCPAddr).Port)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	registerReaderMetrics(reg, reader)
	var draining bool
	var dmu sync.Mutex
	srv, err := transport.New(transport.Config{
		Hub: hub, Universe: uni, History: redisstream.NewReplayer(rdb, shards), Node: name,
		MaxSymbols: *c.maxSymbols, DefaultInterval: *c.defaultInterval, WriteTimeout: *c.writeTimeout,
		Registry: reg, Logger: log,
		Ready: func() bool { dmu.Lock(); defer dmu.Unlock(); return !draining && reader.Ready() },
	})
	if err != nil {
		_ = ln.Close()
		_ = hub.Close()
		return nil, usageError{err}
	}
	rctx, stopReader := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Add(2)
	go func() { defer wg.Done(); _ = reader.Run(rctx) }()
	serveErr := make(chan error, 1)
	go func() { defer wg.Done(); serveErr <- srv.Serve(ln) }()
	n := &node{addr: ln.Addr().String(), done: make(chan error, 1)}
	log.Info("fan-out node serving", "node", name, "addr", n.addr, "symbols", uni.Len(), "shards", shards)
	go func() {
		var err error
		select {
		case <-ctx.Done():
		case err = <-serveErr:
		}
		// Shut down in order: stop being ready and accepting, tell the
		// subscribers to reconnect elsewhere (spread out), stop the hub,
		// stop reading Redis.
		dmu.Lock()
		draining = true
		dmu.Unlock()
		sctx, cancel := context.WithTimeout(context.Background(), *c.drain+5*time.Second)
		defer cancel()
		log.Info("draining", "subscribers", hub.Subscribers(), "over", *c.drain)
		_ = hub.Drain(sctx, *c.drain)
		if e := srv.Shutdown(sctx); e != nil && err == nil {
			err = e
		}
		_ = hub.Close()
		stopReader()
		wg.Wait()
		log.Info("node stopped", "node", name)
		n.done <- err
	}()
	return n, nil
}

// waitUniverse waits until a simulator has stored the universe.
func waitUniverse(ctx context.Context, rdb redis.UniversalClient, log *slog.Logger) (*feed.Universe, int, error) {
	logged := false
	for {
		u, shards, err := redisstream.LoadUniverse(ctx, rdb)
		if err == nil {
			return u, shards, nil
		}
		if !errors.Is(err, redisstream.ErrNoUniverse) {
			return nil, 0, err
		}
		if !logged {
			log.Info("waiting for a simulator to store the universe in redis")
			logged = true
		}
		select {
		case <-ctx.Done():
			return nil, 0, ctx.Err()
		case <-time.After(250 * time.Millisecond):
		}
	}
}

func registerReaderMetrics(reg *prometheus.Registry, r *redisstream.Reader) {
	st := r.Stats()
	f := func(name, help string, v func() float64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, v)
	}
	reg.MustRegister(
		f("tickstream_redis_entries_read_total", "Stream entries read from Redis.", func() float64 { return float64(st.Entries.Load()) }),
		f("tickstream_redis_malformed_entries_total", "Stream entries skipped as malformed.", func() float64 { return float64(st.Malformed.Load()) }),
		f("tickstream_redis_read_errors_total", "Failed reads from Redis (each retried).", func() float64 { return float64(st.Errors.Load()) }),
		f("tickstream_redis_resyncs_total", "State rebuilt from Redis.", func() float64 { return float64(st.Resyncs.Load()) }),
	)
}

func printTry(w io.Writer, addr string) {
	fmt.Fprintf(w, "\ntickstream is live at http://%s/\n\n  dashboard: open http://%s/ in a browser\n  stream:    curl -N 'http://%s/stream?symbols=AAPL,EURUSD,BTC-USD&interval=500ms'\n  symbols:   curl http://%s/api/symbols\n\nCtrl-C stops it.\n\n", addr, addr, addr, addr)
}
