package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	httppprof "net/http/pprof"
	"os"
	"runtime/pprof"
	"strings"
	"time"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/fanout/transport"
	"github.com/tickstream/tickstream/feed/redisstream"
	"github.com/tickstream/tickstream/node"
)

// nodeConfig are a fan-out node's flags, shared by run and serve.
type nodeConfig struct {
	addr              *string
	node              *string
	maxSymbols        *int
	maxSubscribers    *int
	minInterval       *time.Duration
	maxInterval       *time.Duration
	defaultInterval   *time.Duration
	heartbeat         *time.Duration
	slowDropAfter     *time.Duration
	drain             *time.Duration
	ping              *time.Duration
	pollTimeout       *time.Duration
	origins           *string
	cpuprofile        *string
	debugAddr         *string
	coalesce          *time.Duration
	coalesceMax       *time.Duration
	readIdle          *time.Duration
	perAddress        *int
	readTimeout       *time.Duration
	messageRate       *float64
	authSecret        *string
	authAudience      *string
	authIssuer        *string
	metricsAddr       *string
	trustedProxies    *string
	maxConns          *int
	maxConnsPerAddr   *int
	maxPending        *int
	pendingBudget     *int
	sendBuffer        *int
	rawQueue          *int
	maxReplays        *int
	maxReplaysPerAddr *int
	replayWait        *time.Duration
	seedMaxBytes      *int
	rebalance         rebalanceFlags
}

func (c *nodeConfig) register(f *flags, defaultAddr string) {
	c.addr = f.address("addr", defaultAddr, false, "address to listen on (host:port; port 0 picks a free one)")
	c.node = f.str("node", "", "node name shown to clients and announced in Redis: 1-200 letters, digits, . _ - : @ [ ] (default: hostname:port)")
	c.maxSymbols = f.integer("max-symbols", 1000, "most symbols in one subscription")
	c.maxSubscribers = f.integer("max-subscribers", 19000, "most streaming subscribers on this node (a process holds ~19,900 sockets here)")
	c.minInterval = f.interval("min-interval", 0, "smallest conflation interval granted (0: every change)")
	c.maxInterval = f.interval("max-interval", 10*time.Second, "largest conflation interval granted (below the heartbeat)")
	c.defaultInterval = f.interval("default-interval", 250*time.Millisecond, "interval granted when a client asks for none")
	c.heartbeat = f.duration("heartbeat", 15*time.Second, "keep-alive period of idle streams")
	c.slowDropAfter = f.duration("slow-drop-after", 30*time.Second, "drop a subscriber whose socket stays blocked this long")
	c.ping = f.duration("ws-ping", 30*time.Second, "WebSocket ping period; a peer silent for this plus 10s is dropped")
	c.pollTimeout = f.duration("poll-timeout", 25*time.Second, "how long a long poll waits before answering 204")
	c.origins = f.str("allowed-origins", "", "comma-separated browser origins allowed to open a WebSocket, besides the node's own and localhost (* for any)")
	c.coalesce = f.duration("read-coalesce", 5*time.Millisecond, "least time between two reads of Redis that return ticks, kept with raw or interval-0 subscribers: fewer wake-ups for at most this much latency (negative: no pause)")
	c.coalesceMax = f.duration("read-coalesce-max", 100*time.Millisecond, "most time between two reads of Redis while anyone consumes: the pace is a tenth of the shortest interval granted to a subscriber, between --read-coalesce and this")
	c.readIdle = f.duration("read-idle", time.Second, "time between two reads of Redis while nobody subscribes, polls or reads a chart; the first who does ends the pause (at least --read-coalesce-max)")
	c.perAddress = f.integer("max-per-address", 2000, "most open streams (SSE, WebSocket, long polls) per client address; behind a proxy every client shares its address")
	c.readTimeout = f.duration("read-timeout", 10*time.Second, "longest time to read one request, headers included (slow clients are cut off)")
	c.messageRate = f.float("ws-message-rate", 20, "WebSocket messages a client may send per second (burst twice that); more closes with 1008")
	c.authSecret = f.str("auth-secret", "", "HMAC secret: subscribing then needs a token (tickstream token); set it from the environment, not the command line")
	c.authAudience = f.str("auth-audience", "", "with --auth-secret: a token's aud claim must include this audience")
	c.authIssuer = f.str("auth-issuer", "", "with --auth-secret: a token's iss claim must name this issuer")
	c.metricsAddr = f.str("metrics-addr", "", "serve /metrics on this address only, apart from clients (e.g. 127.0.0.1:9090); unset: /metrics is on --addr, behind a token with --auth-secret")
	c.trustedProxies = f.str("trusted-proxies", "", "comma-separated proxies (IPs or CIDRs) whose X-Forwarded-For names the client, for --max-per-address")
	c.maxConns = f.integer("max-conns", 0, "most open client connections; past it a newcomer resets the oldest connection that has sent nothing yet, or is reset itself (0: the open-file limit less 256)")
	c.maxConnsPerAddr = f.integer("max-conns-per-address", 0, "most open connections of one client address, idle ones included; trusted proxies exempt (0: --max-per-address + 256)")
	c.maxPending = f.integer("max-pending", 128<<10, "bytes a connection may leave unwritten (socket full) before it is dropped as a slow consumer")
	c.pendingBudget = f.integer("pending-budget", 128<<20, "bytes all connections of the node may leave unwritten together; past it the writer's subscriber is dropped")
	c.sendBuffer = f.integer("send-buffer", 128<<10, "SO_SNDBUF of a streaming socket (the kernel doubles it); a non-reader is seen as slow after this much (-1: kernel autotuning)")
	c.rawQueue = f.integer("raw-queue", 4096, "ticks a raw subscriber may owe before it is closed (it resumes from its cursor)")
	c.maxReplays = f.integer("max-replays", 16, "pages of raw resumes' replays read from Redis at once (a page: at most 500 entries); resumes wait in line")
	c.maxReplaysPerAddr = f.integer("max-replays-per-address", 4, "pages of replays read at once for one client address (behind --trusted-proxies, the forwarded client)")
	c.replayWait = f.duration("replay-wait", 15*time.Second, "how long a raw resume waits in line for a replay slot before it is sent away to resume later (goaway)")
	c.seedMaxBytes = f.integer("seed-max-bytes", redisstream.DefaultSeedMaxBytes, "bytes of stream entries a node reads back to seed its charts at start and at every resync; past it, the shards left start their bars from the live feed")
	c.cpuprofile = f.str("cpuprofile", "", "write a CPU profile of the node to this file until it stops (go tool pprof)")
	c.debugAddr = f.address("debug-addr", "", true, "serve Go's profiling endpoints (/debug/pprof/) on this address, apart from clients (e.g. 127.0.0.1:6060)")
	c.drain = f.duration("drain", 3*time.Second, "on SIGTERM, spread subscribers' reconnects over this long")
	c.rebalance.register(f)
}

// config turns the flags into a node configuration.
func (c *nodeConfig) config(log *slog.Logger) node.Config {
	return node.Config{
		Addr: *c.addr, Name: *c.node, MetricsAddr: *c.metricsAddr, Version: releaseVersion(),
		Hub: fanout.Config{
			MaxSubscribers: *c.maxSubscribers,
			MinInterval:    *c.minInterval,
			MaxInterval:    *c.maxInterval,
			Heartbeat:      *c.heartbeat,
			SlowDropAfter:  *c.slowDropAfter,
			RawQueue:       *c.rawQueue,
		},
		Transport: transport.Config{
			MaxSymbols: *c.maxSymbols, DefaultInterval: *c.defaultInterval,
			PingInterval: *c.ping, PollTimeout: *c.pollTimeout, AllowedOrigins: splitList(*c.origins),
			MaxPerAddress: *c.perAddress, ReadTimeout: *c.readTimeout, MessageRate: *c.messageRate,
			AuthSecret: []byte(*c.authSecret), AuthAudience: *c.authAudience, AuthIssuer: *c.authIssuer,
			TrustedProxies: splitList(*c.trustedProxies),
			MaxConns:       *c.maxConns, MaxConnsPerAddress: *c.maxConnsPerAddr, MaxPending: *c.maxPending,
			PendingBudget: int64(*c.pendingBudget), SendBuffer: *c.sendBuffer,
			MaxReplays: *c.maxReplays, MaxReplaysPerAddress: *c.maxReplaysPerAddr, ReplayWait: *c.replayWait,
		},
		Reader: redisstream.ReaderConfig{Coalesce: *c.coalesce, MaxCoalesce: *c.coalesceMax, Idle: *c.readIdle},
		Drain:  *c.drain, Logger: log, Cluster: c.rebalance.config(), SeedMaxBytes: int64(*c.seedMaxBytes),
	}
}

// validate refuses the values no node can start with; the commands call it
// before they start anything (the embedded store, the simulator, Redis).
func (c *nodeConfig) validate() error {
	if *c.coalesceMax <= 0 {
		return usageError{fmt.Errorf("--read-coalesce-max: %v is not positive", *c.coalesceMax)}
	}
	if *c.readIdle <= 0 {
		return usageError{fmt.Errorf("--read-idle: %v is not positive", *c.readIdle)}
	}
	return c.rebalance.check()
}

// serveNode runs a node on rdb until ctx is done, then shuts it down in
// order. started is called once it listens.
func serveNode(ctx context.Context, rdb redisstream.Client, c *nodeConfig, log *slog.Logger, started func(addr string)) error {
	cfg := c.config(log)
	if err := c.validate(); err != nil {
		return err
	}
	stop, err := startCPUProfile(*c.cpuprofile)
	if err != nil {
		return err
	}
	defer stop()
	stopDebug, err := startDebug(*c.debugAddr, log)
	if err != nil {
		return err
	}
	defer stopDebug()
	n, err := node.Start(ctx, rdb, cfg)
	if err != nil {
		if errors.Is(err, context.Canceled) {
			return nil
		}
		return err
	}
	started(n.Addr)
	var serveErr error
	select {
	case <-ctx.Done():
	case serveErr = <-n.Done():
	}
	sctx, cancel := context.WithTimeout(context.Background(), cfg.Drain+5*time.Second)
	defer cancel()
	if err := n.Shutdown(sctx); err != nil && serveErr == nil {
		serveErr = err
	}
	return serveErr
}

func printTry(w io.Writer, addr string) {
	fmt.Fprintf(w, "\ntickstream is live at http://%s/\n\n  dashboard: open http://%s/ in a browser\n  stream:    curl -N 'http://%s/stream?symbols=AAPL,EURUSD,BTC-USD&interval=500ms'\n  symbols:   curl http://%s/api/symbols\n\nCtrl-C stops it.\n\n", addr, addr, addr, addr)
}

// splitList splits a comma-separated flag value, dropping empty items.
func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// startCPUProfile writes a CPU profile to path (none if empty) until stop
// is called.
func startCPUProfile(path string) (stop func(), err error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, usageError{fmt.Errorf("--cpuprofile: %w", err)}
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("--cpuprofile: %w", err)
	}
	return func() { pprof.StopCPUProfile(); _ = f.Close() }, nil
}

// startDebug serves net/http/pprof's endpoints on addr (nothing if empty)
// until stop is called. It is a separate listener, so profiling never
// passes through the client-facing limits and is never exposed with them.
func startDebug(addr string, log *slog.Logger) (stop func(), err error) {
	if addr == "" {
		return func() {}, nil
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, usageError{fmt.Errorf("--debug-addr: %w", err)}
	}
	mux := http.NewServeMux()
	mux.HandleFunc("/debug/pprof/", httppprof.Index)
	mux.HandleFunc("/debug/pprof/cmdline", httppprof.Cmdline)
	mux.HandleFunc("/debug/pprof/profile", httppprof.Profile)
	mux.HandleFunc("/debug/pprof/symbol", httppprof.Symbol)
	mux.HandleFunc("/debug/pprof/trace", httppprof.Trace)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			log.Warn("debug server stopped", "err", err)
		}
	}()
	log.Info("profiling endpoints", "addr", ln.Addr().String())
	return func() { _ = srv.Close(); <-done }, nil
}
