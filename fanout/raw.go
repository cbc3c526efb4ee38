package fanout

// The raw policy: every tick of the subscribed symbols, in order, with the
// exact source position after each write. Publish pushes each tick into the
// queue of every raw subscriber of its symbol and commits the queue at the
// end of the batch (a mark with the cursor); writers take whole marks.

// rawRef is a raw subscriber in a symbol's list: s.syms[i] is the symbol,
// and s.rawPos[i] is the ref's place in the list, so adding and removing
// cost O(1) however many raw subscribers a symbol has.
type rawRef struct {
	s *Subscriber
	i int
}

// addRaw registers s (whose i-th symbol st is) for every tick of st.
// Called under hub.pubMu.
func (st *symState) addRaw(s *Subscriber, i int) {
	s.rawPos[i] = int32(len(st.raw))
	st.raw = append(st.raw, rawRef{s, i})
}

// removeRaw undoes addRaw. Called under hub.pubMu.
func (st *symState) removeRaw(s *Subscriber, i int) {
	pos, last := s.rawPos[i], int32(len(st.raw)-1)
	if pos != last {
		moved := st.raw[last]
		st.raw[pos] = moved
		moved.s.rawPos[moved.i] = pos
	}
	st.raw[last] = rawRef{}
	st.raw = st.raw[:last]
	if cap(st.raw) > 64 && len(st.raw) < cap(st.raw)/4 {
		st.raw = append([]rawRef(nil), st.raw...)
	}
}

// rawMark commits a raw subscriber's queue up to rawQ[:n]: the source
// position after it is cursor. A writer takes whole marks only, so every
// cursor it sends is exact, and takes as many as fit the hub's
// RawBatchBytes, so one write (and what a slow peer leaves pending) stays
// small even after a burst.
type rawMark struct {
	n      int
	cursor string
}

// resyncRaw replaces a raw subscriber's queue with the current value of
// each of its symbols, flagged as a resync: ticks were lost upstream. Run by
// Publish (under pubMu), so every update queued after it is newer.
func (s *Subscriber) resyncRaw() bool {
	s.rawMu.Lock()
	defer s.rawMu.Unlock()
	if s.overflow {
		return false
	}
	s.snapshotRaw()
	return true
}

// snapshotRaw replaces what the subscriber owes with the current value of
// each of its symbols, flagged as a resync. Called under rawMu.
func (s *Subscriber) snapshotRaw() {
	clear(s.rawQ)
	s.rawQ, s.rawMarks, s.rawGap = s.rawQ[:0], s.rawMarks[:0], true
	for _, st := range s.syms {
		if u := st.cur.Load(); u != nil {
			s.rawQ = append(s.rawQ, u)
		}
	}
}

// pushRaw queues u for a raw subscriber; it reports whether it was queued.
func (s *Subscriber) pushRaw(u *Update) bool {
	s.rawMu.Lock()
	defer s.rawMu.Unlock()
	if s.overflow {
		return false
	}
	if len(s.rawQ) >= s.hub.cfg.RawQueue {
		s.overflow = true
		s.overflowed.Store(true) // Publish skips it from now on
		return true              // wake it, so it is told and closed
	}
	s.rawQ = append(s.rawQ, u)
	return true
}

// setRawCursor commits the updates queued so far as complete: the source
// position after them is c. Writers take only committed updates, so the
// cursor they send is exact. An overflowed queue keeps its last commit, so
// the subscriber resumes exactly there. It returns the updates the
// subscriber owes (0 once it overflowed).
func (s *Subscriber) setRawCursor(c string) (owed int) {
	s.rawMu.Lock()
	if !s.overflow {
		s.rawCursor = c
		if len(s.rawMarks) == 0 || s.rawMarks[len(s.rawMarks)-1].n < len(s.rawQ) {
			s.rawMarks = append(s.rawMarks, rawMark{len(s.rawQ), c})
		}
		owed = len(s.rawQ)
	}
	s.rawMu.Unlock()
	return owed
}

// takeRaw moves the oldest complete batches of the raw queue into b, as
// many as fit RawBatchBytes (at least one), with the cursor after them.
// Called under rawMu.
func (s *Subscriber) takeRaw(b *Batch) {
	s.cut = false
	k, size, lo := 0, 0, 0
	for k < len(s.rawMarks) {
		n := 0
		for _, u := range s.rawQ[lo:s.rawMarks[k].n] {
			n += len(u.JSON) + 16 // framing, roughly
		}
		if k > 0 && size+n > s.hub.cfg.RawBatchBytes {
			s.cut = true
			break
		}
		size += n
		lo = s.rawMarks[k].n
		k++
	}
	if k == 0 {
		if s.logged && len(s.rawQ) == 0 {
			s.takeLog(b)
			return
		}
		b.Cursor = s.rawCursor
		return
	}
	base := len(b.Updates)
	b.Updates = append(b.Updates, s.rawQ[:lo]...)
	b.Cursor = s.rawMarks[k-1].cursor
	for _, m := range s.rawMarks[:k] {
		b.Marks = append(b.Marks, Mark{End: base + m.n, Cursor: m.cursor})
	}
	rest := copy(s.rawQ, s.rawQ[lo:]) // a batch still being published stays
	clear(s.rawQ[rest:])
	s.rawQ = s.rawQ[:rest]
	m := copy(s.rawMarks, s.rawMarks[k:])
	clear(s.rawMarks[m:])
	s.rawMarks = s.rawMarks[:m]
	for i := range s.rawMarks {
		s.rawMarks[i].n -= lo
	}
	if cap(s.rawQ) > 1024 && len(s.rawQ) < cap(s.rawQ)/8 {
		// A burst's queue is not kept for the life of the subscription.
		s.rawQ = append([]*Update(nil), s.rawQ...)
	}
}

// keepRaw drops from the queue the updates of symbols not in keep, and
// moves each commit mark to count only what stays. Called under rawMu.
func (s *Subscriber) keepRaw(keep map[*symState]bool) {
	q, m, removed := s.rawQ[:0], 0, 0
	for i, u := range s.rawQ {
		for m < len(s.rawMarks) && s.rawMarks[m].n == i {
			s.rawMarks[m].n -= removed
			m++
		}
		if keep[s.hub.syms[u.Sym]] {
			q = append(q, u)
		} else {
			removed++
		}
	}
	for ; m < len(s.rawMarks); m++ {
		s.rawMarks[m].n -= removed
	}
	clear(s.rawQ[len(q):])
	s.rawQ = q
	// Marks that now commit nothing new collapse into the next.
	out := s.rawMarks[:0]
	for _, mk := range s.rawMarks {
		if len(out) > 0 && out[len(out)-1].n == mk.n {
			out[len(out)-1] = mk
			continue
		}
		if mk.n == 0 {
			continue
		}
		out = append(out, mk)
	}
	s.rawMarks = out
}

// clearRaw empties the raw queue (the source lost history).
func (s *Subscriber) clearRaw() {
	s.rawMu.Lock()
	clear(s.rawQ)
	s.rawQ, s.rawMarks, s.rawGap = s.rawQ[:0], s.rawMarks[:0], false
	if s.logged {
		s.hub.log.mu.RLock()
		s.logPos = max(s.logPos, s.hub.log.committed())
		s.hub.log.mu.RUnlock()
	}
	s.rawMu.Unlock()
}

// collectRaw moves the oldest complete batches of the raw queue into b. It
// reports an overflow.
func (s *Subscriber) collectRaw(b *Batch) (overflow bool) {
	s.rawMu.Lock()
	defer s.rawMu.Unlock()
	if s.rawGap && len(s.rawMarks) > 0 {
		// Ticks were lost upstream: the queue starts with the current
		// value of every symbol (see resyncRaw).
		b.Resync, s.rawGap = true, false
	}
	s.takeRaw(b)
	return s.overflow
}

// rawPending reports whether complete batches wait, or an overflow.
func (s *Subscriber) rawPending() bool {
	s.rawMu.Lock()
	defer s.rawMu.Unlock()
	return len(s.rawMarks) > 0 || s.overflow || (s.logged && s.logPending())
}

// rawOverflowed reports whether the raw queue overflowed.
func (s *Subscriber) rawOverflowed() bool {
	s.rawMu.Lock()
	defer s.rawMu.Unlock()
	return s.overflow
}
