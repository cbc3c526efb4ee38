package transport

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/gofiber/fiber/v2"

	"github.com/tickstream/tickstream/fanout"
)

// Polling: both answers come from the hub's latest values, no Redis round
// trip. A token is "<epoch>~<seq>.<seq>…" (base 36), one seq per requested
// symbol in the order of the request: it says what the client holds, so any
// node can answer it.

// pollToken encodes the seqs of ups (0 for a symbol without a value).
func pollToken(epoch string, ups []*fanout.Update) string {
	b := make([]byte, 0, len(epoch)+1+6*len(ups))
	b = append(b, epoch...)
	b = append(b, '~')
	for i, u := range ups {
		if i > 0 {
			b = append(b, '.')
		}
		var seq uint64
		if u != nil {
			seq = u.Seq
		}
		b = strconv.AppendUint(b, seq, 36)
	}
	return string(b)
}

// parseToken decodes a token for n symbols.
func parseToken(tok string, n int) (string, []uint64, error) {
	epoch, rest, ok := strings.Cut(tok, "~")
	if !ok || len(tok) > 64+14*n {
		return "", nil, errors.New("malformed token")
	}
	parts := strings.Split(rest, ".")
	if len(parts) != n {
		return "", nil, fmt.Errorf("token holds %d symbols, the request %d: poll with the same symbols, in the same order", len(parts), n)
	}
	seqs := make([]uint64, n)
	for i, p := range parts {
		v, err := strconv.ParseUint(p, 36, 64)
		if err != nil {
			return "", nil, errors.New("malformed token")
		}
		seqs[i] = v
	}
	return epoch, seqs, nil
}

// appendPollBody appends {"token":…,"resync":…,"ticks":[…]} with the
// updates that are not nil (with refs, a snapshot's: each tick carries its
// symbol's prev_close and open).
func appendPollBody(b []byte, token string, resync bool, ups []*fanout.Update, refs *refTable) []byte {
	b = append(b, `{"token":`...)
	b = strconv.AppendQuote(b, token)
	if resync {
		b = append(b, `,"resync":true`...)
	}
	b = append(b, `,"ticks":[`...)
	first := true
	for _, u := range ups {
		if u == nil {
			continue
		}
		if !first {
			b = append(b, ',')
		}
		first = false
		b = refs.appendTick(b, u)
	}
	return append(b, "]}"...)
}

// sendPoll answers ups: a snapshot (every symbol's latest value, with its
// prev_close and open) or, from a long poll with a token, the changes.
func (s *Server) sendPoll(c *fiber.Ctx, token string, resync, snapshot bool, ups []*fanout.Update) error {
	c.Set(fiber.HeaderContentType, fiber.MIMEApplicationJSON)
	c.Set(fiber.HeaderCacheControl, "no-cache")
	c.Set("X-Poll-Token", token)
	var refs *refTable
	if snapshot {
		refs = s.refs
	}
	return c.Send(appendPollBody(make([]byte, 0, 64+(150+maxRefLen)*len(ups)), token, resync, ups, refs))
}

// handleSnapshot is short polling: the latest value of each symbol, with an
// ETag (the token); If-None-Match with it answers 304.
func (s *Server) handleSnapshot(c *fiber.Ctx) error {
	tk, r := s.admit(c, snapshotTransport, nil)
	if r != nil {
		if r.status == fiber.StatusBadRequest {
			s.metrics.requests.WithLabelValues("snapshot", "400").Inc()
		}
		return r.renderHTTP(c)
	}
	ups := s.cfg.Hub.Latest(tk.req.symbols)
	token := pollToken(epochOf(s.cfg.Hub.Cursor()), ups)
	etag := `"` + token + `"`
	c.Set(fiber.HeaderETag, etag)
	if inm := c.Get(fiber.HeaderIfNoneMatch); inm != "" && (inm == etag || inm == "W/"+etag) {
		s.metrics.requests.WithLabelValues("snapshot", "304").Inc()
		c.Set(fiber.HeaderCacheControl, "no-cache")
		return c.SendStatus(fiber.StatusNotModified)
	}
	s.metrics.requests.WithLabelValues("snapshot", "200").Inc()
	return s.sendPoll(c, token, false, true, ups)
}

// handlePoll is long polling: it answers as soon as a symbol has a value
// newer than the token says the client holds (with only those), or 204
// after the timeout. Without a token, or with one of another epoch, it
// answers the snapshot at once, holding no stream slot.
func (s *Server) handlePoll(c *fiber.Ctx) error {
	wait := s.cfg.PollTimeout
	epochNow := ""
	var after string
	var held []uint64 // what the client holds; nil: answer the snapshot at once
	resync := false   // the client's token is of another epoch
	tk, r := s.admit(c, pollTransport, func(tk *ticket) (bool, *refusal) {
		if q := c.Query("timeout"); q != "" {
			d, err := ParseInterval(q)
			if err != nil {
				return false, badParam("timeout", err)
			}
			wait = min(d, s.cfg.PollTimeout)
		}
		epochNow = epochOf(s.cfg.Hub.Cursor())
		if after = c.Query("after"); after == "" {
			return false, nil // the snapshot, at once
		}
		epoch, seqs, err := parseToken(after, len(tk.req.symbols))
		if err != nil {
			return false, badParam("after", err)
		}
		if epoch != epochNow {
			resync = true // the snapshot, at once
			return false, nil
		}
		held = seqs
		return true, nil
	})
	if r != nil {
		return r.renderHTTP(c)
	}
	syms := tk.req.symbols
	if held == nil {
		ups := s.cfg.Hub.Latest(syms)
		s.metrics.requests.WithLabelValues("poll", "200").Inc()
		return s.sendPoll(c, pollToken(epochNow, ups), resync, true, ups)
	}
	defer tk.release()
	sink := &pollSink{ch: make(chan struct{}, 1), done: make(chan struct{})}
	sub, snap, _, err := s.cfg.Hub.Subscribe(tk.opts(), sink)
	if err != nil {
		return subscribeRefusal(err).renderHTTP(c)
	}
	s.metrics.subscribers.WithLabelValues(pollTransport.name).Inc()
	defer s.metrics.subscribers.WithLabelValues(pollTransport.name).Dec()
	defer sub.Close()
	if !newer(snap, held) {
		sub.Start()
		t := time.NewTimer(wait)
		defer t.Stop()
	hold:
		for {
			select {
			case <-sink.ch:
				// Only a value newer than the client's ends the wait (or a new
				// epoch: the client must resync).
				if epochOf(s.cfg.Hub.Cursor()) != epochNow {
					ups := s.cfg.Hub.Latest(syms)
					s.metrics.requests.WithLabelValues("poll", "200").Inc()
					return s.sendPoll(c, pollToken(epochOf(s.cfg.Hub.Cursor()), ups), true, true, ups)
				}
				if newer(s.cfg.Hub.Latest(syms), held) {
					break hold
				}
			case <-sink.done:
				c.Set(fiber.HeaderConnection, "close")
				s.metrics.requests.WithLabelValues("poll", "204").Inc()
				return c.SendStatus(fiber.StatusNoContent)
			case <-t.C:
				c.Set("X-Poll-Token", after)
				s.metrics.requests.WithLabelValues("poll", "204").Inc()
				return c.SendStatus(fiber.StatusNoContent)
			}
		}
	}
	ups := s.cfg.Hub.Latest(syms)
	token := pollToken(epochNow, ups)
	for i, u := range ups {
		if u != nil && u.Seq <= held[i] {
			ups[i] = nil // the client holds it already
		}
	}
	s.metrics.requests.WithLabelValues("poll", "200").Inc()
	return s.sendPoll(c, token, false, false, ups) // changes: as sent live
}

// newer reports whether any value is newer than what the client holds.
func newer(ups []*fanout.Update, held []uint64) bool {
	for i, u := range ups {
		if u != nil && u.Seq > held[i] {
			return true
		}
	}
	return false
}

// pollSink signals the batches with values (or a resync) a long poll's
// subscriber receives; heartbeats and lagging notices do not wake it.
type pollSink struct {
	ch   chan struct{}
	done chan struct{}
}

// Send implements fanout.Sink.
func (p *pollSink) Send(b *fanout.Batch) error {
	if len(b.Updates) == 0 && !b.Resync {
		return nil // a keep-alive: a long poll's keep-alive is its 204
	}
	select {
	case p.ch <- struct{}{}:
	default:
	}
	return nil
}

// Close implements fanout.Sink.
func (p *pollSink) Close(reason error) {
	if reason != nil {
		close(p.done)
	}
}
