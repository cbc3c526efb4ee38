package transport

import (
	"github.com/shopspring/decimal"

	"github.com/tickstream/tickstream/fanout"
	"github.com/tickstream/tickstream/feed"
)

// The snapshot reference table: what a snapshot's ticks carry beyond live
// ones, on every transport (SSE and WebSocket snapshots, poll snapshots).

// maxRefLen is room for a snapshot tick's reference members (see refTable).
const maxRefLen = 64

// refTable holds, for each symbol of a universe, the members a snapshot
// tick carries beyond a live one: `,"prev_close":"…","open":"…"` (the
// session's reference prices as decimal strings on the symbol's grid, each
// left out when unknown). Live updates do not carry them: their bytes are
// the source's, shared by every subscriber.
type refTable struct {
	refs map[string][]byte
}

// newRefTable builds u's table.
func newRefTable(u *feed.Universe) *refTable {
	t := &refTable{refs: make(map[string][]byte, u.Len())}
	for _, sym := range u.Symbols() {
		var b []byte
		b = appendRef(b, `,"prev_close":"`, sym.PrevClose, sym.TickSize)
		b = appendRef(b, `,"open":"`, sym.Open, sym.TickSize)
		if len(b) > 0 {
			t.refs[sym.Name] = b
		}
	}
	return t
}

// appendRef appends name and d (with at least the decimals of the tick
// size, as the feed writes its prices), unless d is zero (unknown).
func appendRef(b []byte, name string, d, tick decimal.Decimal) []byte {
	if !d.IsPositive() {
		return b
	}
	places := max(-tick.Exponent(), -d.Exponent(), 0)
	b = append(b, name...)
	b = append(b, d.StringFixed(places)...)
	return append(b, '"')
}

// appendTick appends u's JSON with the symbol's reference members before
// its closing brace (t nil: as it is).
func (t *refTable) appendTick(b []byte, u *fanout.Update) []byte {
	js := u.JSON
	if t == nil || len(js) == 0 || js[len(js)-1] != '}' {
		return append(b, js...)
	}
	ref := t.refs[u.Sym]
	if len(ref) == 0 {
		return append(b, js...)
	}
	b = append(b, js[:len(js)-1]...)
	b = append(b, ref...)
	return append(b, '}')
}
