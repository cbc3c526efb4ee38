package transport

import (
	"context"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tickstream/tickstream/fanout"
)

// handleSSE admits the request (admit.go), registers the subscriber and
// hijacks the connection: from then on the hub's writers own the socket.
// HEAD answers what a GET would, without a stream or a subscriber.
func (s *Server) handleSSE(c *fiber.Ctx) error {
	if c.Method() == fiber.MethodHead {
		setSSEHeaders(c)
		return c.SendStatus(fiber.StatusOK)
	}
	tk, r := s.admit(c, sseTransport, nil)
	if r != nil {
		return r.renderSSE(c)
	}
	sink := &sseSink{tk: tk, addr: tk.addr, srv: s, chunked: tk.http11}
	s.initWriter(&sink.w, c.Context().Conn())
	// Counted before Subscribe: a drain may close the sink as soon as it
	// is subscribed, and Close uncounts it.
	s.track(sink, true)
	s.metrics.subscribers.WithLabelValues(sseTransport.name).Inc()
	if tk.replay() {
		// A raw resume: the stream starts now, the subscriber joins the hub
		// once its replay has caught up (resume.go).
		c.Context().HijackSetNoResponse(true)
		c.Context().Hijack(func(net.Conn) { s.resumeSSE(sink) })
		return nil
	}
	sub, snap, cursor, err := s.cfg.Hub.Subscribe(tk.opts(), sink)
	if err != nil {
		sink.release()
		return subscribeRefusal(err).renderSSE(c)
	}
	sink.setExpiry(tk.expire(func() { sub.CloseWith(ErrTokenExpired) }))
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(net.Conn) {
		s.startSSE(sink, sub, snap, cursor)
	})
	return nil
}

// resumeSSE runs a raw subscriber's resume from its cursor (resume.go):
// the response head and hello at once, then the missed ticks page by page
// as the client takes them, each page with its id: points, then ready and
// live updates. It runs on the connection's goroutine.
func (s *Server) resumeSSE(sink *sseSink) {
	tk := sink.tk
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	if !sink.setStop(cancel) {
		return // closed meanwhile (a drain)
	}
	b := tk.appendHead(nil)
	body := s.appendHello(nil, tk.req, fanout.Raw, 0, true)
	if err := sink.w.sendWait(sink.frame(b, body), resumeStall); err != nil {
		sink.Close(err)
		return
	}
	opts := tk.opts()
	r := rawResume{srv: s, syms: tk.req.symbols, addr: tk.addr, lastID: tk.lastID,
		subscribe: func() (*fanout.Subscriber, []*fanout.Update, string, error) { return s.cfg.Hub.Subscribe(opts, sink) },
		out:       sink.writeReplay,
	}
	res, err := r.run(ctx)
	if err != nil {
		sink.Close(err)
		return
	}
	sub := res.sub
	sink.setExpiry(tk.expire(func() { sub.CloseWith(ErrTokenExpired) }))
	body = body[:0]
	if res.resync != "" {
		body = appendSSEControl(body, 0, ctlResync, res.resync)
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

// startSSE writes the response head, hello, the snapshot and ready, then
// hands the subscriber to the hub. It runs on the connection's goroutine,
// which ends when it returns.
func (s *Server) startSSE(sink *sseSink, sub *fanout.Subscriber, snap []*fanout.Update, cursor string) {
	tk := sink.tk
	size := 512 + len(cursor)
	for _, u := range snap {
		if u != nil {
			size += len(u.JSON) + 20 + maxRefLen // the tick's event and data fields
		}
	}
	buf := make([]byte, 0, size+8*len(tk.req.symbols)) // the head, the snapshot and hello's symbol list
	buf = tk.appendHead(buf)
	// The events are built in place behind a gap for their chunk header;
	// the short HTTP head moves up to meet it, not the long body.
	headLen := len(buf)
	if sink.chunked {
		buf = append(buf, make([]byte, headRoom)...)
	}
	bodyStart := len(buf)
	buf = s.initialEvents(buf, sub, tk.req, snap, cursor, tk.lastID)
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

// hello is the first event of every stream.
type hello struct {
	Node       string   `json:"node"`
	Mode       string   `json:"mode"`
	Interval   string   `json:"interval"`
	IntervalMs int64    `json:"interval_ms"`
	Symbols    []string `json:"symbols"`
	Resumed    bool     `json:"resumed"`
}

// initialEvents appends hello (with retry:), then the snapshot, then
// ready, to b (a raw resume goes through resumeSSE instead).
func (s *Server) initialEvents(b []byte, sub *fanout.Subscriber, req subRequest, snap []*fanout.Update, cursor, lastID string) []byte {
	b = s.appendHello(b, req, sub.Mode(), sub.Interval(), lastID != "")
	if resync := s.resumeSnapshot(cursor, lastID, sub.Mode()); resync != "" {
		b = appendSSEControl(b, 0, ctlResync, resync)
	}
	b = appendSnapshot(b, snap, s.refs)
	return appendReady(b, cursor)
}

// appendHello appends the hello event, with the retry: delay.
func (s *Server) appendHello(b []byte, req subRequest, mode fanout.Mode, ivl time.Duration, resumed bool) []byte {
	h := hello{Node: s.cfg.Node, Mode: mode.String(), Interval: ivl.String(),
		IntervalMs: ivl.Milliseconds(), Symbols: req.symbols, Resumed: resumed}
	return appendSSEJSON(b, int(s.cfg.Retry.Milliseconds()), "hello", h)
}

// appendSnapshot appends a tick event for each value of snap, with its
// symbol's reference members.
func appendSnapshot(b []byte, snap []*fanout.Update, refs *refTable) []byte {
	for _, u := range snap {
		if u != nil {
			b = appendSSETick(b, u, refs)
		}
	}
	return b
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
	tk       *ticket // the admitted request
	addr     string  // client address, for the per-address limit
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

// setExpiry arms the token's expiry (t nil: none), unless the sink is
// already closed.
func (k *sseSink) setExpiry(t *time.Timer) {
	if t == nil {
		return
	}
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
func (k *sseSink) frame(dst, body []byte) []byte { return appendChunk(dst, body, k.chunked) }

// PeerGone implements fanout.PeerProber.
func (k *sseSink) PeerGone() bool { return k.w.peerGone() }

// Close implements fanout.Sink: a best-effort goaway event saying why
// (with a spread retry:), the end of the chunked body, then the socket is
// closed.
func (k *sseSink) Close(reason error) {
	var last []byte
	if reason != nil {
		last = k.frame(nil, appendSSEControl(nil, 250+rand.IntN(1000), closing(reason), reason.Error()))
		if k.chunked {
			last = append(last, lastChunk...)
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
	k.release()
}

// release undoes the sink's accounting, once: its address's stream slot,
// its place among the open sinks, its count.
func (k *sseSink) release() {
	k.released.Do(func() {
		k.tk.release()
		k.srv.track(k, false)
		k.srv.metrics.subscribers.WithLabelValues(sseTransport.name).Dec()
	})
}
