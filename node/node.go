// Package node assembles a fan-out node: a hub fed by a Redis Streams
// reader, served over HTTP by the transports. The tickstream binary, the
// tests and the benchmarks all build nodes with it.
package node

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/tickstream/tickstream/cluster"
	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/feed"
	"github.com/tickstream/tickstream/feed/redisstream"
)

// Config configures a node. Zero values take the defaults of fanout.Config
// and transport.Config.
type Config struct {
	// Addr is the listen address. Default ":8080".
	Addr string
	// MetricsAddr, when set, is the address of a listener of its own for
	// GET /metrics, for the operator's scraper; the client port then
	// serves no /metrics (transport.Config.MetricsApart). Empty: /metrics
	// is on the client port, behind a token when auth is on.
	MetricsAddr string
	// Name is shown to clients. Default hostname:port.
	Name string
	// Hub tunes the hub; its Symbols are filled from Redis.
	Hub fanout.Config
	// Transport tunes the HTTP side; its Hub, Universe, History, Node,
	// Registry, Ready and Logger are filled by Start.
	Transport transport.Config
	// Drain is how long a shutdown spreads the subscribers' reconnects.
	// Default 3s.
	Drain time.Duration
	// Reader tunes the Redis reader; its Shards are read from Redis.
	Reader redisstream.ReaderConfig
	// Logger is the node's logger. Default slog.Default().
	Logger *slog.Logger
	// Cluster tunes the announcements in Redis and the rebalancing (on
	// unless Cluster.Disabled).
	Cluster cluster.Config
	// Version is the release version tickstream_build_info reports.
	// Default: the main module's version from the build information
	// ("(devel)" in a build from a checkout).
	Version string
	// SeedMaxBytes bounds the bytes of stream entries the node reads back
	// to seed its charts, at start and at every resync (a new epoch): past
	// it, the shards not yet read fully start their bars from the live
	// feed, and tickstream_seed_capped_total counts it. Default
	// redisstream.DefaultSeedMaxBytes (64 MiB).
	SeedMaxBytes int64
}

// Node is a running fan-out node.
type Node struct {
	Hub    *fanout.Hub
	Server *transport.Server
	Reader *redisstream.Reader
	// Balancer announces the node in Redis and sheds its excess
	// subscribers.
	Balancer *cluster.Balancer
	// Addr is the address the node listens on.
	Addr string
	// MetricsAddr is the address of the metrics listener (Config.MetricsAddr,
	// a port 0 resolved), or "" when /metrics is on the client port.
	MetricsAddr string
	// Name is the node's name.
	Name string

	cfg        Config
	ln         net.Listener
	metrics    *http.Server // the metrics listener's server, or nil
	bars       *barSink
	draining   atomic.Bool
	stopReader context.CancelFunc
	stopBal    context.CancelFunc
	wg         sync.WaitGroup
	serveErr   chan error
	stopOnce   sync.Once
	stopErr    error
}

// Start builds a node on rdb: it waits for a simulator to have stored the
// universe, builds every symbol's latest value from Redis, and only then
// listens. Shutdown stops it.
func Start(ctx context.Context, rdb redisstream.Client, cfg Config) (*Node, error) {
	if cfg.Addr == "" {
		cfg.Addr = ":8080"
	}
	if cfg.Drain <= 0 {
		cfg.Drain = 3 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	log := cfg.Logger
	uni, shards, err := WaitUniverse(ctx, rdb, log)
	if err != nil {
		return nil, err
	}
	if masters, err := redisstream.ShardMasters(ctx, rdb, shards); err != nil {
		log.Warn("cannot map shards to cluster masters", "err", err)
	} else {
		for i, m := range masters {
			log.Info("shard on cluster master", "shard", redisstream.StreamKey(i), "master", m)
		}
	}
	hcfg := cfg.Hub
	hcfg.Symbols = uni.Names()
	hub, err := fanout.New(hcfg)
	if err != nil {
		return nil, err
	}
	rcfg := cfg.Reader
	rcfg.Shards, rcfg.Logger, rcfg.Universe = shards, log, uni
	if rcfg.Need == nil {
		rcfg.Need = hub.Tightest // the reads are paced by what the subscribers need
		rcfg.NeedChanged = hub.NeedChanged()
	}
	if cfg.SeedMaxBytes <= 0 {
		cfg.SeedMaxBytes = redisstream.DefaultSeedMaxBytes
	}
	bsink, err := newBarSink(hub, rdb, uni, cfg.SeedMaxBytes, log) // the reader feeds the hub and the charts' bars
	if err != nil {
		_ = hub.Close()
		return nil, err
	}
	reader, err := redisstream.NewReader(rdb, bsink, rcfg)
	if err != nil {
		_ = hub.Close()
		return nil, err
	}
	if err := reader.Sync(ctx); err != nil {
		_ = hub.Close()
		return nil, fmt.Errorf("build state from redis: %w", err)
	}
	ln, err := net.Listen("tcp", cfg.Addr)
	if err != nil {
		_ = hub.Close()
		bsink.Close()
		return nil, fmt.Errorf("listen on %s: %w", cfg.Addr, err)
	}
	n := &Node{Hub: hub, Reader: reader, Addr: ln.Addr().String(), Name: cfg.Name, cfg: cfg, ln: ln, bars: bsink, serveErr: make(chan error, 1)}
	if n.Name == "" {
		host, _ := os.Hostname()
		n.Name = fmt.Sprintf("%s:%d", host, ln.Addr().(*net.TCPAddr).Port)
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	reg.MustRegister(buildInfo(cfg.Version))
	registerReaderMetrics(reg, reader)
	registerBarMetrics(reg, bsink)
	reg.MustRegister(&shardCollector{rdb: rdb, shards: shards, desc: prometheus.NewDesc("tickstream_shard_master",
		"1 for the Redis Cluster master that holds each shard stream (absent for a single Redis).", []string{"shard", "master"}, nil)})
	tcfg := cfg.Transport
	replayer := redisstream.NewReplayer(rdb, shards)
	replayer.Universe = uni
	tcfg.Hub, tcfg.Universe, tcfg.History, tcfg.Node = hub, uni, replayer, n.Name
	tcfg.Registry, tcfg.Logger, tcfg.Bars = reg, log, bsink.bars
	tcfg.Ready = func() bool { return !n.draining.Load() && reader.Ready() }
	reg.MustRegister(prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tickstream_ready",
		Help: "1 while the node answers /readyz with 200: caught up with Redis and not draining."},
		func() float64 { return b2f(tcfg.Ready()) }))
	tcfg.MetricsApart = cfg.MetricsAddr != ""
	ccfg := cfg.Cluster
	if ccfg.Interval <= 0 {
		ccfg.Interval = 2 * time.Second
	}
	n.Balancer, err = cluster.NewBalancer(cluster.NewRegistry(rdb, ccfg.TTL), n.Name, n.URL(), n.counts, hub.NewShedder(), ccfg, log)
	if err == nil {
		tcfg.Nodes = n.Balancer.ViewJSON
		reg.MustRegister(n.Balancer.Collector())
		n.Server, err = transport.New(tcfg)
	}
	var mln net.Listener
	if err == nil && cfg.MetricsAddr != "" {
		if mln, err = net.Listen("tcp", cfg.MetricsAddr); err != nil {
			err = fmt.Errorf("metrics: listen on %s: %w", cfg.MetricsAddr, err)
		}
	}
	if err != nil {
		_ = ln.Close()
		_ = hub.Close()
		bsink.Close()
		return nil, err
	}
	rctx, stop := context.WithCancel(context.Background())
	if mln != nil {
		n.MetricsAddr = mln.Addr().String()
		mux := http.NewServeMux()
		mux.Handle("GET /metrics", n.Server.MetricsHandler())
		n.metrics = &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
		n.wg.Add(1)
		go func() {
			defer n.wg.Done()
			if err := n.metrics.Serve(mln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Warn("metrics listener stopped", "err", err)
			}
		}()
	}
	n.stopReader = stop
	n.wg.Add(2)
	go func() { defer n.wg.Done(); _ = reader.Run(rctx) }()
	go func() { defer n.wg.Done(); n.serveErr <- n.Server.Serve(ln) }()
	bctx, stopBal := context.WithCancel(context.Background())
	n.stopBal = stopBal
	n.wg.Add(1)
	go func() { defer n.wg.Done(); n.Balancer.Run(bctx) }()
	log.Info("fan-out node serving", "node", n.Name, "addr", n.Addr, "metrics_addr", n.MetricsAddr, "symbols", uni.Len(), "shards", shards)
	return n, nil
}

// URL returns the node's base URL, http://addr.
func (n *Node) URL() string {
	host, port, _ := net.SplitHostPort(n.Addr)
	if host == "" || host == "::" || host == "0.0.0.0" {
		host = "127.0.0.1"
	}
	return "http://" + net.JoinHostPort(host, port)
}

// Done returns a channel that receives the server's error if it stops by
// itself.
func (n *Node) Done() <-chan error { return n.serveErr }

// Shutdown drains and stops the node, in an order that turns no client's
// reconnect into a fatal answer (a standard EventSource gives up for good
// on any non-200):
//
//  1. /readyz fails at once, so a balancer that polls it stops sending;
//  2. the listener closes: a reconnect reaches another node through the
//     balancer, or gets a refused connection, which every EventSource and
//     the proxy's next-upstream retry; idle keep-alive connections close,
//     busy ones after their current request, and a stream asked for on one
//     of them meanwhile gets a goaway stream (WebSocket: refused, or 1012);
//  3. the subscribers get goaway (SSE, with retry:) or close code 1012
//     (WebSocket) at moments spread over the drain period, so that they
//     do not all land on the other nodes at once;
//  4. the HTTP server, the hub and the Redis reader stop.
//
// Safe to call twice; ctx bounds the whole sequence.
func (n *Node) Shutdown(ctx context.Context) error {
	n.stopOnce.Do(func() {
		n.draining.Store(true)
		log := n.cfg.Logger
		log.Info("draining", "node", n.Name, "subscribers", n.Hub.Subscribers(), "over", n.cfg.Drain)
		// The others' mean no longer counts this node.
		n.Balancer.Leave(ctx)
		_ = n.ln.Close() // stop accepting: the serve loop ends, open connections stay
		waitPlain := n.Server.StopAccepting(ctx)
		if err := n.Hub.Drain(ctx, n.cfg.Drain); err != nil {
			n.stopErr = err
		}
		if err := waitPlain(); err != nil && n.stopErr == nil {
			n.stopErr = err
		}
		if err := n.Server.Shutdown(ctx); err != nil && n.stopErr == nil {
			n.stopErr = err
		}
		if n.metrics != nil {
			_ = n.metrics.Shutdown(ctx)
		}
		_ = n.Hub.Close()
		n.stopReader()
		n.stopBal()
		n.wg.Wait()
		n.bars.Close()
		log.Info("node stopped", "node", n.Name)
	})
	return n.stopErr
}

// counts reads the node's load for its announcements.
func (n *Node) counts() cluster.Counts {
	st := n.Hub.Stats()
	c := cluster.Counts{Subscribers: n.Hub.Subscribers(), Raw: int(st.Subscribers[fanout.Raw].Load()),
		Writes: st.Batches.Load(), Updates: st.Delivered.Load()}
	if n.Server != nil {
		c.SSE, c.WS = n.Server.Streams()
	}
	return c
}

// WaitUniverse waits until a simulator has stored the universe in Redis.
func WaitUniverse(ctx context.Context, rdb redisstream.Client, log *slog.Logger) (*feed.Universe, int, error) {
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
		case <-time.After(100 * time.Millisecond):
		}
	}
}

func registerReaderMetrics(reg *prometheus.Registry, r *redisstream.Reader) {
	st := r.Stats()
	f := func(name, help string, v *atomic.Uint64) prometheus.Collector {
		return prometheus.NewCounterFunc(prometheus.CounterOpts{Name: name, Help: help}, func() float64 { return float64(v.Load()) })
	}
	reg.MustRegister(
		f("tickstream_redis_entries_read_total", "Stream entries read from Redis.", &st.Entries),
		f("tickstream_redis_reads_total", "Reads from Redis that returned stream entries.", &st.Reads),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tickstream_redis_read_pace_seconds",
			Help: "Time the node leaves between two reads of the feed: a tenth of the shortest interval a subscriber was granted, within --read-coalesce and --read-coalesce-max; --read-idle while nobody consumes (a fast feed is read sooner: a read returns at most ~3 MB)."},
			func() float64 { return max(r.Pace(), 0).Seconds() }),
		f("tickstream_redis_behind_total", "Times Redis was found behind the node (older snapshot restored): new epoch, resync.", &st.Behind),
		f("tickstream_redis_read_errors_total", "Failed reads from Redis (each retried).", &st.Errors),
		f("tickstream_redis_resyncs_total", "State rebuilt from Redis.", &st.Resyncs),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tickstream_redis_up",
			Help: "1 while Redis answers the node's reader; 0 from a failed read until one succeeds again."},
			func() float64 { return b2f(r.Reachable()) }),
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tickstream_feed_lag_seconds",
			Help: "Time now since the feed timestamp of the newest tick the node read (0 before any): it grows while the feed stalls or Redis is unreachable, whatever the scrape interval."},
			func() float64 { return st.Lag(time.Now()).Seconds() }),
		&readLagCollector{st: st, desc: prometheus.NewDesc("tickstream_feed_read_lag_seconds",
			"Per read from Redis: the time from the feed timestamp of the oldest tick it returned to its hand-over to the hub.", nil, nil)},
		prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "tickstream_feed_max_lag_seconds",
			Help: "Largest per-read feed lag since the previous scrape of any scraper (reset by every scrape: the load generator's measure; dashboards and alerts use tickstream_feed_lag_seconds and tickstream_feed_read_lag_seconds)."},
			func() float64 { return float64(st.MaxLagUs.Swap(0)) / 1e6 }),
	)
	for _, reason := range redisstream.Reasons {
		reg.MustRegister(prometheus.NewCounterFunc(prometheus.CounterOpts{Name: "tickstream_redis_malformed_entries_total",
			Help: "Stream entries and latest values refused (skipped), by reason.", ConstLabels: prometheus.Labels{"reason": reason}},
			func() float64 { return float64(st.MalformedBy(reason)) }))
	}
}

// shardCollector exposes which cluster master holds each shard, as the
// cluster client sees it at scrape time (it follows failovers).
type shardCollector struct {
	rdb    redisstream.Client
	shards int
	desc   *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *shardCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *shardCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	masters, err := redisstream.ShardMasters(ctx, c.rdb, c.shards)
	if err != nil {
		return
	}
	for i, m := range masters {
		ch <- prometheus.MustNewConstMetric(c.desc, prometheus.GaugeValue, 1, redisstream.StreamKey(i), m)
	}
}

// readLagCollector exposes the reader's per-read lag histogram.
type readLagCollector struct {
	st   *redisstream.ReaderStats
	desc *prometheus.Desc
}

// Describe implements prometheus.Collector.
func (c *readLagCollector) Describe(ch chan<- *prometheus.Desc) { ch <- c.desc }

// Collect implements prometheus.Collector.
func (c *readLagCollector) Collect(ch chan<- prometheus.Metric) {
	b, n, sum := c.st.ReadLag()
	ch <- prometheus.MustNewConstHistogram(c.desc, n, sum, b)
}

// b2f is 1 for true, 0 for false.
func b2f(b bool) float64 {
	if b {
		return 1
	}
	return 0
}
