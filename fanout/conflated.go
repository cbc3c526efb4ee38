package fanout

// The conflated policy: a subscriber owes, per symbol, the newest value if
// it is newer than the one it was sent last; it waits armed on its symbols
// (Publish wakes it) and is written at most once per interval.

// collectConflated appends the newest value of every symbol that changed
// since it was last sent (every symbol after a resync).
func (s *Subscriber) collectConflated(b *Batch) {
	h := s.hub
	// The cursor before the values: if a Publish lands in between, the
	// client may get a tick twice on resume, never miss one.
	b.Cursor = h.Cursor()
	var superseded uint64
	for i, st := range s.syms {
		u := st.cur.Load()
		if u == nil || u.Seq <= s.sent[i] && !b.Resync {
			continue
		}
		if s.sent[i] != 0 && u.Seq > s.sent[i]+1 {
			superseded += u.Seq - s.sent[i] - 1
		}
		s.sent[i] = u.Seq
		b.Updates = append(b.Updates, u)
	}
	if superseded > 0 {
		h.stats.Conflated.Add(superseded)
	}
}

// armWaiters registers the subscriber as waiting on each of its symbols.
func (s *Subscriber) armWaiters() {
	for _, st := range s.syms {
		st.mu.Lock()
		st.waiters[s] = struct{}{}
		st.nwait.Store(int32(len(st.waiters))) // before pending's loads of cur (see nwait)
		st.mu.Unlock()
	}
}

// conflatedPending reports whether a symbol has a newer value than sent.
func (s *Subscriber) conflatedPending() bool {
	for i, st := range s.syms {
		if u := st.cur.Load(); u != nil && u.Seq > s.sent[i] {
			return true
		}
	}
	return false
}
