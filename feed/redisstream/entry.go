package redisstream

import (
	"errors"
	"fmt"
	"strconv"

	"tickstream/feed"
)

// Reasons a stream entry or a latest-value hash field is refused. Redis is
// a trust boundary: anything that does not describe a well-formed tick of
// the symbol it names is skipped and counted under one of these.
const (
	// ReasonFields: a field of the entry (s, q, t, d) is missing or malformed.
	ReasonFields = "fields"
	// ReasonTooLarge: the payload is longer than MaxEntryBytes.
	ReasonTooLarge = "too_large"
	// ReasonPayload: d does not decode as a tick (a JSON number as a price,
	// a missing field, bid above ask...).
	ReasonPayload = "payload"
	// ReasonMismatch: the tick in d names another symbol, seq or time than
	// the entry's s, q and t (or the hash field it is stored under).
	ReasonMismatch = "mismatch"
	// ReasonUnknownSymbol: the symbol is not in the universe.
	ReasonUnknownSymbol = "unknown_symbol"
	// ReasonOffGrid: a price is not on the symbol's tick grid.
	ReasonOffGrid = "off_grid"
	// ReasonSize: the trade size is out of bounds.
	ReasonSize = "size"
	// ReasonSeqJump: the seq jumps ahead further than MaxSeqJump and the
	// latest-value hash does not confirm it.
	ReasonSeqJump = "seq_jump"
	// ReasonSeqOld: the seq is not above the one the node holds, while
	// Redis's latest value is not behind the node either (an injected or
	// repeated entry).
	ReasonSeqOld = "seq_old"
)

// Reasons lists every refusal reason, for metrics.
var Reasons = []string{ReasonFields, ReasonTooLarge, ReasonPayload, ReasonMismatch, ReasonUnknownSymbol,
	ReasonOffGrid, ReasonSize, ReasonSeqJump, ReasonSeqOld}

// MaxEntryBytes bounds the payload (d) of one entry.
const MaxEntryBytes = 2048

// ErrMalformed is wrapped by every EntryError.
var ErrMalformed = errors.New("malformed entry")

// EntryError says why an entry was refused.
type EntryError struct {
	Reason string // one of Reasons
	Err    error
}

func (e *EntryError) Error() string { return "entry refused (" + e.Reason + "): " + e.Err.Error() }

// Unwrap returns ErrMalformed and the cause.
func (e *EntryError) Unwrap() []error { return []error{ErrMalformed, e.Err} }

func refuse(reason string, format string, args ...any) error {
	return &EntryError{Reason: reason, Err: fmt.Errorf(format, args...)}
}

// reasonOf returns the refusal reason of err (ReasonPayload if it has none).
func reasonOf(err error) string {
	var ee *EntryError
	if errors.As(err, &ee) {
		return ee.Reason
	}
	return ReasonPayload
}

// DecodeEntry turns a stream entry's fields into an update, validated: d
// decodes as a tick (feed.DecodeTick: prices are decimal strings), its sym,
// seq and ts equal the entry's s, q and t, and, when u is not nil, the tick
// passes u.Check (known symbol, prices on its tick grid, size bounded). The
// error is an *EntryError naming the reason; such an entry is skipped and
// counted, never fatal.
func DecodeEntry(v map[string]any, u *feed.Universe) (*feed.Update, error) {
	sym, _ := v["s"].(string)
	qs, _ := v["q"].(string)
	ts, _ := v["t"].(string)
	d, _ := v["d"].(string)
	return decodeFields(sym, qs, ts, []byte(d), u)
}

// decodeFields is DecodeEntry of the entry's fields; the update keeps d.
func decodeFields(sym, qs, ts string, d []byte, u *feed.Universe) (*feed.Update, error) {
	if err := feed.ValidateSymbolName(sym); err != nil {
		return nil, refuse(ReasonFields, "%w", err)
	}
	seq, err := strconv.ParseUint(qs, 10, 64)
	if err != nil || seq == 0 {
		return nil, refuse(ReasonFields, "%s: bad seq %.30q", sym, qs)
	}
	tsv, err := strconv.ParseInt(ts, 10, 64)
	if err != nil {
		return nil, refuse(ReasonFields, "%s: bad ts %.30q", sym, ts)
	}
	if len(d) > MaxEntryBytes {
		return nil, refuse(ReasonTooLarge, "%s: payload of %d bytes", sym, len(d))
	}
	t, err := checkTick(d, sym, u)
	if err != nil {
		return nil, err
	}
	if t.Seq != seq || t.TS != tsv {
		return nil, refuse(ReasonMismatch, "%s: entry says seq %d ts %d, its tick seq %d ts %d", sym, seq, tsv, t.Seq, t.TS)
	}
	return &feed.Update{Sym: sym, Seq: seq, TS: tsv, JSON: d}, nil
}

// scanEntry is the reader's fast path of DecodeEntry: for an entry whose
// payload is a tick in the publisher's exact form (feed.Universe.ScanTick)
// and agrees with the entry's s, q and t, written as the publisher writes
// them, it returns the symbol (the universe's string), seq and ts without
// allocating. ok is false for anything else; DecodeEntry's checks then
// decide (and name the reason), so the verdict is DecodeEntry's either way.
func scanEntry(e *entryView, u *feed.Universe) (sym string, seq uint64, ts int64, ok bool) {
	if u == nil || len(e.d) > MaxEntryBytes {
		return "", 0, 0, false
	}
	q, ok1 := plainUint(e.q)
	t, ok2 := plainUint(e.t)
	if !ok1 || !ok2 || q == 0 {
		return "", 0, 0, false
	}
	h, ok := u.ScanTick(e.d)
	if !ok || h.Name != string(e.s) || h.Seq != q || h.TS != int64(t) {
		return "", 0, 0, false
	}
	return h.Name, q, h.TS, true
}

// plainUint parses 1 to 18 decimal digits (what strconv.ParseUint and
// ParseInt read the same way, within int64).
func plainUint(b []byte) (uint64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var v uint64
	for _, c := range b {
		if c < '0' || c > '9' {
			return 0, false
		}
		v = v*10 + uint64(c-'0')
	}
	return v, true
}

// checkTick decodes and validates the wire JSON of a tick of sym (from a
// stream entry or a latest-value hash).
func checkTick(js []byte, sym string, u *feed.Universe) (feed.Tick, error) {
	if len(js) > MaxEntryBytes {
		return feed.Tick{}, refuse(ReasonTooLarge, "%s: payload of %d bytes", sym, len(js))
	}
	t, err := feed.DecodeTick(js)
	if err != nil {
		return feed.Tick{}, refuse(ReasonPayload, "%s: %w", sym, err)
	}
	if t.Sym != sym {
		return feed.Tick{}, refuse(ReasonMismatch, "%s: the tick names %.40q", sym, t.Sym)
	}
	if u == nil {
		return t, nil
	}
	if err := u.Check(&t); err != nil {
		switch {
		case errors.Is(err, feed.ErrUnknownSymbol):
			return feed.Tick{}, refuse(ReasonUnknownSymbol, "%w", err)
		case errors.Is(err, feed.ErrBadSize):
			return feed.Tick{}, refuse(ReasonSize, "%w", err)
		default:
			return feed.Tick{}, refuse(ReasonOffGrid, "%w", err)
		}
	}
	return t, nil
}
