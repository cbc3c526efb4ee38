package fanout

import (
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"
)

// Subscriber states. A subscriber is in exactly one; the transitions are
// compare-and-swaps, so it is queued for the writers at most once.
const (
	stNew      int32 = iota // subscribed, not started
	stIdle                  // armed on its symbols, waiting for a change
	stQueued                // in the ready queue
	stFlushing              // a writer is serving it
	stCooldown              // waiting for its interval to pass
	stClosed
)

// Subscriber is one subscription, living exactly as long as its connection.
type Subscriber struct {
	hub      *Hub
	sink     Sink
	mode     Mode
	interval time.Duration
	// The interval the hub counts for it (Hub.Tightest; -1: not counted),
	// under hub.subMu.
	countedIvl time.Duration
	syms       []*symState

	state     atomic.Int32
	timerGen  atomic.Uint64 // bumped per cooldown; stale wheel timers are ignored
	changeMu  sync.Mutex
	change    *change     // applied by the serving writer
	poke      atomic.Bool // a wake that found the subscriber busy
	needHB    atomic.Bool
	lastWrite atomic.Int64 // UnixNano of the last write
	born      int64        // UnixNano of the subscription (hub clock), set before it is listed

	// Owned by the goroutine serving the subscriber (one at a time).
	sent      []uint64  // last seq sent, per symbol
	epoch     uint64    // hub epoch of the values in sent
	slowSince time.Time // zero unless the sink is slow
	slowIvl   time.Duration
	toldLag   bool // the lagging event went into the sink
	cut       bool // raw: the last write stopped at RawBatchBytes, more is owed

	rawPos     []int32     // raw: where s sits in each symbol's list, under hub.pubMu
	rawGone    bool        // raw: unregistered for good, under hub.pubMu
	overflowed atomic.Bool // raw: overflow, readable without rawMu

	logged   bool   // raw: reads the hub's shared log, under hub.pubMu and rawMu
	logIdx   int    // raw: its place in hub.logSubs, under hub.pubMu
	filter   symSet // raw, logged: its symbols, nil for all of them
	logPos   uint64 // raw, logged: the next log entry it owes, under rawMu
	logLimit uint64 // raw, logged: the log's end when it overflowed

	rawMu     sync.Mutex // raw queue, filled by Publish
	rawQ      []*Update
	rawMarks  []rawMark // the complete published batches in rawQ, in order
	rawCursor string    // the source position after the last complete batch
	overflow  bool
	rawGap    bool // the queue starts with a resync snapshot

	touchGen  uint64 // Publish's dedupe mark, under hub.pubMu
	closeOnce sync.Once
}

// Mode returns the subscriber's mode.
func (s *Subscriber) Mode() Mode { return s.mode }

// Interval returns the interval the subscriber was granted.
func (s *Subscriber) Interval() time.Duration { return s.interval }

// Start begins delivery, once the transport has written the snapshot or
// replay. Updates newer than the snapshot go out at once.
func (s *Subscriber) Start() {
	if s.state.CompareAndSwap(stNew, stQueued) {
		s.hub.ready <- s
	}
}

// Close ends the subscription and closes its sink with reason nil: the
// transport saw the peer go. Safe to call twice.
func (s *Subscriber) Close() { s.closeWith(nil) }

// CloseWith ends the subscription and closes its sink telling the peer
// why (an expired token, say). Safe to call twice, and with Close.
func (s *Subscriber) CloseWith(reason error) { s.closeWith(reason) }

func (s *Subscriber) closeWith(reason error) {
	s.closeOnce.Do(func() {
		s.state.Store(stClosed)
		s.hub.forget(s)
		s.sink.Close(reason)
		switch {
		case errors.Is(reason, ErrSlowConsumer):
			s.hub.stats.SlowDrops.Add(1)
		case errors.Is(reason, ErrOverflow):
			s.hub.stats.Overflows.Add(1)
		}
	})
}

// change is a pending change of a subscriber's symbols or interval.
type change struct {
	syms     []*symState
	interval time.Duration
}

// Change replaces the subscriber's symbols and interval on the live
// subscription (a WebSocket client's subscribe, unsubscribe and interval
// messages). Symbols it did not watch before are sent at once with their
// current value, as a snapshot; symbols it keeps continue where they were.
// interval is granted as in Subscribe; the granted value is returned.
func (s *Subscriber) Change(symbols []string, interval time.Duration) (time.Duration, error) {
	h := s.hub
	ivl, err := h.Grant(interval)
	if err != nil {
		return 0, err
	}
	if s.mode == Raw {
		ivl = 0
	}
	c := &change{interval: ivl, syms: make([]*symState, len(symbols))}
	for i, name := range symbols {
		if c.syms[i] = h.syms[name]; c.syms[i] == nil {
			return 0, fmt.Errorf("%w: %s", ErrUnknownSymbol, name)
		}
	}
	s.changeMu.Lock()
	s.change = c
	s.changeMu.Unlock()
	// Serve it now, even in the middle of an interval: a stale wheel timer
	// is ignored thanks to the generation.
	s.timerGen.Add(1)
	s.poke.Store(true) // before the moves, as in wake
	if s.state.CompareAndSwap(stCooldown, stQueued) || s.state.CompareAndSwap(stIdle, stQueued) {
		h.ready <- s
	}
	return ivl, nil
}

// applyChange installs a pending change. Run by the serving writer.
func (s *Subscriber) applyChange() {
	s.changeMu.Lock()
	c := s.change
	s.change = nil
	s.changeMu.Unlock()
	if c == nil {
		return
	}
	old := make(map[*symState]uint64, len(s.syms))
	for i, st := range s.syms {
		old[st] = s.sent[i]
	}
	keep := make(map[*symState]bool, len(c.syms))
	sent := make([]uint64, len(c.syms))
	h := s.hub
	if s.mode == Raw {
		h.pubMu.Lock() // no Publish half done while raw registrations move
		if s.rawGone {
			h.pubMu.Unlock()
			return // closed meanwhile
		}
		s.rawMu.Lock()
		if s.logged {
			h.leaveLog(s, true) // what it owes moves to its own queue
		} else {
			for i, st := range s.syms {
				st.removeRaw(s, i)
			}
		}
		s.rawMu.Unlock()
		s.rawPos = nil
		if !h.logged(c.syms) {
			s.rawPos = make([]int32, len(c.syms))
		}
	}
	var snaps []*Update // raw: the new symbols' current values
	for i, st := range c.syms {
		keep[st] = true
		if s.rawPos != nil {
			st.addRaw(s, i)
		}
		if seq, ok := old[st]; ok {
			sent[i] = seq
		} else if u := st.cur.Load(); u != nil && s.mode == Raw {
			snaps = append(snaps, u)
			sent[i] = u.Seq
		}
	}
	for _, st := range s.syms {
		if !keep[st] {
			st.unwait(s)
		}
	}
	if s.mode == Raw {
		s.rawMu.Lock()
		if !s.overflow { // an overflowed queue keeps its last exact commit
			s.keepRaw(keep)
			if len(snaps) > 0 {
				// The snapshots are the values at the hub's cursor: no
				// Publish is half done (pubMu), so it is exact after them.
				s.rawQ = append(s.rawQ, snaps...)
				s.rawCursor = h.Cursor()
				s.rawMarks = append(s.rawMarks, rawMark{len(s.rawQ), s.rawCursor})
			}
		}
		if s.rawPos == nil {
			h.joinLog(s, c.syms) // its own queue goes out first, then the log
		}
		s.rawMu.Unlock()
	}
	s.changeMu.Lock() // forget reads syms under it
	s.syms, s.sent, s.interval = c.syms, sent, c.interval
	s.changeMu.Unlock()
	h.subMu.Lock()
	if _, ok := h.subs[s]; ok {
		h.count(s, c.interval)
	}
	h.subMu.Unlock()
	if s.mode == Raw {
		h.pubMu.Unlock()
	}
}

// symbols returns the subscriber's symbols, for a goroutine other than
// the one serving it.
func (s *Subscriber) symbols() []*symState {
	s.changeMu.Lock()
	defer s.changeMu.Unlock()
	return s.syms
}

// wake moves an armed subscriber to the ready queue. A subscriber that is
// busy is poked instead, so that arm looks again before it sleeps.
func (s *Subscriber) wake() {
	// Poke first: arm moves Flushing to Idle, then takes the poke. Poked
	// after a failed move (arm still Flushing), the poke could land after
	// arm took it, leaving the subscriber Idle, disarmed and never queued
	// (found by a review, TestWakeRacingArmLeavesNoSubscriberAsleep). A poke left behind by
	// a wake that queued it is cleared when it is served.
	s.poke.Store(true)
	if s.state.CompareAndSwap(stIdle, stQueued) {
		s.hub.ready <- s
	}
}

// service is run by a writer for a queued subscriber: it gathers what
// changed, writes it in one Send, and decides when to look again.
func (s *Subscriber) service(b *Batch) {
	if !s.state.CompareAndSwap(stQueued, stFlushing) {
		return
	}
	s.poke.Store(false)
	h := s.hub
	now := h.cfg.Now()
	s.applyChange()
	if !s.slowSince.IsZero() && !s.drain(b, now) {
		return
	}
	*b = Batch{Updates: b.Updates[:0], Marks: b.Marks[:0]}
	if s.collect(b) {
		b.Lagging = true
		_ = s.sink.Send(b)
		s.closeWith(ErrOverflow)
		return
	}
	if s.needHB.Swap(false) {
		b.Heartbeat = true
	}
	if b.Empty() {
		s.arm()
		return
	}
	err := s.sink.Send(b)
	s.lastWrite.Store(now.UnixNano())
	if err != nil && !errors.Is(err, ErrSlow) {
		s.closeWith(err)
		return
	}
	h.stats.Batches.Add(1)
	h.stats.Delivered.Add(uint64(len(b.Updates)))
	h.stats.observeLag(now, b.Updates)
	sent := len(b.Updates)
	clear(b.Updates)
	if err != nil { // ErrSlow: the sink holds the rest of this batch
		s.slowSince, s.toldLag = now, false
		s.slowIvl = max(2*s.interval, 100*time.Millisecond)
		h.stats.Lagging.Add(1)
		s.cooldown(now, s.slowIvl)
		return
	}
	if s.interval <= 0 || sent == 0 {
		s.arm()
		return
	}
	s.cooldown(now, s.interval)
}

// drain is service's path for a slow subscriber: the sink still holds part
// of an earlier batch. It asks the sink to write that (with a lagging event,
// once) before anything new is gathered, so the sink never holds more than
// one batch. It reports whether the subscriber caught up.
func (s *Subscriber) drain(b *Batch, now time.Time) bool {
	h := s.hub
	if s.mode == Raw {
		if s.rawOverflowed() {
			// A raw subscriber cannot be conflated: one that is slow and
			// whose queue is full goes at once, and resumes from its cursor.
			s.closeWith(ErrOverflow)
			return false
		}
	}
	*b = Batch{Updates: b.Updates[:0], Lagging: !s.toldLag}
	s.toldLag = true
	err := s.sink.Send(b)
	switch {
	case err == nil:
		s.slowSince, s.slowIvl = time.Time{}, 0
		s.lastWrite.Store(now.UnixNano())
		return true
	case !errors.Is(err, ErrSlow):
		s.closeWith(err)
	case now.Sub(s.slowSince) > h.cfg.SlowDropAfter:
		s.closeWith(ErrSlowConsumer)
	default:
		// Conflated harder: each failed attempt doubles the wait.
		s.slowIvl = min(2*s.slowIvl, h.cfg.SlowMaxInterval)
		s.cooldown(now, s.slowIvl)
	}
	return false
}

// cooldown puts the subscriber to sleep until now+ivl (no later than its
// drop deadline when it is slow).
func (s *Subscriber) cooldown(now time.Time, ivl time.Duration) {
	h := s.hub
	due := now.Add(ivl)
	if !s.slowSince.IsZero() {
		if dl := s.slowSince.Add(h.cfg.SlowDropAfter + h.cfg.Resolution); dl.Before(due) && dl.After(now) {
			due = dl
		}
	}
	gen := s.timerGen.Add(1)
	if s.state.CompareAndSwap(stFlushing, stCooldown) {
		h.wheel.add(due, s, gen)
	}
}

// collect fills b with what the subscriber owes, by its mode's policy
// (raw.go, conflated.go). It reports a raw queue overflow.
func (s *Subscriber) collect(b *Batch) (overflow bool) {
	if e := s.hub.epoch.Load(); e != s.epoch {
		// The source lost history: resend everything as a fresh snapshot.
		s.epoch = e
		b.Resync = true
		clear(s.sent)
		if s.mode == Raw {
			// The snapshot and the point the queue restarts from are one
			// point of the source (no Publish half done): a tick published
			// in between would be sent twice, its symbol's seq going back.
			h := s.hub
			h.pubMu.Lock()
			s.clearRaw()
			s.collectConflated(b)
			s.rawMu.Lock()
			s.rawCursor = b.Cursor
			s.rawMu.Unlock()
			h.pubMu.Unlock()
			return false
		}
	}
	if s.mode == Raw {
		return s.collectRaw(b)
	}
	s.collectConflated(b)
	return false
}

// arm registers the subscriber as waiting on each of its symbols and goes
// idle. It looks once more while it still owns the subscriber, and once
// more after, if a wake found it busy, so that no change is missed.
func (s *Subscriber) arm() {
	if s.mode != Raw { // Publish wakes raw subscribers it queued for
		s.armWaiters()
		if s.state.Load() == stClosed { // closed while served: forget may have run before
			for _, st := range s.syms {
				st.unwait(s)
			}
			return
		}
	}
	if s.pending() {
		s.requeue()
		return
	}
	if !s.state.CompareAndSwap(stFlushing, stIdle) {
		return // closed meanwhile
	}
	if s.poke.Swap(false) && s.state.CompareAndSwap(stIdle, stQueued) {
		s.hub.ready <- s
	}
}

// requeue hands a subscriber it is serving, which still owes more after a
// full write (a raw backlog), back to the writers, behind the subscribers
// woken by a change (see Hub.writer).
func (s *Subscriber) requeue() {
	if !s.state.CompareAndSwap(stFlushing, stQueued) {
		return
	}
	if s.cut {
		s.hub.backlog <- s
		return
	}
	s.hub.ready <- s
}

// pending reports whether anything is owed.
func (s *Subscriber) pending() bool {
	if s.hub.epoch.Load() != s.epoch || s.needHB.Load() {
		return true
	}
	if s.mode == Raw {
		return s.rawPending()
	}
	return s.conflatedPending()
}
