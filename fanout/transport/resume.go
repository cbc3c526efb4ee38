package transport

import (
	"context"
	"strings"
	"sync"
	"time"

	"tickstream/fanout"
)

// Defaults of the resume settings (see Config).
const (
	defaultResumeWait           = 3 * time.Second
	defaultMaxReplays           = 8
	defaultMaxReplaysPerAddress = 2
)

// awaitSource is called before a raw subscriber resuming at lastID is
// registered. Raw mode is exact across nodes: a subscriber never receives a
// position at or before its cursor. A node whose reader is behind the
// cursor on a shard of the subscriber (paused, loaded, just started) would
// register it at its own older position and send again what the client
// has; so it waits, up to ResumeWait, for its reader to pass the cursor,
// looking at the hub's cursor as it moves (and first waking a reader that
// rests because nobody watched the node: Hub.Look). If the reader does not get there
// in time, resume finds the subscription still behind and sends a resync.
func (s *Server) awaitSource(lastID string, req subRequest) {
	if lastID == "" || req.mode != fanout.Raw || s.cfg.History == nil {
		return
	}
	wait := s.cfg.ResumeWait
	if wait <= 0 {
		wait = defaultResumeWait
	}
	deadline := time.Now().Add(wait)
	for looked := false; ; looked = true {
		cur := s.cfg.Hub.Cursor()
		if epochOf(cur) != epochOf(lastID) {
			return // resume answers: history lost
		}
		behind, err := s.cfg.History.Behind(cur, lastID, req.symbols)
		if err != nil || !behind || time.Now().After(deadline) {
			return
		}
		if !looked {
			// A node nobody watched rests between reads (--read-idle):
			// wake its reader, and wait for it to catch up.
			s.cfg.Hub.Look()
			continue
		}
		// The hub's cursor moves with every read of the feed (a few ms).
		time.Sleep(2 * time.Millisecond)
	}
}

// resume decides what follows hello: for a raw subscriber with a cursor,
// the ticks it missed (replayed from the source, each after the cursor);
// otherwise the snapshot. A non-empty resync reason means the node cannot
// continue exactly from the cursor: history lost, this node still behind
// it, or a replay refused (too long, or too many at once on this node or
// from this address); the client then gets a fresh snapshot.
func (s *Server) resume(sub *fanout.Subscriber, snap []*fanout.Update, cursor, lastID string, syms []string, addr string) ([]*fanout.Update, string) {
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
	behind, err := s.cfg.History.Behind(cursor, lastID, syms)
	if err != nil {
		s.metrics.refused.WithLabelValues("replay_bad_cursor").Inc()
		return snap, "cannot replay: " + err.Error()
	}
	if behind {
		s.metrics.refused.WithLabelValues("replay_node_behind").Inc()
		return snap, "this node has not read as far as the cursor yet"
	}
	if !s.replays.acquire(addr, s.cfg.MaxReplays, s.cfg.MaxReplaysPerAddress) {
		s.metrics.refused.WithLabelValues("replay_busy").Inc()
		return snap, "too many replays at once: resynchronising instead"
	}
	defer s.replays.release(addr)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	missed, err := s.cfg.History.Replay(ctx, lastID, cursor, syms)
	if err != nil {
		reason := "replay_gap"
		if strings.Contains(err.Error(), "budget") { // the span or size was refused, not lost
			reason = "replay_budget"
		}
		s.metrics.refused.WithLabelValues(reason).Inc()
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

// replayGate counts the replays running, per node and per client address.
type replayGate struct {
	mu      sync.Mutex
	total   int
	perAddr map[string]int
}

// acquire takes a replay slot for addr, or reports false past a limit
// (defaults for limits <= 0).
func (g *replayGate) acquire(addr string, max, perAddr int) bool {
	if max <= 0 {
		max = defaultMaxReplays
	}
	if perAddr <= 0 {
		perAddr = defaultMaxReplaysPerAddress
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.total >= max || g.perAddr[addr] >= perAddr {
		return false
	}
	if g.perAddr == nil {
		g.perAddr = map[string]int{}
	}
	g.total++
	g.perAddr[strings.Clone(addr)]++
	return true
}

func (g *replayGate) release(addr string) {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.total--
	if g.perAddr[addr]--; g.perAddr[addr] <= 0 {
		delete(g.perAddr, addr)
	}
}
