package redisstream

import (
	"bytes"
	"errors"
	"fmt"
	"strconv"
	"unicode/utf8"

	"github.com/tickstream/tickstream/feed"
)

// Reasons a stream entry or a latest-value hash field is refused. Redis is
// a trust boundary: anything that does not describe a well-formed tick of
// the symbol it names is skipped and counted under one of these.
const (
	// ReasonFields: a field of the entry (s, q, t, d; or b) is missing or
	// malformed.
	ReasonFields = "fields"
	// ReasonTooLarge: the payload is longer than MaxEntryBytes (a tick), or a
	// batch entry holds more than MaxBatchTicks ticks.
	ReasonTooLarge = "too_large"
	// ReasonPayload: d does not decode as a tick (a JSON number as a price,
	// a missing field, bid above ask...).
	ReasonPayload = "payload"
	// ReasonMismatch: the tick in d names another symbol, seq or time than
	// the entry's s, q and t (or the hash field it is stored under), or a
	// tick of a batch entry belongs to another shard.
	ReasonMismatch = "mismatch"
	// ReasonUnknownSymbol: the symbol is not in the universe.
	ReasonUnknownSymbol = "unknown_symbol"
	// ReasonOffGrid: a price is not on the symbol's tick grid.
	ReasonOffGrid = "off_grid"
	// ReasonSize: the trade size is out of bounds.
	ReasonSize = "size"
	// ReasonSeqJump: the seq is not the next one of the symbol (held + 1)
	// and the latest-value hash does not confirm it (holds it or a later
	// one).
	ReasonSeqJump = "seq_jump"
	// ReasonSeqOld: the seq is not above the one the node holds, while
	// Redis's latest value is not behind the node either (an injected or
	// repeated entry).
	ReasonSeqOld = "seq_old"
	// ReasonKeys: the tick's JSON does not hold exactly the wire keys (a
	// key twice, in another case or escaped, or unknown:
	// feed.DecodeTickStrict), or the entry's fields are not exactly a
	// layout's (s, q, t and d; or b alone): a field twice or unknown.
	ReasonKeys = "keys"
)

// Reasons lists every refusal reason, for metrics.
var Reasons = []string{ReasonFields, ReasonTooLarge, ReasonPayload, ReasonMismatch, ReasonUnknownSymbol,
	ReasonOffGrid, ReasonSize, ReasonSeqJump, ReasonSeqOld, ReasonKeys}

// MaxEntryBytes bounds the wire JSON of one tick (an entry's d, or a line
// of a batch entry's b).
const MaxEntryBytes = 2048

// MaxBatchTicks bounds the ticks of one batch entry (the publisher writes at
// most this many per shard and batch). A batch entry holding more is
// refused whole, before any of it is decoded.
const MaxBatchTicks = 1000

// maxBatchBytes bounds a batch entry's b.
const maxBatchBytes = MaxBatchTicks * (MaxEntryBytes + 1)

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

// DecodeEntry turns a stream entry's fields into an update, validated: the
// fields are exactly s, q, t and d (checkLayout), d decodes as a tick
// (feed.DecodeTickStrict: the wire keys exactly, prices decimal strings),
// its sym, seq and ts equal the entry's s, q and t, and, when u is not nil,
// the tick passes u.Check (known symbol, prices on its tick grid, size
// bounded). The error is an *EntryError naming the reason; such an entry is
// skipped and counted, never fatal.
func DecodeEntry(v map[string]any, u *feed.Universe) (*feed.Update, error) {
	e := viewOf(v)
	if err := checkLayout(&e); err != nil {
		return nil, err
	}
	return decodeFields(string(e.s), string(e.q), string(e.t), e.d, u)
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

// sendable reports whether a tick's JSON can go to subscribers as it is:
// valid UTF-8 (a WebSocket text frame must be) and no control character (a
// CR or LF ends an SSE data line).
func sendable(js []byte) error {
	for _, c := range js {
		if c < 0x20 {
			return refuse(ReasonPayload, "a control character (%#x) in the tick", c)
		}
	}
	if !utf8.Valid(js) {
		return refuse(ReasonPayload, "the tick is not valid UTF-8")
	}
	return nil
}

// checkTick decodes and validates the wire JSON of a tick of sym (from a
// stream entry or a latest-value hash).
func checkTick(js []byte, sym string, u *feed.Universe) (feed.Tick, error) {
	if bytes.Equal(js, tooLarge) {
		return feed.Tick{}, unreadErr(sym + ": a value")
	}
	if len(js) > MaxEntryBytes {
		return feed.Tick{}, refuse(ReasonTooLarge, "%s: payload of %d bytes", sym, len(js))
	}
	if err := sendable(js); err != nil {
		return feed.Tick{}, err
	}
	t, err := feed.DecodeTickStrict(js)
	if err != nil {
		return feed.Tick{}, refuse(tickReason(err), "%s: %w", sym, err)
	}
	if t.Sym != sym {
		return feed.Tick{}, refuse(ReasonMismatch, "%s: the tick names %.40q", sym, t.Sym)
	}
	if err := checkUniverse(&t, u); err != nil {
		return feed.Tick{}, err
	}
	return t, nil
}

// tickReason is the refusal reason of a tick feed.DecodeTickStrict refuses.
func tickReason(err error) string {
	if errors.Is(err, feed.ErrTickKeys) {
		return ReasonKeys
	}
	return ReasonPayload
}

// checkUniverse checks a decoded tick against u (known symbol, prices on
// its grid, size bounded); nothing when u is nil.
func checkUniverse(t *feed.Tick, u *feed.Universe) error {
	if u == nil {
		return nil
	}
	if err := u.Check(t); err != nil {
		switch {
		case errors.Is(err, feed.ErrUnknownSymbol):
			return refuse(ReasonUnknownSymbol, "%w", err)
		case errors.Is(err, feed.ErrBadSize):
			return refuse(ReasonSize, "%w", err)
		default:
			return refuse(ReasonOffGrid, "%w", err)
		}
	}
	return nil
}

// A batch entry (the publisher's layout) holds the ticks of one shard from
// one publish batch in one field, b: each tick's wire JSON, in publish
// order, separated by a newline (wire JSON holds none). Each tick is
// validated on its own, as a tick of a one-tick entry is, and must belong
// to the entry's shard; a refused tick does not take the others with it.

// checkBatch refuses a batch entry that is too large to decode (before any
// tick of it is looked at) and returns the number of ticks it holds.
func checkBatch(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, refuse(ReasonFields, "an empty batch")
	}
	if len(b) > maxBatchBytes {
		return 0, refuse(ReasonTooLarge, "a batch of %d bytes", len(b))
	}
	n := bytes.Count(b, newline) + 1
	if n > MaxBatchTicks {
		return 0, refuse(ReasonTooLarge, "a batch of %d ticks", n)
	}
	return n, nil
}

var newline = []byte{'\n'}

// nextLine cuts the first tick off a batch.
func nextLine(b []byte) (line, rest []byte) {
	if i := bytes.IndexByte(b, '\n'); i >= 0 {
		return b[:i], b[i+1:]
	}
	return b, nil
}

// decodeLine validates one tick of a batch entry of shard (of shards; 0:
// not checked) with DecodeEntry's checks; the update keeps line.
func decodeLine(line []byte, shard, shards int, u *feed.Universe) (*feed.Update, error) {
	if len(line) > MaxEntryBytes {
		return nil, refuse(ReasonTooLarge, "a tick of %d bytes", len(line))
	}
	if err := sendable(line); err != nil {
		return nil, err
	}
	t, err := feed.DecodeTickStrict(line)
	if err != nil {
		return nil, refuse(tickReason(err), "%w", err)
	}
	if err := checkUniverse(&t, u); err != nil {
		return nil, err
	}
	if shards > 0 && feed.ShardOf(t.Sym, shards) != shard {
		return nil, refuse(ReasonMismatch, "%s: a tick of shard %d in shard %d", t.Sym, feed.ShardOf(t.Sym, shards), shard)
	}
	return &feed.Update{Sym: t.Sym, Seq: t.Seq, TS: t.TS, JSON: line}, nil
}

// DecodeTicks validates a stream entry of shard (of shards) read with
// go-redis, a one-tick entry (DecodeEntry) or a batch entry, and returns
// its accepted ticks in order, each with its position, and the refusals of
// the others. want, when not nil, keeps only the ticks of those symbols
// (the others are not decoded past their symbol).
func DecodeTicks(id string, v map[string]any, shard, shards int, u *feed.Universe, want map[string]bool) ([]*feed.Update, []error) {
	sid, err := parseID(id)
	if err != nil {
		return nil, []error{refuse(ReasonFields, "%w", err)}
	}
	pos := feed.Position{Shard: shard, MS: sid.ms, Seq: sid.seq}
	e := viewOf(v)
	if err := checkLayout(&e); err != nil {
		return nil, []error{err}
	}
	if e.b == nil {
		if want != nil && !want[string(e.s)] {
			return nil, nil
		}
		up, err := decodeFields(string(e.s), string(e.q), string(e.t), e.d, u)
		if err != nil {
			return nil, []error{err}
		}
		up.Pos = pos
		return []*feed.Update{up}, nil
	}
	n, err := checkBatch(e.b)
	if err != nil {
		return nil, []error{err}
	}
	var (
		out  = make([]*feed.Update, 0, n)
		errs []error
		rest = e.b
		line []byte
	)
	for rest != nil {
		line, rest = nextLine(rest)
		// The symbol is the decoded one (a line not in the publisher's
		// exact form is judged as the reader judges it), not its prefix.
		var up *feed.Update
		if h, ok := scanLine(line, shard, shards, u); ok {
			up = &feed.Update{Sym: h.Name, Seq: h.Seq, TS: h.TS, JSON: line}
		} else if up, err = decodeLine(line, shard, shards, u); err != nil {
			if want == nil {
				errs = append(errs, err)
			}
			continue
		}
		if want != nil && !want[up.Sym] {
			continue
		}
		up.Pos = pos
		out = append(out, up)
	}
	return out, errs
}

// errMixed refuses an entry holding both layouts' fields (b and one of s,
// q, t, d): the reader and a replay must not read it two ways.
var errMixed = refuse(ReasonFields, "an entry with both a batch (b) and a tick's fields")

// scanLine is decodeLine's fast path (feed.Universe.ScanTick), which also
// checks the shard: ok is false for anything else, which decodeLine then
// judges.
func scanLine(line []byte, shard, shards int, u *feed.Universe) (feed.TickHead, bool) {
	if u == nil || len(line) > MaxEntryBytes {
		return feed.TickHead{}, false
	}
	h, ok := u.ScanTick(line)
	if !ok || shards > 0 && feed.ShardOf(h.Name, shards) != shard {
		return feed.TickHead{}, false
	}
	return h, true
}
