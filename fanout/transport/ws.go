package transport

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/fasthttp/websocket"
	fws "github.com/gofiber/contrib/websocket"
	"github.com/gofiber/fiber/v2"

	"github.com/tickstream/tickstream/fanout"
)

// WebSocket: the handshake is the library's; after it the socket is owned
// like an SSE socket. Data messages are framed here and written through
// connWriter, so a slow peer gets the same policy as SSE (its write keeps
// its rest, it is conflated harder) and a tick batch is one write. Client
// frames are read by the node's poller where there is one (see wsSession).

// wsUpgrade admits the request before the handshake (admit.go): what
// must not become a socket (not an upgrade, the node draining, a foreign
// origin, bad query parameters, no token, the address's limit) is refused
// with a status.
func (s *Server) wsUpgrade(c *fiber.Ctx) error {
	tk, r := s.admit(c, wsTransport, nil)
	if r != nil {
		return r.renderHTTP(c)
	}
	c.Locals(ticketKey, tk)
	if err := c.Next(); err != nil { // the upgrade failed: no session will release it
		tk.release()
		return err
	}
	return nil
}

// ticketKey is the request local that carries a WebSocket's ticket from
// its upgrade to its session.
const ticketKey = "ticket"

// originAllowed accepts the node's own origin, localhost and the allow-list.
func (s *Server) originAllowed(origin, host string) bool {
	u, err := url.Parse(origin)
	if err != nil || u.Host == "" {
		return false
	}
	if u.Host == host {
		return true
	}
	switch u.Hostname() {
	case "localhost", "127.0.0.1", "::1":
		return true
	}
	for _, a := range s.cfg.AllowedOrigins {
		if a == "*" || strings.EqualFold(a, origin) {
			return true
		}
	}
	return false
}

// wsIn is a client message.
type wsIn struct {
	Op       string          `json:"op"`
	Symbols  []string        `json:"symbols"`
	Interval json.RawMessage `json:"interval"`
	Mode     string          `json:"mode"`
	Cursor   string          `json:"cursor"`
	ID       json.RawMessage `json:"id"`
}

// wsSession is one WebSocket connection: at most one hub subscriber, whose
// symbols and interval change in place.
//
// Its client frames are read in one of two ways. Polled (Linux): the
// node's poller (ws_poll_linux.go) reads the socket when it is readable
// and the session parses the frames then (ws_frame.go); a data message is
// handled by a short-lived worker goroutine while the socket is not read.
// No goroutine, buffer or request context stays with an idle socket. The
// fallback (elsewhere, or a connection that is not a plain socket): the
// library's reading goroutine, as before.
type wsSession struct {
	srv  *Server
	w    connWriter
	ping *time.Timer // pings, and (polled) checks the peer's liveness
	auth grant       // what the token allows; checked on every subscribe
	exp  *time.Timer

	ws     *websocket.Conn // the library's connection: the fallback's reader only
	polled bool            // read by the poller; set before the session is shared

	// Reading, polled: the poller or the worker, one at a time, under rmu.
	rmu   sync.Mutex
	rd    wsFrames
	busy  bool   // a worker handles a message: the socket is not read meanwhile
	id    uint64 // the poller's key for the session
	added bool   // registered with the poller

	lastRead atomic.Int64 // unix nanoseconds of the last read (polled)
	nextPing atomic.Int64 // unix nanoseconds of the next ping (polled)
	done     atomic.Bool  // finish ran

	allowance float64   // token bucket of the rate limit, reading side only
	last      time.Time // its last refill

	tk       *ticket    // the admitted upgrade
	addr     string     // client address, for the per-address limits
	mu       sync.Mutex // the fields below, from the reading side
	sub      *fanout.Subscriber
	mode     fanout.Mode
	symbols  []string
	interval time.Duration
}

func (s *Server) handleWS(c *fws.Conn) {
	tk := c.Locals(ticketKey).(*ticket)
	sess := &wsSession{srv: s, tk: tk, addr: tk.addr, auth: tk.auth, allowance: 2 * s.cfg.MessageRate, last: time.Now()}
	// Writes go to the socket itself (non-blocking), not through fasthttp's
	// wrapper of the hijacked connection.
	s.initWriter(&sess.w, socketOf(c.UnderlyingConn()))
	var early []byte // bytes the client sent right behind its handshake
	if sess.w.raw != nil && s.wsp.ready() {
		if b, err := takeBuffered(c.UnderlyingConn()); err == nil {
			sess.polled, early = true, b
		}
	}
	s.metrics.subscribers.WithLabelValues(wsTransport.name).Inc()
	now := time.Now()
	sess.lastRead.Store(now.UnixNano())
	sess.nextPing.Store(now.Add(s.cfg.PingInterval).UnixNano())
	sess.ping = time.AfterFunc(s.cfg.PingInterval, sess.tick)
	if !sess.polled {
		defer sess.finish()
	}
	sess.exp = tk.expire(func() { sess.closeWith(ctlTokenExpired) })
	if !sess.polled {
		sess.libraryHandlers(c)
	}
	hello := appendWSJSON(nil, wsHello{Node: s.cfg.Node, Type: "hello"})
	if tk.asked {
		sess.subscribe(tk.req, "", hello) // hello, subscribed, snapshot and ready: one write
	} else if err := sess.out(hello); err != nil {
		sess.finish()
		return
	}
	if sess.polled {
		// From here the poller reads the socket; this goroutine, the
		// library's connection and fasthttp's reader and context go.
		sess.rd.kept = early
		if !s.wsp.attach(sess) { // the server shuts down
			sess.closeWith(closing(fanout.ErrHubClosed))
			sess.finish()
			return
		}
		sess.work(nil)
		return
	}
	sess.readLoop(c)
}

// libraryHandlers sets the library's handlers of control frames and its
// size limit, for the fallback's reading goroutine.
func (sess *wsSession) libraryHandlers(c *fws.Conn) {
	sess.ws = c.Conn
	c.SetReadLimit(sess.srv.cfg.MaxMessage)
	sess.extend()
	c.SetPongHandler(func(string) error {
		if !sess.allow() {
			return errTooManyMessages
		}
		sess.extend()
		return nil
	})
	c.SetPingHandler(func(d string) error {
		// A ping frame is a message like any other for the rate limit.
		if !sess.allow() {
			return errTooManyMessages
		}
		sess.extend()
		return sess.control(websocket.PongMessage, []byte(d))
	})
	c.SetCloseHandler(func(code int, _ string) error {
		_ = sess.control(opClose, websocket.FormatCloseMessage(code, ""))
		return nil
	})
}

// readLoop is the fallback: the library reads the client's messages on
// this goroutine until the socket closes.
func (sess *wsSession) readLoop(c *fws.Conn) {
	for {
		mt, msg, err := c.ReadMessage()
		if err != nil {
			if errors.Is(err, errTooManyMessages) {
				sess.closeWith(ctlTooManyMessages)
			}
			return
		}
		sess.extend()
		if !sess.allow() {
			sess.closeWith(ctlTooManyMessages)
			return
		}
		if mt != websocket.TextMessage {
			sess.closeWith(ctlTextOnly)
			return
		}
		if !utf8.Valid(msg) { // RFC 6455 §8.1
			sess.closeWith(ctlBadUTF8)
			return
		}
		sess.handle(msg)
	}
}

// work handles msg (if any), then the messages the session kept bytes of,
// one at a time, and has the poller read the socket again once none is
// left. It runs on a goroutine of its own while the socket is not read
// (or on the handshake's, first), so a message that waits (a resume
// waiting for this node's reader, a replay) holds up no other socket.
func (sess *wsSession) work(msg []byte) {
	for {
		if sess.done.Load() {
			return
		}
		if msg != nil {
			sess.handle(msg)
		}
		sess.rmu.Lock()
		var ok bool
		var rest []byte
		msg, rest, ok = sess.consume(sess.rd.kept)
		if !ok {
			sess.rmu.Unlock()
			sess.finish()
			return
		}
		sess.rd.keep(rest)
		if msg == nil {
			sess.busy = false
			sess.srv.wsp.arm(sess)
			sess.rmu.Unlock()
			return
		}
		sess.rmu.Unlock()
	}
}

// socketOf returns the socket under fasthttp's wrapper of a hijacked
// connection (which reads through fasthttp's buffered reader), or c itself.
func socketOf(c net.Conn) net.Conn {
	if u, ok := c.(interface{ UnsafeConn() net.Conn }); ok {
		if sock := u.UnsafeConn(); sock != nil {
			return sock
		}
	}
	return c
}

// takeBuffered returns what c's reader holds beyond the handshake (a
// client may send frames before it sees the 101), reading nothing from the
// socket itself: the read deadline is in the past, so a read that would
// reach the socket fails at once. An error means nothing was taken.
func takeBuffered(c net.Conn) ([]byte, error) {
	if err := c.SetReadDeadline(time.Unix(1, 0)); err != nil {
		return nil, err
	}
	var early []byte
	var buf [512]byte
	for {
		n, err := c.Read(buf[:])
		early = append(early, buf[:n]...)
		if err != nil {
			// A timeout is the end of the buffered bytes; another error
			// (EOF) is the socket's, which the poller will see too.
			break
		}
	}
	if err := c.SetReadDeadline(time.Time{}); err != nil {
		return nil, err
	}
	return early, nil
}

// errTooManyMessages ends the read loop from the ping handler.
var errTooManyMessages = errors.New(ctlTooManyMessages.text)

// allow takes one message from the session's token bucket: MessageRate per
// second, bursts of twice that. Only the reading side calls it.
func (sess *wsSession) allow() bool {
	rate := sess.srv.cfg.MessageRate
	now := time.Now()
	sess.allowance = min(sess.allowance+now.Sub(sess.last).Seconds()*rate, 2*rate)
	sess.last = now
	if sess.allowance < 1 {
		sess.srv.refuse(refusedMessageRate, sess.addr)
		return false
	}
	sess.allowance--
	return true
}

// extend moves the read deadline (fallback): a peer silent for a ping
// period plus the pong timeout is dropped.
func (sess *wsSession) extend() {
	_ = sess.ws.UnderlyingConn().SetReadDeadline(time.Now().Add(sess.srv.cfg.PingInterval + sess.srv.cfg.PongTimeout))
}

// tick pings the peer every PingInterval. Polled, it also drops a peer
// silent (nothing read) for PingInterval + PongTimeout, waking at that
// moment if it comes before the next ping: the liveness check costs no
// read deadline and no timer per read.
func (sess *wsSession) tick() {
	cfg := sess.srv.cfg
	if !sess.polled {
		if sess.control(websocket.PingMessage, nil) == nil {
			sess.ping.Reset(cfg.PingInterval)
		}
		return
	}
	now := time.Now()
	dead := time.Unix(0, sess.lastRead.Load()).Add(cfg.PingInterval + cfg.PongTimeout)
	if !now.Before(dead) {
		sess.finish() // silent: dropped, as a read deadline would
		return
	}
	next := time.Unix(0, sess.nextPing.Load())
	if !now.Before(next) {
		if sess.control(websocket.PingMessage, nil) != nil {
			return
		}
		next = now.Add(cfg.PingInterval)
		sess.nextPing.Store(next.UnixNano())
	}
	if dead.Before(next) {
		next = dead
	}
	sess.ping.Reset(next.Sub(now))
}

// handle answers one client message. Bad requests get an error message;
// the socket stays open.
func (sess *wsSession) handle(msg []byte) {
	var in wsIn
	if err := json.Unmarshal(msg, &in); err != nil {
		sess.fail("", fmt.Errorf("malformed message: %v", err))
		return
	}
	switch in.Op {
	case "ping":
		if len(in.ID) > sess.srv.cfg.MaxEcho {
			sess.fail(in.Op, fmt.Errorf(`"id" is %d bytes, the limit is %d`, len(in.ID), sess.srv.cfg.MaxEcho))
			return
		}
		_ = sess.reply(map[string]any{"type": "pong", "id": in.ID, "ts": time.Now().UnixMicro()})
	case "subscribe", "unsubscribe", "interval":
		sess.change(in)
	case "":
		sess.fail("", errors.New(`message has no "op"`))
	default:
		sess.fail(in.Op, fmt.Errorf("unknown op %q: want subscribe, unsubscribe, interval or ping", in.Op))
	}
}

// change applies subscribe, unsubscribe and interval.
func (sess *wsSession) change(in wsIn) {
	s := sess.srv
	sess.mu.Lock()
	defer sess.mu.Unlock()
	ivl := sess.interval
	if len(in.Interval) > 0 {
		d, err := parseJSONInterval(in.Interval)
		if err != nil {
			sess.fail(in.Op, err)
			return
		}
		ivl = d
	} else if sess.sub == nil {
		ivl = s.cfg.DefaultInterval
	}
	syms := sess.symbols
	if in.Op != "interval" {
		if len(in.Symbols) == 0 {
			sess.fail(in.Op, errors.New(`"symbols" is empty`))
			return
		}
		list, err := s.cfg.Universe.ParseSymbolList(strings.Join(in.Symbols, ","), 0)
		if err != nil {
			sess.fail(in.Op, err)
			return
		}
		if in.Op == "subscribe" {
			if err := sess.auth.check(list); err != nil {
				sess.fail(in.Op, err)
				return
			}
		}
		syms = mergeSymbols(sess.symbols, list, in.Op == "subscribe")
		if len(syms) > s.cfg.MaxSymbols {
			sess.fail(in.Op, fmt.Errorf("too many symbols: %d, the limit is %d", len(syms), s.cfg.MaxSymbols))
			return
		}
	}
	if sess.sub == nil {
		if in.Op != "subscribe" {
			sess.fail(in.Op, errors.New("subscribe first"))
			return
		}
		mode, err := ParseMode(in.Mode)
		if err != nil {
			sess.fail(in.Op, err)
			return
		}
		sess.mu.Unlock()
		sess.subscribe(subRequest{symbols: syms, mode: mode, interval: ivl}, in.Cursor, nil)
		sess.mu.Lock()
		return
	}
	if in.Mode != "" && !strings.EqualFold(in.Mode, sess.mode.String()) {
		sess.fail(in.Op, fmt.Errorf("mode is %s for this connection: open another one for %s", sess.mode, in.Mode))
		return
	}
	granted, err := s.cfg.Hub.Grant(ivl)
	if err != nil {
		sess.fail(in.Op, err)
		return
	}
	if sess.mode == fanout.Raw {
		granted = 0
	}
	// The reply goes out before the new symbols' snapshots.
	if err := sess.reply(subscribed(syms, granted, sess.mode)); err != nil {
		return
	}
	if len(syms) == 0 {
		syms = nil
	}
	if _, err := sess.sub.Change(syms, granted); err != nil {
		sess.fail(in.Op, err)
		return
	}
	sess.symbols, sess.interval = syms, granted
}

// subscribe makes the session's hub subscriber: reply, snapshot or replay,
// ready, then live updates, after head (the hello of a subscription asked
// in the query). Without a cursor to resume from, all of it is one write.
func (sess *wsSession) subscribe(req subRequest, cursorIn string, head []byte) {
	s := sess.srv
	opts := fanout.Options{Symbols: req.symbols, Mode: req.mode, Interval: req.interval}
	if s.wantsReplay(cursorIn, req) {
		sess.resume(req, opts, cursorIn, head)
		return
	}
	sub, snap, cursor, err := sess.join(opts)
	if err != nil {
		sess.refused(err, head)
		return
	}
	b := appendWSJSON(head, subscribed(req.symbols, sub.Interval(), req.mode))
	resync := s.resumeSnapshot(cursor, cursorIn, req.mode)
	sess.ready(sub, b, resync, snap, cursor)
}

// join subscribes the session to the hub.
func (sess *wsSession) join(opts fanout.Options) (*fanout.Subscriber, []*fanout.Update, string, error) {
	sub, snap, cursor, err := sess.srv.cfg.Hub.Subscribe(opts, sess)
	if err != nil {
		return nil, nil, "", err
	}
	sess.mu.Lock()
	sess.sub, sess.mode, sess.symbols, sess.interval = sub, opts.Mode, opts.Symbols, sub.Interval()
	sess.mu.Unlock()
	if sess.done.Load() { // finished meanwhile: finish may not have seen sub
		sub.Close()
		return nil, nil, "", net.ErrClosed
	}
	return sub, snap, cursor, nil
}

// refused answers a subscription the hub refused, after head.
func (sess *wsSession) refused(err error, head []byte) {
	if errors.Is(err, net.ErrClosed) || len(head) > 0 && sess.out(head) != nil {
		return
	}
	if r := subscribeRefusal(err); r.retryable {
		sess.closeWith(refusing(err)) // no socket left open without a subscription
		return
	}
	sess.fail("subscribe", err)
}

// ready writes b, then (on resync) the reason and the snapshot, then
// ready, and starts live delivery.
func (sess *wsSession) ready(sub *fanout.Subscriber, b []byte, resync string, snap []*fanout.Update, cursor string) {
	s := sess.srv
	if resync != "" {
		b = appendWSControl(b, ctlResync.with(resync))
	}
	b = appendWSTicks(b, snap, cursor, s.refs) // a snapshot's ticks carry prev_close and open
	b = appendWSJSON(b, map[string]string{"type": "ready", "cursor": cursor})
	if err := sess.w.sendHead(b); errors.Is(err, fanout.ErrSlow) {
		sess.w.flushLater()
	} else if err != nil {
		sub.CloseWith(err)
		return
	}
	sub.Start()
}

// resume runs a raw subscriber's resume from cursorIn (resume.go): the
// reply at once, then the missed ticks page by page as the client takes
// them, each frame with its cursor, then ready and live updates.
func (sess *wsSession) resume(req subRequest, opts fanout.Options, cursorIn string, head []byte) {
	s := sess.srv
	b := appendWSJSON(head, subscribed(req.symbols, 0, fanout.Raw))
	if err := sess.w.sendWait(b, resumeStall); err != nil {
		sess.Close(err)
		return
	}
	r := rawResume{srv: s, syms: req.symbols, addr: sess.addr, lastID: cursorIn,
		subscribe: func() (*fanout.Subscriber, []*fanout.Update, string, error) { return sess.join(opts) },
		out:       sess.writeReplay,
	}
	res, err := r.run(context.Background())
	if errors.Is(err, fanout.ErrSlowConsumer) || errors.Is(err, errReplayBusy) {
		sess.Close(err)
		return
	} else if err != nil {
		sess.refused(err, nil)
		return
	}
	sess.ready(res.sub, nil, res.resync, res.snap, res.cursor)
}

// writeReplay writes a raw resume's replayed ticks, a frame per piece with
// the cursor at its end, as the client takes them.
func (sess *wsSession) writeReplay(ups []*fanout.Update, marks []fanout.Mark) error {
	return replayPieces(ups, marks, func(b *fanout.Batch) error {
		return sess.w.sendWait(appendWSTicks(nil, b.Updates, b.Cursor, nil), resumeStall)
	})
}

// wsHello is the first message; its fields in the order a map would
// marshal them, as before.
type wsHello struct {
	Node string `json:"node"`
	Type string `json:"type"`
}

// wsSubscribed answers a subscription or a change of it.
type wsSubscribed struct {
	Interval   string   `json:"interval"`
	IntervalMs int64    `json:"interval_ms"`
	Mode       string   `json:"mode"`
	Symbols    []string `json:"symbols"`
	Type       string   `json:"type"`
}

func subscribed(syms []string, ivl time.Duration, mode fanout.Mode) wsSubscribed {
	if syms == nil {
		syms = []string{}
	}
	return wsSubscribed{Type: "subscribed", Symbols: syms, Mode: mode.String(), Interval: ivl.String(), IntervalMs: ivl.Milliseconds()}
}

// mergeSymbols adds (or removes) list to (from) cur, keeping order.
func mergeSymbols(cur, list []string, add bool) []string {
	in := make(map[string]bool, len(list))
	for _, s := range list {
		in[s] = true
	}
	out := make([]string, 0, len(cur)+len(list))
	for _, s := range cur {
		if !in[s] || add {
			out = append(out, s)
		}
		if add {
			delete(in, s)
		}
	}
	if add {
		for _, s := range list {
			if in[s] {
				out = append(out, s)
			}
		}
	}
	return out
}

// parseJSONInterval takes "250ms", "1s" or a number of milliseconds.
func parseJSONInterval(raw json.RawMessage) (time.Duration, error) {
	var str string
	if err := json.Unmarshal(raw, &str); err == nil {
		return ParseInterval(str)
	}
	var ms float64
	if err := json.Unmarshal(raw, &ms); err != nil || ms < 0 || ms > 24*3600*1000 {
		return 0, fmt.Errorf("interval %s: want a duration such as \"250ms\" or a number of milliseconds", raw)
	}
	return time.Duration(ms * float64(time.Millisecond)), nil
}

func (sess *wsSession) fail(op string, err error) {
	m := map[string]string{"type": "error", "error": err.Error()}
	if op != "" {
		m["op"] = op
	}
	_ = sess.reply(m)
}

// reply writes one JSON message to the client.
func (sess *wsSession) reply(v any) error {
	return sess.out(appendWSJSON(nil, v))
}

// control writes a control frame (ping, pong, close) in order with the data.
func (sess *wsSession) control(op int, payload []byte) error {
	if len(payload) > 125 {
		payload = payload[:125]
	}
	return sess.out(appendFrame(nil, byte(op), payload))
}

// out writes a reply or a control frame through the same non-blocking path
// as the data: what the socket does not take waits behind what is pending
// (the hub's writer, or the next reply, pushes it on). A peer that lets
// replies pile up past the connection's bound is dropped.
func (sess *wsSession) out(frame []byte) error {
	err := sess.w.send(frame)
	switch {
	case err == nil:
		return nil
	case errors.Is(err, fanout.ErrSlow):
		sess.w.flushLater()
		return nil
	case errors.Is(err, fanout.ErrSlowConsumer):
		sess.srv.refuse(refusedSlowReplies, sess.addr)
		sess.closeWith(ctlSlowReplies)
	default:
		if sess.w.close(nil) {
			sess.closed()
		}
	}
	return err
}

// Send implements fanout.Sink: one tick message per batch (data is an
// array of ticks, each the same JSON as SSE), after lagging or resync
// notices; a heartbeat is a ping frame.
func (sess *wsSession) Send(b *fanout.Batch) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := (*bp)[:0]
	if b.Resync {
		buf = append(buf, wsResync...)
	}
	if b.Lagging {
		buf = append(buf, wsLagging...)
	}
	buf = appendWSTicks(buf, b.Updates, b.Cursor, nil)
	if len(buf) == 0 && b.Heartbeat {
		// The hub's keep-alive: a ping frame, so proxies see traffic on a
		// quiet socket as often as SSE's comment heartbeat.
		buf = appendFrame(buf, websocket.PingMessage, nil)
	}
	*bp = buf[:0]
	return sess.w.send(buf)
}

var (
	wsResync  = appendWSControl(nil, ctlResync)
	wsLagging = appendWSControl(nil, ctlLagging)
)

// Close implements fanout.Sink. A nil reason means the transport itself
// ended the subscription; otherwise the peer is told why with a close code.
func (sess *wsSession) Close(reason error) {
	if reason == nil {
		return
	}
	sess.closeWith(closing(reason))
}

// closeWith tells the peer why (a message of c's type and text), closes
// with c's code and closes the socket.
func (sess *wsSession) closeWith(c control) {
	msg := appendWSControl(nil, c)
	if sess.w.close(append(msg, appendFrame(nil, opClose, websocket.FormatCloseMessage(c.code, c.text))...)) {
		sess.closed()
	}
}

// closed follows a close of the socket by the server's side. The
// fallback's reading goroutine sees it and finishes the session; a polled
// socket, closed, is no longer reported by the poller, so the session is
// finished here, on a goroutine of its own: the caller may be inside the
// subscriber's close, which finish calls.
func (sess *wsSession) closed() {
	if sess.polled {
		go sess.finish()
	}
}

// finish ends the session, once: its timers, its subscriber, its socket,
// its place with the poller and in the per-address count.
func (sess *wsSession) finish() {
	if !sess.done.CompareAndSwap(false, true) {
		return
	}
	sess.ping.Stop()
	if sess.exp != nil {
		sess.exp.Stop()
	}
	sess.mu.Lock()
	sub := sess.sub
	sess.mu.Unlock()
	if sub != nil {
		sub.Close()
	}
	sess.w.close(nil)
	if sess.polled {
		sess.srv.wsp.detach(sess)
	}
	sess.srv.metrics.subscribers.WithLabelValues(wsTransport.name).Dec()
	sess.tk.release()
}

// appendWSTicks appends one text frame {"type":"tick","cursor":…,"data":[…]}
// built from the ticks' shared JSON; nothing if there are none.
func appendWSTicks(dst []byte, ticks []*fanout.Update, cursor string, refs *refTable) []byte {
	n := 0
	for _, u := range ticks {
		if u != nil {
			n++
		}
	}
	if n == 0 {
		return dst
	}
	start := len(dst)
	dst = append(dst, make([]byte, headRoom)...)
	dst = append(dst, `{"type":"tick","cursor":"`...)
	dst = append(dst, cursor...)
	dst = append(dst, `","data":[`...)
	first := true
	for _, u := range ticks {
		if u == nil {
			continue
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = refs.appendTick(dst, u)
	}
	dst = append(dst, "]}"...)
	var hdr [headRoom]byte
	framed := withHeader(dst[start:], frameHeader(hdr[:0], websocket.TextMessage, len(dst)-start-headRoom))
	return append(dst[:start], framed...)
}

// appendWSControl appends c as a text frame {"reason":…,"type":…}.
func appendWSControl(dst []byte, c control) []byte {
	return appendWSJSON(dst, map[string]string{"type": c.event, "reason": c.text})
}

// appendWSJSON appends v as one text frame.
func appendWSJSON(dst []byte, v any) []byte {
	js, _ := json.Marshal(v)
	return appendFrame(dst, websocket.TextMessage, js)
}

func appendFrame(dst []byte, op byte, payload []byte) []byte {
	dst = frameHeader(dst, op, len(payload))
	return append(dst, payload...)
}

// frameHeader appends an unmasked, final WebSocket frame header (RFC 6455
// §5.2; servers do not mask).
func frameHeader(dst []byte, op byte, n int) []byte {
	dst = append(dst, 0x80|op)
	switch {
	case n < 126:
		return append(dst, byte(n))
	case n <= 0xFFFF:
		return binary.BigEndian.AppendUint16(append(dst, 126), uint16(n))
	default:
		return binary.BigEndian.AppendUint64(append(dst, 127), uint64(n))
	}
}
