// Package fanout is tickstream's hub: it keeps the latest value of every
// symbol, holds the subscriptions, conflates bursts per subscriber and
// applies the slow-consumer policy. It imports neither Fiber nor go-redis:
// a source calls Publish, a transport adapts a connection to the Sink
// interface, and the hub's own goroutines do the writing.
//
// # Conflation
//
// A tick costs the hub O(1) however many subscribers watch its symbol: it
// replaces the symbol's latest value and wakes only the subscribers that are
// idle-armed on it (those that had nothing to send). A subscriber that was
// just written to sleeps for its interval, then compares the latest sequence
// number of each of its symbols with the one it last sent and writes every
// changed symbol in one batch, one write call. So a subscriber receives, per
// symbol, at most one update per interval and always the newest value; the
// first change after a quiet period goes out at once. Work per subscriber is
// bounded by its interval and its symbol count, not by the tick rate. The
// interval is the subscriber's: a batch carries every symbol that changed
// since the previous batch.
//
// In raw mode (Mode Raw) a subscriber receives every tick of its symbols in
// order. Its queue is bounded; one that overflows is told it is lagging and
// closed, so that it resumes from its cursor and replays from the source.
//
// # Slow consumers
//
// A Sink whose peer does not take a whole batch now (its socket buffer is
// full) keeps the rest and answers ErrSlow; sinks never block the writers. The hub then conflates that subscriber harder (its
// effective interval doubles, up to SlowMaxInterval), tells it with a lagging
// flag on the next batch, and closes it with ErrSlowConsumer once it has been
// slow for longer than SlowDropAfter. Nothing queues without bound.
package fanout
