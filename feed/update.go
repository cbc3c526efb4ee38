package feed

// Update is one tick in wire form: the fields a consumer routes and orders
// by, and the tick's JSON, encoded once by the publisher and shared
// read-only from the stream entry to every subscriber's socket.
type Update struct {
	Sym  string
	Seq  uint64
	TS   int64 // feed timestamp, Unix microseconds
	JSON []byte
}

// NewUpdate encodes t.
func NewUpdate(t *Tick) *Update {
	return &Update{Sym: t.Sym, Seq: t.Seq, TS: t.TS, JSON: t.AppendJSON(make([]byte, 0, 144))}
}
