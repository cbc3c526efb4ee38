package transport

import (
	"errors"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
)

// Admission: every transport's request goes through Server.admit, in one
// order: what the transport refuses outright (not an upgrade, draining,
// a foreign origin), the query (symbols, interval, mode), the token
// (401, 403), the transport's own parameters, the client's address and
// its per-address slot, then what the subscription will be (the hub
// options, the token's expiry, replay or snapshot, the response head).
// The answer is a ticket or a typed refusal; the transport renders a
// refusal in its own way (refusal.renderHTTP, refuseStream, a WebSocket
// close code from control.go). A hub's refusal at Subscribe is typed the
// same way (subscribeRefusal).

// transportInfo describes a transport to the admission path, after
// centrifuge's TransportInfo.
type transportInfo struct {
	// name is the transport's name: its label in the subscribers gauge.
	name string
	// upgrade: a WebSocket route; a request that is not an upgrade, or
	// arrives while the node drains, or from a foreign origin is refused.
	upgrade bool
	// symbolsOnly: the subscription is only the symbols parameter (the
	// polls); otherwise symbols, interval and mode.
	symbolsOnly bool
	// optional: the request may come without symbols (a WebSocket
	// subscribes later, by message).
	optional bool
	// hold: the request holds one of its address's stream slots
	// (MaxPerAddress) while it is open.
	hold bool
	// resume: the request may resume from a cursor (Last-Event-ID or
	// lastEventId).
	resume bool
}

// The transports.
var (
	sseTransport      = transportInfo{name: "sse", hold: true, resume: true}
	wsTransport       = transportInfo{name: "ws", upgrade: true, optional: true, hold: true}
	pollTransport     = transportInfo{name: "longpoll", symbolsOnly: true}
	snapshotTransport = transportInfo{name: "snapshot", symbolsOnly: true}
)

// ticket is an admitted request: what it may subscribe to and how.
type ticket struct {
	srv    *Server
	req    subRequest // symbols nil: none asked (a WebSocket's first)
	asked  bool       // the request named symbols
	auth   grant      // what the token allows
	addr   string     // the client, for the per-address limits (a copy)
	held   bool       // addr holds a stream slot until release
	lastID string     // the cursor to resume from; "" for none
	origin bool       // the request has an Origin: the answer allows any
	http11 bool       // the answer may be chunked
	once   sync.Once
}

// opts returns the hub options of the ticket's subscription.
func (t *ticket) opts() fanout.Options {
	return fanout.Options{Symbols: t.req.symbols, Mode: t.req.mode, Interval: t.req.interval}
}

// replay reports whether the subscription resumes raw from a cursor: its
// replay is written before it joins the hub (resume.go); otherwise it
// gets a snapshot.
func (t *ticket) replay() bool { return t.srv.wantsReplay(t.lastID, t.req) }

// expire arms the token's expiry: end runs when it passes. It returns nil
// for a token that never expires (or no token).
func (t *ticket) expire(end func()) *time.Timer {
	if t.auth.expires.IsZero() {
		return nil
	}
	return time.AfterFunc(time.Until(t.auth.expires), end)
}

// release gives back the ticket's stream slot, once.
func (t *ticket) release() {
	if t.held {
		t.once.Do(func() { t.srv.release(t.addr) })
	}
}

// appendHead appends the response head of the ticket's event stream.
func (t *ticket) appendHead(b []byte) []byte {
	return appendSSEHead(b, t.srv.cfg.Node, t.origin, t.http11)
}

// refusal is a request the node does not take, typed: the transport
// renders it (renderHTTP before a stream; an EventSource gets a goaway
// stream when it is retryable, see refuseStream; an upgraded WebSocket a
// close code).
type refusal struct {
	status     int    // the HTTP status
	err        error  // why; the body's error
	param      string // the parameter at fault, if any
	retryAfter string // Retry-After, if any
	closeConn  bool   // Connection: close
	// retryable: the client should come back (the node drains, is full
	// or closing, or the address holds its limit): an EventSource gets
	// a 200 goaway stream, never a status it treats as fatal.
	retryable bool
}

func (r *refusal) Error() string { return r.err.Error() }

// renderHTTP answers the refusal as a status with a JSON body.
func (r *refusal) renderHTTP(c *fiber.Ctx) error {
	if r.retryAfter != "" {
		c.Set(fiber.HeaderRetryAfter, r.retryAfter)
	}
	if r.closeConn {
		c.Context().SetConnectionClose()
	}
	return c.Status(r.status).JSON(apiError{Error: r.err.Error(), Param: r.param})
}

// renderSSE answers the refusal of an event stream: a goaway stream when
// the client should come back, a status otherwise.
func (r *refusal) renderSSE(c *fiber.Ctx) error {
	if r.retryable {
		return refuseStream(c, r.err)
	}
	return r.renderHTTP(c)
}

// badParam refuses a malformed parameter: 400.
func badParam(param string, err error) *refusal {
	return &refusal{status: fiber.StatusBadRequest, err: err, param: param}
}

// admit runs the admission path for transport t. check, if not nil, runs
// after the token and before the address's slot: a transport's own
// parameters; it may also say the request holds no slot after all (a poll
// answered at once). A refusal has been counted; the caller renders it.
func (s *Server) admit(c *fiber.Ctx, t transportInfo, check func(*ticket) (hold bool, r *refusal)) (*ticket, *refusal) {
	tk := &ticket{srv: s}
	if t.upgrade {
		if !websocket.IsWebSocketUpgrade(c) {
			return nil, &refusal{status: fiber.StatusUpgradeRequired,
				err: errors.New("this is a WebSocket endpoint: connect with a WebSocket client (or use /stream for SSE)")}
		}
		if s.Draining() {
			// No WebSocket client reconnects by a standard's rule; a
			// client's own reconnect code sees a failed handshake, as it
			// would a refused connection.
			return nil, &refusal{status: fiber.StatusServiceUnavailable, err: fanout.ErrDraining, retryAfter: "1", closeConn: true}
		}
		if origin := c.Get(fiber.HeaderOrigin); origin != "" && !s.originAllowed(origin, c.Hostname()) {
			return nil, &refusal{status: fiber.StatusForbidden, err: errors.New("origin " + origin + " is not allowed"), param: "Origin"}
		}
	}
	if tk.asked = c.Query("symbols") != "" || !t.optional; tk.asked {
		if t.symbolsOnly {
			syms, err := s.cfg.Universe.ParseSymbolList(c.Query("symbols"), s.cfg.MaxSymbols)
			if err != nil {
				return nil, badParam("symbols", err)
			}
			tk.req.symbols = syms
		} else {
			req, err := s.parseSubscription(c.Query("symbols"), c.Query("interval"), c.Query("mode"))
			if err != nil {
				var pe *errParam
				errors.As(err, &pe)
				return nil, badParam(pe.param, err)
			}
			tk.req = req
		}
	}
	g, r := s.checkToken(c, tk.req.symbols)
	if r != nil {
		return nil, r
	}
	tk.auth = g
	hold := t.hold
	if check != nil {
		if hold, r = check(tk); r != nil {
			return nil, r
		}
	}
	if t.resume {
		tk.lastID = c.Get("Last-Event-ID")
		if tk.lastID == "" {
			tk.lastID = c.Query("lastEventId") // for clients that cannot set headers
		}
		tk.lastID = strings.Clone(tk.lastID)
	}
	tk.addr = s.clientIP(c)
	if hold {
		if r := s.hold(tk); r != nil {
			return nil, r
		}
	}
	tk.origin = c.Get(fiber.HeaderOrigin) != ""
	tk.http11 = c.Context().Request.Header.IsHTTP11()
	return tk, nil
}

// hold takes one of the ticket's address's stream slots, or refuses it
// past MaxPerAddress: 429 with Retry-After (an EventSource gets a goaway
// stream with a later retry:).
func (s *Server) hold(tk *ticket) *refusal {
	if !s.acquire(tk.addr) {
		s.refuse(refusedMaxPerAddress, tk.addr)
		return &refusal{status: fiber.StatusTooManyRequests, err: ErrTooManyStreams, retryAfter: "5", retryable: true}
	}
	tk.addr = strings.Clone(tk.addr)
	tk.held = true
	return nil
}

// subscribeRefusal types an error from Hub.Subscribe.
func subscribeRefusal(err error) *refusal {
	switch {
	case isStreamRefusal(err):
		return &refusal{status: fiber.StatusServiceUnavailable, err: err,
			retryAfter: strconv.Itoa(1 + int(time.Now().UnixNano()%3)), retryable: true}
	case errors.Is(err, fanout.ErrUnknownSymbol), errors.Is(err, feed.ErrUnknownSymbol):
		return &refusal{status: fiber.StatusNotFound, err: err, param: "symbols"}
	case errors.Is(err, fanout.ErrBadInterval):
		return badParam("interval", err)
	default:
		return &refusal{status: fiber.StatusInternalServerError, err: err}
	}
}
