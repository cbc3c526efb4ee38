package transport

import (
	"context"
	"encoding/json"
	"errors"
	"math/rand/v2"
	"net"
	"strconv"
	"sync"
	"time"

	"github.com/gofiber/fiber/v2"

	"tickstream/fanout"
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
	req, err := s.parseSubscription(c.Query("symbols"), c.Query("interval"), c.Query("mode"))
	if err != nil {
		var pe *errParam
		errors.As(err, &pe)
		return badRequest(c, pe.param, err)
	}
	lastID := c.Get("Last-Event-ID")
	if lastID == "" {
		lastID = c.Query("lastEventId") // for clients that cannot set headers
	}
	sink := &sseSink{
		srv:     s,
		conn:    c.Context().Conn(),
		timeout: s.cfg.WriteTimeout,
		chunked: c.Context().Request.Header.IsHTTP11(),
	}
	sub, snap, cursor, err := s.cfg.Hub.Subscribe(fanout.Options{Symbols: req.symbols, Mode: req.mode, Interval: req.interval}, sink)
	if err != nil {
		return subscribeError(c, err)
	}
	s.track(sink, true)
	s.metrics.subscribers.WithLabelValues("sse").Inc()
	origin := c.Get(fiber.HeaderOrigin)
	c.Context().HijackSetNoResponse(true)
	c.Context().Hijack(func(net.Conn) {
		s.startSSE(sink, sub, req, snap, cursor, lastID, origin)
	})
	return nil
}

// startSSE writes the response head, hello, the snapshot (or replay) and
// ready, then hands the subscriber to the hub. It runs on the connection's
// goroutine, which ends when it returns.
func (s *Server) startSSE(sink *sseSink, sub *fanout.Subscriber, req subRequest, snap []*fanout.Update, cursor, lastID, origin string) {
	buf := make([]byte, 0, 512+160*len(snap))
	buf = append(buf, "HTTP/1.1 200 OK\r\nContent-Type: text/event-stream; charset=utf-8\r\n"+
		"Cache-Control: no-cache\r\nX-Accel-Buffering: no\r\nX-Tickstream-Node: "...)
	buf = append(buf, s.cfg.Node...)
	if origin != "" {
		buf = append(buf, "\r\nAccess-Control-Allow-Origin: *"...)
	}
	if sink.chunked {
		buf = append(buf, "\r\nConnection: keep-alive\r\nTransfer-Encoding: chunked\r\n\r\n"...)
	} else {
		buf = append(buf, "\r\nConnection: close\r\n\r\n"...)
	}
	buf = sink.frame(buf, s.initialEvents(sub, req, snap, cursor, lastID))
	if err := sink.writeAll(buf, 5*time.Second); err != nil {
		sub.Close()
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

// initialEvents builds retry, hello, then the snapshot (conflated, or raw
// without a usable cursor) or the replay (raw with Last-Event-ID), then
// ready.
func (s *Server) initialEvents(sub *fanout.Subscriber, req subRequest, snap []*fanout.Update, cursor, lastID string) []byte {
	var b []byte
	b = append(b, "retry: "...)
	b = strconv.AppendInt(b, s.cfg.Retry.Milliseconds(), 10)
	b = append(b, '\n', '\n')
	h := hello{Node: s.cfg.Node, Mode: sub.Mode().String(), Interval: sub.Interval().String(),
		IntervalMs: sub.Interval().Milliseconds(), Symbols: req.symbols, Resumed: lastID != ""}
	b = appendEvent(b, "hello", h)
	ticks, resync := s.resume(sub, snap, cursor, lastID, req.symbols)
	if resync != "" {
		b = appendEvent(b, "resync", map[string]string{"reason": resync})
	}
	for _, u := range ticks {
		if u != nil {
			b = append(b, sseTick...)
			b = append(b, u.JSON...)
			b = append(b, '\n', '\n')
		}
	}
	b = append(b, "event: ready\nid: "...)
	b = append(b, cursor...)
	b = append(b, "\ndata: {\"cursor\":"...)
	b = strconv.AppendQuote(b, cursor)
	return append(b, "}\n\n"...)
}

// resume decides what follows hello: for a raw subscriber with a cursor,
// the ticks it missed (replayed from the source); otherwise the snapshot.
// A non-empty resync reason means history could not cover the gap.
func (s *Server) resume(sub *fanout.Subscriber, snap []*fanout.Update, cursor, lastID string, syms []string) ([]*fanout.Update, string) {
	if lastID == "" {
		return snap, ""
	}
	if epochOf(lastID) != epochOf(cursor) {
		return snap, "history lost (new epoch)"
	}
	if sub.Mode() != fanout.Raw {
		return snap, ""
	}
	if s.cfg.History == nil {
		return snap, "no history to replay from"
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	missed, err := s.cfg.History.Replay(ctx, lastID, cursor, syms)
	if err != nil {
		return snap, "cannot replay: " + err.Error()
	}
	s.metrics.replayed.Add(float64(len(missed)))
	return missed, ""
}

// epochOf returns the epoch part of a cursor: the text before its first dot.
func epochOf(cursor string) string {
	for i := 0; i < len(cursor); i++ {
		if cursor[i] == '.' {
			return cursor[:i]
		}
	}
	return cursor
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
	srv     *Server
	conn    net.Conn
	timeout time.Duration
	chunked bool

	mu      sync.Mutex
	pending []byte // bytes of the last batch the peer has not taken yet
	closed  bool
}

var bufPool = sync.Pool{New: func() any { b := make([]byte, 0, 4096); return &b }}

// chunkRoom is the space reserved before a batch for its chunk header.
const chunkRoom = 10

// Send implements fanout.Sink. The batch is encoded into a pooled buffer
// (the ticks' JSON is copied, never re-encoded) and written in one call.
func (k *sseSink) Send(b *fanout.Batch) error {
	bp := bufPool.Get().(*[]byte)
	defer bufPool.Put(bp)
	buf := encodeBatch((*bp)[:chunkRoom], b)
	*bp = buf[:0]
	out := buf[chunkRoom:]
	if k.chunked && len(out) > 0 {
		var hdr [chunkRoom]byte
		h := append(strconv.AppendUint(hdr[:0], uint64(len(out)), 16), '\r', '\n')
		start := chunkRoom - len(h)
		copy(buf[start:], h)
		buf = append(buf, '\r', '\n')
		*bp = buf[:0]
		out = buf[start:]
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if k.closed {
		return net.ErrClosed
	}
	if len(k.pending) > 0 {
		k.pending = append(k.pending, out...)
		out = k.pending
	}
	return k.write(out)
}

// write writes p within the write timeout; on a timeout it keeps the rest
// and returns fanout.ErrSlow. Called with mu held.
func (k *sseSink) write(p []byte) error {
	if len(p) == 0 {
		return nil
	}
	_ = k.conn.SetWriteDeadline(time.Now().Add(k.timeout))
	n, err := k.conn.Write(p)
	if err == nil {
		k.pending = k.pending[:0]
		return nil
	}
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		rest := append([]byte(nil), p[n:]...)
		k.pending = rest
		return fanout.ErrSlow
	}
	return err
}

// writeAll writes p completely within d (the stream's head).
func (k *sseSink) writeAll(p []byte, d time.Duration) error {
	k.mu.Lock()
	defer k.mu.Unlock()
	_ = k.conn.SetWriteDeadline(time.Now().Add(d))
	_, err := k.conn.Write(p)
	return err
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
	if b.Resync {
		dst = append(dst, "event: resync\ndata: {\"reason\":\"history lost (new epoch)\"}\n\n"...)
	}
	if b.Lagging {
		dst = append(dst, "event: lagging\ndata: {\"reason\":\"slow consumer: updates are conflated harder\"}\n\n"...)
	}
	for i, u := range b.Updates {
		dst = append(dst, sseTick...)
		dst = append(dst, u.JSON...)
		dst = append(dst, '\n')
		if i == len(b.Updates)-1 && b.Cursor != "" {
			dst = append(dst, "id: "...)
			dst = append(dst, b.Cursor...)
			dst = append(dst, '\n')
		}
		dst = append(dst, '\n')
	}
	if len(dst) == 0 && b.Heartbeat {
		dst = append(dst, sseHeartbeat...)
	}
	return dst
}

// Close implements fanout.Sink: a best-effort goaway event saying why, the
// end of the chunked body, then the socket is closed.
func (k *sseSink) Close(reason error) {
	_ = k.conn.SetWriteDeadline(time.Now()) // unblock a Send in progress
	k.mu.Lock()
	if k.closed {
		k.mu.Unlock()
		return
	}
	k.closed = true
	k.mu.Unlock()
	if reason != nil && len(k.pending) == 0 {
		retry := 250 + rand.IntN(1000)
		body := appendEvent([]byte("retry: "+strconv.Itoa(retry)+"\n"), "goaway", map[string]string{"reason": reason.Error()})
		out := k.frame(nil, body)
		if k.chunked {
			out = append(out, "0\r\n\r\n"...)
		}
		_ = k.conn.SetWriteDeadline(time.Now().Add(50 * time.Millisecond))
		_, _ = k.conn.Write(out)
	}
	_ = k.conn.Close()
	k.srv.track(k, false)
	k.srv.metrics.subscribers.WithLabelValues("sse").Dec()
}
