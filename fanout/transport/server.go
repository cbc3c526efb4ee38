package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/tickstream/tickstream/dashboard"
	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
)

// History reads missed ticks back from the source, for raw subscribers
// that resume. It must be safe for concurrent use.
type History interface {
	// ReplayPage returns a page of the updates of syms after cursor from,
	// up to and including cursor to, at most max source entries, with
	// resume points (see feed.ReplayPage); seqs is the previous page's
	// Seqs, nil on the first. Any error makes the node send a resync and a
	// fresh snapshot instead.
	ReplayPage(ctx context.Context, from, to string, syms []string, seqs map[string]uint64, max int) (feed.ReplayPage, error)
	// Behind reports whether position have is before position want on a
	// shard of syms (a node at have has not read what a client at want has
	// seen), or an error for cursors it cannot compare.
	Behind(have, want string, syms []string) (bool, error)
	// Beyond reports whether want is past the newest entry the source
	// holds on a shard of syms: a position no node will reach.
	Beyond(ctx context.Context, want string, syms []string) (bool, error)
}

// Config configures a Server. Zero values take the documented defaults.
type Config struct {
	// Hub serves the subscriptions. Required.
	Hub *fanout.Hub
	// Universe is the set of symbols clients may ask for. Required.
	Universe *feed.Universe
	// History replays ticks for raw subscribers that resume. Without it they
	// always get a resync and a fresh snapshot.
	History History
	// ResumeWait bounds how long a raw subscriber resuming at a cursor
	// this node has not read up to yet waits for its reader before it gets
	// a resync instead. Default 3s.
	ResumeWait time.Duration
	// MaxReplays and MaxReplaysPerAddress bound the pages of replays (raw
	// resumes read back from the source) being read at once on this node
	// and for one client address (behind TrustedProxies, the forwarded
	// client). A page is at most ReplayPage entries: the bound is on the
	// source's work, not on the resumes, which wait in line (ReplayWait).
	// Defaults 16 and 4.
	MaxReplays, MaxReplaysPerAddress int
	// ReplayWait bounds how long a resume waits in line for a replay slot;
	// past it the client is sent away (SSE goaway with retry:, WebSocket
	// close 1013) to resume later from the same cursor. Default 15s.
	ReplayWait time.Duration
	// ReplayPage is the most source entries one page of a replay reads.
	// Default 500.
	ReplayPage int
	// Node names this node in hello events and the X-Tickstream-Node header.
	Node string
	// MaxSymbols bounds the symbols of one subscription. Default 1000.
	MaxSymbols int
	// DefaultInterval is granted when a client asks for none. Default 250ms.
	DefaultInterval time.Duration
	// Retry is the reconnection delay suggested to SSE clients. Default 1s.
	Retry time.Duration
	// PingInterval is how often a WebSocket peer is pinged. Default 30s.
	PingInterval time.Duration
	// PongTimeout is how long after a ping a silent WebSocket peer is
	// dropped. Default 10s.
	PongTimeout time.Duration
	// MaxMessage bounds a WebSocket message from a client. Default 64 KiB.
	MaxMessage int64
	// AllowedOrigins lists the browser origins (scheme://host[:port]) that
	// may open a WebSocket, besides the node's own origin and localhost. "*"
	// allows any.
	AllowedOrigins []string
	// PollTimeout is how long a long poll waits before answering 204.
	// Default 25s.
	PollTimeout time.Duration
	// MaxPerAddress bounds the streams (SSE, WebSocket, long polls) one
	// client address may hold open. Default 2000; a load balancer in front
	// should pass the client address or raise it.
	MaxPerAddress int
	// MessageRate bounds the messages a WebSocket client may send per
	// second (burst twice that); past it the socket closes with 1008.
	// Default 20.
	MessageRate float64
	// AuthSecret, when set, makes every route but PublicRoutes (and the
	// dashboard's static files) need a signed token (HMAC JWT, see
	// MintToken) in the Authorization header or an access_token
	// parameter, with an expiry and the symbols it allows: 401 without a
	// valid one, 403 naming a symbol it does not allow. Streams close when
	// their token expires.
	AuthSecret []byte
	// AuthAudience, when set, is the audience a token's aud claim must
	// include; AuthIssuer, when set, the issuer its iss claim must name.
	// Tokens without the claim are refused then.
	AuthAudience, AuthIssuer string
	// TrustedProxies lists the proxies (IPs or CIDRs) whose
	// X-Forwarded-For names the client, for the per-address limit. Empty:
	// the connection's address counts.
	TrustedProxies []string
	// ReadTimeout bounds reading one request, headers included: a client
	// that trickles its headers (slowloris) is cut off. Default 10s.
	ReadTimeout time.Duration
	// MaxConns caps the node's open connections. At the cap a new
	// connection takes the place of the oldest silent one (accepted, not a
	// byte sent yet), which is reset; with none silent the newcomer is
	// reset at once. Default: the process's open-file limit less 256 (kept
	// for Redis and the node's own files), or 100,000 where it is unknown.
	MaxConns int
	// MaxConnsPerAddress caps the open connections of one client address
	// (streams, polls and idle sockets alike; trusted proxies are exempt).
	// Default MaxPerAddress + 256.
	MaxConnsPerAddress int
	// MaxPending bounds the bytes one connection may leave unwritten (its
	// socket full); past it the subscriber is dropped as a slow consumer.
	// A stream's first write (head, snapshot, replay) may pass it once.
	// Default 128 KiB.
	MaxPending int
	// PendingBudget bounds the unwritten bytes of all connections of the
	// node together; a write that would pass it drops its subscriber as a
	// slow consumer. Default 128 MiB.
	PendingBudget int64
	// SendBuffer is the kernel send buffer (SO_SNDBUF) of a streaming
	// socket: a peer that stops reading is seen as slow after this much,
	// not after the megabytes the kernel's autotuning allows. Default
	// 128 KiB (the kernel doubles it); negative keeps autotuning.
	SendBuffer int
	// MaxEcho bounds the bytes of a WebSocket ping's id echoed in the
	// pong. Default 128.
	MaxEcho int
	// Bars answers /api/bars and /api/trades. Without it they answer 404.
	Bars Bars
	// Nodes returns the cluster's nodes and their load as JSON, for
	// GET /api/nodes (cluster.Balancer.ViewJSON). Nil: 404.
	Nodes func() ([]byte, error)
	// Ready reports whether the node is caught up with its source.
	// Default: always ready.
	Ready func() bool
	// MetricsApart keeps /metrics off the client port: whoever runs the
	// server serves MetricsHandler on a listener of its own. Otherwise
	// /metrics is served on the client port, behind a token when AuthSecret
	// is set.
	MetricsApart bool
	// MetricsEvery is the least time between two gathers of the metrics.
	// A scrape is answered by the first gather that starts after it
	// arrives, shared by every scrape waiting for it: its counts are never
	// older than the request, and a flood of scrapes costs one gather per
	// MetricsEvery. Default 1s; negative: a gather for every scrape.
	MetricsEvery time.Duration
	// Registry receives the node's metrics. Default: a new registry.
	Registry *prometheus.Registry
	// Logger is the server's logger. Default slog.Default().
	Logger *slog.Logger
}

// Server is a fan-out node's HTTP front.
type Server struct {
	cfg     Config
	app     *fiber.App
	metrics *metrics
	symbols []byte    // the /api/symbols body
	refs    *refTable // what snapshot ticks carry beyond live ones (snapref.go)
	budget  *byteBudget
	proxies []netip.Prefix // TrustedProxies, parsed
	ln      *guardListener // set by Serve
	expo    *exposition    // the metrics, gathered at most once per MetricsEvery

	mu      sync.Mutex
	conns   map[*sseSink]struct{} // open SSE sinks, closed on shutdown
	perAddr map[string]int        // open streams per client address
	drain   drainState            // drain.go
	replays replayGate            // resume.go
	wsp     wsPoller              // WebSocket reads, ws_poll_*.go
}

// New returns a server with its routes.
func New(cfg Config) (*Server, error) {
	if cfg.Hub == nil || cfg.Universe == nil {
		return nil, errors.New("transport: Hub and Universe are required")
	}
	if cfg.MaxSymbols <= 0 {
		cfg.MaxSymbols = 1000
	}
	if cfg.DefaultInterval <= 0 {
		cfg.DefaultInterval = 250 * time.Millisecond
	}
	if cfg.Retry <= 0 {
		cfg.Retry = time.Second
	}
	if cfg.PingInterval <= 0 {
		cfg.PingInterval = 30 * time.Second
	}
	if cfg.PongTimeout <= 0 {
		cfg.PongTimeout = 10 * time.Second
	}
	if cfg.MaxMessage <= 0 {
		cfg.MaxMessage = 64 << 10
	}
	if cfg.PollTimeout <= 0 {
		cfg.PollTimeout = 25 * time.Second
	}
	if cfg.ResumeWait <= 0 {
		cfg.ResumeWait = defaultResumeWait
	}
	if cfg.ReplayWait <= 0 {
		cfg.ReplayWait = defaultReplayWait
	}
	if cfg.MaxReplays <= 0 {
		cfg.MaxReplays = defaultMaxReplays
	}
	if cfg.MaxReplaysPerAddress <= 0 {
		cfg.MaxReplaysPerAddress = defaultMaxReplaysPerAddress
	}
	if cfg.ReplayPage <= 0 {
		cfg.ReplayPage = defaultReplayPage
	}
	if cfg.MaxPerAddress <= 0 {
		cfg.MaxPerAddress = 2000
	}
	if cfg.MessageRate <= 0 {
		cfg.MessageRate = 20
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 10 * time.Second
	}
	if cfg.MaxConns <= 0 {
		cfg.MaxConns = 100_000
		if n := fdLimit(); n > 0 {
			cfg.MaxConns = max(n-256, n/2)
		}
	}
	if cfg.MaxConnsPerAddress <= 0 {
		cfg.MaxConnsPerAddress = cfg.MaxPerAddress + 256
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 128 << 10
	}
	if cfg.PendingBudget <= 0 {
		cfg.PendingBudget = 128 << 20
	}
	if cfg.SendBuffer == 0 {
		cfg.SendBuffer = 128 << 10
	}
	if cfg.MaxEcho <= 0 {
		cfg.MaxEcho = 128
	}
	if cfg.Ready == nil {
		cfg.Ready = func() bool { return true }
	}
	if cfg.Registry == nil {
		cfg.Registry = prometheus.NewRegistry()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.MetricsEvery == 0 {
		cfg.MetricsEvery = time.Second
	}
	if cfg.Node == "" {
		cfg.Node = "node"
	}
	s := &Server{cfg: cfg, conns: make(map[*sseSink]struct{}), perAddr: make(map[string]int),
		budget: &byteBudget{limit: cfg.PendingBudget}, refs: newRefTable(cfg.Universe)}
	var err error
	if s.proxies, err = parsePrefixes(cfg.TrustedProxies); err != nil {
		return nil, err
	}
	s.symbols, err = json.Marshal(struct {
		Count   int           `json:"count"`
		Symbols []feed.Symbol `json:"symbols"`
	}{cfg.Universe.Len(), cfg.Universe.Symbols()})
	if err != nil {
		return nil, fmt.Errorf("encode universe: %w", err)
	}
	if s.metrics, err = newMetrics(cfg.Registry, cfg.Hub, s); err != nil {
		return nil, err
	}
	s.expo = &exposition{gatherer: cfg.Registry, every: cfg.MetricsEvery}
	s.app = fiber.New(fiber.Config{
		AppName:               "tickstream",
		DisableStartupMessage: true,
		ReadTimeout:           cfg.ReadTimeout,
		BodyLimit:             64 << 10, // every route is a GET
		ReadBufferSize:        8192,     // request line and headers; larger gets 431
		IdleTimeout:           120 * time.Second,
		ErrorHandler:          s.errorHandler,
	})
	// SSE connections are handed to the hub's writers; fasthttp must not
	// close them when the hijack handler returns.
	s.app.Server().KeepHijackedConns = true
	// A worker goroutine parked after serving a stream's request keeps its
	// stack: after a burst of connections (a reconnect storm, a flood) the
	// default 10 s keeps thousands of them. Park them briefly.
	s.app.Server().MaxIdleWorkerDuration = time.Second
	s.routes()
	if err := s.metrics.registerRequests(cfg.Registry, s.app); err != nil {
		return nil, err
	}
	return s, nil
}

func (s *Server) routes() {
	a := s.app
	a.Use(s.countRequests) // first: it sees every answer (httpmetrics.go)
	a.Use(func(c *fiber.Ctx) error {
		c.Set("X-Tickstream-Node", s.cfg.Node)
		return c.Next()
	})
	// Every route is registered with s.get, which protects it unless it is
	// one of publicRoutes (auth.go).
	s.get("/stream", s.handleSSE)
	s.get("/ws", s.wsUpgrade, websocket.New(s.handleWS, websocket.Config{
		ReadBufferSize: 1024, WriteBufferSize: 256, WriteBufferPool: &sync.Pool{},
	}))
	s.get("/api/symbols", s.handleSymbols)
	s.get("/api/snapshot", s.handleSnapshot)
	s.get("/api/poll", s.handlePoll)
	s.get("/api/bars", s.handleBars)
	s.get("/api/trades", s.handleTrades)
	s.get("/healthz", s.handleHealth)
	s.get("/readyz", s.handleReady)
	s.get("/api/nodes", s.handleNodes)
	if !s.cfg.MetricsApart {
		s.get("/metrics", s.handleMetrics)
	}
	a.Use(mustStatic(dashboard.FS()).handle)
	a.Use(func(c *fiber.Ctx) error {
		return c.Status(fiber.StatusNotFound).JSON(apiError{Error: "no route " + c.Method() + " " + c.Path()})
	})
}

// errorHandler answers Fiber's own errors (bad requests, limits) as JSON.
func (s *Server) errorHandler(c *fiber.Ctx, err error) error {
	code := fiber.StatusInternalServerError
	var fe *fiber.Error
	if errors.As(err, &fe) {
		code = fe.Code
	}
	return c.Status(code).JSON(apiError{Error: err.Error()})
}

// initWriter prepares a streaming connection's writer: the node's pending
// budget and bounds, TCP_USER_TIMEOUT (a peer that vanished without a FIN
// fails the socket after two heartbeats instead of many minutes of
// retransmits) and a small fixed send buffer.
func (s *Server) initWriter(w *connWriter, c net.Conn) {
	w.init(c, s.budget, s.cfg.MaxPending)
	w.sent = &s.metrics.bytesSent
	if w.raw != nil {
		tuneSocket(w.raw, 2*s.cfg.Hub.Config().Heartbeat, max(s.cfg.SendBuffer, 0))
	}
}

// acquire counts a stream of addr; it reports false (and counts nothing)
// past the per-address limit. The key is a copy: strings from Fiber alias
// fasthttp's buffers, which are reused once the handler returns.
func (s *Server) acquire(addr string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAddr[addr] >= s.cfg.MaxPerAddress {
		return false
	}
	s.perAddr[strings.Clone(addr)]++
	return true
}

// release uncounts a stream of addr.
func (s *Server) release(addr string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.perAddr[addr]--; s.perAddr[addr] <= 0 {
		delete(s.perAddr, addr)
	}
}

// Serve accepts connections on ln until Shutdown. Accept errors are
// retried, never fatal, and connections past MaxConns or
// MaxConnsPerAddress are shed (see guardListener).
func (s *Server) Serve(ln net.Listener) error {
	g := &guardListener{
		Listener: ln, maxConns: s.cfg.MaxConns, maxPerAddr: s.cfg.MaxConnsPerAddress,
		trusted: func(ip string) bool { return s.trusted(ip) },
		onError: func(reason string) { s.metrics.acceptErrors.WithLabelValues(reason).Inc() },
		onShed:  s.refuse,
		perAddr: make(map[string]int),
	}
	s.mu.Lock()
	s.ln = g
	s.mu.Unlock()
	return s.app.Listener(g)
}

// openConns returns the connections the node holds open.
func (s *Server) openConns() int64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.ln == nil {
		return 0
	}
	return s.ln.Open()
}

// Shutdown stops accepting connections and closes the server's plain HTTP
// connections, waiting for requests in flight until ctx is done. SSE
// subscribers belong to the hub: drain or close the hub first.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.app.ShutdownWithContext(ctx)
	s.wsp.stop()
	s.mu.Lock()
	sinks := make([]*sseSink, 0, len(s.conns))
	for k := range s.conns {
		sinks = append(sinks, k)
	}
	s.mu.Unlock()
	for _, k := range sinks {
		k.Close(fanout.ErrHubClosed)
	}
	return err
}

func (s *Server) handleSymbols(c *fiber.Ctx) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSONCharsetUTF8)
	c.Set(fiber.HeaderCacheControl, "public, max-age=60")
	return c.Send(s.symbols)
}

func (s *Server) handleHealth(c *fiber.Ctx) error {
	return c.JSON(fiber.Map{"status": "ok", "node": s.cfg.Node})
}

func (s *Server) handleReady(c *fiber.Ctx) error {
	if s.Draining() {
		return c.Status(fiber.StatusServiceUnavailable).JSON(apiError{Error: "node draining"})
	}
	if !s.cfg.Ready() {
		return c.Status(fiber.StatusServiceUnavailable).JSON(apiError{Error: "not caught up with redis"})
	}
	return c.JSON(fiber.Map{"ready": true, "node": s.cfg.Node, "subscribers": s.cfg.Hub.Subscribers()})
}
