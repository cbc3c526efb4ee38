package fanout

import (
	"context"
	"fmt"
	"math/rand/v2"
	"runtime"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tickstream/tickstream/feed"
)

// Config configures a Hub. Zero values take the documented defaults.
type Config struct {
	// Symbols is the universe the hub serves. Required.
	Symbols []string
	// Writers is the number of goroutines that write to subscribers.
	// Sinks never block (see Sink), so a writer keeps a CPU busy while
	// subscribers are due. Default GOMAXPROCS-1, at least 1: one CPU stays
	// for reading the feed, so a saturated node keeps its values fresh and
	// the writes, which conflation makes cheap to delay, absorb the
	// shortfall (with a writer per CPU, a saturated node read its feed up
	// to 20 s late).
	Writers int
	// MaxSubscribers bounds the subscribers of this hub. Default 20,000.
	MaxSubscribers int
	// MinInterval and MaxInterval bound the conflation interval a subscriber
	// is granted. Defaults 0 and 10s. MaxInterval must be below Heartbeat.
	MinInterval, MaxInterval time.Duration
	// Heartbeat is how long a subscriber may go without a write before the
	// hub asks its sink for a keep-alive. Default 15s.
	Heartbeat time.Duration
	// SlowMaxInterval caps the interval of a subscriber conflated harder
	// because it is slow, which is also how long a reader that was starved
	// for a moment may wait for its next write once it reads again: each
	// retry is one failed non-blocking write, so it is kept short. Default
	// 1s.
	SlowMaxInterval time.Duration
	// SlowDropAfter is how long a subscriber may stay slow (its writes not
	// completing) before it is closed with ErrSlowConsumer. Default 30s.
	SlowDropAfter time.Duration
	// RawQueue bounds the updates a raw subscriber may owe; for one of many
	// symbols, which reads the shared log (rawlog.go), the log entries
	// it has not taken whatever their symbol, plus its own queue. Default 4096
	// (32 KiB of pointers; with the socket's send buffer and MaxPending of
	// the transport, a raw reader may fall ~6,000 ticks behind before it
	// is closed and resumes from its cursor).
	RawQueue int
	// RawBatchBytes bounds the tick bytes of one write to a raw subscriber
	// (whole published batches are taken up to it, at least one). Default
	// 32 KiB.
	RawBatchBytes int
	// FreshWait bounds the wait for a resting source to catch up (CaughtUp)
	// of a look that ends a quiet spell (Look) and of a subscriber that
	// needs more than the source's pace: a source that was told reads
	// within a round trip; one with nothing new may not say so, and then
	// the hub's values are already its latest. Default 100ms.
	FreshWait time.Duration
	// Resolution is the granularity of the hub's timers. Default 5ms.
	Resolution time.Duration
	// Now is the hub's clock. Default time.Now.
	Now func() time.Time
	// manualTimers stops the timer goroutine; tests then call fireDue.
	manualTimers bool
	// rawLogMin is the fewest symbols for which a raw subscriber reads the
	// shared log (rawlog.go) instead of keeping its own queue. Default
	// half the symbols.
	rawLogMin int
}

func (c *Config) setDefaults() error {
	if len(c.Symbols) == 0 {
		return fmt.Errorf("fanout: no symbols")
	}
	if c.Writers <= 0 {
		c.Writers = max(1, runtime.GOMAXPROCS(0)-1)
	}
	if c.MaxSubscribers <= 0 {
		c.MaxSubscribers = 20000
	}
	if c.MaxInterval <= 0 {
		c.MaxInterval = 10 * time.Second
	}
	if c.Heartbeat <= 0 {
		c.Heartbeat = 15 * time.Second
	}
	if c.SlowMaxInterval <= 0 {
		c.SlowMaxInterval = time.Second
	}
	if c.SlowDropAfter <= 0 {
		c.SlowDropAfter = 30 * time.Second
	}
	if c.RawQueue <= 0 {
		c.RawQueue = 4096
	}
	if c.rawLogMin <= 0 {
		c.rawLogMin = max(1, (len(c.Symbols)+1)/2)
	}
	if c.RawBatchBytes <= 0 {
		c.RawBatchBytes = 32 << 10
	}
	if c.Resolution <= 0 {
		c.Resolution = 5 * time.Millisecond
	}
	if c.FreshWait <= 0 {
		c.FreshWait = 100 * time.Millisecond
	}
	if c.Now == nil {
		c.Now = time.Now
	}
	switch {
	case c.MinInterval < 0:
		return fmt.Errorf("fanout: min interval %v is negative", c.MinInterval)
	case c.MinInterval > c.MaxInterval:
		return fmt.Errorf("fanout: min interval %v above max interval %v", c.MinInterval, c.MaxInterval)
	case c.MaxInterval >= c.Heartbeat:
		return fmt.Errorf("fanout: max interval %v must be below the heartbeat %v", c.MaxInterval, c.Heartbeat)
	}
	return nil
}

// symState is one symbol: its latest value, the conflated subscribers
// armed on it, and its raw subscribers.
type symState struct {
	name string
	idx  int // its place in Config.Symbols
	cur  atomic.Pointer[Update]
	// seq is cur's seq (0: none), under hub.pubMu: Publish orders a tick
	// without loading the previous update (a cold line per tick).
	seq uint64
	// pend is the newest update of the Publish in progress not yet stored
	// in cur (nil between Publishes), under hub.pubMu.
	pend *Update

	mu      sync.Mutex
	waiters map[*Subscriber]struct{}
	// nwait is len(waiters), stored under mu: Publish skips the lock of a
	// symbol nobody waits on (most ticks of a node with few subscribers:
	// two barriers a tick less). Sound because both sides are sequentially
	// consistent atomics: Publish stores cur then loads nwait; arm stores
	// nwait then loads cur (pending), so one of them sees the other.
	nwait atomic.Int32

	raw []rawRef // the raw subscribers, under hub.pubMu
}

// Hub fans updates out to subscribers. Its methods are safe for concurrent
// use, except Publish and Reset, which a single source calls.
type Hub struct {
	cfg   Config
	syms  map[string]*symState
	all   []*symState // every symbol in Config order, shared by subscriptions to all of them
	stats Stats

	pubMu    sync.Mutex // serialises Publish/Reset with raw subscribes
	cursor   atomic.Pointer[string]
	epoch    atomic.Uint64 // bumped by Reset
	touched  []*Subscriber // raw subscribers touched by the current Publish
	logSubs  []*Subscriber // raw subscribers reading the shared log
	log      rawLog
	accepted []logEntry    // the current Publish's ticks, for the log
	wakes    []*Subscriber // conflated subscribers it wakes
	pending  []*symState   // symbols whose newest update of the Publish is in pend
	slabs    feed.Slabs    // what Publish keeps is copied here
	touchGen uint64
	// rawBehind: after the last Publish a raw subscriber owed more than
	// half its queue (RawBehind).
	rawBehind atomic.Bool

	subMu    sync.Mutex
	subs     map[*Subscriber]struct{}
	ivls     map[time.Duration]int // subscribers per granted interval, under subMu
	tightest atomic.Int64          // the shortest of ivls's intervals; -1 with no subscriber
	needCh   chan struct{}         // NeedChanged's, one signal buffered
	lastLook atomic.Int64          // UnixNano of the last look counted (Look)

	pubWaitMu sync.Mutex
	pubWait   chan struct{} // closed by the source's next CaughtUp; nil: nobody waits
	resting   atomic.Bool   // the source said Resting, and not CaughtUp since
	movedMu   sync.Mutex
	moved     chan struct{} // closed when the cursor next moves; nil: nobody waits
	movedSet  atomic.Bool   // moved is not nil: Publish and Reset close it
	draining  bool
	closed    bool

	ready   chan *Subscriber // woken subscribers
	backlog chan *Subscriber // subscribers still owing after a full write
	wheel   wheel

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closeO sync.Once
}

// New returns a running hub. Close stops it.
func New(cfg Config) (*Hub, error) {
	if err := cfg.setDefaults(); err != nil {
		return nil, err
	}
	h := &Hub{
		cfg:     cfg,
		syms:    make(map[string]*symState, len(cfg.Symbols)),
		subs:    make(map[*Subscriber]struct{}),
		ivls:    make(map[time.Duration]int),
		ready:   make(chan *Subscriber, cfg.MaxSubscribers+16),
		backlog: make(chan *Subscriber, cfg.MaxSubscribers+16),
		wheel:   newWheel(cfg.Resolution),
		needCh:  make(chan struct{}, 1),
	}
	for _, s := range cfg.Symbols {
		st := &symState{name: s, idx: len(h.all), waiters: make(map[*Subscriber]struct{})}
		h.syms[s] = st
		h.all = append(h.all, st)
	}
	empty := ""
	h.cursor.Store(&empty)
	h.tightest.Store(-1)
	h.ctx, h.cancel = context.WithCancel(context.Background())
	for range cfg.Writers {
		h.wg.Add(1)
		go h.writer()
	}
	h.wg.Add(1)
	go h.housekeeping()
	return h, nil
}

// Tightest returns the shortest interval granted to a subscriber of the
// hub (0: one takes every tick as it comes, raw or interval 0), and false
// when nobody consumes the hub's values. The source may read less often
// when nobody needs more (Node: the reader's pace). A look at the latest
// values outside a subscription (Look: a poll, a chart) counts for
// LookWindow as a subscriber of MaxInterval.
func (h *Hub) Tightest() (time.Duration, bool) {
	if d := h.tightest.Load(); d >= 0 {
		return time.Duration(d), true
	}
	if h.cfg.Now().UnixNano()-h.lastLook.Load() < int64(LookWindow) {
		return h.cfg.MaxInterval, true
	}
	return 0, false
}

// LookWindow is how long a look at the latest values (Look) counts as
// a consumer of the hub.
const LookWindow = 10 * time.Second

// NeedChanged returns a channel that receives when the hub's need grows:
// a first consumer, a shorter interval than Tightest returned, or a look
// after LookWindow without any. A source pacing its reads by Tightest
// reads at once then, so the newcomer's first values are fresh however
// long the source rested. One signal is buffered; Tightest says what
// changed.
func (h *Hub) NeedChanged() <-chan struct{} { return h.needCh }

// signalNeed tells the source that the need grew (never blocks).
func (h *Hub) signalNeed() {
	select {
	case h.needCh <- struct{}{}:
	default:
	}
}

// Look records a look at the latest values outside a subscription (a
// poll, a chart's request): see Tightest and NeedChanged. A look that ends
// a quiet spell (none for LookWindow, and no subscriber) tells the source,
// then waits until it has caught up (CaughtUp), at most Config.FreshWait: a source pacing its
// reads by Tightest was resting (a node nobody watches reads once a
// second) and reads at once when told, so what the caller reads next is
// as fresh as on a busy node. Latest calls it.
func (h *Hub) Look() {
	now := h.cfg.Now().UnixNano()
	last := h.lastLook.Load()
	if now-last < int64(time.Second) {
		return // counted a moment ago: one store a second at most
	}
	h.lastLook.Store(now)
	if now-last < int64(LookWindow) || h.tightest.Load() >= 0 {
		return
	}
	wait := h.catchUpWait()
	h.signalNeed()
	if wait != nil {
		h.awaitCatchUp(wait)
	}
}

// awaitCatchUp waits until wait (catchUpWait's) is closed, at most
// Config.FreshWait.
func (h *Hub) awaitCatchUp(wait <-chan struct{}) {
	t := time.NewTimer(h.cfg.FreshWait)
	defer t.Stop()
	select {
	case <-wait:
	case <-t.C: // a silent source: what the hub holds is its latest
	case <-h.ctx.Done():
	}
}

// catchUpWait returns a channel closed by the source's next CaughtUp, or
// nil when the source is not resting (nothing to wait for: no lock, no
// channel on a subscribe to a busy node).
func (h *Hub) catchUpWait() <-chan struct{} {
	if !h.resting.Load() {
		return nil
	}
	h.pubWaitMu.Lock()
	defer h.pubWaitMu.Unlock()
	if h.pubWait == nil {
		h.pubWait = make(chan struct{})
	}
	return h.pubWait
}

// CursorMoved returns a channel closed when the cursor next moves (the
// next Publish or Reset): a caller waiting for the source to reach a
// position looks at Cursor, then waits on it, with no polling. It never
// blocks and is safe for concurrent use.
func (h *Hub) CursorMoved() <-chan struct{} {
	h.movedMu.Lock()
	defer h.movedMu.Unlock()
	if h.moved == nil {
		h.moved = make(chan struct{})
		h.movedSet.Store(true)
	}
	return h.moved
}

// signalMoved closes the channel of CursorMoved's callers, if any (one
// atomic load when nobody waits).
func (h *Hub) signalMoved() {
	if !h.movedSet.Load() {
		return
	}
	h.movedMu.Lock()
	if h.moved != nil {
		close(h.moved)
		h.moved = nil
		h.movedSet.Store(false)
	}
	h.movedMu.Unlock()
}

// RawBehind reports whether, after the last Publish, a raw subscriber owes
// more than half its queue (RawQueue): its writer has not kept up with
// what the source handed over. A source with more to hand over at once (a
// read after a pause, in chunks) should then let the writers run first
// (the reader yields its thread): Go readies a woken writer on the thread
// of the goroutine that woke it, behind it, so a source that goes on
// publishing can fill a subscriber's queue before its writer runs once,
// and the subscriber is closed for overflow however fast it reads.
func (h *Hub) RawBehind() bool { return h.rawBehind.Load() }

// CaughtUp tells the hub that the source has published everything up to
// the head of its feed (a read that returned all there was) and reads on:
// a subscriber or a look waiting for a resting source goes on.
func (h *Hub) CaughtUp() {
	h.resting.Store(false)
	h.pubWaitMu.Lock()
	if h.pubWait != nil {
		close(h.pubWait)
		h.pubWait = nil
	}
	h.pubWaitMu.Unlock()
}

// Resting tells the hub that the source will not read for a while (its
// pace): a newcomer that needs it sooner tells it (NeedChanged) and waits
// for it to catch up. A source that never calls Resting is never waited
// for.
func (h *Hub) Resting() { h.resting.Store(true) }

// count moves s's place in the interval counts to ivl (-1: none), and
// tells the source (NeedChanged) when the need grew, which it reports.
// Under subMu.
func (h *Hub) count(s *Subscriber, ivl time.Duration) bool {
	if s.countedIvl >= 0 {
		if h.ivls[s.countedIvl]--; h.ivls[s.countedIvl] <= 0 {
			delete(h.ivls, s.countedIvl)
		}
	}
	s.countedIvl = ivl
	if ivl >= 0 {
		h.ivls[ivl]++
	}
	old := time.Duration(h.tightest.Load())
	t := old
	switch {
	case ivl >= 0 && (t < 0 || ivl < t):
		t = ivl // a new shortest
	case h.ivls[t] > 0:
		// still held by someone: unchanged
	default: // the shortest's last subscriber left (rare): look again
		t = -1
		for d := range h.ivls {
			if t < 0 || d < t {
				t = d
			}
		}
	}
	h.tightest.Store(int64(t))
	grew := t >= 0 && (old < 0 || t < old)
	if grew {
		h.signalNeed()
	}
	return grew
}

// Stats returns the hub's counters. They are updated atomically and may be
// read at any time.
func (h *Hub) Stats() *Stats { return &h.stats }

// Config returns the hub's configuration with its defaults filled in.
func (h *Hub) Config() Config { return h.cfg }

// Grant returns the interval a subscriber asking for d is granted: d
// clamped to [MinInterval, MaxInterval].
func (h *Hub) Grant(d time.Duration) (time.Duration, error) {
	if d < 0 {
		return 0, fmt.Errorf("%w: %v is negative", ErrBadInterval, d)
	}
	return min(max(d, h.cfg.MinInterval), h.cfg.MaxInterval), nil
}

// Known reports whether the hub serves sym.
func (h *Hub) Known(sym string) bool { _, ok := h.syms[sym]; return ok }

// Cursor returns the source's position after the last Publish or Reset.
func (h *Hub) Cursor() string { return *h.cursor.Load() }

// Latest returns the current value of each symbol, or nil where a symbol
// has none yet. Unknown symbols give nil too.
func (h *Hub) Latest(syms []string) []*Update {
	h.Look()
	out := make([]*Update, len(syms))
	for i, s := range syms {
		if st := h.syms[s]; st != nil {
			out[i] = st.cur.Load()
		}
	}
	return out
}

// Publish applies a batch of updates from the source, in source order, and
// records cursor as the position after it. An update older than (or equal
// to) the symbol's current one is dropped, so a symbol's seq never goes
// down. Publish never blocks on subscribers. One goroutine calls it.
//
// The batch and its updates are the caller's: Publish keeps a copy of what
// it keeps (feed.Slabs), so a source may hand updates cut from a reused
// scratch, their JSON a slice of its read buffer. What it keeps is the
// newest update of each symbol in the batch, and every update of a symbol
// that a raw subscriber takes (of every symbol while one reads the shared
// log): an update a newer one of the same batch replaces is ordered and
// counted but never copied, stored or woken for. Conflated subscribers
// never see the difference: a batch is one moment to them (they are woken
// after it, and a snapshot is taken between batches).
func (h *Hub) Publish(batch []*Update, cursor string) {
	h.pubMu.Lock()
	h.touchGen++
	logging := len(h.logSubs) > 0
	var gaps symSet // symbols with a gap, for the log's subscribers
	for _, u := range batch {
		st := h.symOf(u)
		if st == nil {
			h.stats.Unknown.Add(1)
			continue
		}
		has := st.pend != nil || st.cur.Load() != nil
		if has && st.seq >= u.Seq {
			h.stats.Stale.Add(1)
			continue
		}
		// A seq that skips ahead means ticks were lost on the way (a Redis
		// master died before replicating them): raw subscribers are told.
		gap := has && u.Seq > st.seq+1
		if gap {
			h.stats.Gaps.Add(1)
			if logging {
				if gaps == nil {
					gaps = make(symSet, (len(h.all)+63)/64)
				}
				gaps[st.idx/64] |= 1 << (st.idx % 64)
			}
		}
		st.seq = u.Seq
		if !logging && len(st.raw) == 0 {
			// Nobody takes every tick of it: only the batch's newest is
			// kept, after the loop.
			if st.pend == nil {
				h.pending = append(h.pending, st)
			}
			st.pend = u
			continue
		}
		u = h.slabs.Keep(u)
		st.cur.Store(u)
		if logging {
			h.accepted = append(h.accepted, logEntry{u, int32(st.idx)})
		}
		for _, r := range st.raw {
			if s := r.s; !s.overflowed.Load() {
				queued := false
				if gap {
					queued = s.resyncRaw()
				} else {
					queued = s.pushRaw(u)
				}
				if queued && s.touchGen != h.touchGen {
					s.touchGen = h.touchGen
					h.touched = append(h.touched, s)
				}
			}
		}
		h.wakes = st.takeWaiters(h.wakes)
	}
	for i, st := range h.pending {
		st.cur.Store(h.slabs.Keep(st.pend))
		st.pend, h.pending[i] = nil, nil
		h.wakes = st.takeWaiters(h.wakes)
	}
	h.pending = h.pending[:0]
	h.stats.Ticks.Add(uint64(len(batch)))
	c := cursor
	h.cursor.Store(&c)
	h.signalMoved()
	owed := 0 // the most a raw subscriber owes
	for _, s := range h.touched {
		owed = max(owed, s.setRawCursor(cursor))
	}
	if logging {
		var logOwed int
		h.touched, logOwed = h.publishLog(cursor, h.accepted, gaps, h.touched)
		owed = max(owed, logOwed)
		clear(h.accepted)
		h.accepted = h.accepted[:0]
	}
	h.rawBehind.Store(owed > h.cfg.RawQueue/2)
	h.pubMu.Unlock()
	// Wakes may block on a full ready queue: never under a lock that the
	// writers, which empty it, may take (pubMu in forget, st.mu in arm).
	for i, s := range h.touched {
		s.wake()
		h.touched[i] = nil
	}
	h.touched = h.touched[:0]
	for i, s := range h.wakes {
		s.wake()
		h.wakes[i] = nil
	}
	h.wakes = h.wakes[:0]
}

// symOf returns u's symbol: by u.Index when the hub's symbols are in the
// universe's order (a node's are), else by name; nil when unknown.
func (h *Hub) symOf(u *Update) *symState {
	if i := u.Index; uint(i) < uint(len(h.all)) && h.all[i].name == u.Sym {
		return h.all[i]
	}
	return h.syms[u.Sym]
}

// takeWaiters appends the subscribers armed on the symbol to dst and
// disarms them; the caller wakes them once it holds no lock.
func (st *symState) takeWaiters(dst []*Subscriber) []*Subscriber {
	if st.nwait.Load() == 0 {
		return dst
	}
	st.mu.Lock()
	if len(st.waiters) > 0 {
		for s := range st.waiters {
			dst = append(dst, s)
		}
		clear(st.waiters)
		st.nwait.Store(0)
	}
	st.mu.Unlock()
	return dst
}

// Reset replaces every symbol's value after the source lost its history (a
// new epoch): values are taken as given even if their seq is lower, and every
// subscriber is sent a resync with a fresh snapshot. latest holds at most one
// update per symbol.
func (h *Hub) Reset(latest []*Update, cursor string) {
	h.pubMu.Lock()
	for _, st := range h.syms {
		st.cur.Store(nil)
		st.seq = 0
	}
	for _, u := range latest {
		if st := h.syms[u.Sym]; st != nil {
			st.cur.Store(h.slabs.Keep(u))
			st.seq = u.Seq
		}
	}
	c := cursor
	h.cursor.Store(&c)
	h.epoch.Add(1)
	h.signalMoved()
	h.pubMu.Unlock()
	h.stats.Resets.Add(1)
	for _, s := range h.snapshotSubs() {
		s.wake()
	}
}

// Subscribe registers a subscriber that writes to sink, and returns it with
// the current values of its symbols (the snapshot, nil where a symbol has no
// value yet) and the cursor they correspond to. Delivery starts with Start,
// so the transport can write the snapshot (or a replay) first. For a raw
// subscriber every update published after the returned cursor is queued
// from now on.
func (h *Hub) Subscribe(opts Options, sink Sink) (*Subscriber, []*Update, string, error) {
	ivl, err := h.Grant(opts.Interval)
	if err != nil {
		return nil, nil, "", err
	}
	if opts.Mode == Raw {
		ivl = 0
	}
	s := &Subscriber{hub: h, sink: sink, mode: opts.Mode, interval: ivl, countedIvl: -1, syms: make([]*symState, len(opts.Symbols))}
	all := len(opts.Symbols) == len(h.all)
	for i, name := range opts.Symbols {
		st := h.syms[name]
		if st == nil {
			return nil, nil, "", fmt.Errorf("%w: %s", ErrUnknownSymbol, name)
		}
		s.syms[i] = st
		all = all && st == h.all[i]
	}
	if all {
		s.syms = h.all // read-only: Change installs a new slice
	}
	s.sent = make([]uint64, len(s.syms))
	s.state.Store(stNew)
	s.born = h.cfg.Now().UnixNano()

	h.subMu.Lock()
	switch {
	case h.closed:
		h.subMu.Unlock()
		return nil, nil, "", ErrHubClosed
	case h.draining:
		h.subMu.Unlock()
		return nil, nil, "", ErrDraining
	case len(h.subs) >= h.cfg.MaxSubscribers:
		h.subMu.Unlock()
		return nil, nil, "", ErrTooManySubscribers
	}
	h.subs[s] = struct{}{}
	caughtUp := h.catchUpWait() // nil unless the source rests; before the signal, whose catch-up it is
	grew := h.count(s, ivl)
	h.subMu.Unlock()
	h.stats.Subscribers[s.mode].Add(1)
	if grew && caughtUp != nil {
		// The source was reading less often than this subscriber needs (a
		// node nobody watched reads once a second): its snapshot and, for
		// a raw subscriber, its starting cursor are taken once the source
		// has read up to the head of the feed, not at the point its pace
		// left behind (a raw subscriber would otherwise be owed up to a
		// second of ticks at once, more than its queue holds).
		h.awaitCatchUp(caughtUp)
	}

	// Under pubMu no Publish is half done: the snapshot, the cursor and the
	// raw registration describe one point of the source.
	h.pubMu.Lock()
	s.epoch = h.epoch.Load()
	cursor := h.Cursor()
	snap := make([]*Update, len(s.syms))
	logged := s.mode == Raw && h.logged(s.syms) && !s.rawGone
	if s.mode == Raw && !logged && !s.rawGone { // rawGone: closed meanwhile (forget ran)
		s.rawPos = make([]int32, len(s.syms))
	}
	for i, st := range s.syms {
		snap[i] = st.cur.Load()
		if snap[i] != nil {
			s.sent[i] = snap[i].Seq
		}
		if s.rawPos != nil {
			st.addRaw(s, i)
		}
	}
	s.rawCursor = cursor
	if logged {
		s.rawMu.Lock()
		h.joinLog(s, s.syms)
		s.rawMu.Unlock()
	}
	h.pubMu.Unlock()
	s.lastWrite.Store(h.cfg.Now().UnixNano())
	return s, snap, cursor, nil
}

// unwait removes s from the symbol's armed subscribers.
func (st *symState) unwait(s *Subscriber) {
	st.mu.Lock()
	delete(st.waiters, s)
	st.nwait.Store(int32(len(st.waiters)))
	st.mu.Unlock()
}

// snapshotSubs returns the live subscribers.
func (h *Hub) snapshotSubs() []*Subscriber {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	out := make([]*Subscriber, 0, len(h.subs))
	for s := range h.subs {
		out = append(out, s)
	}
	return out
}

// Subscribers returns the number of live subscribers.
func (h *Hub) Subscribers() int {
	h.subMu.Lock()
	defer h.subMu.Unlock()
	return len(h.subs)
}

// Drain stops accepting subscribers and closes the existing ones with
// ErrDraining at random moments spread over spread, so that they do not all
// reconnect elsewhere at once. It returns when all are closed or ctx is
// done.
func (h *Hub) Drain(ctx context.Context, spread time.Duration) error {
	h.subMu.Lock()
	h.draining = true
	subs := make([]*Subscriber, 0, len(h.subs))
	for s := range h.subs {
		subs = append(subs, s)
	}
	h.subMu.Unlock()
	rand.Shuffle(len(subs), func(i, j int) { subs[i], subs[j] = subs[j], subs[i] })
	start := time.Now()
	for i, s := range subs {
		at := start.Add(time.Duration(float64(spread) * float64(i) / float64(len(subs))))
		if d := time.Until(at); d > 0 {
			select {
			case <-ctx.Done():
				return ctx.Err()
			case <-time.After(d):
			}
		}
		s.closeWith(ErrDraining)
	}
	return nil
}

// Close stops the hub's goroutines and closes every subscriber with
// ErrHubClosed. It is safe to call more than once.
func (h *Hub) Close() error {
	h.closeO.Do(func() {
		h.subMu.Lock()
		h.closed = true
		subs := make([]*Subscriber, 0, len(h.subs))
		for s := range h.subs {
			subs = append(subs, s)
		}
		h.subMu.Unlock()
		h.cancel()
		h.wg.Wait()
		for _, s := range subs {
			s.closeWith(ErrHubClosed)
		}
	})
	return nil
}

func (h *Hub) forget(s *Subscriber) {
	h.subMu.Lock()
	_, ok := h.subs[s]
	if ok {
		delete(h.subs, s)
		h.count(s, -1)
	}
	h.subMu.Unlock()
	if ok {
		h.stats.Subscribers[s.mode].Add(-1)
	}
	if s.mode == Raw {
		h.pubMu.Lock()
		if !s.rawGone {
			s.rawGone = true
			s.rawMu.Lock()
			if s.logged {
				h.leaveLog(s, false)
			} else if s.rawPos != nil { // nil: Subscribe has not registered it yet, and now will not
				for i, st := range s.symbols() {
					st.removeRaw(s, i)
				}
			}
			s.rawMu.Unlock()
		}
		h.pubMu.Unlock()
	}
	for _, st := range s.symbols() {
		st.unwait(s)
	}
}

// writer serves subscribers handed to it until the hub closes. Those woken
// by a change or a due interval (ready) go before those still working off
// a backlog (backlog), eight to one: a few thousand raw subscribers
// catching up, or filling the sockets of readers that stopped, each take a
// full write per turn, and a subscriber with one new price must not wait
// behind all of them.
func (h *Hub) writer() {
	defer h.wg.Done()
	var b Batch
	n := 0 // woken subscribers served since the last backlog one
	for {
		var s *Subscriber
		if n < 8 {
			select {
			case s = <-h.ready:
				n++
			default:
			}
		}
		if s == nil {
			select {
			case s = <-h.backlog:
				n = 0
			default:
			}
		}
		if s == nil {
			select {
			case <-h.ctx.Done():
				return
			case s = <-h.ready:
				n++
			case s = <-h.backlog:
				n = 0
			}
		}
		s.service(&b)
	}
}

// housekeeping fires due timers and asks idle subscribers for heartbeats.
func (h *Hub) housekeeping() {
	defer h.wg.Done()
	if h.cfg.manualTimers {
		<-h.ctx.Done()
		return
	}
	// Sleep until the earliest pending timer, the next heartbeat check or a
	// new timer on an empty wheel, whichever comes first: a quiet node does
	// not wake 200 times a second.
	hbEvery := max(h.cfg.Heartbeat/8, h.cfg.Resolution)
	lastHB := time.Now()
	var mem memReturn
	t := time.NewTimer(h.cfg.Resolution)
	defer t.Stop()
	for {
		select {
		case <-h.ctx.Done():
			return
		case <-t.C:
		case <-h.wheel.wake: // a timer was added: it may be due before we planned to wake
		}
		now := h.cfg.Now()
		h.fireDue(now)
		if now.Sub(lastHB) >= hbEvery {
			lastHB = now
			h.heartbeats(now)
			mem.check(now, h.Subscribers())
		}
		sleep := hbEvery - now.Sub(lastHB)
		if due, ok := h.wheel.nextDue(); ok {
			sleep = min(sleep, max(due.Sub(now), h.cfg.Resolution))
		}
		t.Reset(sleep)
	}
}

// fireDue hands every subscriber whose interval is over to the writers.
func (h *Hub) fireDue(now time.Time) {
	for _, t := range h.wheel.due(now) {
		if t.s.timerGen.Load() == t.gen && t.s.state.CompareAndSwap(stCooldown, stQueued) {
			h.ready <- t.s
		}
	}
}

// PeerProber is implemented by sinks that can tell, without writing,
// that their peer has gone (a socket that read EOF or a reset). The hub asks
// it of subscribers it has not written to lately, so a closed connection is
// released within seconds even when nothing is sent to it. It must not block.
type PeerProber interface {
	PeerGone() bool
}

// heartbeats wakes every idle subscriber that has not been written to for
// a heartbeat period, and releases quiet subscribers whose peer is gone.
func (h *Hub) heartbeats(now time.Time) {
	limit := now.Add(-h.cfg.Heartbeat).UnixNano()
	quiet := now.Add(-h.cfg.Heartbeat / 2).UnixNano()
	var probe, due []*Subscriber
	h.subMu.Lock()
	for s := range h.subs {
		last := s.lastWrite.Load()
		if _, ok := s.sink.(PeerProber); ok && last < quiet {
			probe = append(probe, s)
		}
		if last < limit {
			due = append(due, s)
		}
	}
	h.subMu.Unlock()
	for _, s := range due { // outside subMu: a wake may wait for the writers
		s.needHB.Store(true)
		s.wake()
	}
	// The probes are syscalls: outside the lock, so subscribing never waits
	// for them.
	gone := 0
	for _, s := range probe {
		if s.sink.(PeerProber).PeerGone() {
			s.closeWith(nil)
			gone++
		}
	}
	h.stats.PeersGone.Add(uint64(gone))
}

// memReturn gives memory back to the OS after many subscribers left at
// once (a flood of non-readers dropped, a mass reconnect elsewhere): the
// runtime's scavenger would take minutes to return what their buffers
// took, and an operator reads RSS. It returns memory once at the drop and
// once more 15 s later, when the HTTP server's idle workers (and their
// stacks) have gone too; at most once every 30 s after that.
type memReturn struct {
	peak  int
	last  time.Time
	again time.Time // a second return is due then (zero: none)
}

func (m *memReturn) check(now time.Time, subs int) {
	m.peak = max(m.peak, subs)
	if !m.again.IsZero() && !now.Before(m.again) {
		m.again = time.Time{}
		debug.FreeOSMemory()
	}
	if m.peak-subs < max(256, m.peak/4) || now.Sub(m.last) < 30*time.Second {
		return
	}
	debug.FreeOSMemory()
	m.peak, m.last, m.again = subs, now, now.Add(15*time.Second)
}
