package transport

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"
	"github.com/gofiber/fiber/v2/middleware/adaptor"
	"github.com/gofiber/fiber/v2/middleware/filesystem"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"tickstream/dashboard"
	"tickstream/fanout"
	"tickstream/feed"
)

// History reads missed ticks back from the source, for raw subscribers
// that resume. It must be safe for concurrent use.
type History interface {
	// Replay returns the updates of syms after cursor from up to and
	// including cursor to, or an error (any error makes the node send a
	// resync and a fresh snapshot instead).
	Replay(ctx context.Context, from, to string, syms []string) ([]*feed.Update, error)
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
	// AuthSecret, when set, makes every subscription need a signed token
	// (HMAC JWT, see MintToken) in the Authorization header or an
	// access_token parameter, with an expiry and the symbols it allows.
	// Streams close when their token expires.
	AuthSecret []byte
	// TrustedProxies lists the proxies (IPs or CIDRs) whose
	// X-Forwarded-For names the client, for the per-address limit. Empty:
	// the connection's address counts.
	TrustedProxies []string
	// ReadTimeout bounds reading one request, headers included: a client
	// that trickles its headers (slowloris) is cut off. Default 10s.
	ReadTimeout time.Duration
	// Ready reports whether the node is caught up with its source.
	// Default: always ready.
	Ready func() bool
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
	symbols []byte // the /api/symbols body

	mu      sync.Mutex
	conns   map[*sseSink]struct{} // open SSE sinks, closed on shutdown
	perAddr map[string]int        // open streams per client address
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
	if cfg.MaxPerAddress <= 0 {
		cfg.MaxPerAddress = 2000
	}
	if cfg.MessageRate <= 0 {
		cfg.MessageRate = 20
	}
	if cfg.ReadTimeout <= 0 {
		cfg.ReadTimeout = 10 * time.Second
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
	if cfg.Node == "" {
		cfg.Node = "node"
	}
	s := &Server{cfg: cfg, conns: make(map[*sseSink]struct{}), perAddr: make(map[string]int)}
	var err error
	s.symbols, err = json.Marshal(struct {
		Count   int           `json:"count"`
		Symbols []feed.Symbol `json:"symbols"`
	}{cfg.Universe.Len(), cfg.Universe.Symbols()})
	if err != nil {
		return nil, fmt.Errorf("encode universe: %w", err)
	}
	if s.metrics, err = newMetrics(cfg.Registry, cfg.Hub); err != nil {
		return nil, err
	}
	s.app = fiber.New(fiber.Config{
		AppName:                 "tickstream",
		DisableStartupMessage:   true,
		ReadTimeout:             cfg.ReadTimeout,
		BodyLimit:               64 << 10, // every route is a GET
		ReadBufferSize:          8192,     // request line and headers; larger gets 431
		IdleTimeout:             120 * time.Second,
		ErrorHandler:            s.errorHandler,
		ProxyHeader:             proxyHeader(cfg.TrustedProxies),
		EnableTrustedProxyCheck: len(cfg.TrustedProxies) > 0,
		TrustedProxies:          cfg.TrustedProxies,
		EnableIPValidation:      true,
	})
	// SSE connections are handed to the hub's writers; fasthttp must not
	// close them when the hijack handler returns.
	s.app.Server().KeepHijackedConns = true
	s.routes()
	return s, nil
}

func (s *Server) routes() {
	a := s.app
	a.Use(func(c *fiber.Ctx) error {
		c.Set("X-Tickstream-Node", s.cfg.Node)
		return c.Next()
	})
	a.Get("/stream", s.handleSSE)
	a.Get("/ws", s.wsUpgrade, websocket.New(s.handleWS, websocket.Config{
		ReadBufferSize: 1024, WriteBufferSize: 256, WriteBufferPool: &sync.Pool{},
	}))
	a.Get("/api/symbols", s.handleSymbols)
	a.Get("/api/snapshot", s.handleSnapshot)
	a.Get("/api/poll", s.handlePoll)
	a.Get("/healthz", s.handleHealth)
	a.Get("/readyz", s.handleReady)
	a.Get("/metrics", adaptor.HTTPHandler(promhttp.HandlerFor(s.cfg.Registry, promhttp.HandlerOpts{})))
	a.Use("/", filesystem.New(filesystem.Config{Root: http.FS(dashboard.FS()), Index: "index.html", MaxAge: 60}))
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

func proxyHeader(trusted []string) string {
	if len(trusted) == 0 {
		return ""
	}
	return fiber.HeaderXForwardedFor
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

// tooMany answers 429 for a client over its stream limit.
func tooMany(c *fiber.Ctx) error {
	c.Set(fiber.HeaderRetryAfter, "5")
	return c.Status(fiber.StatusTooManyRequests).JSON(apiError{Error: "too many open streams from this address"})
}

// Serve accepts connections on ln until Shutdown.
func (s *Server) Serve(ln net.Listener) error {
	return s.app.Listener(ln)
}

// Shutdown stops accepting connections and closes the server's plain HTTP
// connections, waiting for requests in flight until ctx is done. SSE
// subscribers belong to the hub: drain or close the hub first.
func (s *Server) Shutdown(ctx context.Context) error {
	err := s.app.ShutdownWithContext(ctx)
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
	if !s.cfg.Ready() {
		return c.Status(fiber.StatusServiceUnavailable).JSON(apiError{Error: "not caught up with redis"})
	}
	return c.JSON(fiber.Map{"ready": true, "node": s.cfg.Node, "subscribers": s.cfg.Hub.Subscribers()})
}
