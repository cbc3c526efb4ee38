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

// Mark is a known source position inside a run of updates: after
// Updates[:End] the reader's resume cursor is Cursor. A transport attaches
// it to that update (an SSE id:, a WebSocket frame's cursor), so a client
// whose connection is cut there resumes after it, not before the whole run.
type Mark struct {
	End    int
	Cursor string
}

// ReplayPage is one page of a raw subscriber's missed ticks, read back from
// the source.
type ReplayPage struct {
	// Updates in source order per shard.
	Updates []*Update
	// Marks are the resume points inside Updates, the last one after the
	// last update.
	Marks []Mark
	// Next is where the following page starts: the position after
	// everything this page read (updates of other symbols included).
	Next string
	// Done reports that Next reached the end asked for on every shard of
	// the subscriber's symbols.
	Done bool
	// Seqs is each wanted symbol's newest seq the replay knows of; pass it
	// to the next page of the same replay.
	Seqs map[string]uint64
}
