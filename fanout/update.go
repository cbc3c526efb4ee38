package fanout

import (
	"time"

	"github.com/tickstream/tickstream/feed"
)

// Update is one tick as the hub holds it. JSON is the tick's wire encoding,
// produced once by the source and shared, read-only, by every subscriber and
// transport.
type Update = feed.Update

// Mode is a subscription's delivery mode.
type Mode uint8

const (
	// Conflated delivers at most one update per symbol per interval, always
	// the newest.
	Conflated Mode = iota
	// Raw delivers every tick of the subscribed symbols, in order.
	Raw
)

// String returns "conflated" or "raw".
func (m Mode) String() string {
	if m == Raw {
		return "raw"
	}
	return "conflated"
}

// Batch is what the hub hands a Sink in one Send: the updates to write in
// one write call, and flags the transport turns into control events.
type Batch struct {
	// Updates to write, in order. Their bytes are shared: do not modify.
	Updates []*Update
	// Cursor is the resume token to attach to the batch's last event.
	Cursor string
	// Marks, for a raw subscriber, are the places inside Updates where the
	// source position is known too: after Updates[:End] it is Cursor. The
	// transport attaches each to its tick, so a client whose connection is
	// cut inside a write resumes after the last complete published batch
	// it received, not before the whole write.
	Marks []Mark
	// Resync says the source lost history: the client must drop what it
	// holds. Updates then carries a full snapshot, or, for a raw subscriber
	// after ticks were lost upstream, the ticks that follow the gap.
	Resync bool
	// Lagging says the subscriber fell behind and is being conflated harder
	// (or, for a raw subscriber, is about to be closed and should resume).
	Lagging bool
	// Heartbeat asks for a keep-alive when there is nothing else to send.
	Heartbeat bool
}

// Mark is a known source position inside a batch (see Batch.Marks).
type Mark = feed.Mark

// Empty reports whether the batch carries nothing to write.
func (b *Batch) Empty() bool {
	return len(b.Updates) == 0 && !b.Resync && !b.Lagging && !b.Heartbeat
}

// Sink is a subscriber's connection as the hub sees it. Transports
// implement it.
type Sink interface {
	// Send writes b to the peer, all of it in as few write calls as the
	// transport allows (ideally one). The hub never calls Send concurrently
	// for one sink. It should not block (the hub runs about one writer per
	// CPU): if the peer does not take everything now, the sink keeps the
	// unwritten bytes and returns ErrSlow; the batch counts as sent. The
	// hub then calls Send only with batches that carry no updates (at most
	// a lagging flag) until one returns nil, so the sink holds at most one
	// batch: it appends b's bytes to what it holds and writes them first.
	// Any other error means the connection is dead; the hub then closes the
	// subscriber.
	Send(b *Batch) error
	// Close ends the connection, telling the peer why where the transport
	// can (reason is ErrDraining, ErrSlowConsumer, ErrOverflow, ErrHubClosed
	// or a write error). It may be called concurrently with Send, must make a
	// blocked Send return, and is called once.
	Close(reason error)
}

// Options are what a subscriber asks for.
type Options struct {
	Symbols  []string
	Mode     Mode
	Interval time.Duration
}
