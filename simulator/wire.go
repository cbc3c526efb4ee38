package simulator

import "github.com/tickstream/tickstream/feed"

// stamp is a batch's timestamp field, written once for all its ticks.
type stamp struct {
	ts    int64
	field []byte // `,"ts":` and ts
}

// of returns the stamp for ts, rewritten only when ts changed.
func (s *stamp) of(ts int64) *stamp {
	if s.field == nil || s.ts != ts {
		s.ts = ts
		s.field = feed.AppendFixed(append(s.field[:0], `,"ts":`...), ts, 0)
	}
	return s
}

// appendWire appends r's wire JSON stamped with the batch's st: the bytes
// feed.Tick.AppendJSON writes for r.tick() with TS st.ts, written from the
// integers (no decimal read: a decimal's digits sit behind two pointers,
// each a likely cache miss once the walk's tick is a few milliseconds old).
func (r *rawTick) appendWire(dst []byte, st *stamp) []byte {
	w, ts := r.w, st.ts
	if !w.onIntGrid(r) {
		t := r.tick()
		t.TS = ts
		return t.AppendJSON(dst)
	}
	dst = append(dst, w.prefix...)
	dst = feed.AppendUint(dst, r.seq)
	dst = append(dst, `,"bid":"`...)
	dst = w.appendPrice(dst, r.bid)
	dst = append(dst, `","ask":"`...)
	dst = w.appendPrice(dst, r.ask)
	dst = append(dst, `","last":"`...)
	dst = w.appendPrice(dst, r.last)
	dst = append(dst, `","size":`...)
	dst = feed.AppendFixed(dst, r.size, 0)
	dst = append(dst, st.field...)
	if r.vol != 0 {
		dst = append(dst, `,"vol":`...)
		dst = feed.AppendFixed(dst, r.vol, 0)
	}
	if r.hi != 0 {
		dst = append(dst, `,"hi":"`...)
		dst = append(w.appendPrice(dst, r.hi), '"')
	}
	if r.lo != 0 {
		dst = append(dst, `,"lo":"`...)
		dst = append(w.appendPrice(dst, r.lo), '"')
	}
	return append(dst, '}')
}

// onIntGrid reports whether every price of r is written from integers.
func (w *walk) onIntGrid(r *rawTick) bool {
	ok := func(n int64) bool { return n >= 0 && n <= w.maxN }
	return w.maxN > 0 && ok(r.bid) && ok(r.ask) && ok(r.last) && ok(r.hi) && ok(r.lo)
}

// appendPrice writes n ticks as feed.Tick.AppendJSON writes the decimal
// n×unit×10^exp: with exactly -exp decimals.
func (w *walk) appendPrice(dst []byte, n int64) []byte {
	return feed.AppendFixed(dst, n*w.unit, int(-w.exp))
}
