package fanout

import "errors"

var (
	// ErrHubClosed is returned by Subscribe after Close, and is the reason
	// given to sinks closed by it.
	ErrHubClosed = errors.New("hub closed")
	// ErrDraining is returned by Subscribe while the hub drains, and is the
	// reason given to sinks told to reconnect elsewhere.
	ErrDraining = errors.New("node draining")
	// ErrTooManySubscribers is returned by Subscribe at the subscriber limit.
	ErrTooManySubscribers = errors.New("too many subscribers")
	// ErrSlow is returned by Sink.Send when the peer did not take the whole
	// batch (its socket buffer is full); the sink keeps the rest.
	ErrSlow = errors.New("write would block")
	// ErrSlowConsumer is the reason given to a sink dropped for staying slow
	// past the deadline.
	ErrSlowConsumer = errors.New("slow consumer")
	// ErrOverflow is the reason given to a raw subscriber whose queue
	// overflowed; it should resume from its cursor.
	ErrOverflow = errors.New("raw queue overflow")
	// ErrUnknownSymbol is returned by Subscribe for a symbol the hub does not
	// know.
	ErrUnknownSymbol = errors.New("unknown symbol")
	// ErrBadInterval is returned by Grant for a negative interval.
	ErrBadInterval = errors.New("bad interval")
)
