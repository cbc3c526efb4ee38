package feed

// Update is one tick in wire form: the fields a consumer routes and orders
// by, and the tick's JSON, encoded once by the publisher and shared
// read-only from the stream entry to every subscriber's socket.
type Update struct {
	Sym  string
	Seq  uint64
	TS   int64 // feed timestamp, Unix microseconds
	JSON []byte
	// Pos is where the tick sits in the source (its shard stream and entry
	// ID); zero when unknown (a value rebuilt from the latest-value hash).
	// Raw delivery uses it to never send a position at or before a
	// subscriber's cursor.
	Pos Position
	// Index is the symbol's place in the universe (Universe.Symbols) when
	// the reader knows it, else 0: a consumer that keeps per-symbol state
	// in universe order finds it without a map, after checking the name
	// there is Sym (the same string, so the check compares pointers).
	Index int32
	// Px is the trade as numbers, when the reader knows them (Px.OK):
	// consumers that need numbers (the charts) use it instead of parsing
	// JSON again.
	Px Prices
}

// Prices are a tick's trade price and size as integers, read by
// Universe.ScanTick when it validated the tick.
type Prices struct {
	Last  int64 // in units of 10^-Scale
	Size  int64
	Scale int8
	Side  int8 // -1 at or below the bid, +1 at or above the ask, else 0
	OK    bool // false: unknown (read the JSON)
}

// NewUpdate encodes t.
func NewUpdate(t *Tick) *Update {
	return &Update{Sym: t.Sym, Seq: t.Seq, TS: t.TS, JSON: t.AppendJSON(make([]byte, 0, 144))}
}

// Position is a place in one shard stream of the source: a Redis stream
// entry ID (milliseconds and sequence) in shard Shard.
type Position struct {
	Shard int
	MS    uint64
	Seq   uint64
}

// IsZero reports whether p is unknown.
func (p Position) IsZero() bool { return p == Position{} }

// After reports whether p comes after o in the same shard stream (always
// false for positions in different shards).
func (p Position) After(o Position) bool {
	return p.Shard == o.Shard && (p.MS > o.MS || p.MS == o.MS && p.Seq > o.Seq)
}
