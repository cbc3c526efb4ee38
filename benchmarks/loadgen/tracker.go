package loadgen

import (
	"maps"
	"sync"
	"sync/atomic"
	"time"
)

// Published remembers when each tick was published (its ts), per symbol
// and seq, so that delays can be charged to every tick a client skipped
// (conflated or polled past), not only to the ones it received. Safe for
// concurrent use.
type Published struct {
	mu   sync.RWMutex
	syms map[string]*pubSym
}

type pubSym struct {
	first uint64
	ts    []int64
}

// NewPublished returns an empty record.
func NewPublished() *Published { return &Published{syms: map[string]*pubSym{}} }

// Add records tick (sym, seq) published at ts (µs). Seqs of a symbol must
// be added in order; gaps are filled as unknown.
func (p *Published) Add(sym string, seq uint64, ts int64) {
	p.mu.Lock()
	s := p.syms[sym]
	if s == nil {
		s = &pubSym{first: seq}
		p.syms[sym] = s
	}
	if seq >= s.first {
		for uint64(len(s.ts)) < seq-s.first {
			s.ts = append(s.ts, 0)
		}
		if uint64(len(s.ts)) == seq-s.first {
			s.ts = append(s.ts, ts)
		}
	}
	p.mu.Unlock()
}

// Stats are shared counters of a group of clients.
type Stats struct {
	Updates   atomic.Uint64 // ticks received that were newer than held
	Events    atomic.Uint64 // tick events received (any)
	Bytes     atomic.Uint64 // wire bytes, both directions
	Requests  atomic.Uint64 // polls
	Empty     atomic.Uint64 // polls that brought nothing new
	Errors    atomic.Uint64 // failed connections or requests
	Reconnect atomic.Uint64
	Delay     Hist

	mu      sync.Mutex
	reasons map[string]uint64 // error message → count, for the report
}

// Fail counts a failed connection or request and remembers why (the
// first few distinct reasons are reported).
func (s *Stats) Fail(err error) {
	s.Errors.Add(1)
	msg := "unknown"
	if err != nil {
		msg = err.Error()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.reasons == nil {
		s.reasons = map[string]uint64{}
	}
	if _, ok := s.reasons[msg]; ok || len(s.reasons) < 8 {
		s.reasons[msg]++
	}
}

// Reasons returns the remembered error messages with their counts.
func (s *Stats) Reasons() map[string]uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	return maps.Clone(s.reasons)
}

// Tracker is one client's view: the seq it holds per symbol. It charges
// the delay of every published tick up to a newly held seq. Not safe for
// concurrent use (one per client).
type Tracker struct {
	pub   *Published
	st    *Stats
	since *atomic.Int64  // only ticks published at or after this (Unix µs) count
	held  []heldSym      // the symbols held, searched in order (a watchlist is short)
	index map[string]int // position in held, once there are many
	// counted locally, added to st on Flush (no shared cache line per tick)
	events, updates uint64
	total           uint64 // updates ever, never reset
	local           Hist
	flush           time.Time
	// Last, if set, receives the time (UnixNano) of every tick.
	Last      *atomic.Int64
	connected bool // counted as connected once (the worker's event loop)
}

type heldSym struct {
	sym string
	seq uint64
}

// find returns the entry of sym, or nil.
func (t *Tracker) find(sym []byte) *heldSym {
	if t.index != nil {
		if i, ok := t.index[string(sym)]; ok {
			return &t.held[i]
		}
		return nil
	}
	for i := range t.held {
		if t.held[i].sym == string(sym) { // no allocation for the comparison
			return &t.held[i]
		}
	}
	return nil
}

// NewTracker returns a tracker reporting into st; pub may be nil (no delay
// measurement). Ticks published before *since (Unix µs) are not measured;
// the caller moves it when its measurement window opens.
func NewTracker(pub *Published, st *Stats, since *atomic.Int64) *Tracker {
	return &Tracker{pub: pub, st: st, since: since}
}

// Tick records that the client now holds (sym, seq) as of arrival.
func (t *Tracker) Tick(sym []byte, seq uint64, arrival time.Time) {
	t.events++
	defer t.maybeFlush(arrival)
	h := t.find(sym)
	if h == nil {
		t.held = append(t.held, heldSym{string(sym), seq})
		if len(t.held) > 32 {
			if t.index == nil {
				t.index = make(map[string]int, 64)
				for i, h := range t.held {
					t.index[h.sym] = i
				}
			}
			t.index[string(sym)] = len(t.held) - 1
		}
		t.updates++
		t.total++
		return // the first value is the snapshot: nothing to charge
	}
	if seq <= h.seq {
		return
	}
	last := h.seq
	h.seq = seq
	t.updates++
	t.total++
	if t.pub == nil {
		return
	}
	au := arrival.UnixMicro()
	since := t.since.Load()
	t.pub.mu.RLock()
	if ps := t.pub.syms[string(sym)]; ps != nil {
		for k := last + 1; k <= seq; k++ {
			if k < ps.first || k-ps.first >= uint64(len(ps.ts)) {
				continue
			}
			if ts := ps.ts[k-ps.first]; ts >= since && ts > 0 {
				t.local.counts[bucketOf(time.Duration(au-ts)*time.Microsecond)]++
				t.local.n++
			}
		}
	}
	t.pub.mu.RUnlock()
}

// maybeFlush flushes at most every 100ms; clients also flush at the end of
// each batch they read.
func (t *Tracker) maybeFlush(now time.Time) {
	if now.Sub(t.flush) > 100*time.Millisecond {
		t.Flush()
		t.flush = now
	}
}

// Flush adds the tracker's counts and delays to the shared Stats.
func (t *Tracker) Flush() {
	if t.events > 0 {
		t.st.Events.Add(t.events)
		t.st.Updates.Add(t.updates)
		t.events, t.updates = 0, 0
	}
	if t.Last != nil {
		t.Last.Store(time.Now().UnixNano())
	}
	if t.local.n > 0 {
		t.st.Delay.Merge(&t.local)
		t.local = Hist{}
	}
}
