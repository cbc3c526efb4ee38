package fanout

import (
	"math/bits"
	"sort"
	"sync"
)

// The shared raw log: raw subscribers of many symbols (every symbol, the
// common case of a quant script) do not get a queue each. Publish appends
// every tick it accepts to one ring for the whole hub, once, and such a
// subscriber keeps only its position in it (and a bit set of its symbols
// when it has not all of them). Its backlog costs the node nothing per
// subscriber, Publish's cost per tick no longer grows with the number of
// raw subscribers, and a non-reader is still closed once it owes more than
// RawQueue ticks of the log, exactly where it stopped.
//
// Subscribers of few symbols keep their own queue (raw.go): scanning the
// whole feed for a handful of symbols would cost more than it saves.

// logEntry is one accepted tick and its symbol's index.
type logEntry struct {
	u   *Update
	sym int32
}

// logMark is the end of one published batch in the log, with the source
// position after it.
type logMark struct {
	end    uint64
	cursor string
}

// rawLog is the hub's ring of recent ticks. Publish writes it under mu
// (and pubMu); writers read it under mu.RLock.
type rawLog struct {
	mu    sync.RWMutex
	buf   []logEntry // a ring: entry n is buf[n&(len-1)]
	head  uint64     // the number of entries ever appended
	low   uint64     // no entry below it is in buf (a grown ring holds only what it copied)
	marks []logMark  // the batch ends still in the ring, in order
}

// oldest returns the number of the oldest entry still in the ring.
func (l *rawLog) oldest() uint64 {
	return max(l.low, l.head-min(l.head, uint64(len(l.buf))))
}

// reserve makes room for n more entries while keeping the last keep.
// Called under mu.
func (l *rawLog) reserve(n, keep int) {
	need := n + keep
	if need <= len(l.buf) {
		return
	}
	size := 1 << bits.Len(uint(need-1))
	buf := make([]logEntry, size)
	for i := l.oldest(); i < l.head; i++ {
		buf[i&uint64(size-1)] = l.buf[i&uint64(len(l.buf)-1)]
	}
	l.low = l.oldest()
	l.buf = buf
}

// append adds one entry. Called under mu, after reserve.
func (l *rawLog) append(u *Update, sym int32) {
	l.buf[l.head&uint64(len(l.buf)-1)] = logEntry{u, sym}
	l.head++
}

// commit records the end of a published batch and forgets the marks that
// left the ring. Called under mu.
func (l *rawLog) commit(cursor string) {
	if n := len(l.marks); n > 0 && l.marks[n-1].end == l.head {
		l.marks[n-1].cursor = cursor
	} else {
		l.marks = append(l.marks, logMark{l.head, cursor})
	}
	old, k := l.oldest(), 0
	for k < len(l.marks) && l.marks[k].end <= old {
		k++
	}
	if k > len(l.marks)/2 && k > 64 {
		l.marks = append(l.marks[:0], l.marks[k:]...)
	}
}

// committed returns the end of the last published batch. Called under mu
// (either side).
func (l *rawLog) committed() uint64 {
	if n := len(l.marks); n > 0 {
		return l.marks[n-1].end
	}
	return l.head
}

// clear drops every entry, so the updates can be collected once no
// subscriber reads the log. Called under mu.
func (l *rawLog) clear() {
	l.buf, l.marks = nil, nil
}

// symSet is a set of symbol indices.
type symSet []uint64

func newSymSet(syms []*symState, n int) symSet {
	s := make(symSet, (n+63)/64)
	for _, st := range syms {
		s[st.idx/64] |= 1 << (st.idx % 64)
	}
	return s
}

func (s symSet) has(i int32) bool { return s[i/64]&(1<<(i%64)) != 0 }

// logged reports whether a raw subscription to syms reads the shared log.
func (h *Hub) logged(syms []*symState) bool {
	return len(syms) >= h.cfg.rawLogMin
}

// joinLog makes s, a raw subscriber of syms, read the log from its current
// end. Called under pubMu and s.rawMu.
func (h *Hub) joinLog(s *Subscriber, syms []*symState) {
	s.logged, s.logIdx = true, len(h.logSubs)
	h.logSubs = append(h.logSubs, s)
	s.filter = nil
	if len(syms) != len(h.all) || &syms[0] != &h.all[0] {
		s.filter = newSymSet(syms, len(h.all))
	}
	h.log.mu.RLock()
	s.logPos = h.log.committed()
	h.log.mu.RUnlock()
}

// leaveLog undoes joinLog. What s still owes from the log is moved into its
// own queue, with its marks, when keep is set. Called under pubMu and
// s.rawMu.
func (h *Hub) leaveLog(s *Subscriber, keep bool) {
	if !s.logged {
		return
	}
	if keep && !s.overflow {
		h.log.mu.RLock()
		end := h.log.committed()
		pos := s.logPos
		i := h.log.firstMarkAfter(pos)
		for ; i < len(h.log.marks) && h.log.marks[i].end <= end; i++ {
			m := h.log.marks[i]
			for ; pos < m.end; pos++ {
				if e := h.log.buf[pos&uint64(len(h.log.buf)-1)]; s.reads(e.sym) {
					s.rawQ = append(s.rawQ, e.u)
				}
			}
			s.commitQueue(m.cursor)
		}
		h.log.mu.RUnlock()
	}
	last := len(h.logSubs) - 1
	moved := h.logSubs[last]
	h.logSubs[s.logIdx], moved.logIdx = moved, s.logIdx
	h.logSubs[last] = nil
	h.logSubs = h.logSubs[:last]
	s.logged, s.filter = false, nil
	if len(h.logSubs) == 0 {
		h.log.mu.Lock()
		h.log.clear()
		h.log.mu.Unlock()
	}
}

// firstMarkAfter returns the index of the first mark past entry pos.
// Called under mu.
func (l *rawLog) firstMarkAfter(pos uint64) int {
	return sort.Search(len(l.marks), func(i int) bool { return l.marks[i].end > pos })
}

// commitQueue commits what the subscriber's own queue holds as complete at
// cursor, merging with the last mark when it committed nothing since.
// Called under rawMu.
func (s *Subscriber) commitQueue(cursor string) {
	s.rawCursor = cursor
	if n := len(s.rawMarks); n > 0 && s.rawMarks[n-1].n == len(s.rawQ) {
		s.rawMarks[n-1].cursor = cursor
		return
	}
	if len(s.rawQ) > 0 && (len(s.rawMarks) == 0 || s.rawMarks[len(s.rawMarks)-1].n < len(s.rawQ)) {
		s.rawMarks = append(s.rawMarks, rawMark{len(s.rawQ), cursor})
	}
}

// publishLog is Publish's part for the log's subscribers, run at the end of
// each batch: it appends the batch's accepted ticks and commits them,
// resyncs the subscribers of a symbol with a gap, closes those that owe
// more than RawQueue entries, and returns every one to wake, and the most
// that one of them owes. Called under pubMu.
func (h *Hub) publishLog(cursor string, accepted []logEntry, gaps symSet, dst []*Subscriber) (_ []*Subscriber, maxOwed int) {
	appended := len(accepted)
	if appended > 0 {
		h.log.mu.Lock()
		h.log.reserve(appended, h.cfg.RawQueue)
		for _, e := range accepted {
			h.log.append(e.u, e.sym)
		}
		h.log.commit(cursor)
		h.log.mu.Unlock()
	}
	end := h.log.head // only Publish moves it, and we are Publish
	for _, s := range h.logSubs {
		resync := gaps != nil && s.wantsAny(gaps)
		if !resync && appended == 0 {
			continue
		}
		s.rawMu.Lock()
		switch {
		case s.overflow:
		case resync:
			// As resyncRaw: the current value of each of its symbols, at
			// the end of this batch, and the log from there.
			s.snapshotRaw()
			s.commitQueue(cursor)
			s.logPos = end
		case end-s.logPos+uint64(len(s.rawQ)) > uint64(h.cfg.RawQueue):
			s.overflow, s.logLimit = true, s.logPos+uint64(h.cfg.RawQueue-min(len(s.rawQ), h.cfg.RawQueue))
			s.overflowed.Store(true)
		default:
			maxOwed = max(maxOwed, int(end-s.logPos)+len(s.rawQ))
		}
		s.rawMu.Unlock()
		dst = append(dst, s)
	}
	return dst, maxOwed
}

// reads reports whether a subscriber reading the log takes symbol i's
// ticks.
func (s *Subscriber) reads(i int32) bool { return s.filter == nil || s.filter.has(i) }

// wantsAny reports whether the subscriber reads any symbol of set.
func (s *Subscriber) wantsAny(set symSet) bool {
	for i, w := range set {
		if w != 0 && (s.filter == nil || s.filter[i]&w != 0) {
			return true
		}
	}
	return false
}

// takeLog moves the oldest complete batches the subscriber owes from the
// log into b, as many as fit RawBatchBytes (at least one), with the cursor
// after them. Called under rawMu, once its own queue is empty.
func (s *Subscriber) takeLog(b *Batch) {
	l := &s.hub.log
	l.mu.RLock()
	defer l.mu.RUnlock()
	end := l.committed()
	if s.overflow {
		end = min(end, s.logLimit)
	}
	b.Cursor = s.rawCursor
	if s.logPos >= end || s.logPos < l.oldest() {
		return // nothing owed, or (overflowed long ago) nothing exact left
	}
	mask := uint64(len(l.buf) - 1)
	base, size, pos := len(b.Updates), 0, s.logPos
	for i := l.firstMarkAfter(pos); i < len(l.marks) && l.marks[i].end <= end; i++ {
		m := l.marks[i]
		start, n := len(b.Updates), 0
		for q := pos; q < m.end; q++ {
			if e := l.buf[q&mask]; s.reads(e.sym) {
				b.Updates = append(b.Updates, e.u)
				n += len(e.u.JSON) + 16 // framing, roughly
			}
		}
		if size > 0 && size+n > s.hub.cfg.RawBatchBytes {
			s.cut = true
			clear(b.Updates[start:])
			b.Updates = b.Updates[:start]
			break
		}
		size, pos, s.rawCursor = size+n, m.end, m.cursor
		switch k := len(b.Marks); {
		case len(b.Updates) == base: // nothing of its symbols yet
		case k > 0 && b.Marks[k-1].End == len(b.Updates):
			b.Marks[k-1].Cursor = m.cursor
		default:
			b.Marks = append(b.Marks, Mark{End: len(b.Updates), Cursor: m.cursor})
		}
	}
	s.logPos = pos
	b.Cursor = s.rawCursor
}

// logPending reports whether the log holds complete batches the subscriber
// has not taken. Called under rawMu.
func (s *Subscriber) logPending() bool {
	l := &s.hub.log
	l.mu.RLock()
	defer l.mu.RUnlock()
	return s.logPos < l.committed()
}
