package transport

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"
	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
)

// SSE wire format. Every event ends with a blank line; a batch's last tick
// carries the resume cursor in its id: field.
var (
	sseTick      = []byte("event: tick\ndata: ")
	sseHeartbeat = []byte(": hb\n\n")
)

// handleSSE validates the request, registers the subscriber and hijacks the
// connection: from then on the hub's writers own the socket.
func (s *Server) handleSSE(c *fiber.Ctx) error {
	if c.Method() == fiber.MethodHead {
		// What a GET would answer, without a stream or a subscriber.
		c.Set(fiber.HeaderContentType, "text/event-stream; charset=utf-8")
		c.Set(fiber.HeaderCacheControl, "no-cache")
		return c.SendStatus(fiber.StatusOK)
	}
	req, err := s.parseSubscription(c.Query("symbols"), c.Query("interval"), c.Query("mode"))
	if err != nil {
		var pe *errParam
		errors.As(err, &pe)
		return badRequest(c, pe.param, err)
	}
	g, ok := s.authorize(c, req.symbols)
	if !ok {
		return nil
	}
	lastID := c.Get("Last-Event-ID")
	if lastID == "" {
		lastID = c.Query("lastEventId") // for clients that cannot set headers
	}
	addr := s.clientIP(c)
	if !s.acquire(addr) {
		return s.tooMany(c)
	}
	sink := &sseSink{
		addr:    addr,
		srv:     s,
		chunked: c.Context().Request.Header.IsHTTP11(),
	}
	s.initWriter(&sink.w, c.Context().Conn())
	// Counted before Subscribe: a drain may close the sink as soon as it
	// is subscribed, and Close uncounts it.
	s.track(sink, true)
	s.metrics.subscribers.WithLabelValues("sse").Inc()
	origin := strings.Clone(c.Get(fiber.HeaderOrigin))
	opts := fanout.Options{Symbols: req.symbols, Mode: req.mode, Interval: req.interval}
	if s.wantsReplay(lastID, req) {
		// A raw resume: the stream starts now, the subscriber joins the hub
		// once its replay has caught up (resume.go).
		lastID = strings.Clone(lastID)
		c.Context().HijackSetNoResponse(true)
		c.Context().Hijack(func(net.Conn) { s.resumeSSE(sink, req, opts, g, lastID, origin) })
		return nil
	}
	sub, snap, cursor, err := s.cfg.Hub.Subscribe(opts, sink)
	if err != nil {
		sink.released.Do(func() {
			s.release(addr)
			s.track(sink, false)
			s.metrics.subscribers.WithLabelValues("sse").Dec()
		})
		return subscribeError(c, err)
	}
	if !g.expires.IsZero() {
		sink.setExpiry(time.AfterFunc(time.Until(g.expires), func() { sub.CloseWith(ErrTokenExpired) }))
	}
	lastID = strings.Clone(lastID)
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(net.Conn) {
		s.startSSE(sink, sub, req, snap, cursor, lastID, origin)
	})
	return nil
}

// resumeSSE runs a raw subscriber's resume from lastID (resume.go): the
// response head and hello at once, then the missed ticks page by page as
// the client takes them, each page with its id: points, then ready and
// live updates. It runs on the connection's goroutine.
func (s *Server) resumeSSE(sink *sseSink, req subRequest, opts fanout.Options, g grant, lastID, origin string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !sink.setStop(cancel) {
		return // closed meanwhile (a drain)
	}
	b := s.appendSSEHead(nil, sink, origin)
	body := s.appendHello(nil, req, fanout.Raw, 0, true)
	if err := sink.w.sendWait(sink.frame(b, body), resumeStall); err != nil {
		sink.Close(err)
		return
	}
	r := rawResume{srv: s, syms: req.symbols, addr: sink.addr, lastID: lastID,
		subscribe: func() (*fanout.Subscriber, []*fanout.Update, string, error) { return s.cfg.Hub.Subscribe(opts, sink) },
		out:       sink.writeReplay,
	}
	res, err := r.run(ctx)
	if err != nil {
		sink.Close(err)
		return
	}
	if !g.expires.IsZero() {
		sub := res.sub
		sink.setExpiry(time.AfterFunc(time.Until(g.expires), func() { sub.CloseWith(ErrTokenExpired) }))
	}
	body = body[:0]
	if res.resync != "" {
		body = appendEvent(body, "resync", map[string]string{"reason": res.resync})
		body = appendSnapshot(body, res.snap, s.refs)
	}
	body = appendReady(body, res.cursor)
	if err := sink.w.send(sink.frame(nil, body)); errors.Is(err, fanout.ErrSlow) {
		sink.w.flushLater()
	} else if err != nil {
		res.sub.CloseWith(err)
		return
	}
	res.sub.Start()
}

// writeReplay writes a raw resume's replayed ticks, each piece with its
// id: points, as the client takes them.
func (k *sseSink) writeReplay(ups []*fanout.Update, marks []fanout.Mark) error {
	return replayPieces(ups, marks, func(b *fanout.Batch) error {
		return k.w.sendWait(k.encode(b), resumeStall)
	})
}

// startSSE writes the response head, hello, the snapshot (or replay) and
// ready, then hands the subscriber to the hub. It runs on the connection's
// goroutine, which ends when it returns.
func (s *Server) startSSE(sink *sseSink, sub *fanout.Subscriber, req subRequest, snap []*fanout.Update, cursor, lastID, origin string) {
	size := 512 + len(cursor)
	for _, u := range snap {
		if u != nil {
			size += len(sseTick) + len(u.JSON) + 2 + maxRefLen
		}
	}
	buf := make([]byte, 0, size+8*len(req.symbols)) // the head, the snapshot and hello's symbol list
	buf = s.appendSSEHead(buf, sink, origin)
	// The events are built in place behind a gap for their chunk header;
	// the short HTTP head moves up to meet it, not the long body.
	headLen := len(buf)
	if sink.chunked {
		buf = append(buf, make([]byte, headRoom)...)
	}
	bodyStart := len(buf)
	buf = s.initialEvents(buf, sub, req, snap, cursor, lastID, sink.addr)
	if sink.chunked {
		var hdr [headRoom]byte
		size := append(strconv.AppendUint(hdr[:0], uint64(len(buf)-bodyStart), 16), '\r', '\n')
		start := bodyStart - len(size)
		copy(buf[start:], size)
		copy(buf[start-headLen:], buf[:headLen])
		buf = append(buf[start-headLen:], '\r', '\n')
	}
	// What the socket does not take now stays pending: the hub's writers
	// finish it (the subscriber is then slow), nobody waits for the peer.
	if err := sink.w.sendHead(buf); errors.Is(err, fanout.ErrSlow) {
		sink.w.flushLater()
	} else if err != nil {
		sub.CloseWith(err)
		return
	}
	sub.Start()
}

// appendSSEHead appends a stream's HTTP response head.
func (s *Server) appendSSEHead(buf []byte, sink *sseSink, origin string) []byte {
	buf = append(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"+
		"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nX-Tickstream-Node: "...)
	buf = append(buf, s.cfg.Node...)
	if origin != "" {
		buf = append(buf, "\r\nAccess-Control-Allow-Origin: *"...)
	}
	if sink.chunked {
		// Connection: close: the node closes a stream's socket when the
		// stream ends (goaway, drain, rebalancing), so a proxy must not keep
		// it for another request (nginx would meet a reset and mark the node
		// failed).
		return append(buf, "\r\nConnection: close\r\nTransfer-Encoding: chunked\r\n\r\n"...)
	}
	return append(buf, "\r\nConnection: close\r\n\r\n"...)
}

// hello is the first event of every stream.
type hello struct {
	Node       string   `json:"node"`
	Mode       string   `json:"mode"`
	Interval   string   `json:"interval"`
	IntervalMs int64    `json:"interval_ms"`
	Symbols    []string `json:"symbols"`
	Resumed    bool     `json:"resumed"`
}

// initialEvents appends retry, hello, then the snapshot, then ready, to b
// (a raw resume goes through resumeSSE instead).
func (s *Server) initialEvents(b []byte, sub *fanout.Subscriber, req subRequest, snap []*fanout.Update, cursor, lastID, addr string) []byte {
	b = s.appendHello(b, req, sub.Mode(), sub.Interval(), lastID != "")
	if resync := s.resumeSnapshot(snap, cursor, lastID, sub.Mode()); resync != "" {
		b = appendEvent(b, "resync", map[string]string{"reason": resync})
	}
	b = appendSnapshot(b, snap, s.refs)
	return appendReady(b, cursor)
}

// appendHello appends retry and the hello event.
func (s *Server) appendHello(b []byte, req subRequest, mode fanout.Mode, ivl time.Duration, resumed bool) []byte {
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, s.cfg.Retry.Milliseconds(), 10)
	b = append(b, '\n', '\n')
	h := hello{Node: s.cfg.Node, Mode: mode.String(), Interval: ivl.String(),
		IntervalMs: ivl.Milliseconds(), Symbols: req.symbols, Resumed: resumed}
	return appendEvent(b, "hello", h)
}

// appendSnapshot appends a tick event for each value of snap, with its
// symbol's reference members.
func appendSnapshot(b []byte, snap []*fanout.Update, refs *refTable) []byte {
	for _, u := range snap {
		if u != nil {
			b = append(b, sseTick...)
			b = refs.appendTick(b, u)
			b = append(b, '\n', '\n')
		}
	}
	return b
}

// appendReady appends the ready event, which carries the cursor.
func appendReady(b []byte, cursor string) []byte {
	b = append(b, "event: ready\nid: "...)
	b = append(b, cursor...)
	b = append(b, "\ndata: {\"cursor\":"...)
	b = strconv.AppendQuote(b, cursor)
	return append(b, "}\n\n"...)
}

// maxRefLen is room for a snapshot tick's reference members (see refTable).
const maxRefLen = 64

// refTable holds, for each symbol of a universe, the members a snapshot
// tick carries beyond a live one: `,"prev_close":"…","open":"…"` (the
// session's reference prices as decimal strings on the symbol's grid, each
// left out when unknown). Live updates do not carry them: their bytes are
// the source's, shared by every subscriber.
type refTable struct {
	refs map[string][]byte
}

// newRefTable builds u's table.
func newRefTable(u *feed.Universe) *refTable {
	t := &refTable{refs: make(map[string][]byte, u.Len())}
	for _, sym := range u.Symbols() {
		var b []byte
		b = appendRef(b, `,"prev_close":"`, sym.PrevClose, sym.TickSize)
		b = appendRef(b, `,"open":"`, sym.Open, sym.TickSize)
		if len(b) > 0 {
			t.refs[sym.Name] = b
		}
	}
	return t
}

// appendRef appends name and d (with at least the decimals of the tick
// size, as the feed writes its prices), unless d is zero (unknown).
func appendRef(b []byte, name string, d, tick decimal.Decimal) []byte {
	if !d.IsPositive() {
		return b
	}
	places := max(-tick.Exponent(), -d.Exponent(), 0)
	b = append(b, name...)
	b = append(b, d.StringFixed(places)...)
	return append(b, '"')
}

// appendTick appends u's JSON with the symbol's reference members before
// its closing brace (t nil: as it is).
func (t *refTable) appendTick(b []byte, u *fanout.Update) []byte {
	js := u.JSON
	if t == nil || len(js) == 0 || js[len(js)-1] != '}' {
		return append(b, js...)
	}
	ref := t.refs[u.Sym]
	if len(ref) == 0 {
		return append(b, js...)
	}
	b = append(b, js[:len(js)-1]...)
	b = append(b, ref...)
	return append(b, '}')
}

func appendEvent(b []byte, name string, v any) []byte {
	js, _ := json.Marshal(v)
	b = append(b, "event: "...)
	b = append(b, name...)
	b = append(b, "\ndata: "...)
	b = append(b, js...)
	return append(b, '\n', '\n')
}

func (s *Server) track(k *sseSink, add bool) {
	s.mu.Lock()
	if add {
		s.conns[k] = struct{}{}
	} else {
		delete(s.conns, k)
	}
	s.mu.Unlock()
}

// sseSink writes a subscriber's batches to its hijacked connection.
type sseSink struct {
	addr     string // client address, for the per-address limit
	srv      *Server
	w        connWriter
	chunked  bool
	released sync.Once // the accounting, whoever closes the socket first

	mu     sync.Mutex // expiry, stop and gone, set by two goroutines
	gone   bool
	expiry *time.Timer
	stop   func() // ends a resume in progress (resumeSSE)
}

// setStop sets what Close calls to end a resume in progress; it reports
// false (and calls nothing) if the sink is already closed.
func (k *sseSink) setStop(stop func()) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gone {
		return false
	}
	k.stop = stop
	return true
}

// setExpiry arms the token's expiry, unless the sink is already closed.
func (k *sseSink) setExpiry(t *time.Timer) {
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.gone {
		t.Stop()
		return
	}
	k.expiry = t
}

// Send implements fanout.Sink. The batch is encoded into a pooled buffer
// (the ticks' JSON is copied, never re-encoded) and written in one call.
func (k *sseSink) Send(b *fanout.Batch) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	out := k.encodeInto(bp, b)
	return k.w.send(out)
}

// encode returns b's bytes on the wire, in a buffer of its own.
func (k *sseSink) encode(b *fanout.Batch) []byte {
	buf := make([]byte, 0, 4096)
	return k.encodeInto(&buf, b)
}

// encodeInto encodes b into *bp (kept for reuse) and returns the bytes to
// write: its events, as one HTTP chunk when the stream is chunked.
func (k *sseSink) encodeInto(bp *[]byte, b *fanout.Batch) []byte {
	buf := encodeBatch((*bp)[:headRoom], b)
	out := buf[headRoom:]
	if k.chunked && len(out) > 0 {
		var hdr [headRoom]byte
		size := append(strconv.AppendUint(hdr[:0], uint64(len(out)), 16), '\r', '\n')
		buf = append(buf, '\r', '\n')
		out = withHeader(buf, size)
	}
	*bp = buf[:0]
	return out
}

// frame appends body to dst as one HTTP chunk (or as is, without chunked
// encoding).
func (k *sseSink) frame(dst, body []byte) []byte {
	if !k.chunked {
		return append(dst, body...)
	}
	dst = strconv.AppendUint(dst, uint64(len(body)), 16)
	dst = append(dst, '\r', '\n')
	dst = append(dst, body...)
	return append(dst, '\r', '\n')
}

// encodeBatch appends a batch's SSE events to dst.
func encodeBatch(dst []byte, b *fanout.Batch) []byte {
	n := len(dst)
	if b.Resync {
		dst = append(dst, "event: resync\ndata: {\"reason\":\"history lost (new epoch)\"}\n\n"...)
	}
	if b.Lagging {
		dst = append(dst, "event: lagging\ndata: {\"reason\":\"slow consumer: updates are conflated harder\"}\n\n"...)
	}
	m := 0
	for i, u := range b.Updates {
		dst = append(dst, sseTick...)
		dst = append(dst, u.JSON...)
		dst = append(dst, '\n')
		switch {
		case m < len(b.Marks) && b.Marks[m].End == i+1:
			// A raw batch's boundary: the client's Last-Event-ID moves here,
			// so a write cut after it is resumed from here.
			dst = append(dst, "id: "...)
			dst = append(dst, b.Marks[m].Cursor...)
			dst = append(dst, '\n')
			m++
		case i == len(b.Updates)-1 && b.Cursor != "":
			dst = append(dst, "id: "...)
			dst = append(dst, b.Cursor...)
			dst = append(dst, '\n')
		}
		dst = append(dst, '\n')
	}
	if len(dst) == n && b.Heartbeat {
		dst = append(dst, sseHeartbeat...)
	}
	return dst
}

// PeerGone implements fanout.PeerProber.
func (k *sseSink) PeerGone() bool { return k.w.peerGone() }

// Close implements fanout.Sink: a best-effort goaway event saying why, the
// end of the chunked body, then the socket is closed.
func (k *sseSink) Close(reason error) {
	var last []byte
	if reason != nil {
		retry := 250 + rand.IntN(1000)
		last = k.frame(nil, appendEvent([]byte("retry: "+strconv.Itoa(retry)+"\n"), "goaway", map[string]string{"reason": reason.Error()}))
		if k.chunked {
			last = append(last, "0\r\n\r\n"...)
		}
	}
	k.w.close(last)
	k.mu.Lock()
	k.gone = true
	if k.expiry != nil {
		k.expiry.Stop()
	}
	if k.stop != nil {
		k.stop()
	}
	k.mu.Unlock()
	k.released.Do(func() {
		k.srv.release(k.addr)
		k.srv.track(k, false)
		k.srv.metrics.subscribers.WithLabelValues("sse").Dec()
	})
}
